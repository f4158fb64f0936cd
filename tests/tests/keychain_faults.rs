//! Keychain faults, each in a private D-Bus session of its own so the shared test keyring
//! is never locked under the other tests: a locked collection and a bus with no Secret
//! Service. Both must give one line that says what to do, and damage nothing.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use keyport_system_tests::*;

fn headless_session() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/headless-session.sh")
}

#[test]
fn locked_keychain_is_a_clear_error_and_keeps_the_data() {
    let kp = Keyport::new();
    let script = r#"
set -e
printf 'pw-locked-1\n' | "$KEYPORT" profile add locked --preset basic --set username=u --secret password
dbus-send --session --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets \
  org.freedesktop.Secret.Service.Lock array:objpath:/org/freedesktop/secrets/collection/login >/dev/null
set +e
"$KEYPORT" header locked; echo "header-rc=$?"
printf 'pw-new\n' | "$KEYPORT" secret set locked password; echo "set-rc=$?"
"$KEYPORT" profile rm locked; echo "rm-rc=$?"
"#;
    let o = Command::new(headless_session())
        .args(["bash", "-c", script])
        .env("KEYPORT", bin("keyport"))
        .env("KEYPORT_CONFIG_DIR", kp.config_dir())
        .env("HEADLESS_X", "0")
        .env("HEADLESS_NOTIFY", "none")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{out}\n{err}");
    for rc in ["header-rc=1", "set-rc=1", "rm-rc=1"] {
        assert!(out.contains(rc), "{rc} missing: {out}\n{err}");
    }
    let locked_lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("keyport: the keychain is locked"))
        .collect();
    assert_eq!(locked_lines.len(), 3, "{err}");
    assert!(locked_lines[0].contains("unlock"), "{err}");
    // The failed rm kept the profile, so nothing is orphaned once the keyring is unlocked.
    let config = std::fs::read_to_string(kp.config_file()).unwrap();
    assert!(config.contains("[profiles.locked]"), "{config}");
    assert!(!config.contains("pw-new") && !config.contains("pw-locked-1"));
}

#[test]
fn a_bus_without_secret_service_says_what_to_start() {
    let dir = tempfile::tempdir().unwrap();
    // A session bus like the desktop's but with no service activation and no keyring on it.
    let conf = dir.path().join("bus.conf");
    std::fs::write(
        &conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:dir={}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>"#,
            dir.path().display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new("dbus-daemon")
        .args(["--nofork", "--print-address=1", "--config-file"])
        .arg(&conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon (apt-get install dbus)");
    let mut address = String::new();
    // keep the pipe open while the daemon runs
    let mut daemon_out = std::io::BufReader::new(daemon.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut daemon_out, &mut address).unwrap();

    let kp = Keyport::new();
    let o = kp
        .command()
        .args([
            "profile",
            "add",
            "p",
            "--preset",
            "patchworks-api-key",
            "--secret",
            "api_key",
        ])
        .env("DBUS_SESSION_BUS_ADDRESS", address.trim())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"key-1\n")?;
            c.wait_with_output()
        })
        .unwrap();
    daemon.kill().ok();
    daemon.wait().ok();
    drop(daemon_out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no Secret Service on the session bus: start gnome-keyring"),
        "{err}"
    );
    assert!(kp.config_bytes().is_empty(), "nothing may be saved");
}
