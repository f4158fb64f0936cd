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
}

impl SchemeSpec {
    pub fn name(&self) -> &'static str {
        match self {
            SchemeSpec::Basic { .. } => "basic",
            SchemeSpec::ApiKey { .. } => "api-key",
            SchemeSpec::Bearer { .. } => "bearer",
        }
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
                    FieldKind::Template => {
                        let default = f
                            .default
                            .as_deref()
                            .expect("template fields have a default");
                        placeholders(default, "preset").unwrap()
                    }
                    _ => Vec::new(),
                }
            }
        }
    }

    /// Every built-in preset parses, and every placeholder it uses names one of its fields.
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
            }
            for r in refs {
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
