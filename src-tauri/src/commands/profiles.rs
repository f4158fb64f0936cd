//! Profiles as the window lists them (the config's view joined with the agent's state),
//! and the add / edit form: the presets' field metadata, checks with the core's own
//! messages, and saving (secrets straight into the keychain, then one token call).

use std::collections::{BTreeMap, BTreeSet};

use keyport_core::agent::ProfileStatus;
use keyport_core::preset;
use keyport_core::secret::Secret;
use keyport_core::store::SecretBundle;
use keyport_core::ProfileView;
use serde::Serialize;
use tauri::State;

use crate::{AppState, UiError};

#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct ProfileRow {
    pub name: String,
    pub preset: String,
    /// The service the preset is for (the window groups by it), or "generic".
    pub service: String,
    pub scheme: &'static str,
    pub base_url: Option<String>,
    /// What the Test action GETs under the base URL (the preset's; none: the base URL).
    pub test_path: Option<String>,
    /// The agent's view: state, expiry, renewals, last error.
    pub status: Option<ProfileStatus>,
}

/// Every profile, with its state from the app's agent. No secret and no token.
#[tauri::command]
pub async fn list_profiles(state: State<'_, AppState>) -> Result<Vec<ProfileRow>, UiError> {
    let cfg = state.keyport()?.load()?;
    let mut statuses = state.hosted().await?.agent.status().await?;
    Ok(cfg
        .profiles
        .into_iter()
        .map(|(name, p)| {
            let preset = preset::get(&p.preset).ok();
            let status = statuses
                .iter()
                .position(|s| s.name == name)
                .map(|i| statuses.swap_remove(i));
            ProfileRow {
                service: preset.map_or_else(|| "generic".into(), |x| x.service.clone()),
                scheme: preset.map_or("?", |x| x.scheme_name()),
                base_url: p.settings.get("base_url").cloned(),
                test_path: preset.and_then(|x| x.test_path.clone()),
                preset: p.preset,
                name,
                status,
            }
        })
        .collect())
}

/// One profile's settings, and for each secret field only whether it is set (one keychain
/// read, when the person selects the profile; never on a timer).
#[tauri::command]
pub async fn show_profile(
    state: State<'_, AppState>,
    name: String,
) -> Result<ProfileView, UiError> {
    let kp = state.keyport()?.clone();
    Ok(tauri::async_runtime::spawn_blocking(move || kp.show(&name))
        .await
        .map_err(|e| keyport_core::Error::Internal(format!("show stopped ({e})")))??)
}

/// One secret of `name`, on the person's request (Reveal): one keychain read; the page
/// masks it again after [`REVEAL_SECS`](super::tokens::REVEAL_SECS).
#[tauri::command]
pub async fn reveal_secret(
    state: State<'_, AppState>,
    name: String,
    field: String,
) -> Result<super::tokens::Revealed, UiError> {
    let kp = state.keyport()?.clone();
    let (n, f) = (name.clone(), field.clone());
    let secret = tauri::async_runtime::spawn_blocking(move || kp.secret(&n, &f))
        .await
        .map_err(|e| keyport_core::Error::Internal(format!("reveal stopped ({e})")))??
        .ok_or(keyport_core::Error::SecretNotSet {
            profile: name,
            field,
        })?;
    Ok(super::tokens::Revealed {
        value: secret.expose().to_string(),
        hide_after_secs: super::tokens::REVEAL_SECS,
    })
}

/// Deletes `name`: its keychain items (secrets and token) first, then its config entry
/// (the core's order: a keychain that refuses leaves the profile as it was); then tells
/// the agent, whose `removed` event updates every window and `keyport status --watch`.
#[tauri::command]
pub async fn delete_profile(state: State<'_, AppState>, name: String) -> Result<(), UiError> {
    let kp = state.keyport()?.clone();
    let n = name.clone();
    tauri::async_runtime::spawn_blocking(move || kp.remove(&n))
        .await
        .map_err(|e| keyport_core::Error::Internal(format!("delete stopped ({e})")))??;
    state.hosted().await?.agent.changed(Some(&name)).await?;
    Ok(())
}

/// What saving a profile of a preset does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum SaveKind {
    /// Its headers come from the secrets as typed (Basic, API key, a pasted token).
    Static,
    /// One token call (login endpoint, token exchange, client credentials).
    Fetch,
    /// A person logs in (browser or device login).
    Login,
}

/// One input of the add / edit form, from the preset's field metadata.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct FieldInfo {
    pub name: String,
    /// `text`, `url`, `integer`, `bool`, `list`, `uuid`, `origin`, `profile`, ...
    pub kind: String,
    pub required: bool,
    /// A password input; kept in the OS keychain, never in the config file.
    pub secret: bool,
    pub default: Option<String>,
    /// The only values allowed, when set.
    pub choices: Vec<String>,
    /// Friendly values the field also takes (`us`, `eu` for a region UUID).
    pub aliases: Vec<String>,
    /// Only for reaching the API through the helper, not for getting a token.
    pub api_only: bool,
    /// For a `profile` field: the presets the other profile may have.
    pub parent_presets: Vec<String>,
    pub help: String,
}

/// A preset as the add form offers it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct PresetInfo {
    pub name: String,
    pub title: String,
    pub service: String,
    /// The seed document line it implements (none for the generic presets).
    pub seed: Option<String>,
    pub description: String,
    pub scheme: String,
    pub save: SaveKind,
    pub fields: Vec<FieldInfo>,
}

/// The setting every preset has for plain http beyond loopback (off by default).
const ALLOW_INSECURE_HTTP: &str = "allow_insecure_http";

fn preset_info(p: &preset::Preset) -> PresetInfo {
    use keyport_core::preset::{Grant, SchemeSpec};
    let save = match &p.auth.scheme {
        SchemeSpec::Oauth2(o) if o.grant != Grant::ClientCredentials => SaveKind::Login,
        s if s.is_token_engine() => SaveKind::Fetch,
        _ => SaveKind::Static,
    };
    let parents = match &p.auth.scheme {
        SchemeSpec::Login(l) => l.parent_presets.clone(),
        _ => Vec::new(),
    };
    let kind = |f: &preset::FieldSpec| {
        serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "text".into())
    };
    let mut fields: Vec<FieldInfo> = p
        .fields
        .iter()
        .map(|f| FieldInfo {
            name: f.name.clone(),
            kind: kind(f),
            required: f.required,
            secret: f.secret,
            default: f.default.clone(),
            choices: f.choices.clone(),
            aliases: f.aliases.keys().cloned().collect(),
            api_only: f.api_only,
            parent_presets: if f.kind == preset::FieldKind::Profile {
                parents.clone()
            } else {
                Vec::new()
            },
            help: f.help.clone(),
        })
        .collect();
    fields.push(FieldInfo {
        name: ALLOW_INSECURE_HTTP.into(),
        kind: "bool".into(),
        required: false,
        secret: false,
        default: Some("false".into()),
        choices: Vec::new(),
        aliases: Vec::new(),
        api_only: false,
        parent_presets: Vec::new(),
        help: "Allow plain http to hosts other than this computer (credentials would cross the network unencrypted)".into(),
    });
    PresetInfo {
        name: p.name.clone(),
        title: p.title.clone(),
        service: p.service.clone(),
        seed: p.seed.clone(),
        description: p.description.clone(),
        scheme: p.scheme_name().into(),
        save,
        fields,
    }
}

/// Every preset, the five seed services first (in the seeds' order), then the generic ones.
#[tauri::command]
pub async fn presets() -> Result<Vec<PresetInfo>, UiError> {
    let mut all: Vec<(usize, &preset::Preset)> = preset::all().iter().enumerate().collect();
    // (a seed reference starts with its document's number: "000_...", "001_...")
    all.sort_by_key(|(i, p)| (p.seed.is_none(), p.seed.as_deref().map(|s| s.get(..3)), *i));
    Ok(all.into_iter().map(|(_, p)| preset_info(p)).collect())
}

/// A profile as the form sends it. Empty values are left out by the page (a default
/// applies); secret values are moved into [`Secret`]s (redacted) before anything else, and
/// the form has no `Debug`, so no value is ever printed.
#[derive(serde::Deserialize)]
pub struct ProfileForm {
    pub name: String,
    pub preset: String,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
}

impl ProfileForm {
    /// An empty secret is one not typed (in Edit: keep the stored value).
    fn tidy(mut self) -> Self {
        self.secrets.retain(|_, v| !v.is_empty());
        self
    }
}

fn settings_of(form: &ProfileForm) -> Vec<(String, String)> {
    form.settings
        .iter()
        .map(|(k, v)| (k.clone(), v.trim().to_string()))
        .collect()
}

/// Checks a new profile as typed so far, without saving anything or reading a secret:
/// the core's own rules and messages, with the field each is about (for inline errors).
#[tauri::command]
pub async fn check_profile(state: State<'_, AppState>, form: ProfileForm) -> Result<(), UiError> {
    let form = form.tidy();
    let kp = state.keyport()?;
    let secret_fields: BTreeSet<String> = form.secrets.keys().cloned().collect();
    kp.draft(
        &form.name,
        &form.preset,
        &settings_of(&form),
        &secret_fields,
    )?;
    Ok(())
}

/// What saving a profile did.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct Saved {
    pub name: String,
    /// Its state after saving (and after the token call, for a token profile).
    pub status: Option<ProfileStatus>,
    /// Why the one token call after saving failed (the profile is saved all the same).
    pub fetch_error: Option<UiError>,
    /// It needs a person to log in before it has a token.
    pub needs_login: bool,
}

/// After a save: the agent is told (its event updates every window), then a token profile
/// gets one token call, whose outcome the form shows.
async fn after_save(state: &AppState, name: &str, save: SaveKind) -> Result<Saved, UiError> {
    let agent = &state.hosted().await?.agent;
    agent.changed(Some(name)).await?;
    let fetch_error = match save {
        SaveKind::Fetch => agent.refresh(name).await.err().map(UiError::from),
        SaveKind::Static | SaveKind::Login => None,
    };
    let status = agent.status().await?.into_iter().find(|s| s.name == name);
    Ok(Saved {
        name: name.to_string(),
        // (just after saving its state may still say "refreshing": no session yet is
        // what matters)
        needs_login: save == SaveKind::Login
            && !status
                .as_ref()
                .is_some_and(|s| s.state == keyport_core::agent::State::Valid),
        status,
        fetch_error,
    })
}

/// Adds a profile from the form: checked by the core, secrets into the keychain, then
/// (for a token profile) one token call.
#[tauri::command]
pub async fn add_profile(state: State<'_, AppState>, form: ProfileForm) -> Result<Saved, UiError> {
    let form = form.tidy();
    let kp = state.keyport()?.clone();
    let save = preset_info(preset::get(&form.preset)?).save;
    let name = form.name.clone();
    tauri::async_runtime::spawn_blocking(move || {
        let secret_fields: BTreeSet<String> = form.secrets.keys().cloned().collect();
        let draft = kp.draft(
            &form.name,
            &form.preset,
            &settings_of(&form),
            &secret_fields,
        )?;
        let mut bundle = SecretBundle::default();
        for (k, v) in form.secrets {
            bundle.insert(k, Secret::new(v));
        }
        kp.add(&form.name, draft, bundle)
    })
    .await
    .map_err(|e| keyport_core::Error::Internal(format!("add stopped ({e})")))??;
    after_save(&state, &name, save).await
}

/// Saves the Edit form: every changed setting and every secret typed anew, checked
/// together and written at once ([`Keyport::edit`](keyport_core::Keyport::edit)); a
/// secret left empty keeps its value. The preset and the name cannot change.
#[tauri::command]
pub async fn edit_profile(state: State<'_, AppState>, form: ProfileForm) -> Result<Saved, UiError> {
    let form = form.tidy();
    let kp = state.keyport()?.clone();
    let name = form.name.clone();
    let cfg = kp.load()?;
    let current = cfg.get(&name)?;
    if current.preset != form.preset {
        return Err(keyport_core::Error::InvalidValue {
            field: "preset".into(),
            message: "a profile's preset cannot change: add a new profile with the other preset"
                .into(),
        }
        .into());
    }
    let save = preset_info(preset::get(&form.preset)?).save;
    // Settings the form no longer has are removed (their defaults apply again).
    let mut settings = settings_of(&form);
    for k in current.settings.keys() {
        if !form.settings.contains_key(k) {
            settings.push((k.clone(), String::new()));
        }
    }
    if !form.settings.contains_key(ALLOW_INSECURE_HTTP) && current.allow_insecure_http {
        settings.push((ALLOW_INSECURE_HTTP.into(), "false".into()));
    }
    let changed = tauri::async_runtime::spawn_blocking(move || {
        let mut bundle = SecretBundle::default();
        for (k, v) in form.secrets {
            bundle.insert(k, Secret::new(v));
        }
        kp.edit(&form.name, &settings, bundle)
    })
    .await
    .map_err(|e| keyport_core::Error::Internal(format!("edit stopped ({e})")))??;
    if !changed {
        let status = state.hosted().await?.agent.status().await?;
        return Ok(Saved {
            status: status.into_iter().find(|s| s.name == name),
            name,
            fetch_error: None,
            needs_login: false,
        });
    }
    after_save(&state, &name, save).await
}
