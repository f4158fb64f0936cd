//! The Secret Service (Linux) with one connection and one encrypted session per process.
//!
//! keyring's own Secret Service entries open a D-Bus connection and a Diffie-Hellman
//! session for every call (two for a write), and Debian 12's gnome-keyring 42 aborts when
//! many short-lived clients open sessions while it is busy, taking the user's whole keyring
//! with it. The keychain owner thread (see [`super::Keychain`]) makes every call of the
//! process through this store, which connects once, keeps the session, and reconnects once
//! if the daemon went away. Items are keyring's, attribute for attribute (`service`,
//! `username`, `target=default`, `application=rust-keyring`; v1 items without `target` in
//! the default collection are found too), so `secret-tool` and earlier Keyport builds see
//! the same items. Left out on purpose: collections other than the default one.

use std::collections::HashMap;
use std::sync::Mutex;

use dbus_secret_service::{EncryptionType, Error as SsError, Item, SecretService};

use super::{ItemKey, KeychainError, SecretStore};
use crate::secret::Secret;

const TARGET: &str = "default";

enum Failure {
    Ss(SsError),
    Ambiguous,
}

impl From<SsError> for Failure {
    fn from(e: SsError) -> Self {
        Failure::Ss(e)
    }
}

/// The Secret Service, one session for the whole process.
#[derive(Default)]
pub struct SessionStore {
    ss: Mutex<Option<SecretService>>,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionStore")
    }
}

impl SessionStore {
    /// Runs `f` on the session (connecting first if needed); a call that fails on a
    /// session that is no longer good (the daemon restarted) is tried once more on a new
    /// one.
    fn with<T>(
        &self,
        op: &'static str,
        key: &ItemKey,
        f: impl Fn(&SecretService) -> Result<T, Failure>,
    ) -> Result<T, KeychainError> {
        let mut ss = self.ss.lock().unwrap_or_else(|e| e.into_inner());
        let mut retried = false;
        loop {
            if ss.is_none() {
                let fresh = SecretService::connect(EncryptionType::Dh)
                    .map_err(|e| map_error(op, key, Failure::Ss(e)))?;
                *ss = Some(fresh);
            }
            match f(ss.as_ref().expect("connected above")) {
                Ok(v) => return Ok(v),
                Err(Failure::Ss(SsError::Dbus(_))) if !retried => {
                    retried = true;
                    *ss = None;
                }
                Err(e) => return Err(map_error(op, key, e)),
            }
        }
    }
}

/// The one item for `key`, if there is one.
fn find<'a>(ss: &'a SecretService, key: &ItemKey) -> Result<Option<Item<'a>>, Failure> {
    let attrs = HashMap::from([
        ("target", TARGET),
        ("service", key.service),
        ("username", key.account.as_str()),
    ]);
    let found = ss.search_items(attrs)?;
    let mut items: Vec<(Item<'a>, bool)> = found
        .unlocked
        .into_iter()
        .map(|i| (i, false))
        .chain(found.locked.into_iter().map(|i| (i, true)))
        .collect();
    if items.is_empty() {
        // items of keyring v1 (no `target`), in the default collection only
        let legacy = HashMap::from([("service", key.service), ("username", key.account.as_str())]);
        let collection = ss.get_default_collection()?;
        items = collection
            .search_items(legacy)?
            .into_iter()
            .map(|i| (Item::new(ss, i.path), true))
            .collect();
    }
    if items.len() > 1 {
        return Err(Failure::Ambiguous);
    }
    let Some((item, maybe_locked)) = items.pop() else {
        return Ok(None);
    };
    if maybe_locked {
        item.ensure_unlocked()?;
    }
    Ok(Some(item))
}

impl SecretStore for SessionStore {
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>, KeychainError> {
        let bytes = self.with("read", key, |ss| {
            Ok(match find(ss, key)? {
                Some(item) => Some(item.get_secret()?),
                None => None,
            })
        })?;
        bytes
            .map(|b| {
                String::from_utf8(b)
                    .map(Secret::new)
                    .map_err(|_| KeychainError::Corrupt {
                        service: key.service,
                        account: key.account.clone(),
                        detail: "not UTF-8 text".into(),
                    })
            })
            .transpose()
    }

    fn set(&self, key: &ItemKey, value: &Secret) -> Result<(), KeychainError> {
        let secret = value.expose().as_bytes();
        self.with("write", key, |ss| {
            if let Some(item) = find(ss, key)? {
                item.set_secret(secret, "text/plain")?;
                return Ok(());
            }
            let collection = ss.get_default_collection()?;
            collection.ensure_unlocked()?;
            let attrs = HashMap::from([
                ("target", TARGET),
                ("service", key.service),
                ("username", key.account.as_str()),
                ("application", "rust-keyring"),
            ]);
            collection.create_item(&key.label(), attrs, secret, true, "text/plain")?;
            Ok(())
        })
    }

    fn delete(&self, key: &ItemKey) -> Result<bool, KeychainError> {
        self.with("delete", key, |ss| match find(ss, key)? {
            Some(item) => {
                item.delete()?;
                Ok(true)
            }
            None => Ok(false),
        })
    }
}

fn map_error(op: &'static str, key: &ItemKey, e: Failure) -> KeychainError {
    let no_bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none();
    let other = |detail: String| KeychainError::Other {
        op,
        service: key.service,
        account: key.account.clone(),
        detail,
    };
    let e = match e {
        Failure::Ambiguous => {
            return KeychainError::Ambiguous {
                service: key.service,
                account: key.account.clone(),
            }
        }
        Failure::Ss(e) => e,
    };
    match e {
        SsError::Locked | SsError::Prompt => KeychainError::Locked {
            service: key.service,
            account: key.account.clone(),
        },
        SsError::NoResult => KeychainError::NoCollection,
        SsError::Unavailable if no_bus => KeychainError::NoSessionBus,
        SsError::Unavailable => KeychainError::NoService,
        SsError::Dbus(d) => {
            let text = d.to_string();
            let name = d.name().unwrap_or_default().to_string();
            if text.contains("autolaunch") || (no_bus && text.contains("DBUS_SESSION_BUS_ADDRESS"))
            {
                KeychainError::NoSessionBus
            } else if name == "org.freedesktop.DBus.Error.ServiceUnknown"
                || text.contains("was not provided by any .service files")
            {
                if no_bus {
                    KeychainError::NoSessionBus
                } else {
                    KeychainError::NoService
                }
            } else if name == "org.freedesktop.Secret.Error.IsLocked" {
                KeychainError::Locked {
                    service: key.service,
                    account: key.account.clone(),
                }
            } else {
                other(format!("{name}: {text}"))
            }
        }
        other_err => other(other_err.to_string()),
    }
}
