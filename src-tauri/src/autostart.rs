//! Start at login: an XDG autostart entry, `$XDG_CONFIG_HOME/autostart/keyport.desktop`
//! (else `~/.config/autostart/`), that starts this app with [`ARG`]; started that way the
//! app stays in the tray with its window hidden, and the agent starts as usual.
//!
//! Written here rather than through tauri-plugin-autostart: on Linux that plugin writes the
//! same file but ignores `XDG_CONFIG_HOME`, and the window's page needs none of its
//! JavaScript API. Left out: macOS and Windows (enabling it there says it is not supported
//! yet), and desktop environments without XDG autostart.

use std::path::{Path, PathBuf};

/// The argument an autostarted app is given: start hidden, in the tray.
pub const ARG: &str = "--autostarted";

/// The entry's file name.
const FILE: &str = "keyport.desktop";

/// Where the entry lives, per the XDG base directory spec.
pub fn path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("autostart").join(FILE))
}

/// Whether the app starts at login: the entry exists and is not hidden or disabled.
pub fn enabled() -> bool {
    path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .is_some_and(|text| {
            !text
                .lines()
                .any(|l| matches!(l.trim(), "Hidden=true" | "X-GNOME-Autostart-enabled=false"))
        })
}

/// Turns starting at login on (writing the entry for this executable) or off (removing it).
pub fn set(on: bool) -> Result<(), String> {
    if on && !cfg!(target_os = "linux") {
        return Err("starting at login is not supported on this system yet".into());
    }
    let path = path().ok_or("cannot tell where your config dir is: set HOME or XDG_CONFIG_HOME")?;
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {} ({e})", path.display());
    if !on {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail("remove", e)),
            _ => Ok(()),
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot tell where Keyport is ({e})"))?;
    let exe = exe_for_entry(&exe)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
    }
    std::fs::write(&path, entry(Path::new(exe))).map_err(|e| fail("write", e))
}

/// The path to start: text without control characters (a line break would add lines to the
/// entry), and without the ` (deleted)` Linux adds to the running binary's path when a
/// package upgrade replaced it (the new one is at the same place).
fn exe_for_entry(exe: &Path) -> Result<&str, String> {
    let text = exe.to_str().ok_or_else(|| {
        format!(
            "Keyport's path is not text ({}): start at login cannot name it",
            exe.display()
        )
    })?;
    let text = text.strip_suffix(" (deleted)").unwrap_or(text);
    if text.chars().any(char::is_control) {
        return Err(format!(
            "Keyport's path has a control character ({text:?}): start at login cannot name it"
        ));
    }
    Ok(text)
}

/// The desktop entry that starts `exe` hidden.
pub fn entry(exe: &Path) -> String {
    format!(
        "[Desktop Entry]\n\
         Type=Application\n\
         Name=Keyport\n\
         Comment=Keeps your API credentials valid, from the tray\n\
         Exec={} {ARG}\n\
         Icon=keyport-app\n\
         Terminal=false\n\
         X-GNOME-Autostart-enabled=true\n",
        exec_quote(&exe.to_string_lossy())
    )
}

/// One argument of a desktop entry's `Exec` key, quoted as the spec asks when it needs it
/// (inside double quotes, `"`, `` ` ``, `$` and `\` are escaped with a backslash; then the
/// value's own backslashes are escaped again, since `Exec` is a string value).
fn exec_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:@".contains(c);
    let quoted = if arg.chars().all(plain) {
        arg.to_string()
    } else {
        let mut q = String::from("\"");
        for c in arg.chars() {
            if matches!(c, '"' | '`' | '$' | '\\') {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    };
    quoted.replace('\\', "\\\\").replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_starts_this_executable_hidden() {
        let e = entry(Path::new("/usr/bin/keyport-app"));
        assert!(e.starts_with("[Desktop Entry]\n"), "{e}");
        assert!(
            e.contains("\nExec=/usr/bin/keyport-app --autostarted\n"),
            "{e}"
        );
        assert!(e.contains("\nType=Application\n"), "{e}");
    }

    #[test]
    fn paths_that_cannot_be_named_are_refused_and_a_replaced_binary_is_named_again() {
        assert_eq!(
            exe_for_entry(Path::new("/usr/bin/keyport-app (deleted)")),
            Ok("/usr/bin/keyport-app")
        );
        let e = exe_for_entry(Path::new("/tmp/x\nExec=evil")).unwrap_err();
        assert!(e.contains("control character"), "{e}");
        assert!(exe_for_entry(Path::new("/opt/a\tb")).is_err());
    }

    #[test]
    fn odd_paths_are_quoted_as_the_spec_asks() {
        assert_eq!(
            exec_quote("/opt/My Apps/keyport"),
            "\"/opt/My Apps/keyport\""
        );
        assert_eq!(exec_quote("/a/$x"), "\"/a/\\\\$x\"");
        assert_eq!(exec_quote("/a/100%"), "\"/a/100%%\"");
    }

    /// The entry passes the desktop-file validator (desktop-file-utils, which
    /// scripts/install-deps.sh installs for the tests), with an odd install path too.
    #[test]
    fn the_entry_is_a_valid_desktop_file() {
        let dir = tempfile::tempdir().unwrap();
        for exe in ["/usr/bin/keyport-app", "/opt/My Apps/keyport$1/keyport-app"] {
            let path = dir.path().join(FILE);
            std::fs::write(&path, entry(Path::new(exe))).unwrap();
            let out = std::process::Command::new("desktop-file-validate")
                .arg(&path)
                .output()
                .expect("desktop-file-validate (scripts/install-deps.sh installs it)");
            assert!(
                out.status.success() && out.stdout.is_empty(),
                "{exe}: {out:?}"
            );
        }
    }
}
