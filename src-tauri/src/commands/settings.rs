//! Settings: the agent's (notifications, lead time) and the helper's (port, allowed browser
//! origins), kept in `profiles.toml` and put in force in the running agent at once; start at
//! login ([`crate::autostart`]); and pausing the helper (for this run of the agent).
//!
//! A new helper port is bound before anything is written, so a port in use is said at its
//! field and changes nothing; the old port is let go, so tools still using it fail until
//! they are given the new URL. The CLI's `keyport agent --lead`/`--no-notifications` do
//! not apply to the app: its agent always follows these settings.

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

/// Checks and saves `settings`, then puts them in force: the agent reschedules for the new
/// lead time, the helper allows the new origins and, when the port was changed here, moves
/// to it (a port fixed at start, by `KEYPORT_HELPER_PORT`, stays until the user picks
/// another one). Answers the settings as saved. On an error, with the field it is about,
/// nothing was changed: start at login goes first and is undone, the new port is bound
/// before anything is written and given up again if the write fails.
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
    let before = kp.load()?.helper;
    let hosted = state.hosted().await?;
    let helper = hosted.helper.as_ref();

    let autostart_was = autostart::enabled();
    let set_autostart = |on: bool| {
        autostart::set(on).map_err(|m| UiError {
            field: Some("autostart".into()),
            ..UiError::new(ErrorKind::Unavailable, m)
        })
    };
    if settings.autostart != autostart_was {
        set_autostart(settings.autostart)?;
    }
    let undo = |e: UiError| {
        if settings.autostart != autostart_was {
            let _ = set_autostart(autostart_was);
        }
        e
    };
    // The port first: one in use is refused here, before anything is written.
    let moved_from = match helper {
        Some(h) if settings.port != before.port => {
            let from = h.status().port;
            h.set_port(settings.port)
                .await
                .map_err(|e| undo(e.into()))?;
            from
        }
        _ => None,
    };
    let (a, hs) = (agent, helper_settings);
    let saved = tauri::async_runtime::spawn_blocking(move || kp.save_settings(a, hs))
        .await
        .map_err(|e| keyport_core::Error::Internal(format!("saving stopped ({e})")))
        .and_then(|r| r);
    if let Err(e) = saved {
        let mut e = undo(e.into());
        if let (Some(h), Some(from)) = (helper, moved_from) {
            if let Err(back) = h.set_port(from).await {
                e.message = format!(
                    "{}; the helper stays on port {} ({back})",
                    e.message, settings.port
                );
            }
        }
        return Err(e);
    }
    // (the helper re-reads its origins; its port is where it should be)
    keyport_core::agent::host::reload(&hosted.agent, helper, None).await?;
    Ok(settings)
}

/// Pauses the helper (every request refused with 503 `helper_paused`) or resumes it. Lasts
/// until resumed or the app quits.
#[tauri::command]
pub async fn pause_helper(state: State<'_, AppState>, paused: bool) -> Result<HelperInfo, UiError> {
    let hosted = state.hosted().await?;
    let h = super::helper::helper_of(hosted)?;
    h.set_paused(paused).await;
    Ok(h.status())
}
