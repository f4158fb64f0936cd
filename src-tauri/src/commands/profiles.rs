//! Profiles as the window lists them: the config's view joined with the agent's state.

use keyport_core::agent::ProfileStatus;
use keyport_core::preset;
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
