//! The profile file: one TOML file under the user's config dir, never a secret in it.
//!
//! `$KEYPORT_CONFIG_DIR/profiles.toml` when that variable is set (tests use it), else the
//! platform config dir (`$XDG_CONFIG_HOME/keyport` on Linux). The file has a format
//! `version`; loading checks syntax, types and every profile against its preset, and a
//! problem becomes one [`Error::Config`] naming the file, line and field. Updates are
//! read-modify-write under an exclusive lock file, written to a temp file in the same
//! directory, fsynced and renamed over the old file, so a crash or a concurrent `keyport`
//! never leaves a half-written file or loses another process's profile.
//! Left out on purpose: keeping the user's comments and layout (the file is rewritten from
//! the model), and migrations (there is only format 1 so far).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::preset;
use crate::profile::{self, Profile};

pub const FORMAT_VERSION: u32 = 1;
pub const FILE_NAME: &str = "profiles.toml";
const LOCK_NAME: &str = ".profiles.lock";
pub const DIR_ENV: &str = "KEYPORT_CONFIG_DIR";

/// All profiles, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    pub profiles: BTreeMap<String, Profile>,
    pub agent: AgentSettings,
    pub helper: HelperSettings,
}

/// The longest lead time: a day (a longer one would renew every token as soon as it came).
pub const MAX_LEAD_SECS: u64 = 24 * 3600;

/// `[agent]`: how the agent renews and notifies. A running agent puts a change in force
/// when it is told the file changed (the app's Settings, a `keyport` command, SIGHUP after
/// a hand edit); `keyport agent --lead` and `--no-notifications` override these for that
/// agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Desktop notifications about tokens that need the user.
    #[serde(default = "yes")]
    pub notifications: bool,
    /// Seconds: renew no later than this before expiry, and warn this long before a token
    /// that cannot be renewed expires.
    #[serde(default = "default_lead")]
    pub lead: u64,
}

fn yes() -> bool {
    true
}

fn default_lead() -> u64 {
    120
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            notifications: yes(),
            lead: default_lead(),
        }
    }
}

impl AgentSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn check(&self) -> Result<()> {
        if self.lead > MAX_LEAD_SECS {
            return Err(Error::invalid(
                "lead",
                format!(
                    "a lead time of {} s is more than a day: choose at most {MAX_LEAD_SECS} seconds",
                    self.lead
                ),
            ));
        }
        Ok(())
    }
}

/// `[helper]`: the loopback helper's settings (put in force as `[agent]`'s are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperSettings {
    /// The TCP port on 127.0.0.1 (fixed, so tools keep their URLs across restarts).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Web origins (`scheme://host[:port]`) whose pages may call the helper, for local
    /// web development. Every other request with an `Origin` is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

fn default_port() -> u16 {
    crate::helper::DEFAULT_PORT
}

impl Default for HelperSettings {
    fn default() -> Self {
        HelperSettings {
            port: default_port(),
            allowed_origins: Vec::new(),
        }
    }
}

impl HelperSettings {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the port (fixed: not 0) and every origin.
    pub fn check(&self) -> Result<()> {
        if self.port == 0 {
            return Err(Error::invalid(
                "port",
                "0 would be a different port at every start: choose a fixed one, e.g. 7137, so tools keep their URLs",
            ));
        }
        self.allowed_origins
            .iter()
            .try_for_each(|o| Self::check_origin(o))
    }

    /// An origin is `scheme://host[:port]`: what a browser sends, nothing more.
    pub fn check_origin(origin: &str) -> Result<()> {
        let bad = || {
            Error::invalid(
                "allowed_origins",
                format!(
                    "'{}' is not a web origin: write scheme://host[:port] with no path or trailing slash, e.g. http://localhost:5173",
                    crate::error::inert(origin)
                ),
            )
        };
        let url = url::Url::parse(origin).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") || url.origin().ascii_serialization() != origin
        {
            return Err(bad());
        }
        Ok(())
    }
}

impl Config {
    pub fn get(&self, name: &str) -> Result<&Profile> {
        self.profiles
            .get(name)
            .ok_or_else(|| Error::ProfileNotFound(name.to_string()))
    }

    /// The API a profile's credential is for (the loopback helper's upstream): its own
    /// `base_url`, else its parent's (a token exchange is for the parent's API), up the
    /// chain. `None` when no profile on the way sets one.
    pub fn api_base_url(&self, name: &str) -> Option<&str> {
        let mut at = self.profiles.get(name)?;
        for _ in 0..=profile::MAX_CHAIN {
            if let Some(b) = at.settings.get("base_url") {
                return Some(b);
            }
            at = self.profiles.get(at.settings.get("parent")?)?;
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIn {
    /// Checked before this struct is parsed (see `parse`).
    #[serde(rename = "version")]
    _version: u32,
    #[serde(default)]
    agent: AgentSettings,
    #[serde(default)]
    helper: HelperSettings,
    #[serde(default)]
    profiles: BTreeMap<String, toml::Spanned<Profile>>,
}

#[derive(Serialize)]
struct FileOut<'a> {
    version: u32,
    #[serde(skip_serializing_if = "AgentSettings::is_default")]
    agent: &'a AgentSettings,
    #[serde(skip_serializing_if = "HelperSettings::is_default")]
    helper: &'a HelperSettings,
    profiles: &'a BTreeMap<String, Profile>,
}

/// Reads and writes the profile file in one directory.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    dir: PathBuf,
}

impl ConfigStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ConfigStore { dir: dir.into() }
    }

    /// `$KEYPORT_CONFIG_DIR`, else the platform's config dir + `keyport`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Self::new(dir));
        }
        let base = dirs::config_dir().ok_or_else(|| Error::Config {
            path: PathBuf::from("~"),
            location: String::new(),
            message: format!("cannot tell where your config dir is: set HOME or {DIR_ENV}"),
        })?;
        Ok(Self::new(base.join("keyport")))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Loads and checks the file; a missing file is an empty config.
    pub fn load(&self) -> Result<Config> {
        let path = self.path();
        match fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(Error::Io {
                action: "cannot read config file",
                path,
                source,
            }),
        }
    }

    /// Read-modify-write under the lock: `change` sees the current profiles; when it
    /// succeeds and changed something, the file is replaced atomically. When `change` fails,
    /// nothing is written.
    pub fn update<T>(&self, change: impl FnOnce(&mut Config) -> Result<T>) -> Result<T> {
        self.create_dir()?;
        let lock_path = self.dir.join(LOCK_NAME);
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open lock file", &lock_path))?;
        lock.lock().map_err(io("cannot lock", &lock_path))?;
        let before = self.load()?;
        let mut config = before.clone();
        let out = change(&mut config)?;
        if config != before {
            self.write(&config)?;
        }
        drop(lock);
        Ok(out)
    }

    fn create_dir(&self) -> Result<()> {
        let mut b = fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&self.dir).map_err(|source| Error::Io {
            action: "cannot create config dir",
            path: self.dir.clone(),
            source,
        })
    }

    fn write(&self, config: &Config) -> Result<()> {
        let path = self.path();
        let text = format!(
            "# Keyport profiles. No secrets here: they live in the OS keychain.\n{}",
            toml::to_string_pretty(&FileOut {
                version: FORMAT_VERSION,
                agent: &config.agent,
                helper: &config.helper,
                profiles: &config.profiles,
            })
            .expect("profiles serialize to TOML")
        );
        let io = |action| {
            let path = path.clone();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        // NamedTempFile is created 0600 and removed again if anything below fails.
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(io("cannot create a temp file beside"))?;
        tmp.write_all(text.as_bytes())
            .map_err(io("cannot write a temp file beside"))?;
        tmp.as_file()
            .sync_all()
            .map_err(io("cannot sync a temp file beside"))?;
        tmp.persist(&path).map_err(|e| Error::Io {
            action: "cannot replace",
            path: path.clone(),
            source: e.error,
        })?;
        // Make the rename itself durable.
        #[cfg(unix)]
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn parse(path: &Path, text: &str) -> Result<Config> {
    let config_error = |location: String, message: String| Error::Config {
        path: path.to_path_buf(),
        location,
        message,
    };
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    // Version first, so a newer file is reported as such rather than as a type error.
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| config_error(locate(text, e.span()), e.message().to_string()))?;
    match table.get("version") {
        Some(toml::Value::Integer(v)) if *v == i64::from(FORMAT_VERSION) => {}
        Some(toml::Value::Integer(v)) if *v > i64::from(FORMAT_VERSION) => {
            return Err(config_error(
                String::new(),
                format!("format version {v} was written by a newer Keyport; upgrade keyport (this one reads version {FORMAT_VERSION})"),
            ))
        }
        Some(_) => {
            return Err(config_error(
                String::new(),
                format!("`version` must be {FORMAT_VERSION}"),
            ))
        }
        None => {
            return Err(config_error(
                String::new(),
                format!("no `version` key: add `version = {FORMAT_VERSION}` at the top"),
            ))
        }
    }
    let file: FileIn = toml::from_str(text)
        .map_err(|e| config_error(locate(text, e.span()), e.message().to_string()))?;
    file.helper
        .check()
        .map_err(|e| config_error("[helper]: ".into(), e.to_string()))?;
    file.agent
        .check()
        .map_err(|e| config_error("[agent]: ".into(), e.to_string()))?;
    let mut profiles = BTreeMap::new();
    for (name, spanned) in file.profiles {
        let line = text[..spanned.span().start.min(text.len())]
            .matches('\n')
            .count()
            + 1;
        let location = format!("line {line}, profile '{name}': ");
        let prof = spanned.into_inner();
        let checked = profile::check_name(&name)
            .and_then(|()| preset::get(&prof.preset))
            .and_then(|p| prof.validate(p, &prof.secrets));
        if let Err(e) = checked {
            return Err(config_error(location, e.to_string()));
        }
        profiles.insert(name, (line, prof));
    }
    let (lines, profiles): (BTreeMap<String, usize>, BTreeMap<String, Profile>) = profiles
        .into_iter()
        .map(|(n, (line, p))| ((n.clone(), line), (n, p)))
        .unzip();
    for (name, prof) in &profiles {
        let preset = preset::get(&prof.preset).expect("checked above");
        profile::check_parent(name, prof, preset, &profiles).map_err(|e| {
            config_error(
                format!("line {}, profile '{name}': ", lines[name]),
                e.to_string(),
            )
        })?;
    }
    Ok(Config {
        profiles,
        agent: file.agent,
        helper: file.helper,
    })
}

/// "line N, field F: " for a byte span of `text`.
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    // The key on that line (if any) and the table it is in.
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = text[..line_start]
        .lines()
        .rev()
        .chain(std::iter::once(line))
        .find_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && l.ends_with(']'))
                .then(|| l.trim_matches(['[', ']']).trim().to_string())
        });
    let field = match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    };
    match field {
        Some(f) => format!("line {line_no}, field {f}: "),
        None => format!("line {line_no}: "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ConfigStore) {
        let d = tempfile::tempdir().unwrap();
        let s = ConfigStore::new(d.path().join("cfg"));
        (d, s)
    }

    fn add(s: &ConfigStore, name: &str) {
        let p = preset::get("basic").unwrap();
        s.update(|c| {
            let mut prof = Profile::new(p);
            prof.apply_setting(p, "username", "u").unwrap();
            prof.secrets.insert("password".into());
            c.profiles.insert(name.into(), prof);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn helper_settings_round_trip_and_origins_are_checked() {
        let (_d, s) = store();
        add(&s, "a");
        assert!(
            !String::from_utf8(fs::read(s.path()).unwrap())
                .unwrap()
                .contains("[helper]"),
            "defaults are not written"
        );
        s.update(|c| {
            c.helper.port = 8111;
            c.helper.allowed_origins = vec!["http://localhost:5173".into()];
            Ok(())
        })
        .unwrap();
        let c = s.load().unwrap();
        assert_eq!(c.helper.port, 8111);
        assert_eq!(c.helper.allowed_origins, ["http://localhost:5173"]);
        assert_eq!(c.profiles.len(), 1);
        let text = fs::read_to_string(s.path()).unwrap();
        fs::write(
            s.path(),
            text.replace("http://localhost:5173", "http://localhost:5173/"),
        )
        .unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(e.contains("not a web origin"), "{e}");
    }

    #[test]
    fn agent_settings_round_trip_and_are_checked() {
        let (_d, s) = store();
        add(&s, "a");
        let text = fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains("[agent]"), "defaults are not written");
        assert_eq!(s.load().unwrap().agent, AgentSettings::default());
        s.update(|c| {
            c.agent = AgentSettings {
                notifications: false,
                lead: 30,
            };
            Ok(())
        })
        .unwrap();
        let c = s.load().unwrap();
        assert!(!c.agent.notifications);
        assert_eq!(c.agent.lead, 30);
        let text = fs::read_to_string(s.path()).unwrap();
        fs::write(s.path(), text.replace("lead = 30", "lead = 90000")).unwrap();
        let e = s.load().unwrap_err().to_string();
        assert!(
            e.contains("[agent]") && e.contains("more than a day"),
            "{e}"
        );
        fs::write(s.path(), text.replace("lead = 30", "lead = -1")).unwrap();
        assert!(s.load().is_err(), "a negative lead is refused");
    }

    #[test]
    fn round_trip_keeps_other_profiles() {
        let (_d, s) = store();
        assert!(s.load().unwrap().profiles.is_empty());
        add(&s, "a");
        add(&s, "b");
        let c = s.load().unwrap();
        assert_eq!(c.profiles.keys().collect::<Vec<_>>(), ["a", "b"]);
        let text = fs::read_to_string(s.path()).unwrap();
        assert!(text.contains("version = 1"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(s.path()).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }

    #[test]
    fn the_api_base_url_is_the_profiles_or_its_parents() {
        let op = preset::get("airbyte-operator").unwrap();
        let scoped = preset::get("airbyte-scoped").unwrap();
        let mut c = Config::default();
        let mut parent = Profile::new(op);
        parent.apply_setting(op, "client_id", "c").unwrap();
        c.profiles.insert("op".into(), parent);
        let mut child = Profile::new(scoped);
        child.apply_setting(scoped, "parent", "op").unwrap();
        c.profiles.insert("ws".into(), child.clone());
        assert_eq!(c.api_base_url("ws"), Some("https://api.airbyte.ai/api/v1"));
        child
            .apply_setting(scoped, "base_url", "https://eu.api.example")
            .unwrap();
        c.profiles.insert("ws".into(), child);
        assert_eq!(c.api_base_url("ws"), Some("https://eu.api.example"));
        let user = preset::get("4insight-user").unwrap();
        c.profiles.insert("4i".into(), Profile::new(user));
        assert_eq!(
            c.api_base_url("4i"),
            Some("https://4insight-api-prod.4subsea.net")
        );
        assert_eq!(c.api_base_url("nope"), None);
    }

    #[test]
    fn an_api_only_setting_keeps_the_token_fingerprint() {
        let user = preset::get("4insight-user").unwrap();
        let mut p = Profile::new(user);
        p.apply_setting(user, "client_id", "c").unwrap();
        let before = p.token_fingerprint();
        p.apply_setting(user, "base_url", "https://staging.example")
            .unwrap();
        assert_eq!(
            p.token_fingerprint(),
            before,
            "the API moved, the session did not"
        );
        p.apply_setting(user, "client_id", "other").unwrap();
        assert_ne!(p.token_fingerprint(), before);
        // a login endpoint's base_url is where the token comes from
        let pw = preset::get("patchworks-login").unwrap();
        let mut q = Profile::new(pw);
        let before = q.token_fingerprint();
        q.apply_setting(pw, "base_url", "https://other.example")
            .unwrap();
        assert_ne!(q.token_fingerprint(), before);
    }

    #[test]
    fn failed_change_writes_nothing() {
        let (_d, s) = store();
        add(&s, "a");
        let before = fs::read(s.path()).unwrap();
        let r: Result<()> = s.update(|c| {
            c.profiles.clear();
            Err(Error::ProfileNotFound("x".into()))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(s.path()).unwrap(), before);
    }

    fn load_err(text: &str) -> String {
        let (_d, s) = store();
        fs::create_dir_all(s.dir()).unwrap();
        fs::write(s.path(), text).unwrap();
        let e = s.load().unwrap_err().to_string();
        // the file is untouched by a failed load
        assert_eq!(fs::read_to_string(s.path()).unwrap(), text);
        e
    }

    #[test]
    fn malformed_files_name_file_line_and_field() {
        let e = load_err(
            "version = 1\n[profiles.a]\npreset = \"basic\"\n[profiles.a.settings]\nusername = 5\n",
        );
        assert!(
            e.contains("profiles.toml: line 5, field profiles.a.settings.username:"),
            "{e}"
        );
        assert!(e.contains("nothing was changed"), "{e}");

        let e = load_err("version = 1\n[profiles.a]\npreset = \"basic\"\ncolour = \"red\"\n");
        assert!(e.contains("line 4, field profiles.a.colour"), "{e}");

        let e = load_err("version = 1\n[profiles.a\n");
        assert!(e.contains("line 2"), "{e}");

        let e = load_err("version = 1\n[profiles.a]\npreset = \"nope\"\n");
        assert!(
            e.contains("line 2")
                && e.contains("profile 'a'")
                && e.contains("unknown preset 'nope'"),
            "{e}"
        );

        let e = load_err("version = 1\n[profiles.Bad]\npreset = \"basic\"\n");
        assert!(e.contains("invalid profile name 'Bad'"), "{e}");

        let e = load_err("version = 9\n");
        assert!(e.contains("newer Keyport"), "{e}");

        let e = load_err("[profiles.a]\npreset = \"basic\"\n");
        assert!(e.contains("add `version = 1`"), "{e}");
    }
}
