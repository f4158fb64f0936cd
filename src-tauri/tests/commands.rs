//! The app's commands on Tauri's mock runtime, with the app's real context (so its real
//! capability: a command the page may not call is refused here too), a real agent host
//! (its lock, control socket and loopback helper in a temp runtime dir) and an in-memory
//! keychain (the real one is exercised by the system tests).
//!
//! One test function: the host takes the runtime dir's single-agent lock, which is per
//! process environment, so the steps run in order.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyport_app::clipboard::Clipboard;
use keyport_app::commands::helper::ACCESS_LOG_EVENT;
use keyport_app::{configure, AppOptions, AppState, AGENT_EVENT};
use keyport_core::config::ConfigStore;
use keyport_core::store::{MemoryStore, SecretBundle};
use keyport_core::{Keyport, Secret};
use serde_json::{json, Value};
use tauri::test::{get_ipc_response, mock_builder, MockRuntime, INVOKE_KEY};
use tauri::webview::InvokeRequest;
use tauri::{Listener, Manager, WebviewWindow};

fn invoke(w: &WebviewWindow<MockRuntime>, cmd: &str, args: Value) -> Result<Value, Value> {
    get_ipc_response(
        w,
        InvokeRequest {
            cmd: cmd.into(),
            callback: tauri::ipc::CallbackFn(0),
            error: tauri::ipc::CallbackFn(1),
            url: "tauri://localhost".parse().unwrap(),
            body: tauri::ipc::InvokeBody::Json(args),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|b| b.deserialize::<Value>().unwrap())
}

fn keyport(config: &std::path::Path) -> Keyport {
    Keyport::new(
        ConfigStore::new(config),
        Arc::new(MemoryStore::default()) as Arc<dyn keyport_core::store::SecretStore>,
    )
}

/// The clipboard, in memory.
#[derive(Default)]
struct Clip(Mutex<Option<String>>);

impl Clipboard for Clip {
    fn write_secret(&self, text: &str) -> Result<(), String> {
        *self.0.lock().unwrap() = Some(text.to_string());
        Ok(())
    }
    fn read(&self) -> Option<String> {
        self.0.lock().unwrap().clone()
    }
    fn clear(&self) -> Result<(), String> {
        *self.0.lock().unwrap() = None;
        Ok(())
    }
}

fn build(state: AppState) -> tauri::App<MockRuntime> {
    configure(mock_builder(), state)
        .build(tauri::generate_context!())
        .expect("the app builds on the mock runtime")
}

/// Runs the setup hook (the config's window, the tray, the agent and its event forwarding:
/// on the event loop's first turn; the mock runtime's one iteration runs it without the
/// busy loop of `run`) and answers the main window.
fn set_up(app: &mut tauri::App<MockRuntime>) -> WebviewWindow<MockRuntime> {
    #[allow(deprecated)]
    app.run_iteration(|_, _| {});
    app.get_webview_window("main").expect("the main window")
}

#[test]
fn commands_answer_from_the_embedded_agent_and_errors_have_one_shape() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::env::set_var("KEYPORT_RUNTIME_DIR", &run);
    let config = dir.path().join("config");

    let kp = keyport(&config);
    let secret_fields: BTreeSet<String> = ["api_key".to_string()].into();
    let prof = kp
        .draft("pw", "patchworks-api-key", &[], &secret_fields)
        .unwrap();
    let mut secrets = SecretBundle::default();
    secrets.insert("api_key", Secret::new("app-test-key-7c1d".to_string()));
    kp.add("pw", prof, secrets).unwrap();
    // A pasted JWT (exp 2030-01-01), for the token inspector.
    let b64 = |v: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let jwt = format!(
        "{}.{}.sig-4b1e",
        b64(r#"{"alg":"RS256"}"#),
        b64(r#"{"exp":1893456000,"sub":"analyst","scope":"read:reports"}"#)
    );
    let token_field: BTreeSet<String> = ["token".to_string()].into();
    let prof = kp.draft("jwt", "bearer", &[], &token_field).unwrap();
    let mut secrets = SecretBundle::default();
    secrets.insert("token", Secret::new(jwt.clone()));
    kp.add("jwt", prof, secrets).unwrap();

    let clip = Arc::new(Clip::default());
    let mut app = build(AppState::new(
        Ok(kp),
        AppOptions {
            notifications: false,
            helper: true,
            helper_port: Some(0),
            tray: false,
            clipboard: clip.clone(),
            ..AppOptions::default()
        },
    ));
    let (tx, rx) = mpsc::channel::<Value>();
    app.listen_any(AGENT_EVENT, move |e| {
        let _ = tx.send(serde_json::from_str(e.payload()).unwrap());
    });
    let w = set_up(&mut app);
    let first = rx.recv_timeout(Duration::from_secs(20)).expect("an event");
    assert_eq!(first["event"], "snapshot", "{first}");
    assert_eq!(first["profiles"][1]["name"], "pw", "{first}");

    // The profile list joins the config with the agent's state; no secret in it.
    let rows = invoke(&w, "list_profiles", json!({})).expect("list_profiles");
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    let row = &rows[1];
    assert_eq!(row["name"], "pw");
    assert_eq!(row["service"], "Patchworks");
    assert_eq!(row["base_url"], "https://app.wearepatchworks.com");
    assert_eq!(row["status"]["state"], "valid", "{row}");
    assert!(!rows.to_string().contains("app-test-key-7c1d"));

    // One profile's settings, and for its secrets only whether they are set.
    let v = invoke(&w, "show_profile", json!({"name": "pw"})).expect("show_profile");
    assert_eq!(v["secrets"], json!({"api_key": true}), "{v}");
    assert_eq!(v["settings"]["base_url"], "https://app.wearepatchworks.com");
    assert_eq!(v["keychain_item"], "keyport/pw");
    assert!(!v.to_string().contains("app-test-key-7c1d"));
    let e = invoke(&w, "show_profile", json!({"name": "nope"})).unwrap_err();
    assert_eq!(e["kind"], "not_found", "{e}");

    // The agent's events reach the page: a profile added elsewhere (as `keyport profile
    // add` does, then telling the agent) arrives as an `added` event.
    let other = keyport(&config);
    let prof = other
        .draft("pw2", "patchworks-api-key", &[], &secret_fields)
        .unwrap();
    let mut secrets = SecretBundle::default();
    secrets.insert("api_key", Secret::new("app-test-key-2".to_string()));
    other.add("pw2", prof, secrets).unwrap();
    let state = app.state::<AppState>();
    let agent = tauri::async_runtime::block_on(state.hosted())
        .unwrap()
        .agent
        .clone();
    tauri::async_runtime::block_on(agent.changed(Some("pw2"))).unwrap();
    let added = loop {
        let ev = rx.recv_timeout(Duration::from_secs(20)).expect("an event");
        if ev["event"] == "added" {
            break ev;
        }
    };
    assert_eq!(added["profile"]["name"], "pw2", "{added}");

    // Renew now answers the profile's state after the renewal.
    let renewed = invoke(&w, "renew", json!({"name": "pw"})).expect("renew");
    assert_eq!(renewed["name"], "pw");
    assert_eq!(renewed["state"], "valid");
    let missing = invoke(&w, "renew", json!({"name": "nope"})).unwrap_err();
    assert_eq!(missing["kind"], "not_found", "{missing}");
    assert!(missing["message"].as_str().unwrap().contains("nope"));

    // The token inspector: a JWT decoded (unverified), an API key opaque; never the token.
    let t = invoke(&w, "inspect_token", json!({"name": "jwt"})).expect("inspect");
    assert_eq!(t["header"], "Authorization");
    assert_eq!(t["scheme_word"], "Bearer");
    assert_eq!(t["inspection"]["kind"], "jwt", "{t}");
    assert_eq!(t["inspection"]["expires_at"], "2030-01-01T00:00:00Z");
    assert_eq!(t["inspection"]["subject"], "analyst");
    assert_eq!(t["inspection"]["scopes"], json!(["read:reports"]));
    assert!(!t.to_string().contains("sig-4b1e") && !t.to_string().contains(&jwt));
    let k = invoke(&w, "inspect_token", json!({"name": "pw"})).expect("inspect");
    assert_eq!(k["inspection"], json!({"kind": "opaque", "length": 17}));
    assert!(!k.to_string().contains("app-test-key-7c1d"));
    let e = invoke(&w, "inspect_token", json!({"name": "nope"})).unwrap_err();
    assert_eq!(e["kind"], "not_found");
    // Reveal token: the token itself, on request, without its scheme word.
    let r = invoke(&w, "reveal_token", json!({"name": "jwt"})).unwrap();
    assert_eq!(r["value"], jwt.as_str(), "{r}");
    assert_eq!(r["hide_after_secs"], 10);

    // Delete removes the profile (the window test checks the real keychain item goes too).
    invoke(&w, "delete_profile", json!({"name": "jwt"})).expect("delete");
    let names: Vec<Value> = invoke(&w, "list_profiles", json!({}))
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert!(!names.contains(&json!("jwt")), "{names:?}");
    let e = invoke(&w, "delete_profile", json!({"name": "jwt"})).unwrap_err();
    assert_eq!(e["kind"], "not_found", "{e}");

    // The add form: presets with their field metadata, the seed services first.
    let presets = invoke(&w, "presets", json!({})).expect("presets");
    let services: Vec<&str> = presets
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["service"].as_str().unwrap())
        .collect();
    let first_generic = services.iter().position(|s| *s == "generic").unwrap();
    assert!(
        services[first_generic..].iter().all(|s| *s == "generic"),
        "{services:?}"
    );
    assert_eq!(services[0], "Improvado", "{services:?}");
    let widget = presets
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "airbyte-widget")
        .unwrap();
    let parent = widget["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "parent")
        .unwrap();
    assert_eq!(parent["kind"], "profile");
    assert_eq!(parent["parent_presets"], json!(["airbyte-operator"]));
    assert!(widget["seed"].as_str().unwrap().starts_with("004_"));
    let save_of = |name: &str| {
        presets
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["save"]
            .clone()
    };
    assert_eq!(save_of("improvado"), "fetch");
    assert_eq!(save_of("4insight-user"), "login");
    assert_eq!(save_of("patchworks-api-key"), "static");

    // Checks give the core's message and the field it is about; nothing is saved.
    let e = invoke(
        &w,
        "check_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-login",
            "settings": {"base_url": "http://pw.example.com", "username": "u"},
            "secrets": {"password": "pw-secret-31"}}}),
    )
    .unwrap_err();
    assert_eq!(e["kind"], "invalid", "{e}");
    assert_eq!(e["field"], "base_url", "{e}");
    let e = invoke(
        &w,
        "check_profile",
        json!({"form": {"name": "Not A Name", "preset": "patchworks-login"}}),
    )
    .unwrap_err();
    assert_eq!(e["field"], "name", "{e}");
    // An empty secret is one not typed in.
    let e = invoke(
        &w,
        "check_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-login",
            "settings": {"username": "u"}, "secrets": {"password": ""}}}),
    )
    .unwrap_err();
    assert_eq!(e["field"], "password", "{e}");
    invoke(
        &w,
        "check_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-login",
            "settings": {"username": "u"}, "secrets": {"password": "x"}}}),
    )
    .expect("a complete form checks");

    // Saving a token profile runs one token call: here its endpoint is down, so the
    // profile is saved and the call's failure is said.
    let saved = invoke(
        &w,
        "add_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-login",
            "settings": {"base_url": "http://127.0.0.1:9", "username": "u"},
            "secrets": {"password": "pw-secret-31"}}}),
    )
    .expect("add_profile");
    assert_eq!(saved["name"], "pl");
    assert_eq!(saved["fetch_error"]["kind"], "unavailable", "{saved}");
    assert_eq!(saved["needs_login"], false);
    let v = invoke(&w, "show_profile", json!({"name": "pl"})).unwrap();
    assert_eq!(v["secrets"], json!({"password": true}), "{v}");
    assert_eq!(v["settings"]["username"], "u");
    let on_disk = std::fs::read_to_string(config.join(keyport_core::config::FILE_NAME)).unwrap();
    assert!(on_disk.contains("[profiles.pl]") && !on_disk.contains("pw-secret-31"));
    let e = invoke(
        &w,
        "add_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-api-key", "secrets": {"api_key": "x"}}}),
    )
    .unwrap_err();
    assert_eq!(
        (e["kind"].as_str(), e["field"].as_str()),
        (Some("exists"), Some("name"))
    );
    // A static profile is valid at once.
    let saved = invoke(
        &w,
        "add_profile",
        json!({"form": {"name": "pk", "preset": "patchworks-api-key", "secrets": {"api_key": "pk-9"}}}),
    )
    .expect("add a static profile");
    assert_eq!(saved["status"]["state"], "valid", "{saved}");
    assert_eq!(saved["fetch_error"], Value::Null);

    // Edit: settings change together, an empty secret keeps its value, and a bad value
    // refuses the whole edit.
    let e = invoke(
        &w,
        "edit_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-login",
            "settings": {"base_url": "ftp://x", "username": "u2"}}}),
    )
    .unwrap_err();
    assert_eq!(e["field"], "base_url", "{e}");
    assert_eq!(
        invoke(&w, "show_profile", json!({"name": "pl"})).unwrap()["settings"]["username"],
        "u"
    );
    let saved = invoke(
        &w,
        "edit_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-login",
            "settings": {"base_url": "http://127.0.0.1:9", "username": "u2"},
            "secrets": {"password": ""}}}),
    )
    .expect("edit_profile");
    assert_eq!(saved["name"], "pl");
    let v = invoke(&w, "show_profile", json!({"name": "pl"})).unwrap();
    assert_eq!(v["settings"]["username"], "u2");
    assert_eq!(v["secrets"], json!({"password": true}), "{v}");
    let e = invoke(
        &w,
        "edit_profile",
        json!({"form": {"name": "pl", "preset": "patchworks-api-key"}}),
    )
    .unwrap_err();
    assert_eq!(e["field"], "preset", "{e}");

    // The helper listens on loopback, on the port asked for (any free one here).
    let helper = invoke(&w, "helper_info", json!({})).expect("helper_info");
    let port = helper["port"].as_u64().expect("a port");
    assert_eq!(helper["url"], format!("http://127.0.0.1:{port}"));
    assert_eq!(helper["error"], Value::Null, "{helper}");

    // Keys: the page gets names and scopes; the secrets go to the clipboard only.
    let keys = invoke(&w, "helper_keys", json!({})).expect("helper_keys");
    assert_eq!(keys[0]["name"], "default", "{keys}");
    let copied = invoke(&w, "copy_helper_key", json!({})).expect("copy_helper_key");
    assert_eq!(copied["what"], "the default helper key", "{copied}");
    assert_eq!(copied["clears_in_secs"], 45);
    let default_key = clip.read().expect("the key on the clipboard");
    assert_eq!(default_key.len(), 64);
    assert_eq!(
        std::fs::read_to_string(run.join("helper.key"))
            .unwrap()
            .trim(),
        default_key,
        "the key scripts read"
    );
    let made = invoke(
        &w,
        "create_helper_key",
        json!({"name": "bi", "profiles": ["pw"], "readOnly": true}),
    )
    .expect("create_helper_key");
    let bi_key = clip.read().unwrap();
    assert_ne!(bi_key, default_key);
    assert!(!made.to_string().contains(&bi_key) && !keys.to_string().contains(&default_key));
    assert_eq!(made["copied"]["what"], "the helper key 'bi'");
    let bi = made["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bi")
        .expect("bi listed");
    assert_eq!(bi["profiles"], json!(["pw"]));
    assert_eq!(bi["read_only"], true);
    let e = invoke(
        &w,
        "create_helper_key",
        json!({"name": "bi", "profiles": ["pw"], "readOnly": false}),
    )
    .unwrap_err();
    assert_eq!(
        (e["kind"].as_str(), e["field"].as_str()),
        (Some("invalid"), Some("key name")),
        "{e}"
    );
    assert_eq!(
        clip.read().unwrap(),
        bi_key,
        "a refused create copies nothing"
    );

    // The access log, watched: the ring first, then batches as requests arrive. The
    // scoped key is refused outside its scope and for writes (before any upstream call).
    let (log_tx, log_rx) = mpsc::channel::<Value>();
    app.listen_any(ACCESS_LOG_EVENT, move |e| {
        let _ = log_tx.send(serde_json::from_str(e.payload()).unwrap());
    });
    invoke(&w, "watch_access_log", json!({})).expect("watch_access_log");
    let http = reqwest::blocking::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let status = |method: reqwest::Method, path: &str, key: &str| {
        http.request(method, format!("{base}{path}"))
            .header("X-Keyport-Key", key)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(reqwest::Method::GET, "/pk/", &bi_key), 403);
    assert_eq!(status(reqwest::Method::POST, "/pw/x", &bi_key), 403);
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let batch = log_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("a batch");
        seen.extend(batch["entries"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(seen[0]["key"], "bi", "{seen:?}");
    assert_eq!(seen[0]["refusal"], "key_not_for_profile", "{seen:?}");
    assert_eq!(seen[1]["refusal"], "read_only_key", "{seen:?}");
    assert!(!format!("{seen:?}").contains(&bi_key));
    let ring = invoke(&w, "watch_access_log", json!({})).unwrap();
    assert_eq!(ring.as_array().unwrap().len(), 2, "{ring}");
    invoke(&w, "unwatch_access_log", json!({})).expect("unwatch");

    // Revoked: the key is refused; rotated: the old default key is refused.
    let after = invoke(&w, "revoke_helper_key", json!({"name": "bi"})).expect("revoke");
    assert!(!after.to_string().contains("\"bi\""), "{after}");
    assert_eq!(status(reqwest::Method::GET, "/pw/", &bi_key), 401);
    let rotated = invoke(&w, "rotate_helper_key", json!({})).expect("rotate");
    assert_eq!(rotated["copied"]["what"], "the new default helper key");
    let new_default = clip.read().unwrap();
    assert_ne!(new_default, default_key);
    assert_eq!(status(reqwest::Method::GET, "/pk/", &default_key), 401);
    let e = invoke(&w, "revoke_helper_key", json!({"name": "default"})).unwrap_err();
    assert_eq!(e["kind"], "invalid", "{e}");

    // Copy header: the header line goes to the clipboard, the page learns only which.
    let copied = invoke(&w, "copy_header", json!({"name": "pk"})).expect("copy_header");
    let line = clip.read().unwrap();
    assert!(line.ends_with(": pk-9"), "{line}");
    let header = line.split(": ").next().unwrap();
    assert_eq!(
        copied["what"],
        format!("the {header} header of pk"),
        "{copied}"
    );
    assert!(!copied.to_string().contains("pk-9"));
    let e = invoke(&w, "copy_header", json!({"name": "nope"})).unwrap_err();
    assert_eq!(e["kind"], "not_found", "{e}");
    assert_eq!(clip.read().unwrap(), line, "a refused copy copies nothing");

    // Reveal: a secret, on request, with how soon the page masks it again.
    let r = invoke(
        &w,
        "reveal_secret",
        json!({"name": "pw", "field": "api_key"}),
    )
    .unwrap();
    assert_eq!(
        r,
        json!({"value": "app-test-key-7c1d", "hide_after_secs": 10})
    );
    let e = invoke(
        &w,
        "reveal_secret",
        json!({"name": "pw", "field": "base_url"}),
    )
    .unwrap_err();
    assert_eq!(e["kind"], "invalid", "not a secret: {e}");

    // Settings: saved to the config and put in force at once; a wrong one changes nothing.
    let xdg = dir.path().join("xdg");
    std::env::set_var("XDG_CONFIG_HOME", &xdg);
    let before = invoke(&w, "settings", json!({})).expect("settings");
    assert_eq!(
        before,
        json!({"notifications": true, "lead": 120, "port": 7137, "allowed_origins": [], "autostart": false})
    );
    let helper = tauri::async_runtime::block_on(state.hosted())
        .unwrap()
        .helper
        .clone()
        .unwrap();
    let old_port = helper.status().port.unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let new_port = free.local_addr().unwrap().port();
    let mut want = json!({
        "notifications": false, "lead": 300, "port": new_port,
        "allowed_origins": ["http://localhost:5173"], "autostart": true
    });
    // the port in use (held above): refused at its field, nothing saved, the helper stays
    let e = invoke(&w, "save_settings", json!({"settings": want})).unwrap_err();
    assert_eq!(e["field"], "port", "{e}");
    assert!(e["message"].as_str().unwrap().contains("in use"), "{e}");
    assert_eq!(invoke(&w, "settings", json!({})).unwrap(), before);
    assert_eq!(helper.status().port, Some(old_port));
    drop(free);
    want["allowed_origins"] = json!(["http://localhost:5173/"]);
    let e = invoke(&w, "save_settings", json!({"settings": want})).unwrap_err();
    assert_eq!(e["field"], "allowed_origins", "{e}");
    assert_eq!(
        helper.status().port,
        Some(old_port),
        "checked before moving"
    );
    want["allowed_origins"] = json!(["http://localhost:5173"]);
    let saved = invoke(&w, "save_settings", json!({"settings": want})).expect("save_settings");
    assert_eq!(saved, want);
    assert_eq!(invoke(&w, "settings", json!({})).unwrap(), want);
    assert_eq!(
        helper.status().port,
        Some(new_port),
        "the helper moved at once"
    );
    let cfg = keyport(&config).load().unwrap();
    assert_eq!((cfg.agent.lead, cfg.agent.notifications), (300, false));
    let entry = std::fs::read_to_string(xdg.join("autostart/keyport.desktop")).unwrap();
    assert!(entry.contains(" --autostarted\n"), "{entry}");
    want["autostart"] = json!(false);
    invoke(&w, "save_settings", json!({"settings": want})).expect("save_settings");
    assert!(!xdg.join("autostart/keyport.desktop").exists());

    // Pause: every request refused with Keyport's own kind, until resumed.
    let info = invoke(&w, "pause_helper", json!({"paused": true})).expect("pause");
    assert_eq!(info["paused"], true);
    let r = http
        .get(format!("http://127.0.0.1:{new_port}/pw/"))
        .header("X-Keyport-Key", &new_default)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(r.headers()["x-keyport-error"], "helper_paused");
    let info = invoke(&w, "pause_helper", json!({"paused": false})).expect("resume");
    assert_eq!(info["paused"], false);

    // The page's first view: it gets the profile chosen in the tray that opened it, once.
    state.select("pw");
    assert_eq!(invoke(&w, "page_ready", json!({})).unwrap(), json!("pw"));
    assert_eq!(invoke(&w, "page_ready", json!({})).unwrap(), Value::Null);

    // A command the capability does not grant is refused.
    assert!(invoke(&w, "plugin:event|emit", json!({"event": "x"})).is_err());

    // A second app in the same session cannot host a second agent: every command says so,
    // in the one error shape, with the first one's pid.
    let mut app2 = build(AppState::new(
        Ok(keyport(&config)),
        AppOptions {
            notifications: false,
            helper: false,
            helper_port: None,
            tray: false,
            ..AppOptions::default()
        },
    ));
    let w2 = set_up(&mut app2);
    let e = invoke(&w2, "list_profiles", json!({})).unwrap_err();
    assert_eq!(e["kind"], "agent_running", "{e}");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains(&std::process::id().to_string()));
    assert_eq!(
        e.as_object().unwrap().len(),
        2,
        "only kind and message: {e}"
    );

    // Stopping frees the session's agent lock and removes agent.json.
    assert!(run.join("agent.json").exists());
    tauri::async_runtime::block_on(state.stop());
    assert!(!run.join("agent.json").exists());
}
