//! Token state: what a token engine obtained, kept in the profile's `keyport-token` item.
//!
//! One JSON object per profile: access token, refresh token, expiry, scopes, when it was
//! obtained, and engine extras (Airbyte's widget URL). In memory the tokens are [`Secret`]s;
//! the serde mirror below is the only place they become plain strings, on their way into the
//! keychain. Expiry comes from `expires_in`, else the JWT `exp` claim, else the preset's
//! lifetime. Left out on purpose: verifying JWT signatures (Keyport is not the audience).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::secret::Secret;
use crate::store::{ItemKey, KeychainError, SecretStore};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<OffsetDateTime>,
    pub obtained_at: OffsetDateTime,
    pub scopes: Vec<String>,
    /// The lifetime is renewed on each use (Improvado).
    pub sliding: bool,
    /// Airbyte widget tokens: the widget URL decoded from the token.
    pub widget_url: Option<String>,
    /// [`crate::profile::Profile::token_fingerprint`] of the settings and secrets it was
    /// obtained with. `None` only for tokens stored before fingerprints existed.
    pub fingerprint: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    obtained_at: OffsetDateTime,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    sliding: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    widget_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fp: Option<String>,
}

impl TokenState {
    /// Is the token good for at least `min_valid` more seconds at `now`? A token with no
    /// known expiry is taken as valid.
    pub fn valid_for(&self, now: OffsetDateTime, min_valid: i64) -> bool {
        self.expires_at
            .is_none_or(|at| at - now >= time::Duration::seconds(min_valid))
    }

    /// Was it obtained with the profile whose fingerprint is `current`? Tokens from before
    /// fingerprints existed are taken as matching (their settings were checked then: every
    /// change of settings or secrets deleted the token).
    pub fn matches(&self, current: &str) -> bool {
        self.fingerprint.as_deref().is_none_or(|f| f == current)
    }

    pub fn load(store: &dyn SecretStore, profile: &str) -> Result<Option<Self>, KeychainError> {
        let key = ItemKey::token(profile);
        let Some(text) = store.get(&key)? else {
            return Ok(None);
        };
        let s: Stored =
            serde_json::from_str(text.expose()).map_err(|e| KeychainError::Corrupt {
                service: key.service,
                account: key.account.clone(),
                detail: format!(
                    "not Keyport token state (line {} column {})",
                    e.line(),
                    e.column()
                ),
            })?;
        Ok(Some(TokenState {
            access_token: Secret::new(s.access_token),
            refresh_token: s.refresh_token.map(Secret::new),
            expires_at: s.expires_at,
            obtained_at: s.obtained_at,
            scopes: s.scopes,
            sliding: s.sliding,
            widget_url: s.widget_url,
            fingerprint: s.fp,
        }))
    }

    pub fn save(&self, store: &dyn SecretStore, profile: &str) -> Result<(), KeychainError> {
        let s = Stored {
            v: 1,
            access_token: self.access_token.expose().to_string(),
            refresh_token: self.refresh_token.as_ref().map(|r| r.expose().to_string()),
            expires_at: self.expires_at,
            obtained_at: self.obtained_at,
            scopes: self.scopes.clone(),
            sliding: self.sliding,
            widget_url: self.widget_url.clone(),
            fp: self.fingerprint.clone(),
        };
        let text = Secret::new(serde_json::to_string(&s).expect("token state serializes"));
        store.set(&ItemKey::token(profile), &text)
    }

    pub fn delete(store: &dyn SecretStore, profile: &str) -> Result<bool, KeychainError> {
        store.delete(&ItemKey::token(profile))
    }
}

/// `now + seconds`, for a lifetime an endpoint reported: `None` (unknown) when it is not
/// positive (some APIs say 0 for "does not expire") or too large to be a date.
pub fn expiry_after(now: OffsetDateTime, seconds: i64) -> Option<OffsetDateTime> {
    if seconds <= 0 {
        return None;
    }
    now.checked_add(time::Duration::seconds(seconds))
}

/// The `exp` claim of a JWT, if `token` is one. The signature is not checked.
pub fn jwt_expiry(token: &str) -> Option<OffsetDateTime> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?.as_i64()?;
    OffsetDateTime::from_unix_timestamp(exp).ok()
}

/// Longest token [`inspect`] decodes (a larger one is said to be opaque).
pub const MAX_INSPECT: usize = 16 * 1024;

/// What a token says about itself, for the app's token inspector. A JWT's header and
/// claims are decoded but **not verified** (Keyport holds no key to check the signature);
/// they are untrusted input from an endpoint, so callers show them as text. The signature
/// is never part of the result, and neither is the token.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inspection {
    Jwt {
        header: serde_json::Value,
        claims: serde_json::Value,
        #[serde(with = "time::serde::rfc3339::option")]
        #[cfg_attr(feature = "ts", ts(type = "string | null"))]
        expires_at: Option<OffsetDateTime>,
        #[serde(with = "time::serde::rfc3339::option")]
        #[cfg_attr(feature = "ts", ts(type = "string | null"))]
        issued_at: Option<OffsetDateTime>,
        #[serde(with = "time::serde::rfc3339::option")]
        #[cfg_attr(feature = "ts", ts(type = "string | null"))]
        not_before: Option<OffsetDateTime>,
        issuer: Option<String>,
        subject: Option<String>,
        /// `aud`, a string or a list.
        audience: Vec<String>,
        /// `scope` (space-separated) or `scp` (a list or a string).
        scopes: Vec<String>,
    },
    /// Not a JWT (or too large to decode): nothing can be read from it.
    Opaque { length: usize },
}

/// Decodes `token` if it is a JWT (three base64url parts, the first two JSON objects).
pub fn inspect(token: &str) -> Inspection {
    let opaque = Inspection::Opaque {
        length: token.len(),
    };
    if token.len() > MAX_INSPECT {
        return opaque;
    }
    let part = |p: &str| -> Option<serde_json::Value> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .filter(|v| v.is_object())
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, _sig] = parts[..] else {
        return opaque;
    };
    let (Some(header), Some(claims)) = (part(h), part(c)) else {
        return opaque;
    };
    let time = |k: &str| {
        claims
            .get(k)
            .and_then(|v| v.as_i64())
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
    };
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let list = |v: Option<&serde_json::Value>, split: bool| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) if split => {
                s.split_whitespace().map(str::to_string).collect()
            }
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    Inspection::Jwt {
        expires_at: time("exp"),
        issued_at: time("iat"),
        not_before: time("nbf"),
        issuer: text("iss"),
        subject: text("sub"),
        audience: list(claims.get("aud"), false),
        scopes: match claims.get("scope") {
            Some(v) => list(Some(v), true),
            None => list(claims.get("scp"), true),
        },
        header,
        claims,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use time::macros::datetime;

    #[test]
    fn round_trip_and_validity() {
        let store = MemoryStore::default();
        let t = TokenState {
            access_token: Secret::new("a"),
            refresh_token: Some(Secret::new("r")),
            expires_at: Some(datetime!(2026-01-01 0:10 UTC)),
            obtained_at: datetime!(2026-01-01 0:00 UTC),
            scopes: vec!["openid".into()],
            sliding: false,
            widget_url: None,
            fingerprint: Some("f1".into()),
        };
        t.save(&store, "p").unwrap();
        assert!(t.matches("f1") && !t.matches("f2"));
        assert_eq!(TokenState::load(&store, "p").unwrap(), Some(t.clone()));
        assert!(t.valid_for(datetime!(2026-01-01 0:09 UTC), 30));
        assert!(!t.valid_for(datetime!(2026-01-01 0:09:45 UTC), 30));
    }

    #[test]
    fn min_valid_is_capped_at_half_the_lifetime() {
        use crate::engine::effective_min_valid;
        let (o, x) = (
            datetime!(2026-01-01 0:00 UTC),
            datetime!(2026-01-01 0:00:10 UTC),
        );
        assert_eq!(effective_min_valid(30, Some(o), Some(x)), 5);
        assert_eq!(effective_min_valid(3, Some(o), Some(x)), 3);
        assert_eq!(effective_min_valid(30, None, Some(x)), 30);
    }

    #[test]
    fn reported_lifetimes_that_are_not_dates() {
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(expiry_after(now, 60), Some(datetime!(2026-01-01 0:01 UTC)));
        assert_eq!(expiry_after(now, 0), None);
        assert_eq!(expiry_after(now, -5), None);
        assert_eq!(
            expiry_after(now, i64::MAX),
            None,
            "no panic on absurd values"
        );
    }

    #[test]
    fn jwts_are_decoded_unverified_and_anything_else_is_opaque() {
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(
                r#"{"exp":1767225600,"iat":1767222000,"iss":"https://id.example","sub":"u1","aud":["api","x"],"scope":"read write"}"#
            )
        );
        let Inspection::Jwt {
            header,
            claims,
            expires_at,
            issued_at,
            not_before,
            issuer,
            subject,
            audience,
            scopes,
        } = inspect(&jwt)
        else {
            panic!("a JWT");
        };
        assert_eq!(header["kid"], "k1");
        assert_eq!(claims["sub"], "u1");
        assert_eq!(expires_at, Some(datetime!(2026-01-01 0:00 UTC)));
        assert_eq!(issued_at, Some(datetime!(2025-12-31 23:00 UTC)));
        assert_eq!(not_before, None);
        assert_eq!(issuer.as_deref(), Some("https://id.example"));
        assert_eq!(subject.as_deref(), Some("u1"));
        assert_eq!(audience, ["api", "x"]);
        assert_eq!(scopes, ["read", "write"]);
        // `scp` as a list, `aud` as a string
        let other = format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(r#"{"scp":["a","b"],"aud":"api"}"#)
        );
        let Inspection::Jwt {
            audience, scopes, ..
        } = inspect(&other)
        else {
            panic!("a JWT");
        };
        assert_eq!(
            (audience, scopes),
            (vec!["api".into()], vec!["a".into(), "b".into()])
        );
        for opaque in [
            "abc".to_string(),
            "a.b.c".to_string(),
            format!("{}.{}.s", b64("[1]"), b64("{}")), // header not an object
            format!("{}.{}", b64("{}"), b64("{}")),    // two parts
            format!("{}.{}.s", b64("{}"), "x".repeat(MAX_INSPECT)),
        ] {
            assert_eq!(
                inspect(&opaque),
                Inspection::Opaque {
                    length: opaque.len()
                },
                "{opaque:.40}"
            );
        }
        let json = serde_json::to_value(inspect(&jwt)).unwrap();
        assert_eq!(json["kind"], "jwt");
        assert_eq!(json["expires_at"], "2026-01-01T00:00:00Z");
        assert!(!json.to_string().contains("c2ln"), "no signature in it");
    }

    #[test]
    fn jwt_exp() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"exp":1767225600,"sub":"x"}"#);
        let jwt = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        assert_eq!(jwt_expiry(&jwt), Some(datetime!(2026-01-01 0:00 UTC)));
        assert_eq!(jwt_expiry("opaque-token"), None);
    }
}
