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
use crate::preset::{FieldKind, FieldSpec, Grant, Preset, SchemeSpec, TextSource};
use crate::template;

/// Setting names every profile accepts besides its preset's fields.
pub const ALLOW_INSECURE_HTTP: &str = "allow_insecure_http";
pub const EXTRA_HEADERS_PREFIX: &str = "extra_headers.";
pub const CA_FILE: &str = "ca_file";
pub const NOTIFY: &str = "notify";

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

fn is_true(b: &bool) -> bool {
    *b
}

fn yes() -> bool {
    true
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
    /// Desktop notifications about this profile's token (the agent's).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub notify: bool,
    /// Extra CA certificates (PEM) to trust for this profile's token calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Fixed headers sent with the auth header(s).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_headers: BTreeMap<String, String>,
    /// Names of the secret fields stored in the profile's keychain item (never values).
    #[serde(default)]
    pub secrets: BTreeSet<String>,
    /// A random tag that changes whenever the keychain item's secrets change (not derived
    /// from them). Part of [`Profile::token_fingerprint`], so a token obtained with other
    /// secrets is recognized without reading any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_rev: Option<String>,
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
            notify: true,
            ca_file: None,
            extra_headers: BTreeMap::new(),
            secrets: BTreeSet::new(),
            secrets_rev: None,
        }
    }

    /// Identifies what a token of this profile is obtained with: the preset, the settings,
    /// the http options and the revision of the secrets. Stored with every token; a token
    /// whose fingerprint differs was obtained with other settings or secrets and is never
    /// served. `notify`, extra headers and the preset's `api_only` fields (an OAuth
    /// profile's API `base_url`) are not part of it: they don't change the token.
    pub fn token_fingerprint(&self) -> String {
        let preset = crate::preset::get(&self.preset).ok();
        let api_only = |k: &str| preset.and_then(|p| p.field(k)).is_some_and(|f| f.api_only);
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        part("keyport-token-v1");
        part(&self.preset);
        for (k, v) in self.settings.iter().filter(|(k, _)| !api_only(k)) {
            part(k);
            part(v);
        }
        part(if self.allow_insecure_http {
            "insecure"
        } else {
            ""
        });
        part(self.ca_file.as_deref().unwrap_or(""));
        part(self.secrets_rev.as_deref().unwrap_or(""));
        h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Marks the secrets as changed (see [`Profile::secrets_rev`]).
    pub fn new_secrets_rev(&mut self) {
        let mut bytes = [0u8; 12];
        // A clock-based tag if the OS has no randomness to give (it only needs to differ).
        if getrandom::getrandom(&mut bytes).is_err() {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            bytes.copy_from_slice(&n.to_le_bytes()[..12]);
        }
        self.secrets_rev = Some(bytes.iter().map(|b| format!("{b:02x}")).collect());
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
        if field == NOTIFY {
            self.notify = match value {
                "true" | "" => true,
                "false" => false,
                _ => return Err(Error::invalid(field, "use true or false")),
            };
            return Ok(());
        }
        if field == CA_FILE {
            self.ca_file = (!value.is_empty()).then(|| value.to_string());
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
                    "{}, {ALLOW_INSECURE_HTTP}, {CA_FILE}, {NOTIFY}, {EXTRA_HEADERS_PREFIX}NAME",
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
            self.check_value(preset, spec, value)?;
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
        if let SchemeSpec::Oauth2(o) = &preset.auth.scheme {
            let endpoints: &[&str] = match o.grant {
                Grant::ClientCredentials => &["token_url"],
                Grant::AuthorizationCode => &["authorize_url", "token_url"],
                Grant::DeviceCode => &["device_url", "token_url"],
            };
            let has_issuer = preset.field("issuer").is_some() && has("issuer");
            if !has_issuer {
                if let Some(e) = endpoints.iter().find(|e| !has(e)) {
                    let why = if preset.field("issuer").is_some() {
                        "set issuer (endpoints are discovered) or the endpoints themselves; "
                    } else {
                        ""
                    };
                    return Err(missing(e, why));
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
            // Token engines declare what they need as required fields.
            SchemeSpec::Login(_) | SchemeSpec::Oauth2(_) => Vec::new(),
        }
    }

    fn check_value(&self, preset: &Preset, spec: &FieldSpec, value: &str) -> Result<()> {
        let field = spec.name.as_str();
        check_text(field, value)?;
        if !spec.choices.is_empty() && !spec.choices.iter().any(|c| c == value) {
            return Err(Error::invalid(
                field,
                format!("'{value}' is not one of: {}", spec.choices.join(", ")),
            ));
        }
        match spec.kind {
            FieldKind::Text | FieldKind::Profile => Ok(()),
            FieldKind::Integer => value
                .parse::<i64>()
                .map(drop)
                .map_err(|_| Error::invalid(field, format!("'{value}' is not a whole number"))),
            FieldKind::Bool => match value {
                "true" | "false" => Ok(()),
                _ => Err(Error::invalid(field, "use true or false")),
            },
            FieldKind::List => Ok(()),
            FieldKind::Uuid => {
                if spec.aliases.contains_key(value) || is_uuid(value) {
                    Ok(())
                } else {
                    let names: Vec<&str> = spec.aliases.keys().map(String::as_str).collect();
                    Err(Error::invalid(
                        field,
                        format!("'{value}' is not a UUID or one of: {}", names.join(", ")),
                    ))
                }
            }
            FieldKind::Origin => check_origin(field, value),
            FieldKind::JsonTemplate => check_json_template(field, value),
            FieldKind::Url => check_url(field, value, self.allow_insecure_http),
            FieldKind::Datetime => parse_datetime(field, value).map(drop),
            FieldKind::HeaderName => check_header_name(field, value),
            FieldKind::Template => {
                for p in template::placeholders(value, field)? {
                    if p.starts_with("parent.") && preset.field("parent").is_some() {
                        continue; // checked when the call is made, against the parent
                    }
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

/// The longest parent chain Keyport follows (a guard against cycles written by hand).
pub const MAX_CHAIN: usize = 16;

/// Checks a profile's `parent` against the other profiles: it exists, has an allowed preset,
/// and the chain has no cycle.
pub fn check_parent(
    name: &str,
    prof: &Profile,
    preset: &Preset,
    all: &BTreeMap<String, Profile>,
) -> Result<()> {
    let Some(parent) = prof.settings.get("parent") else {
        return Ok(());
    };
    let allowed = match &preset.auth.scheme {
        SchemeSpec::Login(l) => l.parent_presets.as_slice(),
        _ => &[],
    };
    let p = all.get(parent).ok_or_else(|| {
        Error::invalid(
            "parent",
            format!("there is no profile '{parent}': add it first (see `keyport profile list`)"),
        )
    })?;
    if !allowed.is_empty() && !allowed.contains(&p.preset) {
        return Err(Error::invalid(
            "parent",
            format!(
                "profile '{parent}' uses preset '{}', but this needs one of: {}",
                p.preset,
                allowed.join(", ")
            ),
        ));
    }
    let mut seen = vec![name.to_string()];
    let mut cur = parent.clone();
    loop {
        if seen.contains(&cur) {
            return Err(Error::invalid(
                "parent",
                format!("the parent chain loops: {} -> {cur}", seen.join(" -> ")),
            ));
        }
        if seen.len() > MAX_CHAIN {
            return Err(Error::invalid(
                "parent",
                format!("the parent chain is longer than {MAX_CHAIN}"),
            ));
        }
        seen.push(cur.clone());
        match all.get(&cur).and_then(|p| p.settings.get("parent")) {
            Some(next) => cur = next.clone(),
            None => return Ok(()),
        }
    }
}

fn is_uuid(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Airbyte's `allowed_origin` rules (seed 004): a protocol is required, no trailing slash,
/// no wildcard, a port is allowed. Checked before any call.
fn check_origin(field: &str, value: &str) -> Result<()> {
    if value.contains('*') {
        return Err(Error::invalid(
            field,
            format!(
                "'{value}': wildcards are not allowed; name one origin, e.g. https://yourapp.com"
            ),
        ));
    }
    if !value.contains("://") {
        return Err(Error::invalid(
            field,
            format!("'{value}' has no protocol: write it like https://yourapp.com"),
        ));
    }
    if value.ends_with('/') {
        return Err(Error::invalid(
            field,
            format!("'{value}': remove the trailing slash"),
        ));
    }
    let url = url::Url::parse(value)
        .map_err(|e| Error::invalid(field, format!("'{value}' is not an origin ({e})")))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(Error::invalid(
            field,
            format!("'{value}' is not an origin: use scheme://host[:port] with no path"),
        ));
    }
    Ok(())
}

/// A JSON body template: valid JSON once placeholders are put in string values.
fn check_json_template(field: &str, value: &str) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(value)
        .map_err(|e| Error::invalid(field, format!("not valid JSON ({e}); placeholders go inside strings, e.g. {{\"user\": \"{{username}}\"}}")))?;
    if !v.is_object() {
        return Err(Error::invalid(field, "must be a JSON object"));
    }
    Ok(())
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
    fn airbyte_origin_rules_from_the_seed() {
        for ok in [
            "https://yourapp.com",
            "https://yourapp.com:443",
            "http://localhost:3000",
        ] {
            check_origin("allowed_origin", ok).unwrap();
        }
        for (bad, why) in [
            ("https://yourapp.com/", "trailing slash"),
            ("yourapp.com", "no protocol"),
            ("*.yourapp.com", "wildcards"),
            ("https://yourapp.com/path", "not an origin"),
        ] {
            let e = check_origin("allowed_origin", bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn kinds_choices_and_aliases() {
        let p = preset::get("airbyte-widget").unwrap();
        let mut prof = Profile::new(p);
        for (k, v) in [
            ("parent", "op"),
            ("workspace_name", "w"),
            ("allowed_origin", "https://a.example"),
        ] {
            prof.apply_setting(p, k, v).unwrap();
        }
        prof.validate(p, &given(&[])).unwrap();
        for (k, v) in [
            ("region", "eu"),
            ("region", "645a183f-b12b-4c6e-8ad3-99e165603450"),
            ("source_tags_mode", "all"),
        ] {
            let mut x = prof.clone();
            x.apply_setting(p, k, v).unwrap();
            x.validate(p, &given(&[])).unwrap();
        }
        for (k, v) in [
            ("region", "mars"),
            ("source_tags_mode", "some"),
            ("token_lifetime", "soon"),
        ] {
            let mut x = prof.clone();
            x.apply_setting(p, k, v).unwrap();
            assert!(x.validate(p, &given(&[])).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn oauth_needs_an_issuer_or_endpoints() {
        let p = preset::get("oauth2-auth-code").unwrap();
        let mut prof = Profile::new(p);
        prof.apply_setting(p, "client_id", "c").unwrap();
        let e = prof.validate(p, &given(&[])).unwrap_err().to_string();
        assert!(e.contains("set issuer"), "{e}");
        prof.apply_setting(p, "issuer", "https://id.example")
            .unwrap();
        prof.validate(p, &given(&[])).unwrap();
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
