//! Profiles as the window lists them: the config's view joined with the agent's state.

use keyport_core::agent::ProfileStatus;
use keyport_core::preset;
use serde::Serialize;
use tauri::State;

use crate::{AppState, UiError};

#[derive(Debug, Clone, Serialize)]
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
