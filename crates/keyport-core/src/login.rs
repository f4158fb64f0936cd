//! Interactive logins (OAuth2 in the browser, the device flow) as a use case with a UI port.
//!
//! [`Keyport::login`] runs one login with its [`LoginOptions`] and returns its result; it is
//! single-flight per profile across processes (a second start is refused with
//! [`Error::LoginInProgress`]) and can be cancelled through a [`Cancel`]. Everything the
//! person must see goes through a [`LoginUi`] as [`LoginStep`]s: the URL to open, the device
//! code and its verification URL, progress, the outcome. The terminal (keyport-cli), the
//! desktop window (the app) and the notification's "Log in" action ([`DesktopLoginUi`])
//! each implement it. The core prints nothing and installs no signal handler: Ctrl-C is the
//! CLI's, which cancels. Left out on purpose: the OAuth protocol itself (`engine::oauth`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, ErrorInfo, Result};
use crate::keyport::Keyport;
use crate::notify::{Event, Notice, Notifier};
use crate::scheme::Credential;

/// Options of an interactive login.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginOptions {
    /// Re-authenticate at the identity provider even with a valid session (the seed's
    /// `auth_force`).
    pub force: bool,
    /// Give up waiting for the person after this long.
    #[serde(with = "secs")]
    pub timeout: Duration,
}

impl Default for LoginOptions {
    fn default() -> Self {
        LoginOptions {
            force: false,
            timeout: Duration::from_secs(300),
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// What the person must see or do during a login, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum LoginStep {
    /// The login page: `url` is the page itself (shown to the person, to copy), `open` a
    /// one-time loopback URL that redirects to it, for a browser command (a command line
    /// is readable by every local user; `url` carries `state` and the PKCE challenge).
    OpenUrl {
        url: String,
        open: String,
    },
    /// Device flow: enter `user_code` at `verification_uri`; `open`, when the provider
    /// gave a URL that carries the code, is a one-time loopback URL redirecting to it.
    DeviceCode {
        verification_uri: String,
        user_code: String,
        verification_uri_complete: Option<String>,
        open: Option<String>,
    },
    /// Waiting for the person (the browser's callback, or the device approval).
    Waiting {
        timeout_secs: u64,
    },
    /// Exchanging what the person gave for tokens.
    Exchanging,
    /// The session is still valid and was kept (no `--force`).
    AlreadyLoggedIn,
    Succeeded {
        #[serde(with = "time::serde::rfc3339::option")]
        #[cfg_attr(feature = "ts", ts(type = "string | null"))]
        expires_at: Option<OffsetDateTime>,
    },
    Failed {
        error: ErrorInfo,
    },
}

/// Where a login shows its steps.
pub trait LoginUi: Send + Sync {
    fn show(&self, step: &LoginStep);
}

/// Cancels a login (or anything else that waits on it). Cheap to clone; every clone sees
/// the same cancellation.
#[derive(Debug, Clone)]
pub struct Cancel(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Cancel {
    fn default() -> Self {
        Cancel(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes once [`Cancel::cancel`] was called (at once if it already was).
    pub async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }
}

impl Keyport {
    /// `keyport login NAME`: runs the profile's interactive OAuth flow and stores the result.
    /// Without `force`, a still-valid session is kept. Refused with
    /// [`Error::LoginInProgress`] while another login of the profile runs (in any process).
    pub async fn login(
        &self,
        name: &str,
        opts: &LoginOptions,
        ui: &dyn LoginUi,
        cancel: &Cancel,
    ) -> Result<Credential> {
        let result = async {
            let _flight = crate::paths::LoginLock::try_acquire(name)?.ok_or_else(|| {
                Error::LoginInProgress {
                    profile: name.to_string(),
                }
            })?;
            self.login_flow(name, opts, ui, cancel).await
        }
        .await;
        match &result {
            Ok(c) => ui.show(&LoginStep::Succeeded {
                expires_at: c.expires_at,
            }),
            // Another login's UI is showing that one; say only that this one was refused.
            Err(e) => ui.show(&LoginStep::Failed { error: e.into() }),
        }
        result
    }
}

/// The UI of logins nobody started from a terminal or a window (the notification's "Log
/// in"): opens the system browser, and shows a device code as a desktop notification.
pub struct DesktopLoginUi {
    pub profile: String,
    pub notifier: Arc<dyn Notifier>,
}

impl LoginUi for DesktopLoginUi {
    fn show(&self, step: &LoginStep) {
        let name = &self.profile;
        match step {
            LoginStep::OpenUrl { open, .. } => {
                let opened = crate::browser::open(open);
                if opened != crate::browser::Opened::Started {
                    self.notifier.send(
                        Notice {
                            profile: name.clone(),
                            event: Event::LoginFailed,
                            summary: format!("Keyport: cannot open a browser for {name}"),
                            body: format!("Log in from a terminal instead: keyport login {name}"),
                        },
                        None,
                    );
                }
            }
            LoginStep::DeviceCode {
                verification_uri,
                user_code,
                open,
                ..
            } => {
                if let Some(u) = open {
                    let _ = crate::browser::open(u);
                }
                self.notifier.send(
                    Notice {
                        profile: name.clone(),
                        event: Event::LoginCode,
                        summary: format!("Keyport: log in to {name}"),
                        body: format!("Open {verification_uri} and enter the code {user_code}"),
                    },
                    None,
                );
            }
            LoginStep::Failed { error } if error.kind != crate::error::ErrorKind::Cancelled => {
                self.notifier.send(
                    Notice {
                        profile: name.clone(),
                        event: Event::LoginFailed,
                        summary: format!("Keyport: login to {name} failed"),
                        body: format!("{}. Try again: keyport login {name}", error.message),
                    },
                    None,
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cancel_wakes_every_waiter_and_stays_cancelled() {
        let c = Cancel::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.cancelled().await })
            })
            .collect();
        assert!(!c.is_cancelled());
        c.cancel();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w)
                .await
                .unwrap()
                .unwrap();
        }
        // a waiter that comes late returns at once
        tokio::time::timeout(Duration::from_secs(5), c.cancelled())
            .await
            .unwrap();
    }

    #[test]
    fn steps_serialize_with_a_tag() {
        let s = serde_json::to_value(LoginStep::DeviceCode {
            verification_uri: "https://idp/device".into(),
            user_code: "ABCD-EFGH".into(),
            verification_uri_complete: None,
            open: None,
        })
        .unwrap();
        assert_eq!(s["step"], "device_code");
        assert_eq!(s["user_code"], "ABCD-EFGH");
    }
}
