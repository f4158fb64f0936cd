//! The loopback helper as the window shows it: where it listens and why it does not,
//! ready-to-paste commands that reach a profile through it, its keys, and its access log.
//!
//! Key secrets never reach the page: Copy, Rotate and Create put the key on the clipboard
//! from here ([`crate::clipboard`]) and answer only what was copied. The access log reaches
//! the page only while its panel watches it ([`watch_access_log`]), in batches at most
//! every [`LOG_BATCH`], so a busy helper cannot flood the window.

use std::sync::Mutex;
use std::time::Duration;

use keyport_core::helper::keys::{KeyAction, KeyInfo};
use keyport_core::helper::log::Entry;
use keyport_core::helper::{Helper, HelperInfo};
use keyport_core::{Error, ErrorKind};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Runtime, State};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::clipboard::Copied;
use crate::{AppState, UiError};

/// The page event carrying new access-log entries ([`AccessBatch`]).
pub const ACCESS_LOG_EVENT: &str = "access-log";
/// At most one [`ACCESS_LOG_EVENT`] this often.
pub const LOG_BATCH: Duration = Duration::from_millis(250);
/// Entries [`watch_access_log`] answers to start with (the newest of the ring).
const LOG_START: usize = 200;
/// Most entries in one batch (a burst beyond it is counted as missed).
const LOG_BATCH_MAX: usize = 500;

pub(crate) fn helper_of(hosted: &crate::Hosted) -> Result<&Helper, UiError> {
    hosted.helper.as_ref().ok_or_else(|| {
        UiError::new(
            ErrorKind::Unavailable,
            "the helper is turned off for this app",
        )
    })
}

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

/// The helper's keys (names, scopes, last use; never a secret).
#[tauri::command]
pub async fn helper_keys(state: State<'_, AppState>) -> Result<Vec<KeyInfo>, UiError> {
    let hosted = state.hosted().await?;
    Ok(helper_of(hosted)?.key(KeyAction::List).await?.1)
}

/// What changing the keys did: every key now, and what went to the clipboard.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct KeyChange {
    pub keys: Vec<KeyInfo>,
    pub copied: Copied,
}

async fn change(state: &AppState, action: KeyAction, what: String) -> Result<KeyChange, UiError> {
    let hosted = state.hosted().await?;
    let (secret, keys) = helper_of(hosted)?.key(action).await?;
    let secret = secret.ok_or_else(|| Error::Internal("the helper answered no key".into()))?;
    let copied = state.copier().copy(&what, secret).await?;
    Ok(KeyChange { keys, copied })
}

/// Copies the default helper key to the clipboard (created if there is none).
#[tauri::command]
pub async fn copy_helper_key(state: State<'_, AppState>) -> Result<Copied, UiError> {
    Ok(
        change(&state, KeyAction::Show, "the default helper key".into())
            .await?
            .copied,
    )
}

/// Replaces the default key (tools using the old one get 401 from now on) and copies the
/// new one.
#[tauri::command]
pub async fn rotate_helper_key(state: State<'_, AppState>) -> Result<KeyChange, UiError> {
    change(
        &state,
        KeyAction::Rotate,
        "the new default helper key".into(),
    )
    .await
}

/// Creates a key for `profiles` only (and only GET, HEAD and OPTIONS when `read_only`) and
/// copies it: it is shown nowhere, so a tool gets it pasted once.
#[tauri::command]
pub async fn create_helper_key(
    state: State<'_, AppState>,
    name: String,
    profiles: Vec<String>,
    read_only: bool,
) -> Result<KeyChange, UiError> {
    let what = format!("the helper key '{}'", keyport_core::error::inert(&name));
    let action = KeyAction::Create {
        name,
        profiles,
        read_only,
        ephemeral: false,
    };
    change(&state, action, what).await
}

/// Revokes key `name`: requests carrying it are refused from now on.
#[tauri::command]
pub async fn revoke_helper_key(
    state: State<'_, AppState>,
    name: String,
) -> Result<Vec<KeyInfo>, UiError> {
    let hosted = state.hosted().await?;
    Ok(helper_of(hosted)?.key(KeyAction::Revoke { name }).await?.1)
}

/// New access-log entries, oldest first.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct AccessBatch {
    pub entries: Vec<Entry>,
    /// Entries that came too fast to forward (the ring still has them: `keyport helper log`).
    pub missed: u64,
}

/// The one forwarding task of the access log, while the helper panel watches.
#[derive(Default)]
pub struct LogWatch(Mutex<Option<tauri::async_runtime::JoinHandle<()>>>);

impl LogWatch {
    fn set(&self, task: Option<tauri::async_runtime::JoinHandle<()>>) {
        let old = std::mem::replace(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()), task);
        if let Some(t) = old {
            t.abort();
        }
    }

    /// Stops forwarding (the window was hidden, or the panel closed).
    pub fn stop(&self) {
        self.set(None);
    }
}

/// Answers the newest entries of the access log and forwards every new one as
/// [`ACCESS_LOG_EVENT`] until [`unwatch_access_log`] (or the next watch).
#[tauri::command]
pub async fn watch_access_log<R: Runtime>(
    app: AppHandle<R>,
    state: State<'_, AppState>,
    watch: State<'_, LogWatch>,
) -> Result<Vec<Entry>, UiError> {
    let hosted = state.hosted().await?;
    let (ring, rx) = helper_of(hosted)?.log();
    let task = tauri::async_runtime::spawn(forward(rx, move |batch| {
        let _ = app.emit(ACCESS_LOG_EVENT, batch);
    }));
    watch.set(Some(task));
    let skip = ring.len().saturating_sub(LOG_START);
    Ok(ring.into_iter().skip(skip).collect())
}

/// Stops forwarding the access log.
#[tauri::command]
pub fn unwatch_access_log(watch: State<'_, LogWatch>) {
    watch.stop();
}

/// Sends the entries of `rx` to `emit` in batches, at most one per [`LOG_BATCH`].
pub async fn forward(
    mut rx: tokio::sync::broadcast::Receiver<Entry>,
    emit: impl Fn(&AccessBatch) + Send + 'static,
) {
    let mut next = tokio::time::Instant::now();
    loop {
        let mut batch = AccessBatch {
            entries: Vec::new(),
            missed: 0,
        };
        // Wait for one entry, then for the batch's time, then take what came meanwhile.
        match rx.recv().await {
            Ok(e) => batch.entries.push(e),
            Err(RecvError::Lagged(n)) => batch.missed += n,
            Err(RecvError::Closed) => return,
        }
        tokio::time::sleep_until(next).await;
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(e) if batch.entries.len() < LOG_BATCH_MAX => batch.entries.push(e),
                Ok(_) => batch.missed += 1,
                Err(TryRecvError::Lagged(n)) => batch.missed += n,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => {
                    closed = true;
                    break;
                }
            }
        }
        emit(&batch);
        if closed {
            return;
        }
        next = tokio::time::Instant::now() + LOG_BATCH;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry(path: &str) -> Entry {
        Entry::new(time::OffsetDateTime::UNIX_EPOCH, "GET", path)
    }

    #[tokio::test(start_paused = true)]
    async fn the_log_reaches_the_page_in_batches_at_most_every_250_ms() {
        let (tx, rx) = tokio::sync::broadcast::channel(64);
        let got = Arc::new(Mutex::new(
            Vec::<(tokio::time::Instant, Vec<String>, u64)>::new(),
        ));
        let sink = got.clone();
        let task = tokio::spawn(forward(rx, move |b| {
            sink.lock().unwrap().push((
                tokio::time::Instant::now(),
                b.entries.iter().map(|e| e.path.clone()).collect(),
                b.missed,
            ))
        }));
        let start = tokio::time::Instant::now();
        // A first entry goes at once; a burst right after waits for the next slot, together.
        tx.send(entry("/a/1")).unwrap();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        for i in 2..=5 {
            tx.send(entry(&format!("/a/{i}"))).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(entry("/a/6")).unwrap();
        // More than the channel holds: counted as missed, never silently lost.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for i in 0..70 {
            tx.send(entry(&format!("/b/{i}"))).unwrap();
        }
        drop(tx);
        task.await.unwrap();
        let got = got.lock().unwrap();
        assert_eq!(got[0].1, vec!["/a/1"]);
        assert_eq!(got[1].1, vec!["/a/2", "/a/3", "/a/4", "/a/5", "/a/6"]);
        assert!(got[1].0 - got[0].0 >= LOG_BATCH, "one batch per 250 ms");
        assert!(got[0].0 - start < LOG_BATCH, "the first at once");
        let later: usize = got[2..].iter().map(|b| b.1.len()).sum();
        let missed: u64 = got[2..].iter().map(|b| b.2).sum();
        assert_eq!(later as u64 + missed, 70, "{got:?}");
        assert!(missed > 0);
    }

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
