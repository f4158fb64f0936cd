//! The Debian package as `scripts/build-deb.sh` builds it: the app with its desktop entry
//! and icons, the command line beside it, and what it depends on; unpacked, its `keyport`
//! runs. (Installing it would change the machine the tests run on: `dpkg -x` unpacks it
//! into a temp dir instead.)
//!
//! Ignored by a plain `cargo test` because it needs the package built;
//! `./scripts/test.sh` builds it (a debug build) and runs it with `--include-ignored`.

use std::path::PathBuf;
use std::process::Command;

use keyport_system_tests::{bin_dir, Keyport};

/// The package under target/<profile>/bundle/deb.
fn deb() -> PathBuf {
    let dir = bin_dir().join("bundle/deb");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}: run scripts/build-deb.sh", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb: run scripts/build-deb.sh")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "needs the package built: run ./scripts/test.sh, or scripts/build-deb.sh then cargo test -- --include-ignored"]
fn the_deb_carries_the_app_its_desktop_entry_icons_and_the_cli() {
    let deb = deb();
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/keyport-app",
        "./usr/bin/keyport",
        "./usr/bin/keyport-cli",
        "./usr/share/applications/Keyport.desktop",
        "./usr/share/icons/hicolor/32x32/apps/keyport-app.png",
        "./usr/share/icons/hicolor/128x128/apps/keyport-app.png",
    ] {
        let name = path.trim_start_matches("./");
        assert!(
            listing
                .lines()
                .any(|l| l.ends_with(path) || l.ends_with(name)),
            "{path} is not in the package:\n{listing}"
        );
    }
    let field = |f: &str| run(Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(f));
    assert_eq!(field("Package").trim(), "keyport");
    let depends = field("Depends");
    for d in [
        "libwebkit2gtk-4.1-0",
        "libgtk-3-0",
        "libayatana-appindicator3-1",
        "libdbus-1-3",
    ] {
        assert!(depends.contains(d), "Depends: {depends}");
    }
    assert!(field("Recommends").contains("gnome-keyring"));

    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(root.path()));
    let entry = root.path().join("usr/share/applications/Keyport.desktop");
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(
        text.contains("\nExec=keyport-app\n") && text.contains("\nIcon=keyport-app\n"),
        "{text}"
    );
    run(Command::new("desktop-file-validate").arg(&entry));

    // The unpacked command line works (its own config dir: nothing of this machine's).
    let kp = Keyport::new();
    let presets = run(kp
        .env(&mut Command::new(root.path().join("usr/bin/keyport")))
        .args(["presets", "--json"]));
    assert!(presets.contains("\"improvado-basic\""), "{presets}");
}
