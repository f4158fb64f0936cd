//! Settings: the agent's (notifications, lead time) and the helper's (port, allowed browser
//! origins), kept in `profiles.toml` and put in force in the running agent at once; start at
//! login ([`crate::autostart`]); and pausing the helper (for this run of the agent).
//!
//! A new helper port is bound before anything is written, so a port in use is said at its
//! field and changes nothing. The CLI's `keyport agent --lead`/`--no-notifications` do not
//! apply to the app: its agent always follows these settings.

use keyport_core::config::{AgentSettings, HelperSettings};
use keyport_core::helper::HelperInfo;
use keyport_core::ErrorKind;
use serde::{Deserialize, Serialize};
use tauri::State;

use crate::{autostart, AppState, UiError};

/// What the Settings panel shows and saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Settings {
    /// Desktop notifications about tokens that need the user.
    pub notifications: bool,
    /// Seconds before expiry: renew by then, and warn about tokens that can't be renewed.
    pub lead: u64,
    /// The helper's TCP port on 127.0.0.1.
    pub port: u16,
    /// Web origins whose pages may call the helper.
    pub allowed_origins: Vec<String>,
    /// Start Keyport at login, in the tray.
    pub autostart: bool,
}

/// The settings in force.
#[tauri::command]
pub async fn settings(state: State<'_, AppState>) -> Result<Settings, UiError> {
    let cfg = state.keyport()?.load()?;
    Ok(Settings {
        notifications: cfg.agent.notifications,
        lead: cfg.agent.lead,
        port: cfg.helper.port,
        allowed_origins: cfg.helper.allowed_origins,
        autostart: autostart::enabled(),
    })
}

/// Checks and saves `new`, then puts it in force: the agent reschedules for the new lead
/// time, the helper moves to the new port and allows the new origins. Answers the settings
/// as saved. On an error (with the field it is about) nothing was changed.
#[tauri::command]
pub async fn save_settings(
    state: State<'_, AppState>,
    settings: Settings,
) -> Result<Settings, UiError> {
    let kp = state.keyport()?.clone();
    let agent = AgentSettings {
        notifications: settings.notifications,
        lead: settings.lead,
    };
    let helper_settings = HelperSettings {
        port: settings.port,
        allowed_origins: settings.allowed_origins.clone(),
    };
    agent.check()?;
    helper_settings.check()?;
    let hosted = state.hosted().await?;
    let helper = hosted.helper.as_ref();
    // The port first: one in use is refused here, before anything is written.
    let moved_from = match helper.map(|h| (h, h.status().port)) {
        Some((h, old)) if old != Some(settings.port) => {
            h.set_port(settings.port).await?;
            old
        }
        _ => None,
    };
    let (a, hs) = (agent.clone(), helper_settings.clone());
    let saved = tauri::async_runtime::spawn_blocking(move || kp.save_settings(a, hs))
        .await
        .map_err(|e| keyport_core::Error::Internal(format!("saving stopped ({e})")))?;
    if let Err(e) = saved {
        if let (Some(h), Some(old)) = (helper, moved_from) {
            let _ = h.set_port(old).await;
        }
        return Err(e.into());
    }
    keyport_core::agent::host::reload(&hosted.agent, None, None).await?;
    if let Some(h) = helper {
        h.set_origins(settings.allowed_origins.clone());
    }
    if settings.autostart != autostart::enabled() {
        autostart::set(settings.autostart).map_err(|m| UiError {
            field: Some("autostart".into()),
            ..UiError::new(ErrorKind::Unavailable, m)
        })?;
    }
    Ok(settings)
}

/// Pauses the helper (every request refused with 503 `helper_paused`) or resumes it. Lasts
/// until resumed or the app quits.
#[tauri::command]
pub async fn pause_helper(state: State<'_, AppState>, paused: bool) -> Result<HelperInfo, UiError> {
    let hosted = state.hosted().await?;
    let h = super::helper::helper_of(hosted)?;
    h.set_paused(paused);
    Ok(h.status())
}
