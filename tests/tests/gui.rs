//! The desktop app's real window, under Xvfb, driven through tauri-driver + WebKitWebDriver:
//! it lists the profiles read through keyport-core, and no secret reaches the page.
//!
//! Ignored by a plain `cargo test` because it needs the app binary and tauri-driver built;
//! `./scripts/test.sh` builds both and runs it with `--include-ignored`.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
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
    fn start(config_dir: &std::path::Path) -> Self {
        let (port, native) = (free_port(), free_port());
        let child = Command::new(tauri_driver())
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native.to_string(),
            ])
            .env("KEYPORT_CONFIG_DIR", config_dir)
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

#[test]
#[ignore = "needs the app binary and tauri-driver: run ./scripts/test.sh, or cargo test -- --include-ignored"]
fn window_lists_the_profiles_and_no_secret() {
    require_session();
    let app = bin("keyport-app");
    let kp = Keyport::new();
    let (a, b) = (unique("gui-frappe"), unique("gui-patchworks"));
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

    let mut d = Driver::start(&kp.config_dir());
    d.open(&app);
    d.wait_for("return document.body.dataset.loaded === 'true'");
    let rows = d.script(
        "return Array.from(document.querySelectorAll('#profiles tbody tr')).map(r => \
         Array.from(r.cells).map(c => c.textContent))",
    );
    assert_eq!(
        rows,
        json!([
            [a, "frappe-token", "api-key", "https://erp.example.com"],
            [
                b,
                "patchworks-api-key",
                "api-key",
                "https://app.wearepatchworks.com"
            ],
        ])
    );
    let html = d
        .script("return document.documentElement.outerHTML")
        .as_str()
        .unwrap()
        .to_string();
    assert!(!html.contains("gui-secret-5e1f") && !html.contains("gui-key-93ab"));

    // A screenshot for people reviewing the change (after two frames, or it may be stale).
    d.script("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))");
    let s = d.session.clone().unwrap();
    let png = d.get(&format!("/session/{s}/screenshot"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert!(bytes.starts_with(b"\x89PNG"));
    let out = bin_dir().join("gui-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("profiles.png"), bytes).unwrap();
    drop(d);

    for n in [&a, &b] {
        kp.run(&["profile", "rm", n]).ok();
    }
}
