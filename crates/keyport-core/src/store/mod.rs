//! Where secrets live: the OS keychain, behind a small [`SecretStore`] port.
//!
//! Each profile has one keychain item for its secret fields (service `keyport`, account =
//! the profile name), holding a JSON object `{field: value}` as text (KeePassXC does not keep
//! binary secrets byte for byte), and from the token engines on one item for its token state
//! (service `keyport-token`). On Linux the items carry a readable label for Seahorse.
//!
//! [`KeyringStore`] is the real store: on Linux the Secret Service with one session for the
//! whole process (`secret_service.rs`), on macOS and Windows the keyring crate (Keychain,
//! Credential Manager); it refuses to run on keyring's in-memory mock. [`MemoryStore`] exists
//! for unit tests of single modules only.
//!
//! Keychain calls block (a Secret Service call is a D-Bus round trip that opens a session
//! of its own), and a keychain daemon hammered from many threads or processes can fall over
//! (Debian 12's gnome-keyring 42 aborts). So a process has exactly one [`Keychain`]: an
//! owner thread that makes every call, one at a time, in order. Synchronous code waits for
//! it with [`Keychain::call`]; async code awaits [`Keychain::run`] and never blocks a worker
//! thread. A call handed to the owner runs to the end even if its caller gives up waiting,
//! so a rotated refresh token being saved is never cut off. Left out on purpose: caching
//! (the agent keeps what it serves in memory) and listing items (we always know the
//! accounts from the config).

#[cfg(target_os = "linux")]
mod secret_service;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::secret::Secret;

/// One keychain item: `service` + `account` (keyring's "user").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    pub service: &'static str,
    pub account: String,
}

impl ItemKey {
    pub const SECRETS_SERVICE: &'static str = "keyport";
    pub const TOKEN_SERVICE: &'static str = "keyport-token";
    pub const HELPER_SERVICE: &'static str = "keyport-helper";

    /// The item holding a profile's secret fields.
    pub fn secrets(profile: &str) -> Self {
        ItemKey {
            service: Self::SECRETS_SERVICE,
            account: profile.to_string(),
        }
    }

    /// The item holding a profile's token state (access/refresh token, expiry).
    pub fn token(profile: &str) -> Self {
        ItemKey {
            service: Self::TOKEN_SERVICE,
            account: profile.to_string(),
        }
    }

    /// The one item holding every helper key (`helper/keys.rs`).
    pub fn helper_keys() -> Self {
        ItemKey {
            service: Self::HELPER_SERVICE,
            account: "keys".into(),
        }
    }

    pub(crate) fn label(&self) -> String {
        match self.service {
            Self::SECRETS_SERVICE => format!("Keyport secrets: {}", self.account),
            Self::HELPER_SERVICE => "Keyport helper keys".into(),
            _ => format!("Keyport token: {}", self.account),
        }
    }
}

/// Why a keychain call failed, with what to do about it. Never carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeychainError {
    #[error("this keyport build has no real OS keychain backend (keyring would keep secrets in memory only and lose them): rebuild with keyring's platform features")]
    MockBackend,
    #[error("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set), so no keychain: run keyport inside a desktop session, or start one with dbus-run-session and a Secret Service")]
    NoSessionBus,
    #[error("no Secret Service on the session bus: start gnome-keyring (gnome-keyring-daemon --start --components=secrets) or KeePassXC with Secret Service integration")]
    NoService,
    #[error("the keychain is locked (item {service}/{account}): unlock your default keyring (e.g. in Seahorse, or log in again) and retry")]
    Locked {
        service: &'static str,
        account: String,
    },
    #[error("the Secret Service has no default collection: create a default keyring (e.g. \"login\" in Seahorse) and retry")]
    NoCollection,
    #[error("several keychain items match {service}/{account}: remove the duplicates (secret-tool clear service {service} username {account}) and set the secrets again")]
    Ambiguous {
        service: &'static str,
        account: String,
    },
    #[error("keychain item {service}/{account} does not hold Keyport data ({detail}): delete it (secret-tool clear service {service} username {account}) and set the secrets again")]
    Corrupt {
        service: &'static str,
        account: String,
        detail: String,
    },
    /// The keychain owner thread is gone or a call on it panicked.
    #[error("the keychain call failed unexpectedly ({0}): try again")]
    Owner(&'static str),
    #[error("keychain {op} of {service}/{account} failed: {detail}")]
    Other {
        op: &'static str,
        service: &'static str,
        account: String,
        detail: String,
    },
}

/// A place to keep secret text by [`ItemKey`]. Implementations block.
pub trait SecretStore: Send + Sync {
    /// `Ok(None)` when there is no such item (a normal outcome).
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>, KeychainError>;
    fn set(&self, key: &ItemKey, value: &Secret) -> Result<(), KeychainError>;
    /// Returns whether an item was there.
    fn delete(&self, key: &ItemKey) -> Result<bool, KeychainError>;
}

type Job = Box<dyn FnOnce(&dyn SecretStore) + Send>;

/// The one owner of a process's keychain: a thread that runs every call in order. Cheap to
/// clone; the thread ends when the last clone is dropped (after finishing what was queued).
#[derive(Clone)]
pub struct Keychain {
    tx: std::sync::mpsc::Sender<Job>,
    /// Calls submitted so far (`keyport helper status` shows it: a proxied request makes none).
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for Keychain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keychain")
    }
}

impl Keychain {
    pub fn new(store: std::sync::Arc<dyn SecretStore>) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("keychain".into())
            .spawn(move || {
                for job in rx {
                    // A panic in one call must not take the owner (and every later call)
                    // down; its caller sees `Owner`.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        job(store.as_ref())
                    }));
                }
            })
            .expect("spawn the keychain thread");
        Keychain {
            tx,
            calls: Default::default(),
        }
    }

    /// How many keychain calls this process has made.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn SecretStore) -> Result<T, KeychainError> + Send + 'static,
        reply: impl FnOnce(Result<T, KeychainError>) + Send + 'static,
    ) -> Result<(), KeychainError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.tx
            .send(Box::new(move |s| reply(f(s))))
            .map_err(|_| KeychainError::Owner("the keychain thread has stopped"))
    }

    /// Runs `f` on the keychain thread and waits for it. For synchronous code only.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn SecretStore) -> Result<T, KeychainError> + Send + 'static,
    ) -> Result<T, KeychainError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.submit(f, move |r| {
            let _ = tx.send(r);
        })?;
        rx.recv()
            .map_err(|_| KeychainError::Owner("the keychain call panicked"))?
    }

    /// Hands `f` to the keychain thread at once and returns its answer to await; the
    /// awaiting task does not block its thread, and `f` runs even if nobody awaits it.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn SecretStore) -> Result<T, KeychainError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T, KeychainError>> + Send + 'static {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let submitted = self.submit(f, move |r| {
            let _ = tx.send(r);
        });
        async move {
            submitted?;
            rx.await
                .map_err(|_| KeychainError::Owner("the keychain call panicked"))?
        }
    }

    /// Waits until every call queued before this one has finished (before a process
    /// exits, so a save in flight is not cut off).
    pub async fn flush(&self) {
        let _ = self.run(|_| Ok(())).await;
    }
}

/// The real OS keychain: on Linux the Secret Service with one session per process
/// (`secret_service.rs`), elsewhere through the `keyring` crate.
#[derive(Debug)]
pub struct KeyringStore {
    #[cfg(target_os = "linux")]
    session: secret_service::SessionStore,
}

impl KeyringStore {
    /// Fails when keyring was built without a persistent platform store: its silent mock
    /// would accept every secret and forget it at exit.
    pub fn new() -> Result<Self, KeychainError> {
        refuse_mock(keyring::default::default_credential_builder().persistence())?;
        Ok(KeyringStore {
            #[cfg(target_os = "linux")]
            session: Default::default(),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn entry(key: &ItemKey) -> Result<keyring::Entry, KeychainError> {
        let _ = key.label();
        keyring::Entry::new(key.service, &key.account).map_err(|e| map_error("open", key, e))
    }
}

fn refuse_mock(
    persistence: keyring::credential::CredentialPersistence,
) -> Result<(), KeychainError> {
    use keyring::credential::CredentialPersistence as P;
    match persistence {
        P::EntryOnly | P::ProcessOnly => Err(KeychainError::MockBackend),
        _ => Ok(()),
    }
}

#[cfg(not(target_os = "linux"))]
fn map_error(op: &'static str, key: &ItemKey, e: keyring::Error) -> KeychainError {
    use keyring::Error as K;
    let other = |detail: String| KeychainError::Other {
        op,
        service: key.service,
        account: key.account.clone(),
        detail,
    };
    match e {
        K::NoStorageAccess(inner) => {
            let text = inner.to_string();
            if text.contains("no result") {
                KeychainError::NoCollection
            } else if text.contains("locked") || text.contains("prompt") {
                KeychainError::Locked {
                    service: key.service,
                    account: key.account.clone(),
                }
            } else {
                other(text)
            }
        }
        K::PlatformFailure(inner) => {
            let text = inner.to_string();
            let no_provider = text.contains("No DBus session or Secret Service provider")
                || text.contains("ServiceUnknown")
                || text.contains("was not provided by any .service files");
            if no_provider && std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
                KeychainError::NoSessionBus
            } else if no_provider {
                KeychainError::NoService
            } else if text.contains("autolaunch") {
                KeychainError::NoSessionBus
            } else {
                other(text)
            }
        }
        K::Ambiguous(_) => KeychainError::Ambiguous {
            service: key.service,
            account: key.account.clone(),
        },
        // The payload is the secret's raw bytes: never show them.
        K::BadEncoding(_) => KeychainError::Corrupt {
            service: key.service,
            account: key.account.clone(),
            detail: "not UTF-8 text".into(),
        },
        other_err => other(other_err.to_string()),
    }
}

#[cfg(target_os = "linux")]
impl SecretStore for KeyringStore {
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>, KeychainError> {
        self.session.get(key)
    }
    fn set(&self, key: &ItemKey, value: &Secret) -> Result<(), KeychainError> {
        self.session.set(key, value)
    }
    fn delete(&self, key: &ItemKey) -> Result<bool, KeychainError> {
        self.session.delete(key)
    }
}

#[cfg(not(target_os = "linux"))]
impl SecretStore for KeyringStore {
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>, KeychainError> {
        match Self::entry(key)?.get_password() {
            Ok(v) => Ok(Some(Secret::new(v))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_error("read", key, e)),
        }
    }

    fn set(&self, key: &ItemKey, value: &Secret) -> Result<(), KeychainError> {
        Self::entry(key)?
            .set_password(value.expose())
            .map_err(|e| map_error("write", key, e))
    }

    fn delete(&self, key: &ItemKey) -> Result<bool, KeychainError> {
        match Self::entry(key)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_error("delete", key, e)),
        }
    }
}

/// In-memory store for unit tests. Counts writes so tests can check that unchanged values
/// are not rewritten.
#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<HashMap<ItemKey, Secret>>,
    writes: Mutex<usize>,
}

impl MemoryStore {
    pub fn writes(&self) -> usize {
        *self.writes.lock().unwrap()
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, key: &ItemKey) -> Result<Option<Secret>, KeychainError> {
        Ok(self.items.lock().unwrap().get(key).cloned())
    }
    fn set(&self, key: &ItemKey, value: &Secret) -> Result<(), KeychainError> {
        *self.writes.lock().unwrap() += 1;
        self.items
            .lock()
            .unwrap()
            .insert(key.clone(), value.clone());
        Ok(())
    }
    fn delete(&self, key: &ItemKey) -> Result<bool, KeychainError> {
        Ok(self.items.lock().unwrap().remove(key).is_some())
    }
}

/// A profile's secret fields: what its `keyport` keychain item holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecretBundle(BTreeMap<String, Secret>);

impl SecretBundle {
    pub fn get(&self, field: &str) -> Option<&Secret> {
        self.0.get(field)
    }
    pub fn insert(&mut self, field: impl Into<String>, value: Secret) {
        self.0.insert(field.into(), value);
    }
    pub fn contains(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
    pub fn into_entries(self) -> impl Iterator<Item = (String, Secret)> {
        self.0.into_iter()
    }

    /// Reads a profile's bundle; an absent item is an empty bundle.
    pub fn load(store: &dyn SecretStore, profile: &str) -> Result<Self, KeychainError> {
        let key = ItemKey::secrets(profile);
        let Some(text) = store.get(&key)? else {
            return Ok(Self::default());
        };
        let map: BTreeMap<String, String> =
            serde_json::from_str(text.expose()).map_err(|e| KeychainError::Corrupt {
                service: key.service,
                account: key.account.clone(),
                // serde_json's message for a type error can quote the input: keep only
                // where it failed.
                detail: format!(
                    "not a JSON object of strings at line {} column {}",
                    e.line(),
                    e.column()
                ),
            })?;
        Ok(Self(
            map.into_iter().map(|(k, v)| (k, Secret::new(v))).collect(),
        ))
    }

    /// Writes the bundle unless the item already holds exactly this; returns whether it wrote.
    pub fn save(&self, store: &dyn SecretStore, profile: &str) -> Result<bool, KeychainError> {
        let key = ItemKey::secrets(profile);
        let map: BTreeMap<&str, &str> = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        let text = Secret::new(serde_json::to_string(&map).expect("a map of strings serializes"));
        if store.get(&key)?.as_ref() == Some(&text) {
            return Ok(false);
        }
        store.set(&key, &text)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_round_trip_and_no_rewrite_when_unchanged() {
        let store = MemoryStore::default();
        let mut b = SecretBundle::default();
        b.insert("api_secret", Secret::new("s3cr\"et"));
        assert!(b.save(&store, "p").unwrap());
        assert!(
            !b.save(&store, "p").unwrap(),
            "same value must not be rewritten"
        );
        assert_eq!(store.writes(), 1);
        assert_eq!(SecretBundle::load(&store, "p").unwrap(), b);
        b.insert("api_secret", Secret::new("other"));
        assert!(b.save(&store, "p").unwrap());
        assert_eq!(store.writes(), 2);
    }

    #[test]
    fn corrupt_item_error_does_not_quote_it() {
        let store = MemoryStore::default();
        store
            .set(&ItemKey::secrets("p"), &Secret::new("{\"a\": 123456789}"))
            .unwrap();
        let e = SecretBundle::load(&store, "p").unwrap_err().to_string();
        assert!(e.contains("keyport/p"), "{e}");
        assert!(!e.contains("123456789"), "{e}");
    }

    #[test]
    fn keyring_mock_is_refused_and_this_build_has_a_real_store() {
        let mock = keyring::mock::default_credential_builder().persistence();
        assert!(matches!(refuse_mock(mock), Err(KeychainError::MockBackend)));
        // The platform features are on: the compiled-in default store persists.
        KeyringStore::new().expect("a real keychain backend is compiled in");
    }

    #[tokio::test]
    async fn the_keychain_owner_survives_a_panic_and_finishes_what_it_was_given() {
        let store = std::sync::Arc::new(MemoryStore::default());
        let kc = Keychain::new(store.clone());
        let e = kc
            .run(|_| -> Result<(), KeychainError> { panic!("a bug in a keychain call") })
            .await
            .unwrap_err();
        assert!(matches!(e, KeychainError::Owner(_)), "{e}");
        // The caller gives up before the save has run: it is made anyway.
        let (go, gate) = std::sync::mpsc::channel::<()>();
        let blocker = kc.run(move |_| {
            let _ = gate.recv();
            Ok(())
        });
        let save = kc.run(|s| s.set(&ItemKey::token("p"), &Secret::new("rotated")));
        drop(blocker);
        drop(save);
        go.send(()).unwrap();
        kc.flush().await;
        assert_eq!(
            kc.call(|s| s.get(&ItemKey::token("p"))).unwrap(),
            Some(Secret::new("rotated"))
        );
        assert_eq!(store.writes(), 1);
    }

    #[test]
    fn absent_item_is_empty_bundle() {
        let store = MemoryStore::default();
        assert!(SecretBundle::load(&store, "none").unwrap().is_empty());
    }
}
