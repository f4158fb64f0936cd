//! Keyport's error type.
//!
//! Every variant renders as one line that says what is wrong and what to do about it; the
//! CLI prints it as is. No variant carries a secret value: keychain errors carry the item's
//! service and account, validation errors carry field names, never what was typed for a
//! secret field.

use std::path::PathBuf;

use crate::store::KeychainError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be parsed or violates the profile rules.
    #[error("config file {}: {location}{message}; fix the file by hand (nothing was changed)", path.display())]
    Config {
        path: PathBuf,
        /// "line N, field F: " or empty when the problem has no single place.
        location: String,
        message: String,
    },

    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("no profile named '{0}': see `keyport profile list`")]
    ProfileNotFound(String),

    #[error("a profile named '{0}' already exists: choose another name or remove it with `keyport profile rm {0}`")]
    ProfileExists(String),

    #[error("invalid profile name '{0}': use 1-64 characters a-z, 0-9, '_' or '-', starting with a letter or digit")]
    InvalidName(String),

    #[error("unknown preset '{0}': see `keyport presets`")]
    UnknownPreset(String),

    #[error("preset '{preset}' has no field '{field}'; its fields are: {known}")]
    UnknownField {
        preset: String,
        field: String,
        known: String,
    },

    #[error("'{field}' is a secret field: set it with `--secret {field}` (or `keyport secret set NAME {field}`), never on the command line")]
    SecretOnCommandLine { field: String },

    #[error(
        "'{field}' is not a secret field of preset '{preset}': set it with `--set {field}=VALUE`"
    )]
    NotASecret { preset: String, field: String },

    #[error("missing required field '{field}' for preset '{preset}': {hint}")]
    MissingField {
        preset: String,
        field: String,
        hint: String,
    },

    #[error("invalid value for '{field}': {message}")]
    InvalidValue { field: String, message: String },

    #[error("secret '{field}' of profile '{profile}' is not set: set it with `keyport secret set {profile} {field}`")]
    SecretNotSet { profile: String, field: String },

    #[error("the token of profile '{profile}' expired at {expired_at}: paste a new one with `keyport secret set {profile} token` and update expires_at with `keyport profile set {profile} expires_at=...`")]
    TokenExpired { profile: String, expired_at: String },

    #[error(transparent)]
    Keychain(#[from] KeychainError),

    /// A token endpoint (or discovery, or revocation) failed; `message` says how, in the
    /// vendor's words where it gave any, and what to do.
    #[error("{what} {url} {message}")]
    Endpoint {
        what: &'static str,
        url: String,
        /// The HTTP status when the endpoint answered (4xx: a person must fix something).
        status: Option<u16>,
        message: String,
    },

    /// Only a person can help: the CLI exits 3.
    #[error(
        "profile '{profile}' needs an interactive login ({reason}): run: keyport login {profile}"
    )]
    LoginRequired { profile: String, reason: String },

    /// An interactive login did not complete.
    #[error("login for '{profile}' failed: {message}")]
    Login { profile: String, message: String },
}

impl Error {
    /// Can only a person fix this (wrong credentials or settings), as opposed to a failure
    /// worth retrying later (network, 5xx, a locked keychain)?
    pub fn needs_person(&self) -> bool {
        match self {
            Error::Endpoint {
                status: Some(s), ..
            } => (400..500).contains(s) && !matches!(s, 408 | 429),
            Error::Endpoint { .. } | Error::Keychain(_) | Error::Io { .. } => false,
            _ => true,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidValue {
            field: field.into(),
            message: message.into(),
        }
    }
}
