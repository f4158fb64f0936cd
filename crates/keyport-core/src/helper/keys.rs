//! Helper keys: who may use the helper over TCP. The default key, and named keys limited to
//! some profiles and optionally to read-only methods, each revocable.
//!
//! All keys live in **one keychain item** (`keyport-helper` / `keys`, a JSON list), read once
//! when the helper starts and written once per change, so the helper never calls the
//! keychain while serving. The default key is also written to `helper.key` (0600) in the
//! runtime dir, for scripts. Keys made for `keyport exec` are ephemeral: they live only in
//! the running agent and die with it. When to read or write is the caller's business: the
//! agent does it while it runs, the CLI otherwise. Left out on purpose: checking a request's
//! key (`guard.rs`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::store::{ItemKey, Keychain, KeychainError};

use super::guard::Key;

pub const DEFAULT_KEY: &str = "default";

/// A key as stored (the secret is in the keychain item, never in a file but `helper.key`).
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredKey {
    pub name: String,
    pub secret: String,
    /// `None`: every profile.
    #[serde(default)]
    pub profiles: Option<BTreeSet<String>>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Only in the running agent (`keyport exec`); never saved.
    #[serde(skip)]
    pub ephemeral: bool,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("name", &self.name)
            .field("profiles", &self.profiles)
            .field("read_only", &self.read_only)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    pub fn key(&self) -> Key {
        Key {
            name: self.name.clone(),
            secret: Secret::new(self.secret.clone()),
            profiles: self.profiles.clone(),
            read_only: self.read_only,
        }
    }
}

/// A key as `keyport helper key list` shows it: no secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct KeyInfo {
    pub name: String,
    pub profiles: Option<BTreeSet<String>>,
    pub read_only: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "ts", ts(type = "string"))]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[cfg_attr(feature = "ts", ts(type = "string | null"))]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub ephemeral: bool,
}

impl KeyInfo {
    pub fn of(k: &StoredKey, last_used_at: Option<OffsetDateTime>) -> Self {
        KeyInfo {
            name: k.name.clone(),
            profiles: k.profiles.clone(),
            read_only: k.read_only,
            created_at: k.created_at,
            last_used_at,
            ephemeral: k.ephemeral,
        }
    }
}

/// What a key operation asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum KeyAction {
    List,
    /// The default key (created if there is none).
    Show,
    Rotate,
    Create {
        name: String,
        profiles: Vec<String>,
        read_only: bool,
        #[serde(default)]
        ephemeral: bool,
    },
    Revoke {
        name: String,
    },
}

fn item() -> ItemKey {
    ItemKey::helper_keys()
}

/// 256 random bits, as 64 hex digits.
pub fn new_secret() -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::Internal(format!("no randomness for a helper key ({e})")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Reads the stored keys (one keychain call).
pub async fn load(kc: &Keychain) -> Result<Vec<StoredKey>> {
    let got = kc.run(|s| s.get(&item())).await.map_err(Error::from)?;
    let Some(text) = got else {
        return Ok(Vec::new());
    };
    serde_json::from_str(text.expose()).map_err(|e| {
        Error::from(KeychainError::Corrupt {
            service: ItemKey::HELPER_SERVICE,
            account: "keys".into(),
            detail: e.to_string(),
        })
    })
}

/// Writes the stored keys (one keychain call); ephemeral keys are left out.
pub async fn save(kc: &Keychain, keys: &[StoredKey]) -> Result<()> {
    let kept: Vec<&StoredKey> = keys.iter().filter(|k| !k.ephemeral).collect();
    let text = Secret::new(serde_json::to_string(&kept).expect("keys serialize"));
    kc.run(move |s| s.set(&item(), &text))
        .await
        .map_err(Error::from)
}

/// Applies `action` to `keys`. Returns the secret to show (for `show`, `rotate` and
/// `create`) and whether the stored list changed. `profiles` are the known profile names.
pub fn apply(
    keys: &mut Vec<StoredKey>,
    action: &KeyAction,
    profiles: &BTreeSet<String>,
    now: OffsetDateTime,
) -> Result<(Option<Secret>, bool)> {
    match action {
        KeyAction::List => Ok((None, false)),
        KeyAction::Show => {
            if let Some(k) = keys.iter().find(|k| k.name == DEFAULT_KEY) {
                return Ok((Some(Secret::new(k.secret.clone())), false));
            }
            let secret = new_secret()?;
            keys.insert(0, default_key(secret.clone(), now));
            Ok((Some(Secret::new(secret)), true))
        }
        KeyAction::Rotate => {
            let secret = new_secret()?;
            keys.retain(|k| k.name != DEFAULT_KEY);
            keys.insert(0, default_key(secret.clone(), now));
            Ok((Some(Secret::new(secret)), true))
        }
        KeyAction::Create {
            name,
            profiles: scope,
            read_only,
            ephemeral,
        } => {
            crate::profile::check_name(name)
                .map_err(|_| Error::invalid("key name", format!("'{}' is not a key name: use a-z, 0-9, - and _, starting with a letter or digit", crate::error::inert(name))))?;
            if name == DEFAULT_KEY {
                return Err(Error::invalid(
                    "key name",
                    "'default' is the default key: use keyport helper key --rotate to replace it",
                ));
            }
            if keys.iter().any(|k| &k.name == name) {
                return Err(Error::invalid(
                    "key name",
                    format!("a helper key named '{name}' exists: revoke it first (keyport helper key revoke {name}) or choose another name"),
                ));
            }
            if scope.is_empty() {
                return Err(Error::invalid(
                    "--profile",
                    "a named key is for the profiles you list: add --profile NAME (the default key is for every profile)",
                ));
            }
            for p in scope {
                if !profiles.contains(p) {
                    return Err(Error::ProfileNotFound(p.clone()));
                }
            }
            let secret = new_secret()?;
            keys.push(StoredKey {
                name: name.clone(),
                secret: secret.clone(),
                profiles: Some(scope.iter().cloned().collect()),
                read_only: *read_only,
                created_at: now,
                ephemeral: *ephemeral,
            });
            Ok((Some(Secret::new(secret)), !*ephemeral))
        }
        KeyAction::Revoke { name } => {
            let Some(i) = keys.iter().position(|k| &k.name == name) else {
                return Err(Error::invalid(
                    "key name",
                    format!(
                        "no helper key named '{}': see keyport helper key list",
                        crate::error::inert(name)
                    ),
                ));
            };
            if name == DEFAULT_KEY {
                return Err(Error::invalid(
                    "key name",
                    "the default key cannot be revoked, only replaced: keyport helper key --rotate",
                ));
            }
            let k = keys.remove(i);
            Ok((None, !k.ephemeral))
        }
    }
}

/// Applies `action` to `stored` and saves the result (keychain first: a failed write
/// changes nothing); the default key goes to `helper.key` too. Returns the secret to show.
pub async fn change(
    kc: &Keychain,
    stored: &mut Vec<StoredKey>,
    action: &KeyAction,
    profiles: &BTreeSet<String>,
    now: OffsetDateTime,
) -> Result<Option<Secret>> {
    let mut next = stored.clone();
    let (secret, changed) = apply(&mut next, action, profiles, now)?;
    if changed {
        save(kc, &next).await?;
    }
    if changed || matches!(action, KeyAction::Show) {
        if let Some(d) = next.iter().find(|k| k.name == DEFAULT_KEY) {
            write_key_file(&Secret::new(d.secret.clone()))?;
        }
    }
    *stored = next;
    Ok(secret)
}

/// A key operation without a running agent (`keyport helper key ...` before one starts).
pub async fn change_standalone(
    kp: &crate::keyport::Keyport,
    action: &KeyAction,
) -> Result<(Option<Secret>, Vec<KeyInfo>)> {
    let kc = kp.keychain();
    let mut stored = load(kc).await?;
    let names = kp.load()?.profiles.into_keys().collect();
    let secret = change(kc, &mut stored, action, &names, kp.clock().now()).await?;
    Ok((
        secret,
        stored.iter().map(|k| KeyInfo::of(k, None)).collect(),
    ))
}

fn default_key(secret: String, now: OffsetDateTime) -> StoredKey {
    StoredKey {
        name: DEFAULT_KEY.into(),
        secret,
        profiles: None,
        read_only: false,
        created_at: now,
        ephemeral: false,
    }
}

/// `helper.key` in the runtime dir.
pub fn key_file() -> Result<PathBuf> {
    Ok(crate::paths::runtime_dir()?.join("helper.key"))
}

/// Writes the default key to `helper.key` (0600, replaced atomically).
pub fn write_key_file(secret: &Secret) -> Result<()> {
    use std::io::Write as _;
    let path = key_file()?;
    let dir = path.parent().expect("in the runtime dir").to_path_buf();
    let io = |action: &'static str| {
        let path = path.clone();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    // NamedTempFile is created 0600.
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io("cannot write"))?;
    tmp.write_all(format!("{}\n", secret.expose()).as_bytes())
        .map_err(io("cannot write"))?;
    tmp.persist(&path)
        .map_err(|e| io("cannot replace")(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    #[test]
    fn keys_are_created_scoped_rotated_and_revoked() {
        let profiles: BTreeSet<String> = ["imp".to_string(), "pw".to_string()].into();
        let mut keys = Vec::new();
        let (first, changed) = apply(&mut keys, &KeyAction::Show, &profiles, NOW).unwrap();
        let first = first.unwrap();
        assert!(changed, "the default key is made on first use");
        assert_eq!(first.expose().len(), 64);
        let (again, changed) = apply(&mut keys, &KeyAction::Show, &profiles, NOW).unwrap();
        assert_eq!((again.unwrap().expose(), changed), (first.expose(), false));
        let (rotated, _) = apply(&mut keys, &KeyAction::Rotate, &profiles, NOW).unwrap();
        assert_ne!(rotated.unwrap().expose(), first.expose());
        let create = |name: &str, scope: &[&str]| KeyAction::Create {
            name: name.into(),
            profiles: scope.iter().map(|s| s.to_string()).collect(),
            read_only: true,
            ephemeral: false,
        };
        apply(&mut keys, &create("nb", &["imp"]), &profiles, NOW).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[1].read_only);
        for (action, needle) in [
            (create("nb", &["imp"]), "exists"),
            (create("x", &[]), "--profile"),
            (create("default", &["imp"]), "--rotate"),
            (create("Bad Name", &["imp"]), "not a key name"),
            (KeyAction::Revoke { name: "zz".into() }, "no helper key"),
            (
                KeyAction::Revoke {
                    name: "default".into(),
                },
                "cannot be revoked",
            ),
        ] {
            let e = apply(&mut keys, &action, &profiles, NOW).unwrap_err();
            assert!(e.to_string().contains(needle), "{action:?}: {e}");
        }
        let e = apply(&mut keys, &create("y", &["nope"]), &profiles, NOW).unwrap_err();
        assert!(matches!(e, Error::ProfileNotFound(_)), "{e}");
        apply(
            &mut keys,
            &KeyAction::Revoke { name: "nb".into() },
            &profiles,
            NOW,
        )
        .unwrap();
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn ephemeral_keys_are_not_saved_and_debug_shows_no_secret() {
        let profiles: BTreeSet<String> = ["imp".to_string()].into();
        let mut keys = Vec::new();
        let (_, changed) = apply(
            &mut keys,
            &KeyAction::Create {
                name: "exec-1".into(),
                profiles: vec!["imp".into()],
                read_only: false,
                ephemeral: true,
            },
            &profiles,
            NOW,
        )
        .unwrap();
        assert!(!changed, "nothing to write to the keychain");
        assert!(!format!("{keys:?}").contains(&keys[0].secret));
        let json = serde_json::to_string(&keys[0]).unwrap();
        let back: StoredKey = serde_json::from_str(&json).unwrap();
        assert!(!back.ephemeral, "the flag is never stored");
    }
}
