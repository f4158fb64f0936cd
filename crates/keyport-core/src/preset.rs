//! Presets: the data that describes how to authenticate to one kind of service.
//!
//! A preset is a TOML file in `presets/`, compiled in. It lists the profile's fields (with
//! kind, default, whether required and whether secret: the GUI builds its forms from this
//! metadata, and `keyport presets --json` prints it) and an `[auth]` section that says how
//! those fields become HTTP headers. Every service preset names the seed document line it
//! implements. Presets hold no code: the schemes in `scheme.rs` interpret them.
//! Left out on purpose: user-defined presets on disk (the generic presets cover "any other
//! API" through their fields).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a piece of header text comes from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum TextSource {
    /// A template fixed by the preset, e.g. `token {api_key}:{api_secret}`.
    Template(String),
    /// A template taken from one of the profile's fields (generic presets).
    Field { field: String },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraHeader {
    pub header: String,
    pub value: String,
    /// Sent only when every field the value refers to has a value.
    #[serde(default)]
    pub optional: bool,
}

/// How the profile's values become headers: a scheme for the main header, plus extra
/// headers that any scheme may send.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthSpec {
    #[serde(flatten)]
    pub scheme: SchemeSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ExtraHeader>,
}

/// The main header. The `scheme` tag is the scheme's name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum SchemeSpec {
    /// `Authorization: Basic base64(username:password)` (RFC 7617).
    Basic {
        username: TextSource,
        password: TextSource,
    },
    /// One header with a templated value, plus optional extra headers.
    ApiKey {
        header: TextSource,
        value: TextSource,
    },
    /// `Authorization: Bearer <token>` for a pasted token, with an optional known expiry.
    Bearer {
        token: TextSource,
        #[serde(default)]
        expires_at_field: Option<String>,
    },
    /// A token fetched from an HTTP endpoint: a login endpoint, or a token exchange
    /// authenticated with a parent profile's token. Sent as `Authorization: Bearer`.
    Login(LoginSpec),
    /// OAuth2 (RFC 6749) through the oauth2 crate. Sent as `Authorization: Bearer`.
    Oauth2(OAuthSpec),
}

/// How a login endpoint authenticates the token request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAuth {
    #[default]
    None,
    /// HTTP Basic from two templates (`username`, `password`).
    Basic,
    /// `Authorization: Bearer <the parent profile's token>` (token exchange).
    Parent,
}

/// Where a login request's JSON body comes from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum BodySource {
    /// A JSON template kept in one of the profile's fields (generic preset).
    Field { field: String },
    /// A JSON object fixed by the preset. String leaves are templates; a leaf that is
    /// exactly `{field}` takes the field's type (integer, list, bool) and is left out when
    /// the field has no value.
    Value(serde_json::Value),
}

/// How to read the token out of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenDecode {
    #[default]
    Plain,
    /// The token is base64 of a JSON object `{token, widgetUrl}` (Airbyte widget token).
    Base64Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoginSpec {
    /// URL template (fixed, or taken from a field); `{parent.FIELD}` reads the parent
    /// profile's settings.
    pub url: TextSource,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Basic auth templates when `client_auth = "basic"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodySource>,
    /// JSON pointer to the token in the response, e.g. `/token`. A field name
    /// (`{field}`) may hold it instead (generic preset).
    pub token_pointer: String,
    /// JSON pointer to `expires_in` (seconds), when the response has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_pointer: Option<String>,
    /// A field holding the token lifetime in seconds, used when the response says nothing
    /// and the token is not a JWT with `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_field: Option<String>,
    /// The lifetime is renewed on each use (Improvado).
    #[serde(default)]
    pub sliding: bool,
    #[serde(default)]
    pub decode: TokenDecode,
    /// Presets a `parent` may have (token exchange).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_presets: Vec<String>,
}

fn default_method() -> String {
    "POST".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    ClientCredentials,
    AuthorizationCode,
    DeviceCode,
}

/// OAuth2 profiles use fields by convention: `issuer` (OIDC discovery) or
/// `authorize_url`/`token_url`/`device_url`, `revocation_url`, `client_id`,
/// `client_secret` (secret), `scopes`, `audience`, `resource`, `client_auth` (basic|post),
/// `redirect_port`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSpec {
    pub grant: Grant,
    /// Keep the token in the keychain. 4insight's ClientSession never persists its token.
    #[serde(default = "yes")]
    pub persist: bool,
}

fn yes() -> bool {
    true
}

impl SchemeSpec {
    pub fn name(&self) -> &'static str {
        match self {
            SchemeSpec::Basic { .. } => "basic",
            SchemeSpec::ApiKey { .. } => "api-key",
            SchemeSpec::Bearer { .. } => "bearer",
            SchemeSpec::Login(l) if l.client_auth == ClientAuth::Parent => "token-exchange",
            SchemeSpec::Login(_) => "login-endpoint",
            SchemeSpec::Oauth2(o) => match o.grant {
                Grant::ClientCredentials => "oauth2-client-credentials",
                Grant::AuthorizationCode => "oauth2-auth-code",
                Grant::DeviceCode => "oauth2-device",
            },
        }
    }

    /// Does this scheme fetch tokens (as opposed to rendering static headers)?
    pub fn is_token_engine(&self) -> bool {
        matches!(self, SchemeSpec::Login(_) | SchemeSpec::Oauth2(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FieldKind {
    #[default]
    Text,
    /// An http(s) URL; plain http only to loopback unless `allow_insecure_http`.
    Url,
    /// An RFC 3339 timestamp.
    Datetime,
    /// An HTTP header name.
    HeaderName,
    /// A header value template with `{field}` placeholders.
    Template,
    /// A JSON body template (generic login endpoint).
    JsonTemplate,
    /// A whole number (sent as a JSON number).
    Integer,
    /// `true` or `false`.
    Bool,
    /// Comma-separated values (sent as a JSON array of strings).
    List,
    /// A UUID, or one of the field's `aliases`.
    Uuid,
    /// A web origin: `scheme://host[:port]`, no path, no trailing slash, no wildcard.
    Origin,
    /// The name of another profile (token exchange parent).
    Profile,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub name: String,
    #[serde(default)]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    /// Kept in the OS keychain, never in the config file.
    #[serde(default)]
    pub secret: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The only values allowed (besides aliases), when set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Friendly names for values, e.g. region `us` -> its UUID.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub aliases: std::collections::BTreeMap<String, String>,
    /// Only for reaching the API (the loopback helper's upstream), not for getting a
    /// token: changing it keeps the token (and an OAuth session).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_only: bool,
    pub help: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub title: String,
    /// The service this preset is for, or "generic".
    pub service: String,
    /// The seed document (and the line of it) this preset implements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    pub description: String,
    /// A cheap GET under the API base URL that needs the credential, for the app's Test
    /// action (relative to `base_url`; none: the base URL itself). Traced to the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_path: Option<String>,
    pub fields: Vec<FieldSpec>,
    pub auth: AuthSpec,
}

impl Preset {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn scheme_name(&self) -> &'static str {
        self.auth.scheme.name()
    }

    pub fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| {
                if f.secret {
                    format!("{} (secret)", f.name)
                } else {
                    f.name.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn secret_fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().filter(|f| f.secret)
    }
}

const SOURCES: &[(&str, &str)] = &[
    (
        "improvado-basic",
        include_str!("../presets/improvado-basic.toml"),
    ),
    (
        "patchworks-api-key",
        include_str!("../presets/patchworks-api-key.toml"),
    ),
    ("frappe-token", include_str!("../presets/frappe-token.toml")),
    ("frappe-basic", include_str!("../presets/frappe-basic.toml")),
    ("basic", include_str!("../presets/basic.toml")),
    ("api-key", include_str!("../presets/api-key.toml")),
    ("bearer", include_str!("../presets/bearer.toml")),
    ("improvado", include_str!("../presets/improvado.toml")),
    (
        "patchworks-login",
        include_str!("../presets/patchworks-login.toml"),
    ),
    (
        "4insight-user",
        include_str!("../presets/4insight-user.toml"),
    ),
    (
        "4insight-service",
        include_str!("../presets/4insight-service.toml"),
    ),
    (
        "airbyte-operator",
        include_str!("../presets/airbyte-operator.toml"),
    ),
    (
        "airbyte-scoped",
        include_str!("../presets/airbyte-scoped.toml"),
    ),
    (
        "airbyte-widget",
        include_str!("../presets/airbyte-widget.toml"),
    ),
    (
        "login-endpoint",
        include_str!("../presets/login-endpoint.toml"),
    ),
    (
        "token-exchange",
        include_str!("../presets/token-exchange.toml"),
    ),
    (
        "oauth2-client-credentials",
        include_str!("../presets/oauth2-client-credentials.toml"),
    ),
    (
        "oauth2-auth-code",
        include_str!("../presets/oauth2-auth-code.toml"),
    ),
    (
        "oauth2-device",
        include_str!("../presets/oauth2-device.toml"),
    ),
];

/// All built-in presets, in a stable order (service presets first, then generic ones).
pub fn all() -> &'static [Preset] {
    static PRESETS: OnceLock<Vec<Preset>> = OnceLock::new();
    PRESETS.get_or_init(|| {
        SOURCES
            .iter()
            .map(|(name, src)| {
                let p: Preset = toml::from_str(src)
                    .unwrap_or_else(|e| panic!("built-in preset {name} is invalid: {e}"));
                assert_eq!(&p.name, name, "preset file name and `name` differ");
                p
            })
            .collect()
    })
}

pub fn get(name: &str) -> Result<&'static Preset> {
    all()
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::UnknownPreset(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::placeholders;

    fn template_refs(preset: &Preset, src: &TextSource) -> Vec<String> {
        match src {
            TextSource::Template(t) => placeholders(t, "preset").unwrap(),
            TextSource::Field { field } => {
                let f = preset
                    .field(field)
                    .expect("TextSource::Field names a field");
                assert!(
                    !f.secret,
                    "{}: a template can't come from a secret",
                    preset.name
                );
                match f.kind {
                    // A template the user writes is checked when it is set.
                    FieldKind::Template => f
                        .default
                        .as_deref()
                        .map(|d| placeholders(d, "preset").unwrap())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                }
            }
        }
    }

    /// Every built-in preset parses, and every placeholder it uses names one of its fields.
    #[test]
    fn test_paths_stay_under_the_base_url() {
        let with: Vec<&str> = all()
            .iter()
            .filter(|p| p.test_path.is_some())
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(with, ["improvado", "airbyte-scoped"]);
        for p in all() {
            if let Some(t) = &p.test_path {
                assert!(
                    !t.starts_with('/')
                        && !t.contains("..")
                        && !t.contains(':')
                        && !t.contains('?'),
                    "{}: {t}",
                    p.name
                );
            }
        }
    }

    #[test]
    fn built_in_presets_are_consistent() {
        assert_eq!(all().len(), SOURCES.len());
        for p in all() {
            let mut refs = Vec::new();
            for e in &p.auth.extra {
                refs.extend(placeholders(&e.value, "preset").unwrap());
            }
            match &p.auth.scheme {
                SchemeSpec::Basic { username, password } => {
                    refs.extend(template_refs(p, username));
                    refs.extend(template_refs(p, password));
                }
                SchemeSpec::ApiKey { header, value } => {
                    refs.extend(template_refs(p, header));
                    refs.extend(template_refs(p, value));
                }
                SchemeSpec::Bearer {
                    token,
                    expires_at_field,
                } => {
                    refs.extend(template_refs(p, token));
                    refs.extend(expires_at_field.iter().cloned());
                }
                SchemeSpec::Login(l) => {
                    refs.extend(template_refs(p, &l.url));
                    for t in [Some(&l.method), l.username.as_ref(), l.password.as_ref()]
                        .into_iter()
                        .flatten()
                        .chain([&l.token_pointer])
                        .chain(l.expires_in_pointer.as_ref())
                    {
                        refs.extend(placeholders(t, "preset").unwrap());
                    }
                    refs.extend(l.lifetime_field.iter().cloned());
                    match &l.body {
                        Some(BodySource::Field { field }) => refs.push(field.clone()),
                        Some(BodySource::Value(v)) => {
                            for leaf in v.as_object().expect("body is an object").values() {
                                refs.extend(
                                    placeholders(leaf.as_str().expect("string leaves"), "preset")
                                        .unwrap(),
                                );
                            }
                        }
                        None => {}
                    }
                    if l.client_auth == ClientAuth::Parent {
                        assert!(
                            p.field("parent")
                                .is_some_and(|f| f.kind == FieldKind::Profile),
                            "{}",
                            p.name
                        );
                    }
                }
                SchemeSpec::Oauth2(_) => {
                    assert!(p.field("client_id").is_some(), "{}", p.name);
                }
            }
            for r in refs.into_iter().filter(|r| !r.starts_with("parent.")) {
                // (fields of the parent profile can't be checked here)
                assert!(p.field(&r).is_some(), "{}: unknown field {r}", p.name);
            }
            if p.service != "generic" {
                assert!(p.seed.is_some(), "{} must cite its seed doc", p.name);
            }
        }
    }

    #[test]
    fn unknown_preset_is_an_error() {
        assert!(matches!(get("nope"), Err(Error::UnknownPreset(_))));
    }
}
