//! Logins in the window: the app's implementation of the agent's login UI port.
//!
//! A login runs in the embedded agent (single-flight per profile, cancellable). The window
//! learns each step from the agent's events (`AgentEvent::Login`, which every subscriber
//! gets, so a login started from a notification or with `keyport login` shows here too);
//! this UI only does what needs the desktop: it opens the system browser on the login page,
//! and remembers which page a "Open the page" button may open, so the page never asks the
//! app to open a URL of its own choosing. Left out: choosing a browser (`BROWSER`, else
//! the platform's opener, as everywhere in Keyport).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyport_core::agent::ProfileStatus;
use keyport_core::browser::{self, Opened};
use keyport_core::login::{Cancel, LoginOptions, LoginStep, LoginUi};
use keyport_core::{Error, ErrorKind};
use tauri::State;

use crate::{AppState, UiError};

/// The page each running login may open again, by profile (managed by the app).
#[derive(Default, Clone)]
pub struct LoginPages(Arc<Mutex<HashMap<String, Page>>>);

#[derive(Clone)]
struct Page {
    /// A one-time loopback URL (it redirects to the login page), until it is used.
    once: Option<String>,
    /// A URL that may be opened any number of times (the device flow's verification URI).
    again: Option<String>,
}

impl LoginPages {
    fn set(&self, name: &str, page: Option<Page>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match page {
            Some(p) => m.insert(name.to_string(), p),
            None => m.remove(name),
        };
    }

    /// The URL to open now for `name`'s login: the one-time one first.
    fn take(&self, name: &str) -> Option<String> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let p = m.get_mut(name)?;
        p.once.take().or_else(|| p.again.clone())
    }
}

/// The window's login UI: see the module doc.
struct WindowLoginUi {
    name: String,
    pages: LoginPages,
}

impl LoginUi for WindowLoginUi {
    fn show(&self, step: &LoginStep) {
        match step {
            LoginStep::OpenUrl { open, .. } => {
                // The browser flow opens the login page at once (the window says so, and
                // shows the address to copy should no browser appear).
                if browser::open(open) != Opened::Started {
                    self.pages.set(
                        &self.name,
                        Some(Page {
                            once: Some(open.clone()),
                            again: None,
                        }),
                    );
                }
            }
            LoginStep::DeviceCode {
                verification_uri,
                open,
                ..
            } => self.pages.set(
                &self.name,
                Some(Page {
                    once: open.clone(),
                    again: Some(verification_uri.clone()),
                }),
            ),
            LoginStep::Succeeded { .. } | LoginStep::Failed { .. } | LoginStep::AlreadyLoggedIn => {
                self.pages.set(&self.name, None)
            }
            LoginStep::Waiting { .. } | LoginStep::Exchanging => {}
        }
    }
}

/// Logs `name` in (with `force`, even when its session is still valid) and answers its
/// state afterwards. Its steps reach the window as agent events; it ends when the person
/// finishes, cancels ([`cancel_login`]) or the login times out.
#[tauri::command]
pub async fn login(
    state: State<'_, AppState>,
    pages: State<'_, LoginPages>,
    name: String,
    force: bool,
) -> Result<ProfileStatus, UiError> {
    let agent = &state.hosted().await?.agent;
    let ui = Arc::new(WindowLoginUi {
        name: name.clone(),
        pages: pages.inner().clone(),
    });
    let opts = LoginOptions {
        force,
        ..LoginOptions::default()
    };
    let result = agent.login(&name, opts, ui, Cancel::new()).await;
    pages.set(&name, None);
    result?;
    agent
        .status()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| Error::ProfileNotFound(name).into())
}

/// Cancels the login of `name` running in the agent (whoever started it).
#[tauri::command]
pub async fn cancel_login(state: State<'_, AppState>, name: String) -> Result<(), UiError> {
    state.hosted().await?.agent.cancel_login(&name);
    Ok(())
}

/// Opens the login page of `name`'s running login in the system browser: the device
/// flow's verification page, or the browser flow's page when it did not open by itself.
#[tauri::command]
pub async fn open_login_page(pages: State<'_, LoginPages>, name: String) -> Result<(), UiError> {
    let url = pages.take(&name).ok_or_else(|| {
        UiError::new(
            ErrorKind::NotFound,
            format!("no login of '{name}' has a page to open: copy its address instead"),
        )
    })?;
    match browser::open(&url) {
        Opened::Started => Ok(()),
        Opened::NoBrowser => Err(UiError::new(
            ErrorKind::Unavailable,
            "no browser to open (no display and no BROWSER set): copy the address instead",
        )),
        Opened::Failed(e) => Err(UiError::new(
            ErrorKind::Unavailable,
            format!("could not start a browser ({e}): copy the address instead"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_time_page_opens_once_then_the_reusable_one() {
        let pages = LoginPages::default();
        assert_eq!(pages.take("dev"), None, "no login, nothing to open");
        pages.set(
            "dev",
            Some(Page {
                once: Some("http://127.0.0.1:5/o/abc".into()),
                again: Some("https://idp.example/device".into()),
            }),
        );
        assert_eq!(
            pages.take("dev").as_deref(),
            Some("http://127.0.0.1:5/o/abc")
        );
        assert_eq!(
            pages.take("dev").as_deref(),
            Some("https://idp.example/device")
        );
        assert_eq!(
            pages.take("dev").as_deref(),
            Some("https://idp.example/device")
        );
        assert_eq!(pages.take("other"), None);
        pages.set("dev", None);
        assert_eq!(pages.take("dev"), None, "the login ended");
    }

    #[test]
    fn the_ui_remembers_the_device_page_and_forgets_it_at_the_end() {
        let pages = LoginPages::default();
        let ui = WindowLoginUi {
            name: "dev".into(),
            pages: pages.clone(),
        };
        ui.show(&LoginStep::DeviceCode {
            verification_uri: "https://idp.example/device".into(),
            user_code: "WDJB-MJHT".into(),
            verification_uri_complete: None,
            open: None,
        });
        assert_eq!(
            pages.take("dev").as_deref(),
            Some("https://idp.example/device")
        );
        ui.show(&LoginStep::Succeeded { expires_at: None });
        assert_eq!(pages.take("dev"), None);
    }
}
