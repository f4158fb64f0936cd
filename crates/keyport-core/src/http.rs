//! HTTP for token calls, and turning what an endpoint answered into one line for a person.
//!
//! Every client built here: rustls with the OS roots plus an optional per-profile CA file,
//! connect and total timeouts, bodies read up to [`MAX_BODY`] (an endpoint that answers far
//! more is an error, and memory stays bounded; [`Capped`] is the same for the oauth2
//! crate's calls), and **no redirects** (a token request that follows a redirect
//! can be steered to another host: oauth2-rs calls this out as an SSRF guard). Plain http is
//! allowed only to loopback unless the profile opts in. Error bodies are summarized in the
//! vendor's own terms (OAuth `error`/`error_description`, Airbyte `detail`, Frappe
//! `exc_type`, a generic `message`) and scrubbed of the profile's secrets.
//! Left out on purpose: retries (the agent owns retry policy) and proxies beyond reqwest's.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::profile::check_url;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole token call; `KEYPORT_HTTP_TIMEOUT` (seconds) overrides it for slow networks.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn total_timeout() -> Duration {
    std::env::var("KEYPORT_HTTP_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(TOTAL_TIMEOUT, Duration::from_secs)
}

/// The most Keyport reads of any answer (token, discovery, device, revocation): real ones
/// are a few KiB.
pub const MAX_BODY: usize = 1024 * 1024;

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

impl BodyError {
    /// One line, in the words of the other errors about an endpoint.
    pub fn describe(&self) -> String {
        match self {
            BodyError::TooLarge => format!(
                "answered with more than {} KiB: refused (token answers are a few KiB: is the URL right?)",
                MAX_BODY / 1024
            ),
            BodyError::Transport(e) => describe_transport(e),
        }
    }
}

/// Reads a response body of at most [`MAX_BODY`] bytes, chunk by chunk (a body that
/// claims or turns out to be longer is refused as soon as that is known).
pub async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The HTTP client the oauth2 crate's requests go through: reqwest (as built by
/// [`client`]), with bodies read by [`read_capped`].
pub struct Capped(pub reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for Capped {
    type Error = oauth2::HttpClientError<reqwest::Error>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<oauth2::HttpResponse, Self::Error>>
                + Send
                + Sync
                + 'c,
        >,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        use oauth2::HttpClientError;
        Box::pin(async move {
            let response = self
                .0
                .execute(request.try_into().map_err(Box::new)?)
                .await
                .map_err(Box::new)?;
            let mut builder = oauth2::http::Response::builder()
                .status(response.status())
                .version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = read_capped(response).await.map_err(|e| match e {
                BodyError::TooLarge => HttpClientError::Other(BodyError::TooLarge.describe()),
                BodyError::Transport(e) => HttpClientError::Reqwest(Box::new(e)),
            })?;
            builder.body(body).map_err(HttpClientError::Http)
        })
    }
}

/// What a profile decides about its HTTP.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    pub allow_insecure_http: bool,
    pub ca_file: Option<String>,
}

pub fn client(opts: &HttpOptions) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(total_timeout())
        .user_agent(concat!("keyport/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &opts.ca_file {
        let pem = std::fs::read(path).map_err(|source| Error::Io {
            action: "cannot read ca_file",
            path: path.into(),
            source,
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            Error::invalid("ca_file", format!("{path} is not PEM certificates ({e})"))
        })? {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| Error::Internal(format!("cannot set up HTTPS ({e})")))
}

/// Checks an endpoint URL by the profile's http rule.
pub fn check_endpoint(field: &str, url: &str, opts: &HttpOptions) -> Result<reqwest::Url> {
    check_url(field, url, opts.allow_insecure_http)?;
    reqwest::Url::parse(url).map_err(|e| Error::invalid(field, e.to_string()))
}

/// Replaces every secret value in `text` with `[redacted]`, also where it appears
/// percent-encoded (error messages may quote a URL that carried it).
pub fn scrub<'a>(mut text: String, secrets: impl IntoIterator<Item = &'a str>) -> String {
    for s in secrets {
        if s.len() < 3 {
            continue;
        }
        let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        let path = form.replace('+', "%20");
        for variant in [s, form.as_str(), path.as_str()] {
            text = text.replace(variant, "[redacted]");
        }
    }
    text
}

/// Why a request did not get an answer.
pub fn describe_transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!(
            "did not answer within {} s: is the service up? try again later",
            total_timeout().as_secs()
        )
    } else if chain(e).contains("certificate") {
        format!(
            "presented a TLS certificate Keyport does not trust ({}): if it is your organization's CA, set ca_file=PATH to its PEM on the profile",
            chain(e)
        )
    } else if e.is_connect() {
        "cannot be reached (connection refused or no route): check the URL and that the service is up".into()
    } else {
        format!(
            "failed: {}",
            std::error::Error::source(e).map_or_else(|| e.to_string(), |s| s.to_string())
        )
    }
}

/// The innermost causes of an error, joined.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.last().cloned().unwrap_or_else(|| e.to_string())
}

/// One line for a non-success answer: status, the vendor's own words, what to do.
pub fn describe_status(status: u16, body: &[u8]) -> String {
    let hint = match status {
        300..=399 => "a redirect, which Keyport never follows for token calls: use the final URL",
        400 | 422 => "check the profile's settings",
        401 | 403 => "check the profile's credentials (keyport secret set NAME FIELD)",
        404 | 405 => "check the URL",
        429 => "rate limited: try again later",
        500..=599 => "the service has a problem: try again later",
        _ => "unexpected answer",
    };
    let detail = vendor_detail(body)
        .map(|d| format!(": {d}"))
        .unwrap_or_else(|| {
            if body.is_empty() || serde_json::from_slice::<serde_json::Value>(body).is_ok() {
                String::new()
            } else {
                " with a body that is not JSON".into()
            }
        });
    format!("answered {status}{detail}; {hint}")
}

/// The vendor's error text from a JSON error body, if it has one.
pub fn vendor_detail(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let s = |x: &serde_json::Value| x.as_str().map(str::to_string);
    let text = if let Some(err) = v.get("error").and_then(s) {
        // OAuth 2 (RFC 6749 5.2)
        match v.get("error_description").and_then(s) {
            Some(d) => format!("{err} ({d})"),
            None => err,
        }
    } else if let Some(d) = v.get("detail") {
        // Airbyte: {"detail": "..."} or FastAPI-style [{"loc": [...], "msg": ...}]
        match d {
            serde_json::Value::String(t) => t.clone(),
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| {
                    let loc: Vec<String> = i
                        .get("loc")
                        .and_then(|l| l.as_array())
                        .map(|l| {
                            l.iter()
                                .filter(|p| p.as_str() != Some("body"))
                                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let msg = i.get("msg").and_then(s).unwrap_or_default();
                    if loc.is_empty() {
                        msg
                    } else {
                        format!("{}: {msg}", loc.join("."))
                    }
                })
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    } else if let Some(exc) = v.get("exc_type").and_then(s) {
        // Frappe: {"exc_type": "AuthenticationError", "message": ...}
        match v
            .get("message")
            .and_then(s)
            .or_else(|| v.get("_error_message").and_then(s))
        {
            Some(m) => format!("{exc} ({m})"),
            None => exc,
        }
    } else {
        v.get("message").and_then(s)?
    };
    let mut text = crate::error::inert(&text);
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_bodies_in_their_own_words() {
        assert_eq!(
            describe_status(401, br#"{"detail": "Invalid authentication credentials"}"#),
            "answered 401: Invalid authentication credentials; check the profile's credentials (keyport secret set NAME FIELD)"
        );
        assert_eq!(
            vendor_detail(br#"{"detail": [{"loc": ["body", "allowed_origin"], "msg": "field required", "type": "value_error.missing"}]}"#).unwrap(),
            "allowed_origin: field required"
        );
        assert_eq!(
            vendor_detail(
                br#"{"error": "invalid_grant", "error_description": "grant request is invalid"}"#
            )
            .unwrap(),
            "invalid_grant (grant request is invalid)"
        );
        assert_eq!(
            vendor_detail(br#"{"exc_type": "AuthenticationError", "message": "Invalid Request"}"#)
                .unwrap(),
            "AuthenticationError (Invalid Request)"
        );
        assert_eq!(
            describe_status(200, b"<html>hello</html>"),
            "answered 200 with a body that is not JSON; unexpected answer"
        );
        assert!(describe_status(500, b"").contains("try again later"));
    }

    #[test]
    fn scrub_removes_secrets() {
        assert_eq!(
            scrub("bad password hunter2!".into(), ["hunter2"]),
            "bad password [redacted]!"
        );
        assert_eq!(
            scrub(
                "GET https://x/login?key=p%40ss%20w and p%40ss+w".into(),
                ["p@ss w"]
            ),
            "GET https://x/login?key=[redacted] and [redacted]"
        );
    }
}
