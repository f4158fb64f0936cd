//! Tokens: renewing now (the agent's single-flight renewal, shared with any renewal
//! already running), testing a profile with one GET through the loopback helper, as a
//! local tool would send it, inspecting the token (decoded here: the page gets what it
//! says, not the token), copying its header to the clipboard (from here, not through the
//! page) and, on the person's explicit Reveal, the token itself.

use std::time::{Duration, Instant};

use keyport_core::agent::board::Lookup;
use keyport_core::agent::ProfileStatus;
use keyport_core::helper::keys::KeyAction;
use keyport_core::token::Inspection;
use keyport_core::{Error, ErrorKind, Secret};
use serde::Serialize;
use tauri::State;

use crate::clipboard::Copied;
use crate::{AppState, UiError};

/// Copy header hands out a credential valid for at least this long (renewing first if
/// need be), so it does not expire while being pasted.
const COPY_MIN_VALID_SECS: i64 = 60;

/// Copies the header lines `name`'s requests carry (`Authorization: Bearer …`, one per
/// line) to the clipboard, for a tool the helper cannot sit in front of (an HTTP client's
/// header field). Refused, with the agent's reason, when no valid credential can be had.
#[tauri::command]
pub async fn copy_header(state: State<'_, AppState>, name: String) -> Result<Copied, UiError> {
    let agent = &state.hosted().await?.agent;
    let served = agent.credential(&name, COPY_MIN_VALID_SECS).await?;
    let headers = &served.credential.headers;
    let text = headers
        .iter()
        .map(|(h, v)| format!("{h}: {}", v.expose()))
        .collect::<Vec<_>>()
        .join("\n");
    let what = match headers.as_slice() {
        [(h, _)] => format!("the {h} header of {name}"),
        more => format!("the {} headers of {name}", more.len()),
    };
    state.copier().copy(&what, Secret::new(text)).await
}

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

/// What a Test answered.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct TestResult {
    /// The helper URL the GET went to (no key in it).
    pub url: String,
    pub status: u16,
    /// Until the answer's head arrived.
    pub ms: f64,
    /// Keyport's own refusal (`X-Keyport-Error`: `login_required`, ...), if it refused.
    pub keyport_error: Option<String>,
}

fn unavailable(message: String) -> UiError {
    UiError::new(ErrorKind::Unavailable, message)
}

/// One GET of `path` (default: the API base URL itself) of `name` through the helper,
/// with the default helper key, redirects not followed; answers the status and latency.
#[tauri::command]
pub async fn test_profile(
    state: State<'_, AppState>,
    name: String,
    path: Option<String>,
) -> Result<TestResult, UiError> {
    let hosted = state.hosted().await?;
    let helper = hosted
        .helper
        .as_ref()
        .ok_or_else(|| unavailable("the helper is turned off for this app".into()))?;
    let info = helper.status();
    let Some(base) = info.url else {
        return Err(unavailable(info.error.unwrap_or_else(|| {
            "the helper does not listen on TCP: see its settings".into()
        })));
    };
    let (key, _) = helper.key(KeyAction::Show).await?;
    let key = key.ok_or_else(|| Error::Internal("the helper has no default key".into()))?;
    let url = format!(
        "{base}/{name}/{}",
        path.as_deref().unwrap_or("").trim_start_matches('/')
    );
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Internal(format!("no HTTP client ({e})")))?;
    let started = Instant::now();
    let resp = client
        .get(&url)
        .header("X-Keyport-Key", key.expose())
        .send()
        .await
        .map_err(|e| {
            unavailable(format!(
                "the helper at {base} did not answer ({})",
                keyport_core::http::describe_transport(&e)
            ))
        })?;
    Ok(TestResult {
        ms: started.elapsed().as_secs_f64() * 1000.0,
        status: resp.status().as_u16(),
        keyport_error: resp
            .headers()
            .get("x-keyport-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        url,
    })
}

/// A header value's scheme word (`Bearer`, `token`, `Basic`), if it has one, and the
/// credential after it.
fn split_scheme(value: &str) -> (Option<&str>, &str) {
    match value.split_once(' ') {
        Some((w, t)) if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphabetic()) => (Some(w), t),
        _ => (None, value),
    }
}

/// A secret or token shown on a person's request, and how soon the page masks it again.
/// (`Debug` leaves the value out.)
#[derive(Clone, Serialize, ts_rs::TS)]
pub struct Revealed {
    pub value: String,
    pub hide_after_secs: u64,
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revealed")
            .field("value", &"[redacted]")
            .field("hide_after_secs", &self.hide_after_secs)
            .finish()
    }
}

/// How long a revealed value stays on screen.
pub const REVEAL_SECS: u64 = 10;

/// The token the agent serves for `name` (after the scheme word), for the inspector's
/// Reveal. A Basic credential is the user's password, shown under Secrets instead.
#[tauri::command]
pub async fn reveal_token(state: State<'_, AppState>, name: String) -> Result<Revealed, UiError> {
    let agent = &state.hosted().await?.agent;
    let served = agent.credential(&name, 0).await?;
    let (word, token) = split_scheme(served.credential.main_value().expose());
    if word.is_some_and(|w| w.eq_ignore_ascii_case("basic")) {
        return Err(UiError::new(
            ErrorKind::Invalid,
            format!("{name} sends its username and password, not a token: reveal the password under Secrets"),
        ));
    }
    Ok(Revealed {
        value: token.to_string(),
        hide_after_secs: REVEAL_SECS,
    })
}

/// What the token inspector shows: the header the credential is sent in and what the token
/// says about itself. Never the token.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
pub struct TokenDetails {
    /// `Authorization`, `X-Api-Key`, ...; none when no valid credential is held now.
    pub header: Option<String>,
    /// The scheme word before the token (`Bearer`, `token`, `Basic`), if any.
    pub scheme_word: Option<String>,
    /// `None` when no valid credential is held now.
    pub inspection: Option<Inspection>,
}

impl TokenDetails {
    fn none() -> Self {
        TokenDetails {
            header: None,
            scheme_word: None,
            inspection: None,
        }
    }
}

/// Decodes the credential the agent serves for `name` (a JWT's header and claims,
/// unverified; anything else is opaque): from the agent's memory, or asked of the agent as
/// a tool's request would be when it holds none yet. A refusal (login required, renewal
/// failing) answers no details; the profile's state says why.
#[tauri::command]
pub async fn inspect_token(
    state: State<'_, AppState>,
    name: String,
) -> Result<TokenDetails, UiError> {
    let agent = &state.hosted().await?.agent;
    let served = match agent.peek(&name, 0) {
        Lookup::Valid(s) => s,
        Lookup::NotFound => return Err(Error::ProfileNotFound(name).into()),
        Lookup::Miss => match agent.credential(&name, 0).await {
            Ok(s) => s,
            Err(e @ Error::ProfileNotFound(_)) => return Err(e.into()),
            Err(_) => return Ok(TokenDetails::none()),
        },
        Lookup::Refused(_) => return Ok(TokenDetails::none()),
    };
    let (header, value) = &served.credential.headers[0];
    let (word, token) = split_scheme(value.expose());
    let word = word.map(str::to_string);
    // Basic's base64 is the user's password, not a token: never decoded.
    let inspection = if word
        .as_deref()
        .is_some_and(|w| w.eq_ignore_ascii_case("basic"))
    {
        Inspection::Opaque {
            length: token.len(),
        }
    } else {
        keyport_core::token::inspect(token)
    };
    Ok(TokenDetails {
        header: Some(header.clone()),
        scheme_word: word,
        inspection: Some(inspection),
    })
}
