//! Keyport's desktop app: a thin shell over keyport-core.
//!
//! For now it opens one window that lists the profiles read through the core. The core does
//! all the work; this crate only adapts it to Tauri commands and serializes errors once, as
//! `{kind, message}`, so the page can react to the kind. Left out for now (later issues):
//! editing profiles, the tray icon, notifications and the embedded agent.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use keyport_core::{preset, Keyport};
use serde::Serialize;

/// An error as the page sees it: the core's kind (one classification for the agent, the
/// CLI and the app) and its one line.
type UiError = keyport_core::ErrorInfo;

#[derive(Debug, Serialize)]
struct ProfileRow {
    name: String,
    preset: String,
    scheme: &'static str,
    base_url: Option<String>,
}

/// The profiles in the config file; no keychain access.
#[tauri::command]
fn list_profiles(
    state: tauri::State<'_, Result<Keyport, UiError>>,
) -> Result<Vec<ProfileRow>, UiError> {
    let kp = state.inner().as_ref().map_err(Clone::clone)?;
    let cfg = kp.load()?;
    Ok(cfg
        .profiles
        .into_iter()
        .map(|(name, p)| ProfileRow {
            scheme: preset::get(&p.preset)
                .map(|x| x.scheme_name())
                .unwrap_or("?"),
            base_url: p.settings.get("base_url").cloned(),
            preset: p.preset,
            name,
        })
        .collect())
}

fn main() {
    // A crash must not write the secrets and tokens in memory to disk.
    let _ = keyport_core::process::harden();
    // Open the core once: this also refuses keyring's in-memory mock. A failure is shown in
    // the window rather than crashing, so the user sees what to fix.
    let keyport = Keyport::open().map_err(UiError::from);
    tauri::Builder::default()
        .manage(keyport)
        .invoke_handler(tauri::generate_handler![list_profiles])
        .run(tauri::generate_context!())
        .expect("error while running Keyport");
}
