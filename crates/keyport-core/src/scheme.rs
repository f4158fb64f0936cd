//! Static auth schemes: turn a profile, its preset and its secrets into HTTP headers.
//!
//! `basic` (RFC 7617), `api-key` (a templated header) and `bearer` (a pasted token with an
//! optional known expiry). The result is a [`Credential`]: the headers to send, the main one
//! first, with secret values kept in [`Secret`]. Left out on purpose: anything that calls a
//! network (token engines come later and produce the same `Credential`).

use base64::Engine as _;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::preset::{Preset, SchemeSpec, TextSource};
use crate::profile::{parse_datetime, Profile};
use crate::secret::Secret;
use crate::store::SecretBundle;
use crate::template;

/// What a tool needs to authenticate: headers (main first) and, when known, an expiry.
#[derive(Debug, Clone)]
pub struct Credential {
    pub scheme: String,
    pub headers: Vec<(String, Secret)>,
    pub expires_at: Option<OffsetDateTime>,
    /// Can Keyport renew it without a person (re-fetch, refresh token)?
    pub refreshable: bool,
    /// Airbyte widget tokens: the widget URL.
    pub widget_url: Option<String>,
    /// When the token was obtained (token engines).
    pub obtained_at: Option<OffsetDateTime>,
    /// The token's lifetime is renewed on each use (Improvado).
    pub sliding: bool,
    /// The [`Profile::token_fingerprint`] of the profile it was made for.
    pub fingerprint: Option<String>,
}

impl Credential {
    /// The value of the main header (`keyport token`).
    pub fn main_value(&self) -> &Secret {
        &self.headers[0].1
    }
}

struct Values<'a> {
    name: &'a str,
    profile: &'a Profile,
    preset: &'a Preset,
    secrets: &'a SecretBundle,
}

impl Values<'_> {
    fn lookup(&self, field: &str) -> Option<&str> {
        self.profile
            .settings
            .get(field)
            .map(String::as_str)
            .or_else(|| self.secrets.get(field).map(Secret::expose))
    }

    /// Renders a template whose every field must have a value.
    fn required(&self, t: &str, what: &str) -> Result<String> {
        for field in template::placeholders(t, what)? {
            if self.lookup(&field).is_none() {
                let secret = self.preset.field(&field).is_some_and(|f| f.secret);
                return Err(if secret {
                    Error::SecretNotSet {
                        profile: self.name.to_string(),
                        field,
                    }
                } else {
                    Error::MissingField {
                        preset: self.preset.name.clone(),
                        field: field.clone(),
                        hint: format!(
                            "set it with `keyport profile set {} {field}=VALUE`",
                            self.name
                        ),
                    }
                });
            }
        }
        let out = template::render(t, what, |f| self.lookup(f))?.expect("all fields checked above");
        header_safe(what, out)
    }

    fn source(&self, s: &TextSource, what: &str) -> Result<String> {
        match s {
            TextSource::Template(t) => self.required(t, what),
            TextSource::Field { field } => {
                let t = self
                    .profile
                    .settings
                    .get(field)
                    .ok_or_else(|| Error::MissingField {
                        preset: self.preset.name.clone(),
                        field: field.clone(),
                        hint: format!(
                            "set it with `keyport profile set {} {field}=VALUE`",
                            self.name
                        ),
                    })?;
                self.required(t, field)
            }
        }
    }
}

/// A rendered value may contain a secret: never echo it, only say what is wrong.
fn header_safe(what: &str, value: String) -> Result<String> {
    if value.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            what,
            "the rendered header contains a line break or control character: check the secrets it uses",
        ));
    }
    Ok(value)
}

/// Renders the headers of a static-scheme profile. `now` decides whether a pasted token
/// with a known expiry has expired.
pub fn render(
    name: &str,
    profile: &Profile,
    preset: &Preset,
    secrets: &SecretBundle,
    now: OffsetDateTime,
) -> Result<Credential> {
    let v = Values {
        name,
        profile,
        preset,
        secrets,
    };
    let mut expires_at = None;
    let main = match &preset.auth.scheme {
        SchemeSpec::Login(_) | SchemeSpec::Oauth2(_) => {
            return Err(Error::invalid(
                "scheme",
                format!(
                    "preset '{}' fetches tokens: use credential_valid_for",
                    preset.name
                ),
            ))
        }
        SchemeSpec::Basic { username, password } => {
            let user = v.source(username, "username")?;
            let pass = v.source(password, "password")?;
            if user.contains(':') {
                return Err(Error::invalid(
                    "username",
                    "Basic auth user names cannot contain ':' (RFC 7617)",
                ));
            }
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            ("Authorization".to_string(), format!("Basic {encoded}"))
        }
        SchemeSpec::ApiKey { header, value } => {
            (v.source(header, "header")?, v.source(value, "template")?)
        }
        SchemeSpec::Bearer {
            token,
            expires_at_field,
        } => {
            if let Some(at) = expires_at_field
                .as_ref()
                .and_then(|f| profile.settings.get(f))
            {
                let at_time = parse_datetime("expires_at", at)?;
                if at_time <= now {
                    return Err(Error::TokenExpired {
                        profile: name.to_string(),
                        expired_at: at.clone(),
                    });
                }
                expires_at = Some(at_time);
            }
            (
                "Authorization".to_string(),
                format!("Bearer {}", v.source(token, "token")?),
            )
        }
    };
    let mut headers = vec![(main.0, Secret::new(main.1))];
    for extra in &preset.auth.extra {
        match template::render(&extra.value, &extra.header, |f| v.lookup(f))? {
            Some(val) => headers.push((
                extra.header.clone(),
                Secret::new(header_safe(&extra.header, val)?),
            )),
            None if extra.optional => {}
            None => {
                v.required(&extra.value, &extra.header)?;
            }
        }
    }
    for (h, val) in &profile.extra_headers {
        headers.push((h.clone(), Secret::new(val.clone())));
    }
    Ok(Credential {
        scheme: preset.scheme_name().to_string(),
        headers,
        expires_at,
        refreshable: false,
        widget_url: None,
        obtained_at: None,
        sliding: false,
        fingerprint: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset;
    use time::macros::datetime;

    fn cred(
        preset_name: &str,
        settings: &[(&str, &str)],
        secrets: &[(&str, &str)],
    ) -> Result<Credential> {
        let p = preset::get(preset_name).unwrap();
        let mut prof = Profile::new(p);
        for (k, val) in settings {
            prof.apply_setting(p, k, val).unwrap();
        }
        let mut b = SecretBundle::default();
        for (k, val) in secrets {
            b.insert(*k, Secret::new(*val));
        }
        render("t", &prof, p, &b, datetime!(2026-06-01 0:00 UTC))
    }

    fn lines(c: &Credential) -> Vec<String> {
        c.headers
            .iter()
            .map(|(h, v)| format!("{h}: {}", v.expose()))
            .collect()
    }

    #[test]
    fn frappe_token_with_and_without_source() {
        let c = cred(
            "frappe-token",
            &[("base_url", "https://e.example"), ("api_key", "k")],
            &[("api_secret", "s")],
        )
        .unwrap();
        assert_eq!(lines(&c), ["Authorization: token k:s"]);
        let c = cred(
            "frappe-token",
            &[
                ("base_url", "https://e.example"),
                ("api_key", "k"),
                ("authorization_source", "Event Consumer"),
            ],
            &[("api_secret", "s")],
        )
        .unwrap();
        assert_eq!(
            lines(&c),
            [
                "Authorization: token k:s",
                "Frappe-Authorization-Source: Event Consumer"
            ]
        );
    }

    #[test]
    fn basic_is_rfc7617() {
        let c = cred(
            "frappe-basic",
            &[("base_url", "https://e.example"), ("api_key", "k")],
            &[("api_secret", "s")],
        )
        .unwrap();
        // base64("k:s") = "azpz"
        assert_eq!(lines(&c), ["Authorization: Basic azpz"]);
        assert_eq!(c.main_value().expose(), "Basic azpz");
    }

    #[test]
    fn patchworks_sends_the_key_raw() {
        let c = cred("patchworks-api-key", &[], &[("api_key", "pk_1")]).unwrap();
        assert_eq!(lines(&c), ["Authorization: pk_1"]);
    }

    #[test]
    fn bearer_expiry() {
        let c = cred(
            "bearer",
            &[("expires_at", "2026-07-01T00:00:00Z")],
            &[("token", "t1")],
        )
        .unwrap();
        assert_eq!(lines(&c), ["Authorization: Bearer t1"]);
        assert_eq!(c.expires_at, Some(datetime!(2026-07-01 0:00 UTC)));
        let e = cred(
            "bearer",
            &[("expires_at", "2026-05-01T00:00:00Z")],
            &[("token", "t1")],
        )
        .unwrap_err();
        assert!(matches!(e, Error::TokenExpired { .. }));
    }

    #[test]
    fn generic_api_key_with_extra_headers() {
        let c = cred(
            "api-key",
            &[
                ("header", "X-Api-Key"),
                ("template", "{api_key}"),
                ("extra_headers.X-Client", "keyport"),
            ],
            &[("api_key", "abc")],
        )
        .unwrap();
        assert_eq!(lines(&c), ["X-Api-Key: abc", "X-Client: keyport"]);
    }

    #[test]
    fn missing_secret_and_bad_secret_never_leak() {
        let e = cred("basic", &[("username", "u")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("keyport secret set t password"), "{e}");
        let e = cred("patchworks-api-key", &[], &[("api_key", "evil\r\nX: y")])
            .unwrap_err()
            .to_string();
        assert!(!e.contains("evil"), "{e}");
    }
}
