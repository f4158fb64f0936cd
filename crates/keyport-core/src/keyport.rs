//! The use cases the CLI and the desktop app share: list, show, add, change and remove
//! profiles, and set secrets. Producing a credential is the engine's
//! (`Keyport::credential_valid_for`, in `engine`).
//!
//! [`Keyport`] is the one place that combines the config file and the secret store, and it
//! fixes the order of their writes so that a failure loses nothing: a new profile's secrets
//! go to the keychain before its config entry (and are removed again if the config write
//! fails); a removed profile's keychain items go before its config entry. A profile's token
//! state is deleted only under the profile's lock, so a renewal in flight (in this process
//! or another) can't save a token obtained with the old settings after the delete. It also
//! holds the process's one [`Keychain`] owner and its [`Clock`]. Left out on purpose:
//! prompting and printing (the CLI's job) and any caching.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::config::{AgentSettings, Config, ConfigStore, HelperSettings};
use crate::error::{Error, Result};
use crate::paths::ProfileLock;
use crate::preset::{self, Preset};
use crate::profile::{self, Profile};
use crate::secret::Secret;
use crate::store::{ItemKey, Keychain, KeyringStore, SecretBundle, SecretStore};

/// A profile as shown to the user: settings, and for secrets only whether they are set.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProfileView {
    pub name: String,
    pub preset: String,
    pub scheme: &'static str,
    pub settings: std::collections::BTreeMap<String, String>,
    pub extra_headers: std::collections::BTreeMap<String, String>,
    pub allow_insecure_http: bool,
    /// Secret field -> is it set in the keychain.
    pub secrets: std::collections::BTreeMap<String, bool>,
    /// Where the secrets live, e.g. `keyport/NAME`.
    pub keychain_item: String,
}

pub struct Keyport {
    config: ConfigStore,
    keychain: Keychain,
    clock: Arc<dyn Clock>,
    unsaved: crate::engine::Unsaved,
}

impl Keyport {
    /// Keyport over `store` (its calls run on a keychain owner thread) with the system
    /// clock.
    pub fn new(config: ConfigStore, store: Arc<dyn SecretStore>) -> Self {
        Keyport {
            config,
            keychain: Keychain::new(store),
            clock: SystemClock::shared(),
            unsaved: Default::default(),
        }
    }

    /// The same, with another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The real thing: config from the environment, secrets in the OS keychain.
    pub fn open() -> Result<Self> {
        Ok(Self::new(
            ConfigStore::from_env()?,
            Arc::new(KeyringStore::new()?),
        ))
    }

    /// The process's one way to the keychain.
    pub fn keychain(&self) -> &Keychain {
        &self.keychain
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Tokens obtained but not saved yet (the keychain refused the write): kept in memory
    /// and saved on their next use. A process about to exit can name them.
    pub fn unsaved(&self) -> &crate::engine::Unsaved {
        &self.unsaved
    }

    /// Tries once more to save the tokens only this process holds (before it exits);
    /// returns the profiles whose token is still not saved, with why.
    pub async fn save_unsaved(&self) -> Vec<(String, Error)> {
        let mut failed = Vec::new();
        for (name, t) in self.unsaved.take_all() {
            let n = name.clone();
            let result = self.keychain.run(move |s| t.save(s, &n)).await;
            if let Err(e) = result {
                failed.push((name, e.into()));
            }
        }
        failed
    }

    /// Deletes `names`' token state, each under its profile's lock (blocking).
    fn forget_tokens<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        for name in names {
            let _lock = ProfileLock::acquire(name)?;
            let n = name.to_string();
            self.keychain.call(move |s| s.delete(&ItemKey::token(&n)))?;
        }
        Ok(())
    }

    pub fn config_store(&self) -> &ConfigStore {
        &self.config
    }

    pub fn load(&self) -> Result<Config> {
        self.config.load()
    }

    /// A checked new profile, before any secret is read: the CLI calls this first so that a
    /// bad name, field or value fails before the user types a password.
    pub fn draft(
        &self,
        name: &str,
        preset_name: &str,
        settings: &[(String, String)],
        secret_fields: &BTreeSet<String>,
    ) -> Result<Profile> {
        profile::check_name(name)?;
        let preset = preset::get(preset_name)?;
        let mut prof = Profile::new(preset);
        for (k, v) in settings {
            prof.apply_setting(preset, k, v)?;
        }
        prof.validate(preset, secret_fields)?;
        let cfg = self.config.load()?;
        if cfg.profiles.contains_key(name) {
            return Err(Error::ProfileExists(name.to_string()));
        }
        profile::check_parent(name, &prof, preset, &cfg.profiles)?;
        Ok(prof)
    }

    /// Saves a drafted profile and its secrets.
    pub fn add(&self, name: &str, mut prof: Profile, secrets: SecretBundle) -> Result<()> {
        let preset = preset::get(&prof.preset)?;
        prof.secrets = secrets.fields().map(str::to_string).collect();
        prof.validate(preset, &prof.secrets)?;
        prof.new_secrets_rev();
        let mut wrote_keychain = false;
        let result = self.config.update(|cfg| {
            if cfg.profiles.contains_key(name) {
                return Err(Error::ProfileExists(name.to_string()));
            }
            if !secrets.is_empty() {
                let (n, b) = (name.to_string(), secrets.clone());
                self.keychain.call(move |s| b.save(s, &n))?;
                wrote_keychain = true;
            }
            cfg.profiles.insert(name.to_string(), prof);
            Ok(())
        });
        if result.is_err() && wrote_keychain {
            // The config entry was not written: don't leave an orphan item behind.
            let n = name.to_string();
            let _ = self.keychain.call(move |s| s.delete(&ItemKey::secrets(&n)));
        }
        result
    }

    pub fn show(&self, name: &str) -> Result<ProfileView> {
        let cfg = self.config.load()?;
        let prof = cfg.get(name)?;
        let preset = preset::get(&prof.preset)?;
        let n = name.to_string();
        let bundle = self.keychain.call(move |s| SecretBundle::load(s, &n))?;
        Ok(ProfileView {
            name: name.to_string(),
            preset: prof.preset.clone(),
            scheme: preset.scheme_name(),
            settings: prof.settings.clone(),
            extra_headers: prof.extra_headers.clone(),
            allow_insecure_http: prof.allow_insecure_http,
            secrets: preset
                .secret_fields()
                .map(|f| (f.name.clone(), bundle.contains(&f.name)))
                .collect(),
            keychain_item: format!("{}/{name}", ItemKey::SECRETS_SERVICE),
        })
    }

    /// One secret of `name` (the app's Reveal, on a person's request): one keychain read.
    /// `None` when it is not set.
    pub fn secret(&self, name: &str, field: &str) -> Result<Option<Secret>> {
        self.secret_field(name, field)?;
        let (n, f) = (name.to_string(), field.to_string());
        Ok(self
            .keychain
            .call(move |s| Ok(SecretBundle::load(s, &n)?.get(&f).cloned()))?)
    }

    /// Removes the profile's keychain items, then its config entry.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.config.update(|cfg| {
            cfg.get(name)?;
            if let Some((child, _)) = cfg.profiles.iter().find(|(_, p)| p.settings.get("parent").map(String::as_str) == Some(name)) {
                return Err(Error::invalid(
                    "parent",
                    format!("profile '{name}' is the parent of '{child}': remove or re-parent '{child}' first"),
                ));
            }
            let n = name.to_string();
            self.keychain.call(move |s| s.delete(&ItemKey::secrets(&n)))?;
            self.forget_tokens([name])?;
            cfg.profiles.remove(name);
            Ok(())
        })
    }

    /// Replaces the `[agent]` and `[helper]` settings (the app's Settings), both checked
    /// first and written in one config update; nothing is written when one is wrong.
    /// Tell the agent afterwards ([`crate::agent::host::reload`]) to put them in force.
    pub fn save_settings(&self, agent: AgentSettings, helper: HelperSettings) -> Result<()> {
        agent.check()?;
        helper.check()?;
        self.config.update(|cfg| {
            cfg.agent = agent;
            cfg.helper = helper;
            Ok(())
        })
    }

    /// `keyport profile set NAME FIELD=VALUE`.
    pub fn set(&self, name: &str, field: &str, value: &str) -> Result<()> {
        self.config.update(|cfg| {
            let prof = cfg.get(name)?.clone();
            let preset = preset::get(&prof.preset)?;
            let mut changed = prof.clone();
            changed.apply_setting(preset, field, value)?;
            changed.validate(preset, &changed.secrets)?;
            let mut all = cfg.profiles.clone();
            all.insert(name.to_string(), changed.clone());
            profile::check_parent(name, &changed, preset, &all)?;
            // A token obtained with other settings may be for another workspace, user...;
            // `notify`, extra headers and the like don't touch it (and forgetting an OAuth
            // session would force a new browser login).
            let token_changed = changed.token_fingerprint() != prof.token_fingerprint();
            cfg.profiles.insert(name.to_string(), changed);
            if token_changed {
                // Children's tokens were obtained with this profile's (old) credential.
                let kids: Vec<String> = children(cfg, name).into_iter().map(String::from).collect();
                self.forget_tokens(std::iter::once(name).chain(kids.iter().map(String::as_str)))?;
            }
            Ok(())
        })
    }

    /// The preset of a profile, checking that `field` is one of its secret fields.
    pub fn secret_field(&self, name: &str, field: &str) -> Result<&'static Preset> {
        let cfg = self.config.load()?;
        let preset = preset::get(&cfg.get(name)?.preset)?;
        if !preset.field(field).is_some_and(|f| f.secret) {
            return Err(match preset.field(field) {
                Some(_) => Error::NotASecret {
                    preset: preset.name.clone(),
                    field: field.to_string(),
                },
                None => Error::UnknownField {
                    preset: preset.name.clone(),
                    field: field.to_string(),
                    known: preset.field_names(),
                },
            });
        }
        Ok(preset)
    }

    /// Stores one secret field; returns whether the keychain item was rewritten (it is not
    /// when the value is unchanged).
    pub fn set_secret(&self, name: &str, field: &str, value: Secret) -> Result<bool> {
        self.secret_field(name, field)?;
        self.config.update(|cfg| {
            let kids: Vec<String> = children(cfg, name).into_iter().map(String::from).collect();
            let prof = cfg
                .profiles
                .get_mut(name)
                .ok_or_else(|| Error::ProfileNotFound(name.to_string()))?;
            let (n, f) = (name.to_string(), field.to_string());
            let (wrote, fields) = self.keychain.call(move |s| {
                let mut bundle = SecretBundle::load(s, &n)?;
                bundle.insert(f, value);
                let wrote = bundle.save(s, &n)?;
                Ok((wrote, bundle.fields().map(str::to_string).collect()))
            })?;
            prof.secrets = fields;
            if wrote {
                // New credentials: the cached tokens (this profile's and its children's)
                // belong to the old ones, and their fingerprints must say so.
                prof.new_secrets_rev();
                self.forget_tokens(std::iter::once(name).chain(kids.iter().map(String::as_str)))?;
            }
            Ok(wrote)
        })
    }
}

impl Keyport {
    /// Changes several settings and secrets of `name` at once (the app's Edit form): all
    /// are checked together and written in one config update, so a rule between two fields
    /// never sees half a change; an empty setting value removes the setting (its default
    /// applies again). A token obtained with the old settings or secrets is forgotten, as
    /// with [`Keyport::set`] and [`Keyport::set_secret`]. Returns whether anything changed.
    pub fn edit(
        &self,
        name: &str,
        settings: &[(String, String)],
        secrets: SecretBundle,
    ) -> Result<bool> {
        let new_fields: BTreeSet<String> = secrets.fields().map(str::to_string).collect();
        self.config.update(|cfg| {
            let prof = cfg.get(name)?.clone();
            let preset = preset::get(&prof.preset)?;
            let mut changed = prof.clone();
            for (k, v) in settings {
                changed.apply_setting(preset, k, v)?;
            }
            let all_secrets: BTreeSet<String> = prof.secrets.union(&new_fields).cloned().collect();
            changed.validate(preset, &all_secrets)?;
            let mut all = cfg.profiles.clone();
            all.insert(name.to_string(), changed.clone());
            profile::check_parent(name, &changed, preset, &all)?;
            let mut wrote = false;
            if !secrets.is_empty() {
                let n = name.to_string();
                let (w, fields) = self.keychain.call(move |s| {
                    let mut bundle = SecretBundle::load(s, &n)?;
                    for (f, v) in secrets.into_entries() {
                        bundle.insert(f, v);
                    }
                    let w = bundle.save(s, &n)?;
                    Ok((w, bundle.fields().map(str::to_string).collect()))
                })?;
                changed.secrets = fields;
                wrote = w;
                if wrote {
                    changed.new_secrets_rev();
                }
            }
            let token_changed = changed.token_fingerprint() != prof.token_fingerprint();
            let any = wrote
                || changed.settings != prof.settings
                || changed.extra_headers != prof.extra_headers;
            cfg.profiles.insert(name.to_string(), changed);
            if token_changed {
                let kids: Vec<String> = children(cfg, name).into_iter().map(String::from).collect();
                self.forget_tokens(std::iter::once(name).chain(kids.iter().map(String::as_str)))?;
            }
            Ok(any)
        })
    }
}

/// Profiles whose `parent` is `name`.
fn children<'a>(cfg: &'a Config, name: &'a str) -> Vec<&'a str> {
    cfg.profiles
        .iter()
        .filter(|(_, p)| p.settings.get("parent").map(String::as_str) == Some(name))
        .map(|(n, _)| n.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheme::Credential;
    use crate::store::MemoryStore;

    fn kp() -> (tempfile::TempDir, Keyport) {
        let d = tempfile::tempdir().unwrap();
        let k = Keyport::new(ConfigStore::new(d.path()), Arc::new(MemoryStore::default()));
        (d, k)
    }

    /// The credential through the same path the CLI uses.
    fn cred(k: &Keyport, name: &str) -> Credential {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(k.credential_valid_for(name, 0))
            .unwrap()
    }

    fn secrets(pairs: &[(&str, &str)]) -> SecretBundle {
        let mut b = SecretBundle::default();
        for (k, v) in pairs {
            b.insert(*k, Secret::new(*v));
        }
        b
    }

    #[test]
    fn add_show_set_remove() {
        let (_d, k) = kp();
        let sets = vec![
            ("base_url".to_string(), "https://erp.example".to_string()),
            ("api_key".into(), "k".into()),
        ];
        let given: BTreeSet<String> = ["api_secret".to_string()].into();
        let draft = k.draft("erp", "frappe-token", &sets, &given).unwrap();
        k.add("erp", draft, secrets(&[("api_secret", "s")]))
            .unwrap();
        assert!(matches!(
            k.draft("erp", "frappe-token", &sets, &given),
            Err(Error::ProfileExists(_))
        ));
        let v = k.show("erp").unwrap();
        assert!(v.secrets["api_secret"]);
        assert_eq!(cred(&k, "erp").main_value().expose(), "token k:s");
        assert!(
            !k.set_secret("erp", "api_secret", Secret::new("s")).unwrap(),
            "unchanged: no rewrite"
        );
        assert!(k
            .set_secret("erp", "api_secret", Secret::new("s2"))
            .unwrap());
        k.set("erp", "authorization_source", "Event Consumer")
            .unwrap();
        assert_eq!(cred(&k, "erp").headers.len(), 2);
        assert!(k.set("erp", "base_url", "http://erp.example").is_err());
        assert_eq!(
            k.show("erp").unwrap().settings["base_url"],
            "https://erp.example"
        );
        k.remove("erp").unwrap();
        assert!(matches!(k.show("erp"), Err(Error::ProfileNotFound(_))));
        assert!(k
            .keychain
            .call(|s| SecretBundle::load(s, "erp"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn edit_checks_everything_together_and_writes_once() {
        let (_d, k) = kp();
        let sets = vec![
            ("base_url".to_string(), "https://erp.example".to_string()),
            ("api_key".into(), "k".into()),
        ];
        let given: BTreeSet<String> = ["api_secret".to_string()].into();
        let draft = k.draft("erp", "frappe-token", &sets, &given).unwrap();
        k.add("erp", draft, secrets(&[("api_secret", "s")]))
            .unwrap();

        // One bad value refuses the whole edit: nothing else changes either.
        let e = k
            .edit(
                "erp",
                &[
                    ("api_key".into(), "k2".into()),
                    ("base_url".into(), "http://erp.example".into()),
                ],
                secrets(&[("api_secret", "s2")]),
            )
            .unwrap_err();
        assert_eq!(e.field(), Some("base_url"), "{e}");
        assert_eq!(
            crate::ErrorInfo::from(&e).field.as_deref(),
            Some("base_url")
        );
        assert_eq!(cred(&k, "erp").main_value().expose(), "token k:s");

        // Settings and a secret at once; an empty value removes an optional setting.
        k.set("erp", "authorization_source", "Event Consumer")
            .unwrap();
        assert!(k
            .edit(
                "erp",
                &[
                    ("api_key".into(), "k2".into()),
                    ("authorization_source".into(), String::new()),
                ],
                secrets(&[("api_secret", "s2")]),
            )
            .unwrap());
        let c = cred(&k, "erp");
        assert_eq!(c.main_value().expose(), "token k2:s2");
        assert_eq!(c.headers.len(), 1, "authorization_source removed");
        // The same values again change nothing.
        assert!(!k
            .edit(
                "erp",
                &[("api_key".into(), "k2".into())],
                SecretBundle::default()
            )
            .unwrap());
        // A field that is not a secret cannot be typed in as one.
        let e = k
            .edit("erp", &[], secrets(&[("base_url", "x")]))
            .unwrap_err();
        assert_eq!(e.field(), Some("base_url"), "{e}");
    }

    #[test]
    fn name_errors_are_about_the_name_field() {
        let (_d, k) = kp();
        let none = BTreeSet::new();
        let e = k.draft("Bad Name", "bearer", &[], &none).unwrap_err();
        assert_eq!(e.field(), Some("name"));
        let e = k.draft("ok", "bearer", &[], &none).unwrap_err();
        assert_eq!(e.field(), Some("token"), "{e}");
    }
}
