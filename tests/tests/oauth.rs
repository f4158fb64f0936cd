//! OAuth2 against a real OpenID provider (oidc-provider on loopback), driven through the
//! real binary and keychain, with a scripted browser set as BROWSER (as kubelogin's
//! integration tests do): auth code + PKCE in the browser, refresh with rotation over many
//! renewals, forced re-login, denied consent, wrong state, timeout, port in use, device
//! flow, client credentials, invalid_grant, logout with revocation.

use std::process::Stdio;
use std::time::Duration;

use keyport_system_tests::oidc::*;
use keyport_system_tests::*;
use serde_json::Value;

struct Browser {
    log: tempfile::NamedTempFile,
}

impl Browser {
    fn new() -> Self {
        Browser {
            log: tempfile::NamedTempFile::new().unwrap(),
        }
    }
    fn text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
    /// `keyport ARGS` with the fake browser in `mode`.
    fn run(&self, kp: &Keyport, mode: &str, args: &[&str]) -> Run {
        let o = kp
            .command()
            .args(args)
            .env("BROWSER", fake_browser())
            .env("FAKE_BROWSER_MODE", mode)
            .env("FAKE_BROWSER_LOG", self.log.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

fn user_profile(kp: &Keyport, idp: &Oidc, preset: &str) -> String {
    let name = unique(preset);
    idp.add_native_profile(kp, &name, preset);
    name
}

fn access_token(kp: &Keyport, name: &str) -> String {
    kp.run(&["token", name, "--min-valid", "1"])
        .ok()
        .stdout
        .trim()
        .to_string()
}

fn stored(name: &str) -> Value {
    serde_json::from_str(&secret_tool_lookup("keyport-token", name).expect("token state")).unwrap()
}

#[test]
fn browser_login_refresh_rotation_force_and_logout() {
    require_session();
    let idp = Oidc::start(2);
    let kp = Keyport::new();
    let browser = Browser::new();
    let name = user_profile(&kp, &idp, "4insight-user");

    // Not logged in: exit 3 with the command to run.
    let r = kp.run(&["token", &name]);
    assert_eq!(r.code, 3, "{r:#?}");
    assert!(
        r.stderr.contains(&format!("run: keyport login {name}")),
        "{r:#?}"
    );

    let r = browser.run(&kp, "approve", &["login", &name, "--timeout", "30"]);
    assert_eq!(r.code, 0, "{r:#?}\n{}", browser.text());
    eventually("the browser to get the success page", || {
        browser.text().contains("CALLBACK 200")
    });
    let visited = browser.text();
    assert!(visited.contains("code_challenge_method=S256"), "{visited}");
    assert!(
        visited.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{visited}"
    );
    assert!(
        visited.contains("CALLBACK 200"),
        "the browser got Keyport's success page: {visited}"
    );
    // The callback is accepted once: the receiver is gone afterwards.
    let port = visited
        .split("redirect_uri=http%3A%2F%2F127.0.0.1%3A")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .unwrap();
    assert!(
        ureq::get(&format!("http://127.0.0.1:{port}/callback?code=x&state=y"))
            .call()
            .is_err(),
        "a second callback must find nothing listening"
    );
    let first = access_token(&kp, &name);
    assert_eq!(idp.userinfo(&first), 200);
    assert!(stored(&name)["refresh_token"].is_string());
    let j: Value = serde_json::from_str(&kp.run(&["token", &name, "--json"]).ok().stdout).unwrap();
    assert_eq!(j["refreshable"], true);
    assert_eq!(j["scheme"], "oauth2-auth-code");

    // Many renewals: each refresh rotates the refresh token, and Keyport must always use the
    // newest (oidc-provider revokes the whole grant when a rotated one is reused).
    let mut seen_rt = vec![stored(&name)["refresh_token"].as_str().unwrap().to_string()];
    let mut last = first;
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(2100));
        let at = access_token(&kp, &name);
        assert_ne!(at, last, "an expired access token must be refreshed");
        assert_eq!(idp.userinfo(&at), 200);
        let rt = stored(&name)["refresh_token"].as_str().unwrap().to_string();
        assert!(
            !seen_rt.contains(&rt),
            "the rotated refresh token must be saved"
        );
        seen_rt.push(rt);
        last = at;
    }
    assert!(
        idp.active(&seen_rt[seen_rt.len() - 1]),
        "the grant survived every rotation"
    );

    // Without --force, a valid session is kept and no browser opens.
    let before = browser.text();
    let r = browser.run(&kp, "approve", &["login", &name]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(r.stderr.contains("already logged in"), "{r:#?}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(browser.text(), before);
    // --force: a new login, with prompt=login (the seed's auth_force)
    let r = browser.run(
        &kp,
        "approve",
        &["login", &name, "--force", "--timeout", "30"],
    );
    assert_eq!(r.code, 0, "{r:#?}");
    let after = browser.text();
    assert!(after[before.len()..].contains("prompt=login"), "{after}");
    let old_rt = stored(&name)["refresh_token"].as_str().unwrap().to_string();

    // logout revokes at the provider and forgets the state
    // Settings that don't affect the token keep the session.
    kp.run(&["profile", "set", &name, "notify=false"]).ok();
    assert!(
        secret_tool_lookup("keyport-token", &name).is_some(),
        "notify=false must not log out"
    );
    let r = kp.run(&["logout", &name]).ok();
    assert!(
        r.stderr.contains("revoked at the identity provider"),
        "{r:#?}"
    );
    assert_eq!(secret_tool_lookup("keyport-token", &name), None);
    assert_eq!(
        idp.use_refresh_token(&old_rt).as_deref(),
        Some("invalid_grant")
    );
    assert_eq!(kp.run(&["token", &name]).code, 3);
    kp.run(&["profile", "rm", &name]).ok();
}

#[test]
fn failed_logins_say_why_and_store_nothing() {
    require_session();
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    let browser = Browser::new();
    let name = user_profile(&kp, &idp, "oauth2-auth-code");

    let r = browser.run(&kp, "deny", &["login", &name, "--timeout", "30"]);
    assert_eq!(r.code, 1, "{r:#?}\n{}", browser.text());
    assert!(
        r.stderr
            .contains("the identity provider refused: access_denied"),
        "{r:#?}"
    );
    // (the browser runs detached: its last line may come just after keyport exits)
    eventually("the browser to see the error page", || {
        browser.text().contains("CALLBACK 400")
    });

    // A callback with the wrong state gets an error page; the login keeps waiting for the
    // right one, and at the timeout says what it refused.
    let r = browser.run(&kp, "wrong-state", &["login", &name, "--timeout", "3"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr.contains("no login callback within 3 s")
            && r.stderr
                .contains("callback(s) with the wrong state were refused"),
        "{r:#?}"
    );

    let r = browser.run(&kp, "ignore", &["login", &name, "--timeout", "2"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("no login callback within 2 s"), "{r:#?}");

    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    kp.run(&["profile", "set", &name, &format!("redirect_port={port}")])
        .ok();
    let r = browser.run(&kp, "approve", &["login", &name, "--timeout", "30"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stderr
            .contains(&format!("port {port} on 127.0.0.1 is already in use")),
        "{r:#?}"
    );
    drop(held);
    assert_eq!(
        secret_tool_lookup("keyport-token", &name),
        None,
        "failed logins store nothing"
    );

    // The fixed port works once it is free.
    let r = browser.run(&kp, "approve", &["login", &name, "--timeout", "30"]);
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(browser
        .text()
        .contains(&format!("127.0.0.1%3A{port}%2Fcallback")));
    assert_eq!(idp.userinfo(&access_token(&kp, &name)), 200);
    kp.run(&["profile", "rm", &name]).ok();
}

#[test]
fn device_flow_login() {
    require_session();
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    let browser = Browser::new();
    let name = user_profile(&kp, &idp, "oauth2-device");
    let r = browser.run(&kp, "approve", &["login", &name, "--timeout", "30"]);
    assert_eq!(r.code, 0, "{r:#?}\n{}", browser.text());
    assert!(r.stderr.contains("enter the code:"), "{r:#?}");
    assert!(
        browser.text().contains("/device?user_code="),
        "opened verification_uri_complete"
    );
    assert_eq!(idp.userinfo(&access_token(&kp, &name)), 200);
    kp.run(&["profile", "rm", &name]).ok();
}

#[test]
fn rejected_refresh_token_means_login_required() {
    require_session();
    let idp = Oidc::start(2);
    let kp = Keyport::new();
    let browser = Browser::new();
    let name = user_profile(&kp, &idp, "4insight-user");
    assert_eq!(
        browser
            .run(&kp, "approve", &["login", &name, "--timeout", "30"])
            .code,
        0
    );
    // Someone else uses (and so rotates away) the stored refresh token.
    let rt = stored(&name)["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(idp.use_refresh_token(&rt), None);
    std::thread::sleep(Duration::from_millis(2100));
    let r = kp.run(&["token", &name]);
    assert_eq!(r.code, 3, "{r:#?}");
    assert!(
        r.stderr.contains("invalid_grant") && r.stderr.contains("run: keyport login"),
        "{r:#?}"
    );
    assert_eq!(
        secret_tool_lookup("keyport-token", &name),
        None,
        "the dead refresh token is dropped"
    );
    kp.run(&["profile", "rm", &name]).ok();
}

#[test]
fn client_credentials_service_account() {
    require_session();
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    // 4insight-service: like the seed's ClientSession, never persisted
    let name = unique("4insight-service");
    kp.add(
        &name,
        "4insight-service",
        &[
            "--set",
            &format!("token_url={}/token", idp.issuer),
            "--set",
            "client_id=keyport-service",
        ],
        &[("client_secret", "service-secret-0f3b")],
    );
    let t1 = access_token(&kp, &name);
    assert!(idp.active(&t1));
    assert_eq!(
        secret_tool_lookup("keyport-token", &name),
        None,
        "never persisted"
    );
    let t2 = access_token(&kp, &name);
    assert_ne!(t1, t2, "re-authenticates every time");

    // generic, with discovery and client_secret_post
    let post = unique("cc-post");
    kp.add(
        &post,
        "oauth2-client-credentials",
        &[
            "--set",
            &format!("issuer={}", idp.issuer),
            "--set",
            "client_id=keyport-post",
            "--set",
            "client_auth=post",
        ],
        &[("client_secret", "post-secret-91aa")],
    );
    let t = access_token(&kp, &post);
    assert!(idp.active(&t));
    assert_eq!(access_token(&kp, &post), t, "cached in the keychain");

    // a resource indicator (RFC 8707) is sent: the provider issues a JWT for that audience
    let res = unique("cc-resource");
    kp.add(
        &res,
        "oauth2-client-credentials",
        &[
            "--set",
            &format!("issuer={}", idp.issuer),
            "--set",
            "client_id=keyport-service",
            "--set",
            "scopes=api",
            "--set",
            "resource=https://api.example.com",
        ],
        &[("client_secret", "service-secret-0f3b")],
    );
    let jwt = access_token(&kp, &res);
    let payload = jwt.split('.').nth(1).expect("a JWT for a resource");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["aud"], "https://api.example.com", "{claims}");
    kp.run(&["profile", "rm", &res]).ok();

    // a wrong secret: the provider's own error, in one line, without the secret
    kp.run_with(
        &["secret", "set", &name, "client_secret"],
        "wrong-secret-x\n",
    )
    .ok();
    let r = kp.run(&["token", &name]).fails_with("invalid_client");
    assert!(!r.stderr.contains("wrong-secret-x"));
    kp.run(&["login", &name])
        .fails_with("need no interactive login");
    for n in [&name, &post] {
        kp.run(&["profile", "rm", n]).ok();
    }
}

#[test]
fn waiting_for_a_login_without_a_browser_and_ctrl_c() {
    require_session();
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    let browser = Browser::new();
    let name = user_profile(&kp, &idp, "oauth2-auth-code");

    // --no-browser: BROWSER is not run; the URL is printed and Keyport waits.
    let r = browser.run(
        &kp,
        "approve",
        &["login", &name, "--no-browser", "--timeout", "1"],
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!("{}/auth?", idp.issuer)),
        "{r:#?}"
    );
    assert!(r.stderr.contains("no login callback within 1 s"), "{r:#?}");
    assert_eq!(browser.text(), "", "no browser may be started");

    // No display and no BROWSER: print the URL and wait.
    let o = kp
        .command()
        .args(["login", &name, "--timeout", "1"])
        .env_remove("BROWSER")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no display and no BROWSER set") && err.contains("/auth?"),
        "{err}"
    );

    // Ctrl-C while waiting for the callback
    let child = kp
        .command()
        .args(["login", &name, "--timeout", "60"])
        .env("BROWSER", fake_browser())
        .env("FAKE_BROWSER_MODE", "ignore")
        .env("FAKE_BROWSER_LOG", browser.log.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the browser to be started", || {
        browser.text().contains("IGNORE")
    });
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(secret_tool_lookup("keyport-token", &name), None);
    kp.run(&["profile", "rm", &name]).ok();
}

/// An OAuth profile's API base URL (where the loopback helper sends requests) is not part
/// of how its token is obtained: moving it keeps the session; changing a login setting
/// does not.
#[test]
fn moving_the_api_base_url_keeps_the_session() {
    require_session();
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    let browser = Browser::new();
    let name = user_profile(&kp, &idp, "4insight-user");
    let r = browser.run(&kp, "approve", &["login", &name, "--timeout", "30"]);
    assert_eq!(r.code, 0, "{r:#?}");
    let list: Value =
        serde_json::from_str(&kp.run(&["profile", "list", "--json"]).ok().stdout).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name.as_str())
        .unwrap();
    assert_eq!(
        row["base_url"], "https://4insight-api-prod.4subsea.net",
        "the seed's REST API"
    );
    let before = secret_tool_lookup("keyport-token", &name).unwrap();
    kp.run(&[
        "profile",
        "set",
        &name,
        "base_url=https://api.staging.example",
    ])
    .ok();
    assert_eq!(
        secret_tool_lookup("keyport-token", &name).as_deref(),
        Some(before.as_str()),
        "the session is kept"
    );
    assert_eq!(idp.userinfo(&access_token(&kp, &name)), 200);
    kp.run(&["profile", "set", &name, "scopes=openid"]).ok();
    assert_eq!(
        secret_tool_lookup("keyport-token", &name),
        None,
        "other scopes: a new login"
    );
    kp.run(&["profile", "rm", &name]).ok();
}
