//! Opening a URL in the user's browser, for the login UIs (the terminal's and the
//! desktop's): the core's login flow only says *that* a URL should be opened
//! ([`crate::login::LoginStep::OpenUrl`]).
//!
//! `BROWSER` wins when set (the convention of git, Python's webbrowser and xdg-open): its
//! first `:`-separated entry is run with the URL as last argument. Otherwise the platform
//! opener (`xdg-open`, `open`, `rundll32`). With no display and no `BROWSER`, nothing is
//! opened. Nothing is printed here: the caller tells the person. Left out on purpose:
//! choosing among several browsers.

use std::process::{Command, Stdio};

/// What happened when asked to open a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Started,
    /// No display and no `BROWSER`: the person must open the URL themselves.
    NoBrowser,
    /// The browser command could not be started.
    Failed(String),
}

/// Tries to open `url` in a browser. Only `http://` and `https://` URLs are opened: a URL
/// that is passed to a command must not be a `file:` URL, another scheme, or an option.
pub fn open(url: &str) -> Opened {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Opened::Failed("refused: not an http(s) URL".into());
    }
    let mut cmd = match std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        Some(b) => {
            let first = b.split(':').next().unwrap_or_default();
            let mut words = first.split_whitespace();
            let Some(prog) = words.next() else {
                return Opened::NoBrowser;
            };
            let mut c = crate::process::user_command(prog);
            c.args(words);
            c
        }
        None => match platform_opener() {
            Some(c) => c,
            None => return Opened::NoBrowser,
        },
    };
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.spawn() {
        Ok(_) => Opened::Started,
        Err(e) => Opened::Failed(e.to_string()),
    }
}

fn platform_opener() -> Option<Command> {
    if cfg!(target_os = "macos") {
        Some(crate::process::user_command("open"))
    } else if cfg!(windows) {
        // Not `cmd /C start`: cmd would split the URL at every '&'.
        let mut c = crate::process::user_command("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        Some(c)
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some(crate::process::user_command("xdg-open"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_http_urls_reach_a_browser_command() {
        for url in [
            "file:///etc/passwd",
            "--new-window=evil",
            "javascript:alert(1)",
            "",
        ] {
            assert!(
                matches!(super::open(url), super::Opened::Failed(_)),
                "{url}"
            );
        }
    }
}
