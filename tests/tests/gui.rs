//! The desktop app's real window, under Xvfb, driven through tauri-driver + WebKitWebDriver,
//! with the session's real keychain, notification sink and StatusNotifierWatcher: the app
//! hosts the agent, the window follows its state, the CLI talks to it, the tray registers,
//! SIGTERM stops it cleanly, and no secret reaches the page.
//!
//! Ignored by a plain `cargo test` because it needs the app binary and tauri-driver built;
//! `./scripts/test.sh` builds both and runs it with `--include-ignored`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use keyport_system_tests::fakes::{Fake, Lifetimes};
use keyport_system_tests::oidc::eventually;
use keyport_system_tests::*;
use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tauri_driver() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let p = home.join("bin/tauri-driver");
    assert!(
        p.exists(),
        "tauri-driver is missing: cargo install tauri-driver --locked (./scripts/test.sh does)"
    );
    p
}

struct Driver {
    child: Child,
    base: String,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(s) = &self.session {
            let _ = ureq::delete(&format!("{}/session/{s}", self.base)).call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(kp: &Keyport, helper_port: u16) -> Self {
        Self::start_with(kp, helper_port, &[])
    }

    /// With more environment for the app (`BROWSER`, say).
    fn start_with(kp: &Keyport, helper_port: u16, env: &[(&str, &str)]) -> Self {
        let (port, native) = (free_port(), free_port());
        let mut cmd = Command::new(tauri_driver());
        // (passed on to WebKitWebDriver and the app it starts)
        kp.env(&mut cmd)
            .env("KEYPORT_HELPER_PORT", helper_port.to_string())
            .envs(env.iter().copied());
        let child = cmd
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tauri-driver");
        // tauri-driver listens before WebKitWebDriver does: wait for both.
        let deadline = Instant::now() + Duration::from_secs(30);
        for p in [port, native] {
            while TcpStream::connect(("127.0.0.1", p)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "tauri-driver / WebKitWebDriver did not open port {p}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            session: None,
        }
    }

    fn post(&self, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        match ureq::post(&url)
            .timeout(Duration::from_secs(60))
            .send_json(body)
        {
            Ok(r) => r.into_json::<Value>().unwrap()["value"].clone(),
            Err(ureq::Error::Status(code, r)) => {
                panic!("{url}: {code} {}", r.into_string().unwrap_or_default())
            }
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn get(&self, path: &str) -> Value {
        let r = ureq::get(&format!("{}{path}", self.base)).call().unwrap();
        r.into_json::<Value>().unwrap()["value"].clone()
    }

    fn open(&mut self, app: &std::path::Path) {
        let v = self.post(
            "/session",
            json!({"capabilities": {"alwaysMatch": {"browserName": "wry", "tauri:options": {"application": app}}}}),
        );
        self.session = Some(v["sessionId"].as_str().expect("session id").to_string());
    }

    fn script(&self, js: &str) -> Value {
        let s = self.session.as_ref().unwrap();
        self.post(
            &format!("/session/{s}/execute/sync"),
            json!({"script": js, "args": []}),
        )
    }

    /// Saves a screenshot for people reviewing a change under target/…/gui-screenshots
    /// (after two frames, or it may show a stale one); docs/screenshots has copies.
    fn screenshot(&self, file: &str) {
        self.script(
            "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
        );
        let s = self.session.as_ref().unwrap();
        let png = self.get(&format!("/session/{s}/screenshot"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"));
        let out = bin_dir().join("gui-screenshots");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(file), bytes).unwrap();
    }

    /// The WebDriver reference of the element `css` selects.
    /// Waits for it to be there first.
    fn element(&self, css: &str) -> String {
        self.wait_for(&format!(
            "return document.querySelector({}) !== null",
            json!(css)
        ));
        let s = self.session.as_ref().unwrap();
        let v = self.post(
            &format!("/session/{s}/element"),
            json!({"using": "css selector", "value": css}),
        );
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// Types `text` into the input `css` selects, as keystrokes over its whole value
    /// selected (as a person replaces a value; WebDriver's own clear sends no input event,
    /// so the page would not see it).
    fn type_into(&self, css: &str, text: &str) {
        let s = self.session.as_ref().unwrap();
        let e = self.element(css);
        self.script(&format!(
            "const e = document.querySelector({}); e.focus(); e.select(); return true",
            json!(css)
        ));
        let keys = if text.is_empty() { "\u{E003}" } else { text };
        self.post(
            &format!("/session/{s}/element/{e}/value"),
            json!({"text": keys}),
        );
    }

    /// Clicks the element `css` selects, as the pointer would.
    fn click(&self, css: &str) {
        let s = self.session.as_ref().unwrap();
        let e = self.element(css);
        self.post(&format!("/session/{s}/element/{e}/click"), json!({}));
    }

    /// The text of the element `css` selects (none if there is none).
    fn text(&self, css: &str) -> Value {
        self.script(&format!(
            "const e = document.querySelector({}); return e ? e.textContent : null",
            json!(css)
        ))
    }

    /// Selects profile `name` in the list and waits for its detail.
    fn select(&self, name: &str) {
        self.script(&format!(
            "document.querySelector('#profiles li[data-profile=\"{name}\"] button').click(); return true"
        ));
        self.wait_for(&format!(
            "return document.getElementById('detail')?.dataset.profile === '{name}'"
        ));
    }

    /// Clicks the selected profile's action button (`renew`, `test`, `inspect`, `delete`).
    fn act(&self, action: &str) {
        self.script(&format!(
            "document.querySelector('#detail button[data-action=\"{action}\"]').click(); return true"
        ));
    }

    fn wait_for(&self, js: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.script(js);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {js}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// One app per desktop session (single-instance): the window tests take turns.
static ONE_APP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_app() -> std::sync::MutexGuard<'static, ()> {
    ONE_APP.lock().unwrap_or_else(|e| e.into_inner())
}

/// The app's pid, from the `agent.json` its agent host wrote.
fn agent_pid(kp: &Keyport) -> Option<u32> {
    let text = std::fs::read_to_string(kp.dir.path().join("run/agent.json")).ok()?;
    serde_json::from_str::<Value>(&text).ok()?["pid"]
        .as_u64()
        .map(|p| p as u32)
}

/// The session's tray records (StatusNotifierWatcher registrations and item properties).
fn tray_records() -> Vec<Value> {
    assert!(
        std::env::var_os("NOTIFY_SINK_LOG").is_some(),
        "a headless session"
    );
    sink_records()
        .into_iter()
        .filter(|r| {
            r["method"] == "RegisterStatusNotifierItem" || r["method"] == "(item properties)"
        })
        .collect()
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn the_app_hosts_the_agent_and_the_window_follows_it() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let (a, b, c) = (
        unique("gui-frappe"),
        unique("gui-patchworks"),
        unique("gui-late"),
    );
    kp.add(
        &a,
        "frappe-token",
        &[
            "--set",
            "base_url=https://erp.example.com",
            "--set",
            "api_key=k",
        ],
        &[("api_secret", "gui-secret-5e1f")],
    );
    kp.add(
        &b,
        "patchworks-api-key",
        &[],
        &[("api_key", "gui-key-93ab")],
    );
    // Improvado against a fake of its API (seed 000): a workspace token that lives 30 min.
    let fake = Fake::start(Lifetimes::default());
    let imp = unique("gui-improvado");
    fake.add_improvado(&kp, &imp, 1800);
    let tray_before = tray_records().len();

    let mut d = Driver::start(&kp, 0);
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");
    // Both profiles become valid in the window, from the embedded agent's state.
    d.wait_for(
        "const r = document.querySelectorAll('#profiles li[data-profile]'); \
         return r.length === 3 && Array.from(r).every(t => t.dataset.state === 'valid')",
    );
    let rows = d.script(&format!(
        "return Array.from(document.querySelectorAll('#profiles li[data-profile]')) \
         .filter(r => r.dataset.profile !== '{imp}') \
         .map(r => ['.entry-name', '.badge', '.countdown', '.entry-preset'] \
           .map(c => r.querySelector(c).textContent))"
    ));
    assert_eq!(
        rows,
        json!([
            [a, "valid", "", "frappe-token"],
            [b, "valid", "", "patchworks-api-key"],
        ])
    );
    let groups = d.script(
        "return Array.from(document.querySelectorAll('#profiles .group-title')).map(r => r.textContent)",
    );
    assert_eq!(groups, json!(["Frappe", "Improvado", "Patchworks"]));
    // The first profile is selected: its settings, and its secret as set, never its value.
    d.wait_for(&format!(
        "const d = document.getElementById('detail'); return d && d.dataset.profile === '{a}' \
         && d.querySelector('[data-field=\"secret:api_secret\"]')?.textContent === 'set'"
    ));
    assert_eq!(
        d.script(
            "return document.querySelector('#detail dd[data-field=\"base_url\"]').textContent"
        ),
        json!("https://erp.example.com")
    );
    d.select(&b);
    assert_eq!(
        d.script(
            "return document.querySelector('#detail dd[data-field=\"base_url\"]').textContent"
        ),
        json!("https://app.wearepatchworks.com")
    );
    // The token's expiry counts down (30 min from the fetch).
    let exp = d.script(&format!(
        "return document.querySelector('#profiles li[data-profile=\"{imp}\"] .countdown').textContent"
    ));
    let exp = exp.as_str().unwrap();
    assert!(
        exp.starts_with("in 29 min") || exp == "in 30 min 0 s",
        "{exp}"
    );

    // Test: one GET through the helper to the preset's test path; the API saw the token.
    d.select(&imp);
    d.act("test");
    let outcome = d.wait_for(
        "const o = document.querySelector('#detail .outcome').textContent; \
         return o.length && o !== '…' ? o : null",
    );
    assert!(outcome.as_str().unwrap().starts_with("200 · "), "{outcome}");
    let got = fake
        .log()
        .into_iter()
        .find(|l| l.method == "GET" && l.path == "/api/v3/datasources")
        .expect("the test GET reached the API");
    assert!(got.authorization.unwrap_or_default().starts_with("Bearer "));

    // Renew now: one more token call, and the row says so.
    let tokens = fake.count("/api/v3/token");
    d.act("renew");
    d.wait_for(
        "return document.querySelector('#detail .outcome').textContent === 'renewed: valid'",
    );
    assert_eq!(fake.count("/api/v3/token"), tokens + 1);

    // Use: the commands the window offers work as pasted, with the real clients (curl,
    // HTTPie, Python requests), reading the key through `keyport helper key`.
    d.wait_for("return document.querySelectorAll('#use pre[data-snippet]').length === 3");
    let snippet = |k: &str| {
        d.script(&format!(
            "return document.querySelector('#use pre[data-snippet=\"{k}\"]').textContent"
        ))
        .as_str()
        .unwrap()
        .to_string()
    };
    let path = format!(
        "{}:{}",
        bin("keyport").parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |program: &str, arg: &str, code: &str| {
        let o = kp
            .env(&mut Command::new(program))
            .args([arg, code])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{code}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let before = fake.count("/api/v3/datasources");
    let curl = snippet("curl");
    assert!(!curl.contains(&kp.run(&["helper", "key"]).ok().stdout.trim().to_string()));
    assert!(run("sh", "-c", &curl).contains(r#"{"datasources": []}"#));
    assert!(run("sh", "-c", &snippet("httpie")).contains("datasources"));
    let py = run("/usr/bin/python3", "-c", &snippet("python"));
    assert!(py.starts_with("200 ") && py.contains("datasources"), "{py}");
    assert_eq!(fake.count("/api/v3/datasources"), before + 3);
    let html = d
        .script("return document.documentElement.outerHTML")
        .as_str()
        .unwrap()
        .to_string();
    assert!(!html.contains("gui-secret-5e1f") && !html.contains("gui-key-93ab"));

    // The app hosts the session's agent: the CLI finds it and talks to it.
    let pid = agent_pid(&kp).expect("the app wrote agent.json");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("keyport-app"), "{}", exe.display());
    let status = kp.run(&["status"]).ok();
    assert!(
        status.stdout.contains(&a) && status.stdout.contains("valid"),
        "{status:#?}"
    );

    // The window says where tools reach the helper, as `keyport helper url` does.
    let url = kp.run(&["helper", "url", &a]).ok().stdout;
    let base = url
        .trim()
        .strip_suffix(&format!("/{a}"))
        .expect("URL ends in the profile");
    assert_eq!(
        d.script("return document.getElementById('helper').textContent"),
        json!(format!("Helper: {base}/PROFILE"))
    );

    // One instance: starting the app again hands over to this one and exits.
    let mut second = kp
        .env(&mut Command::new(&app))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the app again");
    let deadline = Instant::now() + Duration::from_secs(30);
    let second = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second app kept running beside the first");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(second.success(), "{second:?}");
    assert_eq!(
        agent_pid(&kp),
        Some(pid),
        "the first app still hosts the agent"
    );

    // A profile added with the CLI shows up in the window at once (the agent's event).
    kp.add(&c, "patchworks-api-key", &[], &[("api_key", "gui-key-77")]);
    d.wait_for(&format!(
        "const r = document.querySelector('#profiles li[data-profile=\"{c}\"]'); \
         return r !== null && r.dataset.state === 'valid'"
    ));

    // The tray registered with the session's StatusNotifierWatcher.
    let deadline = Instant::now() + Duration::from_secs(20);
    let props = loop {
        let recs = tray_records();
        if let Some(p) = recs[tray_before..]
            .iter()
            .find(|r| r["method"] == "(item properties)" && r["props"].is_object())
        {
            break p["props"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no tray registration recorded: {recs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(props["Status"], "Active", "{props}");
    assert!(props.to_string().contains("Keyport"), "{props}");

    d.screenshot("profiles.png");

    // SIGTERM quits like Quit: the agent stops cleanly and frees the session's lock.
    let r = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(r.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent_pid(&kp).is_some() {
        assert!(Instant::now() < deadline, "the app's agent did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    kp.run(&["status"]).fails_with("no agent is running");
    drop(d);
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn a_helper_port_in_use_is_said_in_the_window_and_the_rest_works() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let name = unique("gui-busy");
    kp.add(
        &name,
        "patchworks-api-key",
        &[],
        &[("api_key", "gui-key-busy")],
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();

    let mut d = Driver::start(&kp, port);
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");
    let text =
        d.wait_for("const t = document.getElementById('helper').textContent; return t || null");
    let text = text.as_str().unwrap();
    assert!(
        text.contains(&format!("port {port} on 127.0.0.1 is in use"))
            && text.contains("choose another port"),
        "{text}"
    );
    // The agent runs all the same: the window shows the state, the CLI gets an answer.
    d.wait_for(&format!(
        "const r = document.querySelector('#profiles li[data-profile=\"{name}\"]'); \
         return r !== null && r.dataset.state === 'valid'"
    ));
    let status = kp.run(&["status"]).ok();
    assert!(status.stdout.contains(&name), "{status:#?}");
    drop(d);
    drop(taken);
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn the_token_inspector_decodes_a_jwt_unverified_and_never_shows_it() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let jwt = format!(
        "{}.{}.gui-signature-91c4",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(
            r#"{"iss":"https://login.example.com","sub":"analyst-7","aud":"reports-api","exp":1893456000,"iat":1767222000,"scope":"reports:read exports:write"}"#
        )
    );
    let (tok, key) = (unique("gui-jwt"), unique("gui-key"));
    kp.add(&tok, "bearer", &[], &[("token", jwt.as_str())]);
    kp.add(
        &key,
        "patchworks-api-key",
        &[],
        &[("api_key", "gui-key-opaque-5d")],
    );

    let mut d = Driver::start(&kp, 0);
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");
    let click = |name: &str| {
        d.select(name);
        d.act("inspect");
    };
    click(&key);
    d.wait_for("return document.getElementById('inspector')?.dataset.kind === 'opaque'");
    let note = d.script("return document.querySelector('#inspector .note').textContent");
    assert!(
        note.as_str()
            .unwrap()
            .contains("opaque token (17 characters)"),
        "{note}"
    );

    click(&tok);
    d.wait_for("return document.getElementById('inspector')?.dataset.kind === 'jwt'");
    let fields = d.script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('#inspector dd')).map(e => [e.dataset.field, e.textContent]))",
    );
    assert_eq!(fields["subject"], "analyst-7", "{fields}");
    assert_eq!(fields["issuer"], "https://login.example.com");
    assert_eq!(fields["audience"], "reports-api");
    assert_eq!(fields["scopes"], "reports:read exports:write");
    assert_eq!(fields["sent_in"], "Authorization: Bearer …");
    assert!(
        fields["expires"].as_str().unwrap().contains("2030"),
        "{fields}"
    );
    let note = d.script("return document.querySelector('#inspector .note').textContent");
    assert!(note.as_str().unwrap().contains("not verified"), "{note}");
    let html = d
        .script("return document.documentElement.outerHTML")
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !html.contains("gui-signature-91c4")
            && !html.contains(&jwt)
            && !html.contains("gui-key-opaque-5d"),
        "the token reached the page"
    );

    d.screenshot("token-inspector.png");

    // Delete asks once more, then removes the profile and its keychain item.
    assert!(secret_tool_lookup("keyport", &key).is_some());
    d.select(&key);
    d.act("delete");
    let armed = d.script(
        "return document.querySelector('#detail button[data-action=\"delete\"]').textContent",
    );
    assert_eq!(armed, "Delete? Click again");
    assert!(
        secret_tool_lookup("keyport", &key).is_some(),
        "one click deletes nothing"
    );
    d.act("delete");
    d.wait_for(&format!(
        "return document.querySelector('#profiles li[data-profile=\"{key}\"]') === null"
    ));
    assert_eq!(secret_tool_lookup("keyport", &key), None);
    let list = kp.run(&["profile", "list"]).ok().stdout;
    assert!(!list.contains(&key) && list.contains(&tok), "{list}");
    drop(d);
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn an_improvado_profile_added_through_the_form_gets_a_token_and_a_countdown() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    // Improvado's API (seed 000): a workspace token that lives 30 min, from Basic credentials.
    let fake = Fake::start(Lifetimes::default());
    let imp = unique("gui-form-imp");

    let mut d = Driver::start(&kp, 0);
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");
    d.wait_for("return document.getElementById('empty') !== null");
    d.click("button[data-action='add']");
    d.wait_for("return document.querySelector('.card[data-preset=\"improvado\"]') !== null");
    let groups = d.script(
        "return Array.from(document.querySelectorAll('.picker-group h3')).map(h => h.textContent)",
    );
    assert_eq!(
        groups,
        json!([
            "Improvado",
            "Patchworks",
            "Frappe",
            "4insight",
            "Airbyte",
            "Other APIs"
        ])
    );
    d.click(".card[data-preset='improvado']");
    d.wait_for("return document.querySelector('form[data-preset=\"improvado\"]') !== null");
    // The preset's default is filled in; the password is a password input.
    assert_eq!(
        d.script("return document.getElementById('f-base_url').value"),
        json!("https://embedded.improvado.io/api/v3")
    );
    assert_eq!(
        d.script("return document.getElementById('f-password').type"),
        json!("password")
    );

    // Plain http beyond loopback is refused by the core, beside the field, on leaving it.
    d.type_into("#f-name", &imp);
    d.type_into("#f-base_url", "http://embedded.improvado.io/api/v3");
    d.click("#f-username");
    let help = d.wait_for(
        "const f = document.querySelector('.field[data-field=\"base_url\"]'); \
         return f.classList.contains('invalid') ? f.querySelector('.help').textContent : null",
    );
    assert!(help.as_str().unwrap().contains("base_url"), "{help}");
    d.script("document.querySelector('.detail-pane').scrollTop = 0; return true");
    d.screenshot("add-profile.png");
    d.type_into("#f-base_url", &format!("{}/api/v3", fake.url));
    d.type_into("#f-username", keyport_system_tests::fakes::IMPROVADO_USER);
    d.type_into(
        "#f-password",
        keyport_system_tests::fakes::IMPROVADO_PASSWORD,
    );
    d.type_into("#f-workspace_id", "42");
    d.click("#f-name");
    d.wait_for("return document.querySelector('.field.invalid') === null");

    // Save: one token call, then the profile is shown valid with its countdown.
    let tokens = fake.count("/api/v3/token");
    d.click("button[data-action='save']");
    d.wait_for(&format!(
        "return document.getElementById('detail')?.dataset.profile === '{imp}'"
    ));
    assert_eq!(d.text("#detail .outcome"), json!("Saved: valid"));
    assert_eq!(fake.count("/api/v3/token"), tokens + 1);
    let entry = format!("#profiles li[data-profile='{imp}']");
    assert_eq!(
        d.script(&format!(
            "return document.querySelector({}).dataset.state",
            json!(entry)
        )),
        json!("valid")
    );
    let exp = d.text(&format!("{entry} .countdown"));
    let exp = exp.as_str().unwrap();
    assert!(
        exp.starts_with("in 29 min") || exp == "in 30 min 0 s",
        "{exp}"
    );
    // The password went to the real keychain, not to the config file.
    let stored = secret_tool_lookup("keyport", &imp).expect("a keychain item");
    assert!(stored.contains(keyport_system_tests::fakes::IMPROVADO_PASSWORD));
    let config = String::from_utf8(kp.config_bytes()).unwrap();
    assert!(
        config.contains("workspace_id = \"42\"") || config.contains("workspace_id = 42"),
        "{config}"
    );
    assert!(!config.contains(keyport_system_tests::fakes::IMPROVADO_PASSWORD));
    // The CLI sees it as it sees its own.
    let list = kp.run(&["profile", "list"]).ok().stdout;
    assert!(list.contains(&imp), "{list}");

    // Edit: another workspace is another token, fetched once on saving.
    d.act("edit");
    d.wait_for("return document.querySelector('form[data-preset=\"improvado\"]') !== null");
    assert_eq!(
        d.script("return document.getElementById('f-username').value"),
        json!(keyport_system_tests::fakes::IMPROVADO_USER)
    );
    assert_eq!(
        d.script("return document.getElementById('f-password').placeholder"),
        json!("set: leave empty to keep it")
    );
    d.type_into("#f-workspace_id", "43");
    let tokens = fake.count("/api/v3/token");
    d.click("button[data-action='save']");
    d.wait_for(&format!(
        "return document.getElementById('detail')?.dataset.profile === '{imp}' \
         && document.querySelector('#detail .outcome').textContent === 'Saved: valid'"
    ));
    assert_eq!(fake.count("/api/v3/token"), tokens + 1);
    assert_eq!(
        d.text("#detail dd[data-field='setting:workspace_id']"),
        json!("43")
    );
    drop(d);
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn logins_in_the_window_through_the_browser_and_the_device_flow() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    // The real OpenID provider, and a scripted browser (as BROWSER) that logs in on its
    // pages the way a person would.
    let idp = keyport_system_tests::oidc::Oidc::start(60);
    let browser_log = tempfile::NamedTempFile::new().unwrap();
    let log_path = browser_log.path().to_str().unwrap().to_string();
    let fake_browser = keyport_system_tests::oidc::fake_browser();
    let device = unique("gui-device");
    idp.add_native_profile(&kp, &device, "oauth2-device");
    let web = unique("gui-web");

    let mut d = Driver::start_with(
        &kp,
        0,
        &[
            ("BROWSER", fake_browser.to_str().unwrap()),
            ("FAKE_BROWSER_MODE", "approve"),
            ("FAKE_BROWSER_LOG", &log_path),
        ],
    );
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");

    // Add a browser-login profile through the form: it offers to log in right away.
    d.click("button[data-action='add']");
    d.click(".card[data-preset='oauth2-auth-code']");
    d.wait_for("return document.querySelector('form[data-preset=\"oauth2-auth-code\"]') !== null");
    d.type_into("#f-name", &web);
    d.type_into("#f-issuer", &idp.issuer);
    d.type_into("#f-client_id", "keyport-native");
    d.type_into("#f-scopes", "openid offline_access api");
    d.click("button[data-action='save']");
    d.wait_for(&format!(
        "return document.getElementById('detail')?.dataset.profile === '{web}'"
    ));
    assert_eq!(
        d.text("#detail .outcome"),
        json!("Saved. Log in to get its first token.")
    );
    assert_eq!(
        d.text("#detail button[data-action='login']"),
        json!("Log in")
    );

    // The browser flow: the app opens the login page, the person logs in there, the window
    // follows the steps and ends valid.
    d.act("login");
    d.wait_for("return document.getElementById('login')?.dataset.phase === 'succeeded'");
    d.wait_for(&format!(
        "return document.querySelector('#profiles li[data-profile=\"{web}\"]').dataset.state === 'valid'"
    ));
    assert_eq!(d.text("#detail .outcome"), json!("logged in: valid"));
    let token = kp.run(&["token", &web]).ok().stdout;
    assert_eq!(idp.userinfo(token.trim()), 200);
    let visited = std::fs::read_to_string(&log_path).unwrap();
    assert!(visited.contains("/auth?"), "{visited}");

    // The device flow: the code and the page are shown in the window; "Open the page"
    // opens it in the browser, where the person approves.
    d.select(&device);
    d.act("login");
    d.wait_for("return document.getElementById('login')?.dataset.phase === 'device'");
    let code = d.text("#login [data-field='user_code']");
    let code = code.as_str().unwrap().to_string();
    let uri = d.text("#login [data-field='verification_uri']");
    assert!(
        uri.as_str().unwrap().starts_with(&idp.issuer),
        "{uri} is the provider's"
    );
    assert!(!code.is_empty());
    d.screenshot("device-login.png");
    let before = std::fs::read_to_string(&log_path).unwrap().len();
    d.click("#login button[data-action='open-page']");
    d.wait_for("return document.getElementById('login')?.dataset.phase === 'succeeded'");
    let visited = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        visited[before..].contains("/device"),
        "the browser opened the verification page: {visited}"
    );
    let token = kp.run(&["token", &device]).ok().stdout;
    assert_eq!(idp.userinfo(token.trim()), 200);

    // Cancel: a second login of the device profile, cancelled from the window, leaves the
    // session it has.
    assert_eq!(
        d.text("#detail button[data-action='login']"),
        json!("Log in again")
    );
    d.act("login");
    d.wait_for("return document.getElementById('login')?.dataset.phase === 'device'");
    d.click("#login button[data-action='cancel-login']");
    d.wait_for("return document.getElementById('login')?.dataset.phase === 'failed'");
    assert!(d
        .text("#login")
        .as_str()
        .unwrap()
        .contains("Login cancelled."));
    assert_eq!(
        d.script(&format!(
            "return document.querySelector('#profiles li[data-profile=\"{device}\"]').dataset.state"
        )),
        json!("valid")
    );
    let token = kp.run(&["token", &device]).ok().stdout;
    assert_eq!(idp.userinfo(token.trim()), 200);
    drop(d);
}

/// What the session's clipboard holds (`xclip`, as a person's paste would get it); none if
/// it holds no text.
fn clipboard() -> Option<String> {
    let out = Command::new("xclip")
        .args(["-o", "-selection", "clipboard"])
        .output()
        .expect("xclip (scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// curl through the helper with `key` (from a header file: no key in an argv), answering
/// the status.
fn curl_status(url: &str, key: &str, method: &str, dir: &std::path::Path) -> u16 {
    let headers = dir.join("curl-headers");
    std::fs::write(&headers, format!("X-Keyport-Key: {key}\n")).unwrap();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            method,
            "-H",
        ])
        .arg(format!("@{}", headers.display()))
        .arg(url)
        .output()
        .expect("curl");
    std::fs::remove_file(&headers).unwrap();
    String::from_utf8_lossy(&out.stdout).parse().unwrap()
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn the_helper_panel_makes_a_scoped_key_that_curl_uses_until_it_is_revoked() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let fake = Fake::start(Lifetimes::default());
    let (imp, other) = (unique("gui-keys-imp"), unique("gui-keys-pw"));
    fake.add_improvado(&kp, &imp, 1800);
    kp.add(&other, "patchworks-api-key", &[], &[("api_key", "pw-k-1")]);
    let port = free_port();
    let helper = format!("http://127.0.0.1:{port}");

    let mut d = Driver::start_with(&kp, port, &[("KEYPORT_CLIPBOARD_CLEAR_SECS", "8")]);
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");
    d.click("button[data-action='helper']");
    d.element("#helper-panel");
    assert_eq!(
        d.text("#helper-panel [data-field='url']"),
        json!(format!("{helper}/PROFILE/PATH"))
    );

    // Copy key: the app puts the default key on the clipboard; the page never has it.
    d.click("button[data-action='copy-key']");
    d.wait_for("return document.querySelector('[data-field=\"key_outcome\"]').textContent.startsWith('Copied the default helper key')");
    let default_key = kp.run(&["helper", "key"]).ok().stdout.trim().to_string();
    assert_eq!(default_key.len(), 64);
    assert_eq!(clipboard().as_deref(), Some(default_key.as_str()));

    // A read-only key for one profile, copied when made.
    d.type_into("#new-key-name", "bi-dashboard");
    d.click(&format!("input[name='key-profile'][value='{imp}']"));
    d.click("#new-key-read-only");
    d.click("button[data-action='create-key']");
    d.element("#keys tr[data-key='bi-dashboard']");
    assert_eq!(
        d.text("#keys tr[data-key='bi-dashboard'] [data-field='scope']"),
        json!(format!("{imp} · read-only"))
    );
    let bi_key = clipboard().expect("the new key on the clipboard");
    assert!(bi_key.len() == 64 && bi_key != default_key);

    // curl with it: its profile answers, a write and another profile are refused.
    let dir = tempfile::tempdir().unwrap();
    let datasources = format!("{helper}/{imp}/datasources");
    assert_eq!(curl_status(&datasources, &bi_key, "GET", dir.path()), 200);
    assert_eq!(curl_status(&datasources, &bi_key, "POST", dir.path()), 403);
    assert_eq!(
        curl_status(&format!("{helper}/{other}/"), &bi_key, "GET", dir.path()),
        403
    );
    // The live log shows them, newest first, the refusals marked.
    d.wait_for("return document.querySelectorAll('#access-log tbody tr').length >= 3");
    let rows = d.script(
        "return Array.from(document.querySelectorAll('#access-log tbody tr')).slice(0, 3).map(r => [r.dataset.status, r.dataset.refusal ?? null, r.classList.contains('refused'), r.cells[1].textContent])",
    );
    assert_eq!(
        rows,
        json!([
            ["403", "key_not_for_profile", true, "bi-dashboard"],
            ["403", "read_only_key", true, "bi-dashboard"],
            ["200", null, false, "bi-dashboard"]
        ])
    );
    d.wait_for("return Number(document.querySelector('#helper-panel [data-field=\"refusals\"]').textContent) >= 2");
    d.wait_for("return document.querySelector('#keys tr[data-key=\"bi-dashboard\"] [data-field=\"last_used\"]').textContent !== 'never'");
    d.script("document.getElementById('scoped-keys').scrollIntoView(); return true");
    d.screenshot("helper-panel.png");

    // Revoked (two clicks): curl is refused from then on.
    let revoke = "#keys tr[data-key='bi-dashboard'] button[data-action='revoke-key']";
    d.click(revoke);
    assert_eq!(d.text(revoke), json!("Revoke? Click again"));
    assert_eq!(curl_status(&datasources, &bi_key, "GET", dir.path()), 200);
    d.click(revoke);
    d.wait_for("return document.querySelector('#keys tr[data-key=\"bi-dashboard\"]') === null");
    assert_eq!(curl_status(&datasources, &bi_key, "GET", dir.path()), 401);
    let list = kp.run(&["helper", "key", "list"]).ok().stdout;
    assert!(!list.contains("bi-dashboard"), "{list}");

    // No key ever reached the page; the clipboard is cleared after its time.
    let html = d
        .script("return document.documentElement.outerHTML")
        .as_str()
        .unwrap()
        .to_string();
    assert!(!html.contains(&bi_key) && !html.contains(&default_key));
    let deadline = Instant::now() + Duration::from_secs(30);
    while clipboard().as_deref() == Some(bi_key.as_str()) {
        assert!(
            Instant::now() < deadline,
            "the key is still on the clipboard"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(d);
}

/// The tray's menu as a tray host sees it (com.canonical.dbusmenu, through
/// `tests/support/tray-menu.py`): `layout` lines, or a `click` on the item labelled so.
fn tray_menu(item: &str, args: &[&str]) -> Vec<Value> {
    let (bus, path) = item.split_at(item.find('/').expect("bus name, then the item's path"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/tray-menu.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(args[0])
        .args([bus, path])
        .args(&args[1..])
        .output()
        .expect("python3 for tray-menu.py");
    assert!(out.status.success(), "tray-menu.py {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The tray item this app registered after `before` records.
fn tray_item(before: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recs = tray_records();
        if let Some(r) = recs[before..]
            .iter()
            .find(|r| r["method"] == "RegisterStatusNotifierItem")
        {
            return r["item"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no tray registration: {recs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn the_tray_lists_the_profiles_opens_one_and_pauses_the_helper() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let fake = Fake::start(Lifetimes::default());
    let (imp, pw) = (unique("gui-tray-imp"), unique("gui-tray-pw"));
    fake.add_improvado(&kp, &imp, 1800);
    kp.add(&pw, "patchworks-api-key", &[], &[("api_key", "pw-tray-1")]);
    let port = free_port();
    let tray_before = tray_records().len();

    let mut d = Driver::start(&kp, port);
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");
    let item = tray_item(tray_before);
    let label = |l: &Value| l["label"].as_str().unwrap_or_default().to_string();
    // The menu lists every profile with its state, then the app's actions.
    let deadline = Instant::now() + Duration::from_secs(20);
    let menu = loop {
        let menu = tray_menu(&item, &["layout"]);
        let labels: Vec<String> = menu.iter().map(label).collect();
        if labels.contains(&format!("{imp}: valid")) && labels.contains(&format!("{pw}: valid")) {
            break menu;
        }
        assert!(
            Instant::now() < deadline,
            "the profiles are not in the tray's menu: {labels:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let labels: Vec<String> = menu.iter().map(label).collect();
    assert_eq!(
        labels[1..],
        [
            format!("{imp}: valid"),
            format!("{pw}: valid"),
            "Open Keyport".into(),
            "Renew all".into(),
            "Pause helper".into(),
            "Quit Keyport".into()
        ],
        "{menu:?}"
    );
    assert!(
        labels[0].starts_with("Keyport: 2 profile(s), all valid"),
        "{labels:?}"
    );
    let pause = menu.iter().find(|m| label(m) == "Pause helper").unwrap();
    assert_eq!(pause["toggle_state"], 0, "{pause}");

    // Pause helper from the tray: tools are refused with Keyport's own kind, the window
    // says so at once.
    let key = kp.run(&["helper", "key"]).ok().stdout.trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/{imp}/datasources");
    assert_eq!(curl_status(&url, &key, "GET", dir.path()), 200);
    tray_menu(&item, &["click", "Pause helper"]);
    d.click("button[data-action='helper']");
    d.wait_for("return document.querySelector('#helper-panel [data-field=\"paused\"]') !== null");
    assert_eq!(curl_status(&url, &key, "GET", dir.path()), 503);
    let paused: Value =
        serde_json::from_str(&kp.run(&["helper", "status", "--json"]).ok().stdout).unwrap();
    assert_eq!(paused["paused"], true);
    let checked = |want: i64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = tray_menu(&item, &["layout"]);
            let p = m
                .iter()
                .find(|m| label(m) == "Pause helper")
                .cloned()
                .unwrap();
            if p["toggle_state"] == want {
                return;
            }
            assert!(Instant::now() < deadline, "Pause helper is not {want}: {p}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    checked(1);
    // Resumed with the CLI: the window and the tray follow.
    kp.run(&["helper", "resume"]).ok();
    d.wait_for("return document.querySelector('#helper-panel [data-field=\"paused\"]') === null");
    checked(0);
    assert_eq!(curl_status(&url, &key, "GET", dir.path()), 200);

    // Choosing a profile in the tray opens it in the window.
    tray_menu(&item, &["click", &format!("{pw}: ")]);
    d.wait_for(&format!(
        "return document.getElementById('detail')?.dataset.profile === '{pw}'"
    ));
    // A profile added with the CLI gets its line.
    let late = unique("gui-tray-late");
    kp.add(
        &late,
        "patchworks-api-key",
        &[],
        &[("api_key", "pw-tray-2")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tray_menu(&item, &["layout"])
        .iter()
        .any(|m| label(m) == format!("{late}: valid"))
    {
        assert!(
            Instant::now() < deadline,
            "{late} is not in the tray's menu"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Closing the window (as its close button does) leaves Keyport in the tray: the agent
    // and the helper run on, the window and its web process are gone. Open Keyport in the
    // tray makes the window again.
    let pid = agent_pid(&kp).expect("the app hosts the agent");
    let web_process = || {
        Command::new("pgrep")
            .args(["-P", &pid.to_string(), "WebKitWebProces"])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(web_process());
    let window = keyport_window().expect("the window is shown");
    let close = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/close-window.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&close)
        .arg(&window)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    eventually("the window's web process to go", || !web_process());
    assert_eq!(keyport_window(), None, "no window is shown");
    assert_eq!(agent_pid(&kp), Some(pid), "the app runs on");
    assert!(kp.run(&["status"]).ok().stdout.contains(&imp));
    assert_eq!(
        curl_status(&url, &key, "GET", dir.path()),
        200,
        "the helper runs on"
    );
    tray_menu(&item, &["click", "Open Keyport"]);
    eventually("the window again", || {
        keyport_window().is_some() && web_process()
    });
    drop(d);
}

/// The id of the shown window named Keyport, if there is one (xdotool).
fn keyport_window() -> Option<String> {
    let out = Command::new("xdotool")
        .args(["search", "--onlyvisible", "--name", "^Keyport$"])
        .output()
        .expect("xdotool (scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().map(str::to_string)
}

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn settings_apply_at_once_and_a_short_token_expires_with_notifications() {
    require_session();
    let _turn = one_app();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let fake = Fake::start(Lifetimes::default());
    let imp = unique("gui-set-imp");
    fake.add_improvado(&kp, &imp, 1800);
    let xdg = kp.dir.path().join("xdg");
    let xdg_s = xdg.display().to_string();
    let mut d = Driver::start_with(&kp, 0, &[("XDG_CONFIG_HOME", xdg_s.as_str())]);
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");

    // Settings: every field at once, in force without a restart.
    d.click("button[data-action='settings']");
    d.element("#settings form");
    assert_eq!(
        d.script("return document.getElementById('s-lead').value"),
        json!("120")
    );
    let port = free_port();
    d.type_into("#s-lead", "8");
    d.type_into("#s-port", &port.to_string());
    d.type_into("#s-origins", "http://localhost:5173");
    d.click("#s-autostart");
    d.click("button[data-action='save-settings']");
    d.wait_for("return document.querySelector('#settings .outcome').textContent === 'Saved: in force now.'");
    let url = kp.run(&["helper", "url", &imp]).ok().stdout;
    assert_eq!(url.trim(), format!("http://127.0.0.1:{port}/{imp}"));
    d.wait_for(&format!(
        "return document.getElementById('helper').textContent === 'Helper: http://127.0.0.1:{port}/PROFILE'"
    ));
    let cfg = std::fs::read_to_string(kp.config_file()).unwrap();
    assert!(cfg.contains("[agent]") && cfg.contains("lead = 8"), "{cfg}");
    assert!(cfg.contains(&format!("port = {port}")), "{cfg}");
    let entry = std::fs::read_to_string(xdg.join("autostart/keyport.desktop")).unwrap();
    assert!(entry.contains(" --autostarted\n"), "{entry}");
    d.script("document.getElementById('settings').scrollIntoView(); return true");
    d.screenshot("settings.png");

    // A pasted token that expires in 14 s: valid, expiring within the new 8 s lead time,
    // then expired; the window shows each state and the desktop is told twice.
    let short = unique("gui-short");
    let exp = (time::OffsetDateTime::now_utc() + time::Duration::seconds(14))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    kp.add(
        &short,
        "bearer",
        &["--set", &format!("expires_at={exp}")],
        &[("token", "pasted-tok-1d9e")],
    );
    let state = |want: &str| {
        format!(
            "return document.querySelector('#profiles li[data-profile=\"{short}\"]')?.dataset.state === '{want}'"
        )
    };
    d.wait_for(&state("valid"));
    d.select(&short);
    d.wait_for(&state("expiring"));
    let summaries = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all: Vec<String> = notifications_for(&short)
                .iter()
                .map(|n| n["summary"].as_str().unwrap().to_string())
                .collect();
            if all.len() >= n {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "{n} notifications for {short}: {all:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(summaries(1), [format!("Keyport: {short} expires soon")]);

    // Reveal the pasted token's secret: shown on request, hidden again on Hide.
    d.click(&format!(
        "#detail [data-secret='token'] button[aria-label='Reveal the token of {short}']"
    ));
    d.wait_for("return document.querySelector('#detail [data-secret=\"token\"] .revealed')?.textContent === 'pasted-tok-1d9e'");
    d.click(&format!(
        "#detail [data-secret='token'] button[aria-label='Hide the token of {short}']"
    ));
    d.wait_for("return document.querySelector('#detail .revealed') === null");

    d.wait_for(&state("expired"));
    assert_eq!(
        summaries(2),
        [
            format!("Keyport: {short} expires soon"),
            format!("Keyport: {short} expired")
        ]
    );
    assert_eq!(d.text("#detail .badge"), json!("expired"));

    // Copy header: the header a tool would send goes to the clipboard, not to the page.
    d.select(&imp);
    d.act("copy-header");
    d.wait_for("return document.querySelector('#detail .outcome').textContent.startsWith('Copied the Authorization header of')");
    let header = kp.run(&["header", &imp]).ok().stdout;
    assert_eq!(clipboard().as_deref(), Some(header.trim()));
    let html = d
        .script("return document.documentElement.outerHTML")
        .as_str()
        .unwrap()
        .to_string();
    let token = header.trim().trim_start_matches("Authorization: Bearer ");
    assert!(!html.contains(token), "the token reached the page");

    // Autostart off again: the entry is gone.
    d.click("button[data-action='settings']");
    d.element("#settings form");
    d.click("#s-autostart");
    d.click("button[data-action='save-settings']");
    d.wait_for("return document.querySelector('#settings .outcome').textContent === 'Saved: in force now.'");
    assert!(!xdg.join("autostart/keyport.desktop").exists());
    drop(d);
}

#[test]
#[ignore = "needs the app binary: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn without_a_display_the_app_says_so_in_one_line_and_touches_nothing() {
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let mut cmd = Command::new(&app);
    kp.env(&mut cmd)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("RUST_BACKTRACE", "1");
    let out = cmd.output().expect("run keyport-app");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "keyport-app: cannot open a display (DISPLAY unset, WAYLAND_DISPLAY unset): start \
         Keyport from a desktop session; without one, `keyport agent` runs the agent and the helper"
    );
    // It stopped before anything: no agent, no config written.
    assert!(!kp.dir.path().join("run/agent.json").exists());
    assert!(!kp.config_file().exists());
}
