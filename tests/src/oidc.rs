//! The real OpenID provider (npm `oidc-provider`, tests/oidc/server.mjs) on a free loopback
//! port, and the scripted browser that logs in on its pages.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Oidc {
    pub issuer: String,
    child: Child,
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fake browser script, for `BROWSER`.
pub fn fake_browser() -> PathBuf {
    tests_dir().join("support/fake-browser.py")
}

impl Oidc {
    /// Starts the provider with access tokens living `at_ttl` seconds.
    pub fn start(at_ttl: u64) -> Self {
        let dir = tests_dir().join("oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: npm ci --prefix tests/oidc (./scripts/test.sh does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env("AT_TTL", at_ttl.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (apt-get install nodejs)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("oidc-provider did not start");
        Oidc {
            issuer: format!("http://127.0.0.1:{port}"),
            child,
        }
    }

    /// A profile of `preset` for this provider's public native client (issuer discovery,
    /// scopes `openid offline_access api`).
    pub fn add_native_profile(&self, kp: &crate::Keyport, name: &str, preset: &str) {
        let issuer = format!("issuer={}", self.issuer);
        let args = [
            "--set",
            &issuer,
            "--set",
            "client_id=keyport-native",
            "--set",
            "scopes=openid offline_access api",
        ];
        kp.add(name, preset, &args, &[]);
    }

    /// GET /me (userinfo) with an access token: the status.
    pub fn userinfo(&self, access_token: &str) -> u16 {
        match ureq::get(&format!("{}/me", self.issuer))
            .set("Authorization", &format!("Bearer {access_token}"))
            .call()
        {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(c, _)) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Uses a refresh token of the native client directly; returns the `error` (None on
    /// success).
    pub fn use_refresh_token(&self, rt: &str) -> Option<String> {
        let r = ureq::post(&format!("{}/token", self.issuer)).send_form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", "keyport-native"),
        ]);
        match r {
            Ok(_) => None,
            Err(ureq::Error::Status(_, resp)) => {
                let v: serde_json::Value = resp.into_json().unwrap_or_default();
                Some(v["error"].as_str().unwrap_or("?").to_string())
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Introspects a token as the confidential service client: is it active?
    pub fn active(&self, token: &str) -> bool {
        let v: serde_json::Value = ureq::post(&format!("{}/token/introspection", self.issuer))
            .set(
                "Authorization",
                &format!(
                    "Basic {}",
                    base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        "keyport-service:service-secret-0f3b"
                    )
                ),
            )
            .send_form(&[("token", token)])
            .expect("introspection")
            .into_json()
            .unwrap();
        v["active"] == true
    }
}

/// Waits until `f` is true (the browser runs detached from keyport).
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
