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
    fn jwt_exp() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"exp":1767225600,"sub":"x"}"#);
        let jwt = format!("eyJhbGciOiJIUzI1NiJ9.{payload}.sig");
        assert_eq!(jwt_expiry(&jwt), Some(datetime!(2026-01-01 0:00 UTC)));
        assert_eq!(jwt_expiry("opaque-token"), None);
    }
}
