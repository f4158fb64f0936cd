//! Desktop notifications, behind a small [`Notifier`] port.
//!
//! The agent decides *when* to tell the user something (once per event per token,
//! rate-limited, switchable); this module only delivers a [`Notice`]. [`DesktopNotifier`]
//! uses notify-rust (freedesktop notifications on Linux, the platform's elsewhere) and, for
//! a notice with a "Log in" action, waits for the click on a thread of its own and then
//! runs the callback. Texts name the profile and what to do, never a secret.
//! Left out on purpose: a notification history, sounds, and the tray (the desktop app).

/// What happened to a profile's token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// It cannot be renewed automatically and expires soon.
    Expiring,
    /// It expired and cannot be renewed automatically.
    Expired,
    /// Renewal keeps failing.
    RenewalFailing,
    /// Only an interactive login can help.
    LoginRequired,
    /// A login started from a notification shows its device code.
    LoginCode,
    /// A login started from a notification failed.
    LoginFailed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub profile: String,
    pub event: Event,
    pub summary: String,
    pub body: String,
}

/// Called when the user chooses "Log in".
pub type OnLogin = Box<dyn FnOnce() + Send>;

pub trait Notifier: Send + Sync {
    /// Delivers `notice`; `on_login`, when given, adds a "Log in" action.
    fn send(&self, notice: Notice, on_login: Option<OnLogin>);
}

/// The action key of "Log in".
pub const LOGIN_ACTION: &str = "login";

/// Real desktop notifications.
#[derive(Debug, Default)]
pub struct DesktopNotifier;

impl Notifier for DesktopNotifier {
    fn send(&self, notice: Notice, on_login: Option<OnLogin>) {
        // show() is a D-Bus round trip and waiting for an action blocks: a thread each.
        std::thread::spawn(move || {
            let mut n = notify_rust::Notification::new();
            n.appname("Keyport")
                .summary(&notice.summary)
                .body(&markup_escaped(&notice.body))
                .icon("dialog-password");
            if on_login.is_some() {
                n.action(LOGIN_ACTION, "Log in");
            }
            #[cfg(all(unix, not(target_os = "macos")))]
            n.urgency(match notice.event {
                Event::Expired | Event::LoginRequired | Event::LoginCode => {
                    notify_rust::Urgency::Critical
                }
                _ => notify_rust::Urgency::Normal,
            });
            match n.show() {
                #[cfg(all(unix, not(target_os = "macos")))]
                Ok(handle) => {
                    if let Some(login) = on_login {
                        handle.wait_for_action(|action| {
                            if action == LOGIN_ACTION {
                                login();
                            }
                        });
                    }
                }
                #[cfg(not(all(unix, not(target_os = "macos"))))]
                Ok(_) => drop(on_login),
                Err(e) => eprintln!(
                    "keyport agent: cannot show a notification ({e}): {}",
                    notice.summary
                ),
            }
        });
    }
}

/// Freedesktop notification servers may render a body's markup (`<b>`, `<a href>`,
/// `<img>`): text that may carry an endpoint's words is escaped.
pub fn markup_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Delivers nothing (`keyport agent --no-notifications`; the agent doesn't even call it
/// then, but it needs a notifier).
#[derive(Debug, Default)]
pub struct SilentNotifier;

impl Notifier for SilentNotifier {
    fn send(&self, _notice: Notice, _on_login: Option<OnLogin>) {}
}
