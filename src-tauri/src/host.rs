//! The app's one agent: the same [`Host`] `keyport agent` runs (renewals, notifications,
//! the control socket the CLI talks to, the loopback helper), started in-process when the
//! app starts and stopped when it quits.
//!
//! [`AppState`] is what every command reads. The host starts in the background so the
//! window shows at once; a command that needs it waits for that one start (never a
//! second). A start that fails (another agent already runs, a broken config file, a
//! keychain that cannot be opened) is kept as the error every command answers with, in
//! one line saying what to do. Left out: running as a client of an agent started
//! elsewhere (`keyport agent` first, then the app): the app says which pid to stop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyport_core::agent::{AgentConfig, AgentHandle, Host, HostOptions};
use keyport_core::helper::{Helper, HelperOptions};
use keyport_core::notify::{DesktopNotifier, Notifier, SilentNotifier};
use keyport_core::{ErrorInfo, Keyport};

use crate::clipboard::{Clipboard, Copier, SystemClipboard};

/// An error as the page sees it: the core's kind (one classification for the agent, the
/// CLI and the app) and its one line, serialized once as `{kind, message}`.
pub type UiError = ErrorInfo;

/// How the app's agent runs.
pub struct AppOptions {
    /// Desktop notifications (the session's notification server); off in unit tests.
    pub notifications: bool,
    /// Serve the loopback helper.
    pub helper: bool,
    /// Overrides the `[helper]` port (tests: 0, any free port).
    pub helper_port: Option<u16>,
    /// Build the tray icon (off on the mock runtime, which has no GTK for its menu).
    pub tray: bool,
    /// Where copied secrets go (the desktop's clipboard; unit tests: an in-memory one).
    pub clipboard: Arc<dyn Clipboard>,
    /// A copied secret is cleared from the clipboard after this long, if still there.
    pub clipboard_clear: Duration,
    /// Started at login: the window stays hidden (the tray opens it).
    pub start_hidden: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            notifications: true,
            helper: true,
            helper_port: None,
            tray: true,
            clipboard: Arc::new(SystemClipboard::default()),
            clipboard_clear: Duration::from_secs(45),
            start_hidden: false,
        }
    }
}

/// The running agent's handles, as commands use them.
#[derive(Clone)]
pub struct Hosted {
    pub agent: AgentHandle,
    pub helper: Option<Helper>,
}

pub struct AppState {
    kp: Result<Arc<Keyport>, UiError>,
    opts: AppOptions,
    hosted: tokio::sync::OnceCell<Result<Hosted, UiError>>,
    /// Taken by [`AppState::stop`].
    host: Mutex<Option<Host>>,
    copier: Copier,
    /// A profile chosen in the tray's menu while there was no window, for its page.
    selection: Mutex<Option<String>>,
}

impl AppState {
    /// `kp` is the opened core, or why it could not be opened (shown in the window).
    pub fn new(kp: Result<Keyport, UiError>, opts: AppOptions) -> Self {
        AppState {
            kp: kp.map(Arc::new),
            copier: Copier::new(opts.clipboard.clone(), opts.clipboard_clear),
            opts,
            hosted: tokio::sync::OnceCell::new(),
            host: Mutex::new(None),
            selection: Mutex::new(None),
        }
    }

    pub fn options(&self) -> &AppOptions {
        &self.opts
    }

    pub fn copier(&self) -> &Copier {
        &self.copier
    }

    /// Remembers `name` for the next page to show first.
    pub fn select(&self, name: &str) {
        *self.selection.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_string());
    }

    /// The profile a new page shows first, once.
    pub fn take_selection(&self) -> Option<String> {
        self.selection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub fn keyport(&self) -> Result<&Arc<Keyport>, UiError> {
        self.kp.as_ref().map_err(Clone::clone)
    }

    /// The running agent, started by the first caller.
    pub async fn hosted(&self) -> Result<&Hosted, UiError> {
        self.hosted
            .get_or_init(|| self.start())
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn start(&self) -> Result<Hosted, UiError> {
        let kp = self.keyport()?.clone();
        // A broken config file is reported before anything starts, as `keyport agent` does.
        let settings = kp.load()?.helper;
        let notifier: Arc<dyn Notifier> = if self.opts.notifications {
            Arc::new(DesktopNotifier)
        } else {
            Arc::new(SilentNotifier)
        };
        let helper = self
            .opts
            .helper
            .then(|| HelperOptions::from_settings(&settings, self.opts.helper_port));
        let config = AgentConfig {
            // (on: the settings' `[agent] notifications` decides, as they change)
            notifications: (!self.opts.notifications).then_some(false),
            ..AgentConfig::default()
        };
        let host = Host::start(
            kp,
            HostOptions {
                config,
                notifier,
                helper,
            },
        )
        .await?;
        let hosted = Hosted {
            agent: host.handle(),
            helper: host.helper().cloned(),
        };
        *self.host.lock().unwrap_or_else(|e| e.into_inner()) = Some(host);
        Ok(hosted)
    }

    /// Stops the agent (it waits for renewals in flight) and frees the single-agent lock;
    /// lets the clipboard go.
    pub async fn stop(&self) {
        self.copier.close();
        let host = self.host.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(host) = host {
            host.stop().await;
        }
    }
}
