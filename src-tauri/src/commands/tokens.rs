//! Tokens: renewing now (the agent's single-flight renewal, shared with any renewal
//! already running).

use keyport_core::agent::ProfileStatus;
use keyport_core::Error;
use tauri::State;

use crate::{AppState, UiError};

/// Renews `name` now and answers its state afterwards.
#[tauri::command]
pub async fn renew(state: State<'_, AppState>, name: String) -> Result<ProfileStatus, UiError> {
    let agent = &state.hosted().await?.agent;
    agent.refresh(&name).await?;
    agent
        .status()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::ProfileNotFound(name).into())
}
