//! The loopback helper as the window shows it: where it listens and why it does not.

use keyport_core::helper::HelperInfo;
use tauri::State;

use crate::{AppState, UiError};

/// The helper's URL, socket, counters and any problem (for example its port in use).
#[tauri::command]
pub async fn helper_info(state: State<'_, AppState>) -> Result<HelperInfo, UiError> {
    let hosted = state.hosted().await?;
    Ok(hosted
        .helper
        .as_ref()
        .map(|h| h.status())
        .unwrap_or_else(|| HelperInfo {
            error: Some("the helper is turned off for this app".into()),
            ..HelperInfo::default()
        }))
}
