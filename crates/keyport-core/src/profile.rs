//! Profiles: one per service account, checked against their preset.
//!
//! A [`Profile`] holds only non-secret settings plus the *names* of the secret fields that
//! are set in its keychain item. Validation lives here so the CLI, the config loader and the
//! GUI all apply the same rules: names, known fields, value kinds (URLs, timestamps, header
//! names, templates), required fields, and plain http only to loopback unless
//! `allow_insecure_http`. Left out on purpose: reading or writing anything (see `config.rs`
//! and `store.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::preset::{FieldKind, Preset, SchemeSpec, TextSource};
use crate::template;

/// Setting names every profile accepts besides its preset's fields.
pub const ALLOW_INSECURE_HTTP: &str = "allow_insecure_http";
pub const EXTRA_HEADERS_PREFIX: &str = "extra_headers.";

/// Checks a profile name: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn check_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A profile as stored in the config file (its name is the table key there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub preset: String,
    /// Plain http to non-loopback hosts is refused unless this is set.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_insecure_http: bool,
    /// Non-secret field values.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Fixed headers sent with the auth header(s).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_headers: BTreeMap<String, String>,
    /// Names of the secret fields stored in the profile's keychain item (never values).
    #[serde(default)]
    pub secrets: BTreeSet<String>,
}

impl Profile {
    /// A new profile of `preset` with the preset's defaults filled in.
    pub fn new(preset: &Preset) -> Self {
        Profile {
            preset: preset.name.clone(),
            allow_insecure_http: false,
            settings: preset
                .fields
                .iter()
                .filter(|f| !f.secret)
                .filter_map(|f| f.default.clone().map(|d| (f.name.clone(), d)))
                .collect(),
            extra_headers: BTreeMap::new(),
            secrets: BTreeSet::new(),
        }
    }

    /// Applies `FIELD=VALUE` from the command line. An empty value clears an optional field.
    /// Secret fields are refused: they never travel on a command line.
    pub fn apply_setting(&mut self, preset: &Preset, field: &str, value: &str) -> Result<()> {
        if field == ALLOW_INSECURE_HTTP {
            self.allow_insecure_http = match value {
                "true" => true,
                "false" | "" => false,
                _ => return Err(Error::invalid(field, "use true or false")),
            };
            return Ok(());
        }
        if let Some(header) = field.strip_prefix(EXTRA_HEADERS_PREFIX) {
            check_header_name(field, header)?;
            if value.is_empty() {
                self.extra_headers.remove(header);
            } else {
                self.extra_headers
                    .insert(header.to_string(), value.to_string());
            }
            return Ok(());
        }
        match preset.field(field) {
            None => Err(Error::UnknownField {
                preset: preset.name.clone(),
                field: field.to_string(),
                known: format!(
                    "{}, {ALLOW_INSECURE_HTTP}, {EXTRA_HEADERS_PREFIX}NAME",
                    preset.field_names()
                ),
            }),
            Some(f) if f.secret => Err(Error::SecretOnCommandLine {
                field: field.to_string(),
            }),
            Some(_) if value.is_empty() => {
                self.settings.remove(field);
                Ok(())
            }
            Some(_) => {
                self.settings.insert(field.to_string(), value.to_string());
                Ok(())
            }
        }
    }

    /// Checks the whole profile against its preset. `secrets_given` are the secret fields
    /// that will be set in the keychain (for a new profile, the ones about to be read).
    pub fn validate(&self, preset: &Preset, secrets_given: &BTreeSet<String>) -> Result<()> {
        for (field, value) in &self.settings {
            let spec =
                preset
                    .field(field)
                    .filter(|f| !f.secret)
                    .ok_or_else(|| Error::UnknownField {
                        preset: preset.name.clone(),
                        field: field.clone(),
                        known: preset.field_names(),
                    })?;
            self.check_value(preset, field, spec.kind, value)?;
        }
        for field in secrets_given {
            if !preset.field(field).is_some_and(|f| f.secret) {
                return Err(Error::NotASecret {
                    preset: preset.name.clone(),
                    field: field.clone(),
                });
            }
        }
        for (name, value) in &self.extra_headers {
            check_header_name(&format!("{EXTRA_HEADERS_PREFIX}{name}"), name)?;
            check_text(&format!("{EXTRA_HEADERS_PREFIX}{name}"), value)?;
        }
        let has = |f: &str| self.settings.contains_key(f) || secrets_given.contains(f);
        let missing = |field: &str, why: &str| {
            let secret = preset.field(field).is_some_and(|f| f.secret);
            Error::MissingField {
                preset: preset.name.clone(),
                field: field.to_string(),
                hint: if secret {
                    format!("{why}add `--secret {field}`")
                } else {
                    format!("{why}add `--set {field}=VALUE`")
                },
            }
        };
        for f in preset.fields.iter().filter(|f| f.required) {
            if !has(&f.name) {
                return Err(missing(&f.name, ""));
            }
        }
        // Fields the main header's templates use are required too (generic presets choose
        // their template, and with it their secrets).
        for t in self.main_templates(preset) {
            for field in template::placeholders(&t, "template")? {
                if !has(&field) {
                    return Err(missing(&field, "the header template uses it; "));
                }
            }
        }
        Ok(())
    }

    /// The templates that make up the main header, as configured.
    pub fn main_templates(&self, preset: &Preset) -> Vec<String> {
        let resolve = |s: &TextSource| match s {
            TextSource::Template(t) => t.clone(),
            TextSource::Field { field } => self.settings.get(field).cloned().unwrap_or_default(),
        };
        match &preset.auth.scheme {
            SchemeSpec::Basic { username, password } => vec![resolve(username), resolve(password)],
            SchemeSpec::ApiKey { header, value } => vec![resolve(header), resolve(value)],
            SchemeSpec::Bearer { token, .. } => vec![resolve(token)],
        }
    }

    fn check_value(
        &self,
        preset: &Preset,
        field: &str,
        kind: FieldKind,
        value: &str,
    ) -> Result<()> {
        check_text(field, value)?;
        match kind {
            FieldKind::Text => Ok(()),
            FieldKind::Url => check_url(field, value, self.allow_insecure_http),
            FieldKind::Datetime => parse_datetime(field, value).map(drop),
            FieldKind::HeaderName => check_header_name(field, value),
            FieldKind::Template => {
                for p in template::placeholders(value, field)? {
                    match preset.field(&p) {
                        Some(f) if f.kind != FieldKind::Template => {}
                        _ => {
                            return Err(Error::invalid(
                                field,
                                format!(
                                    "{{{p}}} is not a field of preset '{}'; its fields are: {}",
                                    preset.name,
                                    preset.field_names()
                                ),
                            ))
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

/// Values end up in HTTP headers: no line breaks or other control characters.
fn check_text(field: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            field,
            "contains a line break or control character",
        ));
    }
    Ok(())
}

fn check_header_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("'{name}' is not a valid HTTP header name"),
        ))
    }
}

pub(crate) fn parse_datetime(field: &str, value: &str) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).map_err(
        |_| {
            Error::invalid(
                field,
                format!("'{value}' is not an RFC 3339 timestamp (e.g. 2026-12-01T12:00:00Z)"),
            )
        },
    )
}

/// Is `host` this machine (127.0.0.0/8, ::1, localhost)?
pub fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        url::Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

/// An http(s) URL with a host; plain http only to loopback unless `allow_insecure_http`.
pub fn check_url(field: &str, value: &str, allow_insecure_http: bool) -> Result<()> {
    let url = url::Url::parse(value).map_err(|e| {
        Error::invalid(
            field,
            format!("'{value}' is not a URL ({e}); write it like https://api.example.com"),
        )
    })?;
    let host = url
        .host()
        .ok_or_else(|| Error::invalid(field, format!("'{value}' has no host")))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback_host(&host) => Ok(()),
        "http" => Err(Error::invalid(
            field,
            format!("plain http to {host} would send credentials unencrypted: use https, or set {ALLOW_INSECURE_HTTP}=true on the profile to accept that"),
        )),
        other => Err(Error::invalid(field, format!("scheme '{other}' is not http or https"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset;

    fn given(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names() {
        for ok in ["a", "frappe-prod", "0x", "a_b-c", &"a".repeat(64)] {
            check_name(ok).unwrap();
        }
        for bad in ["", "-a", "_a", "A", "a b", "a.b", "é", &"a".repeat(65)] {
            assert!(
                matches!(check_name(bad), Err(Error::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn urls_and_loopback_rule() {
        check_url("base_url", "https://x.example", false).unwrap();
        check_url("base_url", "http://127.0.0.1:8080", false).unwrap();
        check_url("base_url", "http://[::1]:1/", false).unwrap();
        check_url("base_url", "http://localhost/", false).unwrap();
        let e = check_url("base_url", "http://erp.example.com", false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("allow_insecure_http=true"), "{e}");
        check_url("base_url", "http://erp.example.com", true).unwrap();
        assert!(check_url("base_url", "ftp://x", true).is_err());
        assert!(check_url("base_url", "not a url", true).is_err());
    }

    #[test]
    fn defaults_required_and_unknown_fields() {
        let p = preset::get("improvado-basic").unwrap();
        let mut prof = Profile::new(p);
        assert_eq!(
            prof.settings["base_url"],
            "https://embedded.improvado.io/api/v3"
        );
        let e = prof
            .validate(p, &given(&["password"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing required field 'username'"), "{e}");
        prof.apply_setting(p, "username", "me@example.com").unwrap();
        let e = prof.validate(p, &given(&[])).unwrap_err().to_string();
        assert!(e.contains("--secret password"), "{e}");
        prof.validate(p, &given(&["password"])).unwrap();
        assert!(matches!(
            prof.apply_setting(p, "nope", "1"),
            Err(Error::UnknownField { .. })
        ));
        assert!(matches!(
            prof.apply_setting(p, "password", "x"),
            Err(Error::SecretOnCommandLine { .. })
        ));
    }

    #[test]
    fn generic_api_key_template_decides_required_secrets() {
        let p = preset::get("api-key").unwrap();
        let mut prof = Profile::new(p);
        prof.apply_setting(p, "template", "Bearer {token}").unwrap();
        let e = prof
            .validate(p, &given(&["api_key"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'token'") && e.contains("template uses it"),
            "{e}"
        );
        prof.validate(p, &given(&["token"])).unwrap();
        prof.apply_setting(p, "template", "{nope}").unwrap();
        assert!(prof.validate(p, &given(&["token"])).is_err());
        prof.apply_setting(p, "template", "{template}").unwrap();
        assert!(
            prof.validate(p, &given(&[])).is_err(),
            "template fields can't nest"
        );
    }

    #[test]
    fn values_with_line_breaks_are_refused() {
        let p = preset::get("basic").unwrap();
        let mut prof = Profile::new(p);
        prof.apply_setting(p, "username", "a\r\nX-Evil: 1").unwrap();
        assert!(prof.validate(p, &given(&["password"])).is_err());
        assert!(prof
            .apply_setting(p, "extra_headers.Bad Name", "v")
            .is_err());
    }
}
