//! The loopback helper as the window shows it: where it listens and why it does not, and
//! ready-to-paste commands that reach a profile through it.

use keyport_core::helper::HelperInfo;
use keyport_core::ErrorKind;
use serde::Serialize;
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

/// Commands that reach a profile through the helper, for curl, HTTPie and Python requests.
/// None holds a secret: each reads the helper key with `keyport helper key` when it runs.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct Snippets {
    /// The profile's helper URL, with the preset's test path when it has one.
    pub url: String,
    pub curl: String,
    pub httpie: String,
    pub python: String,
}

/// The snippets for `url` (a helper URL: 127.0.0.1, a profile name and a path made of
/// URL-safe characters, so it needs no quoting inside double quotes).
pub fn snippets_for(url: &str) -> Snippets {
    Snippets {
        url: url.to_string(),
        curl: format!(r#"curl -H "X-Keyport-Key: $(keyport helper key)" "{url}""#),
        // (--ignore-stdin: in a script HTTPie would otherwise send its stdin as a body)
        httpie: format!(
            r#"http --ignore-stdin GET "{url}" "X-Keyport-Key:$(keyport helper key)""#
        ),
        python: format!(
            "import subprocess, requests\n\
             key = subprocess.run([\"keyport\", \"helper\", \"key\"], capture_output=True, text=True, check=True).stdout.strip()\n\
             r = requests.get(\"{url}\", headers={{\"X-Keyport-Key\": key}})\n\
             print(r.status_code, r.text[:500])\n"
        ),
    }
}

/// The snippets for profile `name`.
#[tauri::command]
pub async fn snippets(state: State<'_, AppState>, name: String) -> Result<Snippets, UiError> {
    let cfg = state.keyport()?.load()?;
    let prof = cfg.get(&name)?;
    let test_path = keyport_core::preset::get(&prof.preset)
        .ok()
        .and_then(|p| p.test_path.clone())
        .unwrap_or_default();
    let info = helper_info(state).await?;
    let base = info.url.ok_or_else(|| {
        UiError::new(
            ErrorKind::Unavailable,
            info.error
                .unwrap_or_else(|| "the helper does not listen on TCP".into()),
        )
    })?;
    Ok(snippets_for(&format!("{base}/{name}/{test_path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_read_the_key_when_they_run_and_hold_no_secret() {
        let s = snippets_for("http://127.0.0.1:7313/imp/datasources");
        assert_eq!(
            s.curl,
            r#"curl -H "X-Keyport-Key: $(keyport helper key)" "http://127.0.0.1:7313/imp/datasources""#
        );
        assert_eq!(
            s.httpie,
            r#"http --ignore-stdin GET "http://127.0.0.1:7313/imp/datasources" "X-Keyport-Key:$(keyport helper key)""#
        );
        assert!(s
            .python
            .contains(r#"requests.get("http://127.0.0.1:7313/imp/datasources""#));
        assert!(s.python.contains(r#"["keyport", "helper", "key"]"#));
    }
}
