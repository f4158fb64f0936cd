//! Keyport's error type, and the one classification of failures that the agent, the CLI's
//! exit codes and the desktop app share ([`ErrorKind`]).
//!
//! Every variant renders as one line that says what is wrong and what to do about it; the
//! CLI prints it as is. No variant carries a secret value: keychain errors carry the item's
//! service and account, validation errors carry field names, never what was typed for a
//! secret field. Whether a failure is worth retrying or needs a person is decided per kind,
//! with an exhaustive match (a new variant must be classified, not fall into a wildcard).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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

    /// A value (typed by the user, or in the config) breaks a rule.
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

    #[error("a login for '{profile}' is already in progress: finish it in the browser, or cancel it first")]
    LoginInProgress { profile: String },

    #[error("login for '{profile}' interrupted: nothing was changed")]
    LoginCancelled { profile: String },

    /// Talking to a running agent failed.
    #[error("{0}")]
    Agent(String),

    /// Another agent (CLI or desktop app) already serves this user session.
    #[error("an agent is already running (pid {pid}): use it, or stop it with `kill {pid}` first")]
    AgentRunning { pid: String },

    /// The runtime dir (agent socket, lock files) is missing, unsafe or unusable.
    #[error("runtime dir {}: {message}", path.display())]
    RuntimeDir { path: PathBuf, message: String },

    /// A bug or an unexpected platform failure (a task that panicked, a TLS stack that
    /// cannot start). Worth retrying; worth reporting.
    #[error("internal error: {0} (please report it)")]
    Internal(String),

    /// An error a running agent reported, with its kind.
    #[error("{message}")]
    Remote { kind: ErrorKind, message: String },
}

/// What kind of failure an [`Error`] is: the one classification the agent (retry or not),
/// the CLI (exit codes) and the desktop app (what to show) share. Serialized as snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The config file is malformed or breaks a rule.
    Config,
    /// A file could not be read or written.
    Io,
    NotFound,
    Exists,
    /// A name, preset, field or value is not acceptable.
    Invalid,
    SecretNotSet,
    /// A pasted token expired.
    TokenExpired,
    /// The keychain is unavailable, locked or holds something unexpected.
    Keychain,
    /// An endpoint refused (4xx): wrong credentials or settings.
    Rejected,
    /// An endpoint could not be reached, timed out or failed (5xx, 408, 429, transport).
    Unavailable,
    LoginRequired,
    /// An interactive login did not complete (denied, timed out, forged callback).
    LoginFailed,
    LoginInProgress,
    Cancelled,
    /// A running agent did not answer, or answered something unreadable.
    Agent,
    AgentRunning,
    RuntimeDir,
    /// Anything else; also what an unknown kind from a newer agent reads as.
    #[serde(other)]
    Internal,
}

impl ErrorKind {
    /// Only a person can fix this (wrong credentials or settings, a login): retrying on a
    /// timer would only hammer an endpoint (a wrong password could lock the account).
    /// Everything else is worth retrying later.
    pub fn needs_person(self) -> bool {
        match self {
            ErrorKind::Config
            | ErrorKind::NotFound
            | ErrorKind::Exists
            | ErrorKind::Invalid
            | ErrorKind::SecretNotSet
            | ErrorKind::TokenExpired
            | ErrorKind::Rejected
            | ErrorKind::LoginRequired
            | ErrorKind::LoginFailed => true,
            ErrorKind::Io
            | ErrorKind::Keychain
            | ErrorKind::Unavailable
            | ErrorKind::LoginInProgress
            | ErrorKind::Cancelled
            | ErrorKind::Agent
            | ErrorKind::AgentRunning
            | ErrorKind::RuntimeDir
            | ErrorKind::Internal => false,
        }
    }

    /// The `keyport` exit code: 3 when only an interactive login can help, else 1 (2 is
    /// for usage errors, which never reach the core).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::LoginRequired => 3,
            ErrorKind::Config
            | ErrorKind::Io
            | ErrorKind::NotFound
            | ErrorKind::Exists
            | ErrorKind::Invalid
            | ErrorKind::SecretNotSet
            | ErrorKind::TokenExpired
            | ErrorKind::Keychain
            | ErrorKind::Rejected
            | ErrorKind::Unavailable
            | ErrorKind::LoginFailed
            | ErrorKind::LoginInProgress
            | ErrorKind::Cancelled
            | ErrorKind::Agent
            | ErrorKind::AgentRunning
            | ErrorKind::RuntimeDir
            | ErrorKind::Internal => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Io => "io",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Exists => "exists",
            ErrorKind::Invalid => "invalid",
            ErrorKind::SecretNotSet => "secret_not_set",
            ErrorKind::TokenExpired => "token_expired",
            ErrorKind::Keychain => "keychain",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::LoginRequired => "login_required",
            ErrorKind::LoginFailed => "login_failed",
            ErrorKind::LoginInProgress => "login_in_progress",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Agent => "agent",
            ErrorKind::AgentRunning => "agent_running",
            ErrorKind::RuntimeDir => "runtime_dir",
            ErrorKind::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// This error's kind. Exhaustive on purpose: a new variant must be classified here.
    /// The field of a profile this error is about: a preset field, or `name` for the
    /// profile's own name (no preset has a field called `name`).
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::UnknownField { field, .. }
            | Error::SecretOnCommandLine { field }
            | Error::NotASecret { field, .. }
            | Error::MissingField { field, .. }
            | Error::InvalidValue { field, .. } => Some(field),
            Error::InvalidName(_) | Error::ProfileExists(_) => Some("name"),
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Io { .. } => ErrorKind::Io,
            Error::ProfileNotFound(_) => ErrorKind::NotFound,
            Error::ProfileExists(_) => ErrorKind::Exists,
            Error::InvalidName(_)
            | Error::UnknownPreset(_)
            | Error::UnknownField { .. }
            | Error::SecretOnCommandLine { .. }
            | Error::NotASecret { .. }
            | Error::MissingField { .. }
            | Error::InvalidValue { .. } => ErrorKind::Invalid,
            Error::SecretNotSet { .. } => ErrorKind::SecretNotSet,
            Error::TokenExpired { .. } => ErrorKind::TokenExpired,
            Error::Keychain(_) => ErrorKind::Keychain,
            Error::Endpoint {
                status: Some(s), ..
            } if (400..500).contains(s) && !matches!(s, 408 | 429) => ErrorKind::Rejected,
            Error::Endpoint { .. } => ErrorKind::Unavailable,
            Error::LoginRequired { .. } => ErrorKind::LoginRequired,
            Error::Login { .. } => ErrorKind::LoginFailed,
            Error::LoginInProgress { .. } => ErrorKind::LoginInProgress,
            Error::LoginCancelled { .. } => ErrorKind::Cancelled,
            Error::Agent(_) => ErrorKind::Agent,
            Error::AgentRunning { .. } => ErrorKind::AgentRunning,
            Error::RuntimeDir { .. } => ErrorKind::RuntimeDir,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Remote { kind, .. } => *kind,
        }
    }

    /// Can only a person fix this? See [`ErrorKind::needs_person`].
    pub fn needs_person(&self) -> bool {
        self.kind().needs_person()
    }

    /// A value that breaks a rule; only for validation, never for unrelated failures.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidValue {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error as it crosses a boundary (the control channel, the app's IPC, live events):
/// its kind and its one line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    pub message: String,
    /// The field the error is about, when it is about one ([`Error::field`]): the app's
    /// forms show the message beside that input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub field: Option<String>,
}

impl ErrorInfo {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind,
            message: message.into(),
            field: None,
        }
    }
}

impl From<&Error> for ErrorInfo {
    fn from(e: &Error) -> Self {
        ErrorInfo {
            kind: e.kind(),
            // where an error leaves the process (status, events, notifications, the app)
            message: inert(&e.to_string()),
            field: e.field().map(str::to_string),
        }
    }
}

/// Text that may come from elsewhere (an endpoint's error body, an identity provider's
/// redirect) made safe to show: terminal escape sequences and bidirectional overrides
/// removed, other control characters (line breaks too) turned into spaces. Every error
/// line goes through this on its way out: the CLI's stderr, status, events, notifications.
pub fn inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    // Skips a control sequence's parameters up to its final byte (CSI) or terminator (OSC).
    let skip_csi = |chars: &mut std::str::Chars| {
        for c in chars.by_ref() {
            if ('\u{40}'..='\u{7e}').contains(&c) {
                break;
            }
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => skip_csi(&mut chars),
                Some(']' | 'P' | '_' | '^') => {
                    // OSC, DCS, APC, PM: up to BEL or ST (ESC \)
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || c == '\u{9c}' {
                            break;
                        }
                        if c == '\u{1b}' {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {} // a two-character sequence
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

impl From<Error> for ErrorInfo {
    fn from(e: Error) -> Self {
        (&e).into()
    }
}

impl From<ErrorInfo> for Error {
    fn from(e: ErrorInfo) -> Self {
        Error::Remote {
            kind: e.kind,
            message: e.message,
        }
    }
}

impl std::fmt::Display for ErrorInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(status: Option<u16>) -> Error {
        Error::Endpoint {
            what: "token endpoint",
            url: "https://x".into(),
            status,
            message: "m".into(),
        }
    }

    #[test]
    fn endpoint_failures_are_rejected_or_unavailable_by_status() {
        assert_eq!(endpoint(Some(401)).kind(), ErrorKind::Rejected);
        assert!(endpoint(Some(401)).needs_person());
        for s in [Some(408), Some(429), Some(500), Some(503), None] {
            assert_eq!(endpoint(s).kind(), ErrorKind::Unavailable, "{s:?}");
            assert!(!endpoint(s).needs_person());
        }
    }

    #[test]
    fn failures_that_are_not_the_users_fault_are_retried() {
        for e in [
            Error::Internal("a renewal panicked".into()),
            Error::Agent("no answer".into()),
            Error::RuntimeDir {
                path: "/run".into(),
                message: "m".into(),
            },
        ] {
            assert!(!e.needs_person(), "{e}");
            assert_eq!(e.kind().exit_code(), 1);
        }
        let login = Error::LoginRequired {
            profile: "p".into(),
            reason: "r".into(),
        };
        assert!(login.needs_person());
        assert_eq!(login.kind().exit_code(), 3);
    }

    #[test]
    fn foreign_text_is_made_inert() {
        let hostile = "bad\u{1b}[2J\u{1b}]0;pwned\u{7} token\r\nX: y\u{202e}txt\u{9b}31m!\u{1b}c";
        assert_eq!(inert(hostile), "bad token  X: ytxt!");
        assert_eq!(inert("plain (words) & <b>"), "plain (words) & <b>");
        let e = Error::Endpoint {
            what: "token endpoint",
            url: "https://x".into(),
            status: Some(500),
            message: hostile.into(),
        };
        let info = ErrorInfo::from(&e);
        assert!(!info.message.chars().any(char::is_control), "{info:?}");
    }

    #[test]
    fn kinds_cross_the_wire_and_unknown_ones_read_as_internal() {
        let info = ErrorInfo::from(&Error::ProfileNotFound("x".into()));
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains(r#""kind":"not_found""#), "{json}");
        let back: ErrorInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(Error::from(back).kind(), ErrorKind::NotFound);
        let newer: ErrorInfo =
            serde_json::from_str(r#"{"kind":"from_the_future","message":"m"}"#).unwrap();
        assert_eq!(newer.kind, ErrorKind::Internal);
        assert_eq!(
            serde_json::to_value(ErrorKind::LoginRequired).unwrap(),
            ErrorKind::LoginRequired.as_str()
        );
    }
}
