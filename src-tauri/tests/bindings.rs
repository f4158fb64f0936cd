//! The page's TypeScript types (`ui/src/bindings/`) are generated from the Rust types the
//! commands answer and the events carry, so the two cannot drift apart: this test
//! generates them again and fails when the committed files differ.
//!
//! After changing one of those types: `KEYPORT_UPDATE_BINDINGS=1 cargo test -p keyport-app
//! --test bindings`, then commit `ui/src/bindings/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ts_rs::{Config, TS};

/// Every type the page receives, with its dependencies.
fn export_all(dir: &Path) {
    // u64 and friends arrive as JSON numbers, not bigints.
    let cfg = Config::new().with_large_int("number").with_out_dir(dir);
    macro_rules! export {
        ($($t:ty),* $(,)?) => { $( <$t>::export_all(&cfg).unwrap(); )* };
    }
    export!(
        keyport_app::commands::profiles::ProfileRow,
        keyport_core::ProfileView,
        keyport_app::commands::profiles::PresetInfo,
        keyport_app::commands::profiles::Saved,
        keyport_app::commands::tokens::TestResult,
        keyport_app::commands::tokens::TokenDetails,
        keyport_app::commands::tokens::Revealed,
        keyport_app::commands::settings::Settings,
        keyport_app::commands::helper::Snippets,
        keyport_app::commands::helper::KeyChange,
        keyport_app::commands::helper::AccessBatch,
        keyport_core::helper::keys::KeyInfo,
        keyport_core::helper::log::Entry,
        keyport_app::clipboard::Copied,
        keyport_core::helper::HelperInfo,
        keyport_core::agent::AgentEvent,
        keyport_core::ErrorInfo,
    );
}

/// Every `.ts` file under `dir`, by its path relative to `dir` (ts-rs puts serde_json's
/// types in a subdirectory).
fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for p in rd.map(|e| e.unwrap().path()) {
            if p.is_dir() {
                walk(base, &p, out);
            } else if p.extension().is_some_and(|x| x == "ts") {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn the_committed_page_types_match_the_rust_types() {
    let fresh = tempfile::tempdir().unwrap();
    export_all(fresh.path());
    let want = read_dir(fresh.path());
    assert!(
        want.contains_key("AgentEvent.ts") && want.contains_key("ProfileRow.ts"),
        "ts-rs wrote {:?}",
        want.keys()
    );
    let committed_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ui/src/bindings");
    if std::env::var_os("KEYPORT_UPDATE_BINDINGS").is_some() {
        let _ = std::fs::remove_dir_all(&committed_dir);
        std::fs::create_dir_all(&committed_dir).unwrap();
        for (name, text) in &want {
            let path = committed_dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    let have = read_dir(&committed_dir);
    let stale: std::collections::BTreeSet<&String> = want
        .keys()
        .chain(have.keys())
        .filter(|k| want.get(*k) != have.get(*k))
        .collect();
    assert!(
        stale.is_empty(),
        "ui/src/bindings is out of date ({stale:?}): run \
         KEYPORT_UPDATE_BINDINGS=1 cargo test -p keyport-app --test bindings and commit it"
    );
}
