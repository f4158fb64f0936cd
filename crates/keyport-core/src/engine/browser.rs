//! Opening a URL in the user's browser.
//!
//! `BROWSER` wins when set (the convention of git, Python's webbrowser and xdg-open): its
//! first `:`-separated entry is run with the URL as last argument. Otherwise the platform
//! opener (`xdg-open`, `open`, `start`). With no display and no `BROWSER`, or with
//! `--no-browser`, nothing is opened: the URL is always printed, so the user can open it
//! anywhere. Left out on purpose: choosing among several browsers.

use std::process::{Command, Stdio};

/// Prints `url` and tries to open it; returns whether a browser was started.
pub fn open(url: &str, no_browser: bool) -> bool {
    eprintln!("Open this URL to log in:\n  {url}");
    if no_browser {
        return false;
    }
    let mut cmd = match std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        Some(b) => {
            let first = b.split(':').next().unwrap_or_default();
            let mut words = first.split_whitespace();
            let Some(prog) = words.next() else {
                return false;
            };
            let mut c = Command::new(prog);
            c.args(words);
            c
        }
        None => match platform_opener() {
            Some(c) => c,
            None => {
                eprintln!("(no display and no BROWSER set: open it yourself; Keyport is waiting)");
                return false;
            }
        },
    };
    cmd.arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    match cmd.spawn() {
        Ok(_) => true,
        Err(e) => {
            eprintln!("(could not start a browser: {e}; open the URL yourself)");
            false
        }
    }
}

fn platform_opener() -> Option<Command> {
    if cfg!(target_os = "macos") {
        Some(Command::new("open"))
    } else if cfg!(windows) {
        // Not `cmd /C start`: cmd would split the URL at every '&'.
        let mut c = Command::new("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        Some(c)
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some(Command::new("xdg-open"))
    } else {
        None
    }
}
