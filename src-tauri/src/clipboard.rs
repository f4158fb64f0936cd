//! The clipboard, for the secrets the window copies (helper keys): the app writes them
//! itself, so a secret never passes through the page; marks them for clipboard managers
//! not to keep in their history; and clears the clipboard again after a while if it still
//! holds the secret (something the user copied since is left alone).
//!
//! [`Clipboard`] is the port (the system one is [`SystemClipboard`], over arboard; the unit
//! tests use an in-memory one); [`Copier`] is the policy. Left out: images and HTML, and
//! the primary selection (a middle click pastes what the user selected, never a key).

use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(target_os = "macos")]
use arboard::SetExtApple as _;
#[cfg(all(unix, not(target_os = "macos")))]
use arboard::SetExtLinux as _;
#[cfg(windows)]
use arboard::SetExtWindows as _;
use keyport_core::{ErrorKind, Secret};
use serde::Serialize;

use crate::UiError;

/// A clipboard that can hold text.
pub trait Clipboard: Send + Sync + 'static {
    /// Puts `text` on the clipboard, marked as a secret (not for history).
    fn write_secret(&self, text: &str) -> Result<(), String>;
    /// What the clipboard holds now, if it is text.
    fn read(&self) -> Option<String>;
    fn clear(&self) -> Result<(), String>;
    /// Lets the clipboard go (at exit).
    fn close(&self) {}
}

/// The desktop's clipboard. Opened on first use (a window that never copies never connects
/// to it) and kept open: on X11 the app itself serves what it copied, so the clipboard
/// lives as long as the app; [`SystemClipboard::close`] lets it go at exit.
#[derive(Default)]
pub struct SystemClipboard(Mutex<Option<arboard::Clipboard>>);

impl SystemClipboard {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut arboard::Clipboard) -> Result<T, arboard::Error>,
    ) -> Result<T, String> {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if c.is_none() {
            *c = Some(arboard::Clipboard::new().map_err(|e| e.to_string())?);
        }
        f(c.as_mut().expect("opened above")).map_err(|e| e.to_string())
    }
}

impl Clipboard for SystemClipboard {
    fn write_secret(&self, text: &str) -> Result<(), String> {
        self.with(|c| c.set().exclude_from_history().text(text))
    }

    fn read(&self) -> Option<String> {
        self.with(|c| c.get_text()).ok()
    }

    fn clear(&self) -> Result<(), String> {
        self.with(|c| c.clear())
    }

    /// Drops the connection (arboard asks for this before the process exits).
    fn close(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// What a copy did, for the page to say.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct Copied {
    /// What was copied, in words ("the default helper key").
    pub what: String,
    /// The clipboard is cleared after this long if it still holds it.
    pub clears_in_secs: u64,
}

/// Copies secrets and clears them again: see the module doc.
#[derive(Clone)]
pub struct Copier {
    clip: Arc<dyn Clipboard>,
    clear_after: Duration,
}

impl Copier {
    pub fn new(clip: Arc<dyn Clipboard>, clear_after: Duration) -> Self {
        Copier { clip, clear_after }
    }

    pub fn close(&self) {
        self.clip.close();
    }

    /// Puts `secret` on the clipboard and schedules its clearing (on the app's runtime).
    pub async fn copy(&self, what: &str, secret: Secret) -> Result<Copied, UiError> {
        let clip = self.clip.clone();
        let text = secret.clone();
        tokio::task::spawn_blocking(move || clip.write_secret(text.expose()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
            .map_err(|e| {
                UiError::new(
                    ErrorKind::Unavailable,
                    format!("could not copy to the clipboard ({e}): is a desktop session running?"),
                )
            })?;
        tauri::async_runtime::spawn(clear_later(self.clip.clone(), secret, self.clear_after));
        Ok(Copied {
            what: what.to_string(),
            clears_in_secs: self.clear_after.as_secs(),
        })
    }
}

/// After `after`, clears the clipboard if it still holds `secret`.
pub async fn clear_later(clip: Arc<dyn Clipboard>, secret: Secret, after: Duration) {
    tokio::time::sleep(after).await;
    let _ = tokio::task::spawn_blocking(move || {
        if clip.read().as_deref() == Some(secret.expose()) {
            let _ = clip.clear();
        }
    })
    .await;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An in-memory clipboard.
    #[derive(Default)]
    pub struct MemoryClipboard(pub Mutex<Option<String>>);

    impl Clipboard for MemoryClipboard {
        fn write_secret(&self, text: &str) -> Result<(), String> {
            *self.0.lock().unwrap() = Some(text.to_string());
            Ok(())
        }
        fn read(&self) -> Option<String> {
            self.0.lock().unwrap().clone()
        }
        fn clear(&self) -> Result<(), String> {
            *self.0.lock().unwrap() = None;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_copied_secret_is_cleared_unless_something_else_was_copied_since() {
        let mem = Arc::new(MemoryClipboard::default());
        let clip: Arc<dyn Clipboard> = mem.clone();
        clip.write_secret("k-1").unwrap();
        let task = tokio::spawn(clear_later(
            clip.clone(),
            Secret::new("k-1"),
            Duration::from_secs(45),
        ));
        tokio::time::sleep(Duration::from_secs(44)).await;
        assert_eq!(
            mem.read().as_deref(),
            Some("k-1"),
            "kept until the time is up"
        );
        task.await.unwrap();
        assert_eq!(mem.read(), None, "cleared");

        clip.write_secret("k-2").unwrap();
        let task = tokio::spawn(clear_later(
            clip.clone(),
            Secret::new("k-2"),
            Duration::from_secs(45),
        ));
        // The user copies something else meanwhile.
        *mem.0.lock().unwrap() = Some("a note".into());
        task.await.unwrap();
        assert_eq!(mem.read().as_deref(), Some("a note"), "left alone");
    }
}
