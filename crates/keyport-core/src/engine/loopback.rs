//! The loopback redirect receiver for browser logins (RFC 8252 section 7.3).
//!
//! The kubelogin / oauth2cli recipe: bind `127.0.0.1` (a free port, or the fixed one the
//! identity provider needs), report the real port, accept the callback **once**, check
//! `state`, turn `error`/`error_description` into a typed failure, answer the browser with a
//! friendly page either way, and race all of it against a timeout and a [`Cancel`] (the
//! CLI's Ctrl-C, the app's Cancel button).
//!
//! It cannot be knocked over by whoever else can reach the port: every connection is
//! served on a task of its own (one that sends nothing cannot delay the real callback; each
//! gets 5 s to send its request); a callback with the wrong `state` gets an error page and
//! the login keeps waiting for the right one; requests to other paths get a 404; a request
//! whose Host is not this loopback address gets a 400 (DNS rebinding).
//!
//! It also serves one-time start URLs ([`Receiver::start_url`]): `/start/<random>` answers
//! once with a redirect to a URL that must not appear on a command line (the authorization
//! URL with its `state` and PKCE challenge, a device-flow URL with its user code), since
//! every local user can read `/proc/*/cmdline`. The browser command gets only the start
//! URL. Left out on purpose: HTTP beyond one GET per connection, TLS (loopback redirects are
//! plain http by the RFC).

use std::time::Duration;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::login::Cancel;

/// Why a login did not produce a code.
#[derive(Debug, PartialEq, Eq)]
pub enum CallbackError {
    PortInUse(u16),
    Bind(u16, String),
    /// The identity provider sent `error` (e.g. access_denied).
    Denied {
        error: String,
        description: Option<String>,
    },
    /// `state` did not match: possible cross-site request forgery.
    WrongState,
    NoCode,
    /// No valid callback within the timeout; `wrong_state` forged-looking ones were refused.
    Timeout {
        secs: u64,
        wrong_state: usize,
    },
    Interrupted,
}

impl std::fmt::Display for CallbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallbackError::PortInUse(p) => write!(f, "port {p} on 127.0.0.1 is already in use: close what uses it, or set redirect_port to a free port your identity provider allows"),
            CallbackError::Bind(p, e) => write!(f, "cannot listen on 127.0.0.1:{p} ({e})"),
            CallbackError::Denied { error, description } => match description {
                Some(d) => write!(f, "the identity provider refused: {error} ({d})"),
                None => write!(f, "the identity provider refused: {error}"),
            },
            CallbackError::WrongState => write!(f, "the login callback carried the wrong state (possibly a forged request): run keyport login again"),
            CallbackError::NoCode => write!(f, "the login callback had no authorization code"),
            CallbackError::Timeout { secs, wrong_state: 0 } => write!(f, "no login callback within {secs} s: run keyport login again (--timeout SECS gives more time)"),
            CallbackError::Timeout { secs, wrong_state } => write!(f, "no login callback within {secs} s, and {wrong_state} callback(s) with the wrong state were refused (possibly forged requests): run keyport login again"),
            CallbackError::Interrupted => write!(f, "interrupted"),
        }
    }
}

/// One-time redirects: start path -> target, removed when used.
type Starts = Arc<Mutex<HashMap<String, String>>>;

pub struct Receiver {
    listener: TcpListener,
    port: u16,
    starts: Starts,
}

impl Receiver {
    /// Binds `127.0.0.1:port` (0 = any free port).
    pub async fn bind(port: u16) -> Result<Self, CallbackError> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                CallbackError::PortInUse(port)
            } else {
                CallbackError::Bind(port, e.to_string())
            }
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| CallbackError::Bind(port, e.to_string()))?
            .port();
        Ok(Receiver {
            listener,
            port,
            starts: Starts::default(),
        })
    }

    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// A loopback URL that redirects once to `target`: what a browser command is given
    /// instead of `target` itself.
    pub fn start_url(&self, target: &str) -> String {
        let mut nonce = [0u8; 16];
        if getrandom::getrandom(&mut nonce).is_err() {
            // (without randomness, a clock-based path: it only needs to be unguessed for
            // the moment between here and the browser's first request)
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            nonce.copy_from_slice(&t.to_le_bytes());
        }
        let path: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let path = format!("/start/{path}");
        self.starts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.clone(), target.to_string());
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Serves only start URLs until dropped (the device flow has no callback).
    pub fn serve_starts(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = self.listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let (port, starts) = (self.port, self.starts.clone());
                            connections.spawn(async move {
                                handle(stream, port, None, &starts).await;
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        })
    }

    /// Waits for the one valid callback; returns the authorization code.
    pub async fn wait(
        self,
        state: &str,
        timeout: Duration,
        cancel: &Cancel,
    ) -> Result<String, CallbackError> {
        let (tx, mut results) = mpsc::unbounded_channel();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut wrong_state = 0;
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let (tx, state, port) = (tx.clone(), state.to_string(), self.port);
                        let starts = self.starts.clone();
                        connections.spawn(async move {
                            if let Some(result) = handle(stream, port, Some(&state), &starts).await {
                                let _ = tx.send(result);
                            }
                        });
                    }
                    // e.g. out of file descriptors: don't spin
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
                Some(result) = results.recv() => match result {
                    // A forged (or stale) callback: it got its error page; keep waiting.
                    Err(CallbackError::WrongState) => wrong_state += 1,
                    other => return other,
                },
                // (reap finished connection tasks so they don't pile up)
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = &mut deadline => {
                    return Err(CallbackError::Timeout { secs: timeout.as_secs(), wrong_state })
                }
                _ = cancel.cancelled() => return Err(CallbackError::Interrupted),
            }
        }
    }
}

fn page(ok: bool, text: &str) -> String {
    let (title, color) = if ok {
        ("Logged in", "#1b7a3a")
    } else {
        ("Login failed", "#a61b1b")
    };
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Keyport: {title}</title>\
         <body style=\"font-family:system-ui,sans-serif;margin:4rem auto;max-width:32rem\">\
         <h1 style=\"color:{color}\">{title}</h1><p>{}</p><p>You can close this tab.</p>",
        html_escape(text)
    );
    let status = if ok { "200 OK" } else { "400 Bad Request" };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Handles one connection. `None`: not the callback, keep waiting.
/// Handles one connection: a start URL (redirected once), or with `state`, the callback.
/// `None`: not the callback, keep waiting.
async fn handle(
    mut stream: TcpStream,
    port: u16,
    state: Option<&str>,
    starts: &Starts,
) -> Option<Result<String, CallbackError>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()??;
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let host = lines
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    let reply = |s: String| async move {
        let _ = stream.write_all(s.as_bytes()).await;
        let _ = stream.shutdown().await;
    };
    if host != format!("127.0.0.1:{port}") && host != format!("localhost:{port}") {
        reply("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into())
            .await;
        return None;
    }
    let url = reqwest::Url::parse(&format!("http://127.0.0.1:{port}{target}")).ok()?;
    let start = (method == "GET")
        .then(|| {
            starts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(url.path())
        })
        .flatten();
    if let Some(to) = start {
        reply(format!(
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ))
        .await;
        return None;
    }
    let Some(state) = state.filter(|_| method == "GET" && url.path() == "/callback") else {
        reply("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into())
            .await;
        return None;
    };
    let q = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    // `state` first, for every answer: without it a forged request could end the login
    // (even with an error text of its choosing).
    let result = if q("state").as_deref() != Some(state) {
        Err(CallbackError::WrongState)
    } else if let Some(error) = q("error") {
        Err(CallbackError::Denied {
            error,
            description: q("error_description"),
        })
    } else if let Some(code) = q("code") {
        Ok(code)
    } else {
        Err(CallbackError::NoCode)
    };
    let html = match &result {
        Ok(_) => page(true, "Keyport received your login. Return to the terminal."),
        Err(CallbackError::WrongState) => page(
            false,
            "This callback does not belong to the login Keyport is waiting for (wrong state): it was ignored, and the login is still waiting.",
        ),
        Err(e) => page(false, &e.to_string()),
    };
    reply(html).await;
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Sends one GET to the receiver from a plain thread; returns the status line.
    fn get(port: u16, target: &str, host: &str) -> std::thread::JoinHandle<String> {
        let (target, host) = (target.to_string(), host.to_string());
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(s, "GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out.lines().next().unwrap_or_default().to_string()
        })
    }

    #[tokio::test]
    async fn a_forged_callback_gets_an_error_page_and_the_login_keeps_waiting() {
        let r = Receiver::bind(0).await.unwrap();
        let port = r.port;
        let host = format!("127.0.0.1:{port}");
        let wait = tokio::spawn(async move {
            r.wait("the-state", Duration::from_secs(30), &Cancel::new())
                .await
        });
        let forged = get(
            port,
            "/callback?error=access_denied&error_description=evil",
            &host,
        );
        let forged = tokio::task::spawn_blocking(move || forged.join().unwrap());
        assert!(forged.await.unwrap().contains("400"));
        let wrong = get(port, "/callback?code=attacker&state=guess", &host);
        assert!(tokio::task::spawn_blocking(move || wrong.join().unwrap())
            .await
            .unwrap()
            .contains("400"));
        let real = get(port, "/callback?code=c&state=the-state", &host);
        assert!(tokio::task::spawn_blocking(move || real.join().unwrap())
            .await
            .unwrap()
            .contains("200"));
        assert_eq!(wait.await.unwrap(), Ok("c".to_string()));
    }

    #[tokio::test]
    async fn a_silent_connection_does_not_delay_the_callback() {
        let r = Receiver::bind(0).await.unwrap();
        let port = r.port;
        // connects and sends nothing (the reader would wait 5 s for it)
        let _silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let started = std::time::Instant::now();
        let wait =
            tokio::spawn(async move { r.wait("s", Duration::from_secs(30), &Cancel::new()).await });
        let real = get(
            port,
            "/callback?code=c&state=s",
            &format!("127.0.0.1:{port}"),
        );
        assert!(tokio::task::spawn_blocking(move || real.join().unwrap())
            .await
            .unwrap()
            .contains("200"));
        assert_eq!(wait.await.unwrap(), Ok("c".to_string()));
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "served beside the silent connection, not after its 5 s"
        );
    }

    #[tokio::test]
    async fn the_timeout_says_how_many_forged_callbacks_were_refused() {
        let r = Receiver::bind(0).await.unwrap();
        let port = r.port;
        let host = format!("127.0.0.1:{port}");
        let cancel = Cancel::new();
        let wait =
            tokio::spawn(async move { r.wait("s", Duration::from_millis(1500), &cancel).await });
        let forged = get(port, "/callback?code=x&state=nope", &host);
        tokio::task::spawn_blocking(move || forged.join().unwrap())
            .await
            .unwrap();
        let e = wait.await.unwrap().unwrap_err();
        assert_eq!(
            e,
            CallbackError::Timeout {
                secs: 1,
                wrong_state: 1
            }
        );
        assert!(e.to_string().contains("wrong state were refused"), "{e}");
    }

    #[tokio::test]
    async fn other_paths_and_hosts_do_not_end_the_wait() {
        let r = Receiver::bind(0).await.unwrap();
        let port = r.port;
        let wait =
            tokio::spawn(
                async move { r.wait("s1", Duration::from_secs(10), &Cancel::new()).await },
            );
        let not_found = tokio::task::spawn_blocking(move || {
            get(port, "/favicon.ico", &format!("127.0.0.1:{port}"))
                .join()
                .unwrap()
        });
        assert!(not_found.await.unwrap().contains("404"));
        let rebinding = tokio::task::spawn_blocking(move || {
            get(port, "/callback?code=c&state=s1", "evil.example:80")
                .join()
                .unwrap()
        });
        assert!(
            rebinding.await.unwrap().contains("400"),
            "a foreign Host is refused"
        );
        let ok = tokio::task::spawn_blocking(move || {
            get(
                port,
                "/callback?code=c&state=s1",
                &format!("localhost:{port}"),
            )
            .join()
            .unwrap()
        });
        assert!(ok.await.unwrap().contains("200"));
        assert_eq!(wait.await.unwrap(), Ok("c".to_string()));
    }
}
