//! The agent (`keyport agent`) through the real binaries, keychain, notification sink, fake
//! seed APIs and a real OpenID provider: tokens stay valid without anyone asking, one token
//! call however many callers wait, failures back off and recover, and the user hears about
//! what needs them, once.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use keyport_system_tests::fakes::*;
use keyport_system_tests::oidc::*;
use keyport_system_tests::*;
use serde_json::Value;

fn add_patchworks(kp: &Keyport, fake: &Fake) -> String {
    let name = unique("pw");
    fake.add_patchworks(kp, &name);
    name
}

fn header(kp: &Keyport, name: &str) -> String {
    kp.run(&["header", name, "--min-valid", "1"]).ok().stdout
}

/// With lifetimes of 2-3 s, an agent running for a minute keeps every seed token valid:
/// tools calling the APIs continuously with whatever `keyport header` gives see no 401.
#[test]
fn agent_keeps_every_token_valid_for_a_minute() {
    require_session();
    let fake = Fake::start(Lifetimes {
        improvado: Duration::from_secs(3),
        patchworks: Duration::from_secs(3),
        operator: Duration::from_secs(2),
        scoped: Duration::from_secs(3),
    });
    let kp = Keyport::new();
    let imp = unique("imp");
    fake.add_improvado(&kp, &imp, 3);
    let pw = add_patchworks(&kp, &fake);
    let op = unique("op");
    fake.add_airbyte_operator(&kp, &op);
    let scoped = unique("scoped");
    add_airbyte_scoped(&kp, &scoped, &op, "ws1");
    let mut agent = kp.start_agent(&["--lead", "1", "--no-notifications"], &[]);

    let checks: [(&str, &str); 3] = [
        (&imp, "/api/v3/datasources"),
        (&pw, "/fabric/api/flows"),
        (&scoped, "/api/v1/embedded/scoped-token/info"),
    ];
    let checks = checks.map(|(n, p)| {
        (
            n,
            if p == "/fabric/api/flows" {
                "/api/v1/flows"
            } else {
                p
            },
        )
    });
    let until = Instant::now() + Duration::from_secs(60);
    let mut calls = 0;
    while Instant::now() < until {
        for (name, path) in checks {
            let h = header(&kp, name);
            assert_eq!(
                fake.call(path, &h),
                200,
                "{name} got a token the API rejects"
            );
            calls += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fake.unauthorized_uses(), 0);
    assert!(agent.alive());
    // Renewals came from the agent's timers, not from every request: about one per 2/3 of a
    // lifetime (3 s -> ~2 s: ~30 a minute), far fewer than the requests.
    for path in [
        "/api/v3/token",
        "/fabric/api/login",
        "/embedded/scoped-token",
    ] {
        let n = fake.count(path);
        assert!(
            (20..=60).contains(&n),
            "{path}: {n} token calls for {calls} requests"
        );
    }
    let status = kp.status();
    for (name, _) in checks {
        // (a renewal may be in flight at this very moment)
        let s = &status[name];
        assert!(s["state"] == "valid" || s["state"] == "refreshing", "{s}");
        assert_eq!(s["failures"], 0, "{s}");
        assert!(s["last_refresh_at"].is_string(), "{s}");
    }
    assert!(agent.stop().success());
}

/// Improvado's token is renewed on use: the agent keeps it fresh while it is handed out, and
/// makes no token calls for it while nobody asks.
#[test]
fn sliding_token_is_not_renewed_while_idle() {
    require_session();
    let fake = Fake::start(Lifetimes {
        improvado: Duration::from_secs(2),
        ..Default::default()
    });
    let kp = Keyport::new();
    let imp = unique("imp-idle");
    fake.add_improvado(&kp, &imp, 2);
    let _agent = kp.start_agent(&["--lead", "1", "--no-notifications"], &[]);
    eventually("a token fetched at start, ready before anyone asks", || {
        kp.status().get(&imp).map(|s| s["state"] == "valid") == Some(true)
    });
    assert_eq!(fake.count("/api/v3/token"), 1, "one token call at start");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(fake.count("/api/v3/token"), 1, "no token calls while idle");
    assert_eq!(kp.status()[&imp]["state"], "expired");
    let h = header(&kp, &imp);
    assert_eq!(fake.call("/api/v3/datasources", &h), 200);
    assert_eq!(fake.count("/api/v3/token"), 2, "fetched again on demand");
}

fn concurrent_tokens(kp: &Keyport, name: &str, n: usize) -> Vec<String> {
    let children: Vec<_> = (0..n)
        .map(|_| {
            kp.command()
                .args(["token", name, "--min-valid", "1"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).unwrap()
        })
        .collect()
}

/// 200 concurrent `keyport token` calls against an expired token make exactly one token
/// request: across processes (the per-profile lock file) and through the agent.
#[test]
fn two_hundred_concurrent_calls_make_one_token_request() {
    require_session();
    // Tokens that expire quickly to get an expired one; then long-lived ones, so that a herd
    // of 200 processes on 2 busy cores finishes well within the new token's lifetime.
    let short = Lifetimes {
        patchworks: Duration::from_secs(2),
        ..Default::default()
    };
    let long = Lifetimes {
        patchworks: Duration::from_secs(120),
        ..Default::default()
    };
    let fake = Fake::start(short);
    let kp = Keyport::new();
    let pw = add_patchworks(&kp, &fake);
    let expired = header(&kp, &pw);
    assert_eq!(fake.count("/fabric/api/login"), 1);
    std::thread::sleep(Duration::from_millis(2100));
    fake.set_lifetimes(long);

    // standalone processes
    let tokens = concurrent_tokens(&kp, &pw, 200);
    assert_eq!(
        fake.count("/fabric/api/login"),
        2,
        "exactly one token request for 200 callers"
    );
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "all got the same new token"
    );
    assert!(!expired.contains(tokens[0].trim()));

    // through the agent (it fetches at start if needed; then requests share one renewal)
    fake.set_lifetimes(short);
    kp.run(&["refresh", &pw]).ok();
    assert_eq!(fake.count("/fabric/api/login"), 3);
    std::thread::sleep(Duration::from_millis(2100));
    fake.set_lifetimes(long);
    let _agent = kp.start_agent(&["--lead", "1", "--no-notifications"], &[]);
    let tokens = concurrent_tokens(&kp, &pw, 200);
    assert_eq!(fake.count("/fabric/api/login"), 4, "one more token request");
    assert!(tokens.iter().all(|t| *t == tokens[0]));
}

/// Endpoint faults during a run: the old token is served until it really expires, backoff
/// shows in `status`, one notification after repeated failure, recovery when the endpoint
/// comes back, no crash.
#[test]
fn faults_back_off_keep_the_old_token_and_recover() {
    require_session();
    let mut fake = Fake::start(Lifetimes {
        patchworks: Duration::from_secs(6),
        ..Default::default()
    });
    let kp = Keyport::new();
    let pw = add_patchworks(&kp, &fake);
    let mut agent = kp.start_agent(
        &[
            "--lead",
            "1",
            "--backoff-base-ms",
            "300",
            "--backoff-cap-ms",
            "1200",
            "--notify-after",
            "3",
        ],
        &[("KEYPORT_HTTP_TIMEOUT", OsStr::new("1"))],
    );
    let first = header(&kp, &pw);
    fake.set_fault(Fault::Answer(500, r#"{"message": "Server Error"}"#.into()));
    // renewal is due at ~4 s; it fails and retries on a backoff
    std::thread::sleep(Duration::from_millis(5000));
    let s = &kp.status()[&pw];
    assert_eq!(s["state"], "error", "{s}");
    assert!(s["failures"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["last_error"]
            .as_str()
            .unwrap()
            .contains("answered 500: Server Error"),
        "{s}"
    );
    assert!(
        s["next_refresh_at"].is_string(),
        "backoff is scheduled: {s}"
    );
    // the old token is still served, and still works
    assert_eq!(header(&kp, &pw), first);
    assert_eq!(fake.call("/api/v1/flows", &first), 200);
    // other faults: garbage, too slow
    fake.set_fault(Fault::Garbage);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(kp.status()[&pw]["last_error"]
        .as_str()
        .unwrap()
        .contains("not JSON"));
    fake.set_fault(Fault::Slow(Duration::from_secs(2)));
    std::thread::sleep(Duration::from_millis(2500));
    // connection refused: nobody listens any more. (Stop listening before clearing the
    // fault: a retry queued in between would otherwise be answered with a fresh token.)
    fake.stop_listening();
    fake.set_fault(Fault::None);
    let until = Instant::now() + Duration::from_secs(8);
    loop {
        let s = kp.status()[&pw].clone();
        if s["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be reached")
        {
            assert_eq!(s["state"], "error");
            break;
        }
        assert!(Instant::now() < until, "no refused renewal seen: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // after expiry with no renewal: a clear error, not an expired token
    let r = kp.run(&["header", &pw, "--min-valid", "1"]);
    if r.code == 0 {
        assert_eq!(
            r.stdout, first,
            "only the old, unexpired token may be served"
        );
    } else {
        assert!(r.stderr.contains("keyport: token endpoint"), "{r:#?}");
    }
    let n = notifications_for(&pw);
    assert_eq!(
        n.len(),
        1,
        "one notification for repeated failure, not one per retry: {n:?}"
    );
    assert!(n[0]["summary"].as_str().unwrap().contains("cannot renew"));
    assert!(!n[0]["body"].as_str().unwrap().contains(PATCHWORKS_PASSWORD));
    // the endpoint comes back
    fake.listen_again();
    let until = Instant::now() + Duration::from_secs(5);
    while kp.status()[&pw]["state"] != "valid" {
        assert!(Instant::now() < until, "no recovery: {}", kp.status()[&pw]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let h = header(&kp, &pw);
    assert_ne!(h, first);
    assert_eq!(fake.call("/api/v1/flows", &h), 200);
    assert_eq!(kp.status()[&pw]["failures"], 0);
    // `keyport refresh` through the agent renews now
    let before = fake.count("/fabric/api/login");
    kp.run(&["refresh", &pw]).ok();
    assert_eq!(fake.count("/fabric/api/login"), before + 1);
    assert_ne!(header(&kp, &pw), h);
    assert!(agent.alive(), "no crash");
}

/// Refresh-token rotation over many renewals by the agent (a lost rotated token would make
/// oidc-provider revoke the whole grant).
#[test]
fn agent_rotates_refresh_tokens_over_many_renewals() {
    require_session();
    let idp = Oidc::start(2);
    let kp = Keyport::new();
    let name = unique("oidc");
    idp.add_native_profile(&kp, &name, "4insight-user");
    let _agent = kp.start_agent(&["--lead", "1", "--no-notifications"], &[]);
    // (right after start it may still be looking for a stored token: "refreshing")
    eventually("the agent to find no session", || {
        kp.status()[&name]["state"] == "login_required"
    });
    let log = tempfile::NamedTempFile::new().unwrap();
    let o = kp
        .command()
        .args(["login", &name, "--timeout", "30"])
        .env("BROWSER", fake_browser())
        .env("FAKE_BROWSER_LOG", log.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the CLI told the agent; it now owns the token
    let mut seen = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        let t = kp
            .run(&["token", &name, "--min-valid", "1"])
            .ok()
            .stdout
            .trim()
            .to_string();
        assert_eq!(idp.userinfo(&t), 200, "every handed-out token works");
        seen.insert(t);
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(seen.len() >= 7, "only {} access tokens in 15 s", seen.len());
    let s = &kp.status()[&name];
    assert!(s["state"] == "valid" || s["state"] == "refreshing", "{s}");
    assert_eq!(s["failures"], 0, "{s}");
    let rt: Value =
        serde_json::from_str(&secret_tool_lookup("keyport-token", &name).unwrap()).unwrap();
    assert!(
        idp.active(rt["refresh_token"].as_str().unwrap()),
        "the grant survived every rotation"
    );
}

/// Tokens that need a person: one "expires soon" and one "expired" notification each, never
/// repeated; none for a profile with notify=false.
#[test]
fn expiring_and_expired_notifications_once_each() {
    require_session();
    let kp = Keyport::new();
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(4))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (loud, quiet) = (unique("pasted"), unique("quiet"));
    for n in [&loud, &quiet] {
        kp.add(
            n,
            "bearer",
            &["--set", &format!("expires_at={soon}")],
            &[("token", "pasted-tok-1")],
        );
    }
    kp.run(&["profile", "set", &quiet, "notify=false"]).ok();
    let _agent = kp.start_agent(&["--lead", "2"], &[]);
    std::thread::sleep(Duration::from_millis(6000));
    let n = notifications_for(&loud);
    let summaries: Vec<&str> = n.iter().map(|x| x["summary"].as_str().unwrap()).collect();
    assert_eq!(
        summaries,
        [
            format!("Keyport: {loud} expires soon"),
            format!("Keyport: {loud} expired")
        ]
    );
    for x in &n {
        let body = x["body"].as_str().unwrap();
        assert!(
            body.contains(&format!("keyport secret set {loud} token")),
            "{body}"
        );
        assert!(!body.contains("pasted-tok-1"));
    }
    assert!(notifications_for(&quiet).is_empty());
    assert_eq!(kp.status()[&loud]["state"], "expired");
}

/// "Log in" on the login-required notification starts the browser login (the sink presses
/// it, in a desktop session of its own), and the profile becomes valid.
#[test]
fn login_action_on_the_notification_logs_in() {
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    let name = unique("needs-login");
    let script = format!(
        r#"
set -e
"$KEYPORT" profile add {name} --preset oauth2-auth-code --set issuer={issuer} --set client_id=keyport-native --set "scopes=openid offline_access"
"$KEYPORT" agent --lead 1
for i in $(seq 100); do
  "$KEYPORT" status --json | grep -q '"state": "valid"' && break
  sleep 0.2
done
"$KEYPORT" status
echo "TOKEN=$("$KEYPORT" token {name})"
cp "$NOTIFY_SINK_LOG" "$OUT/sink.jsonl"
# the agent is detached: stop it before the session goes
kill "$(sed -e 's/.*"pid":\([0-9]*\).*/\1/' "$KEYPORT_RUNTIME_DIR/agent.json")"
"#,
        issuer = idp.issuer
    );
    let out = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/headless-session.sh"),
    )
    .args(["bash", "-c", &script])
    .env("KEYPORT", bin("keyport"))
    .env("KEYPORT_CONFIG_DIR", kp.config_dir())
    .env("KEYPORT_RUNTIME_DIR", kp.runtime_dir())
    .env("BROWSER", fake_browser())
    .env("NOTIFY_SINK_INVOKE", "login")
    .env("HEADLESS_X", "0")
    .env("OUT", out.path())
    .stdin(std::process::Stdio::null())
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TOKEN="))
        .expect("a token");
    assert_eq!(idp.userinfo(token), 200, "{stdout}");
    let sink = std::fs::read_to_string(out.path().join("sink.jsonl")).unwrap();
    let events: Vec<Value> = sink
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let notice = events
        .iter()
        .find(|e| e["method"] == "Notify")
        .expect("a notification");
    assert_eq!(notice["summary"], format!("Keyport: log in to {name}"));
    assert_eq!(notice["actions"]["login"], "Log in");
    assert!(events
        .iter()
        .any(|e| e["method"] == "(emitted ActionInvoked)"));
    assert!(
        !kp.runtime_dir().join("agent.json").exists(),
        "the agent was stopped"
    );
}

/// Profiles added, changed and removed while the agent runs take effect without a restart.
#[test]
fn profile_changes_take_effect_without_restart() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let _agent = kp.start_agent(&["--no-notifications"], &[]);
    assert!(kp.status().is_empty());
    let pw = add_patchworks(&kp, &fake);
    let until = Instant::now() + Duration::from_secs(5);
    while kp.status().get(&pw).map(|s| s["state"].clone()) != Some("valid".into()) {
        assert!(Instant::now() < until, "{:?}", kp.status());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        fake.count("/fabric/api/login"),
        1,
        "fetched as soon as it was added"
    );
    // a new secret: the agent drops the old token and fetches with the new one
    kp.run_with(&["secret", "set", &pw, "password"], "wrong-password\n")
        .ok();
    kp.run(&["header", &pw])
        .fails_with("These credentials do not match our records.");
    // A refused password is not retried (it could lock the account) until something changes.
    let tries = fake.count("/fabric/api/login");
    for _ in 0..3 {
        kp.run(&["header", &pw])
            .fails_with("These credentials do not match our records.");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        fake.count("/fabric/api/login"),
        tries,
        "no retries of a 401"
    );
    kp.run_with(
        &["secret", "set", &pw, "password"],
        &format!("{PATCHWORKS_PASSWORD}\n"),
    )
    .ok();
    let h = header(&kp, &pw);
    assert_eq!(fake.call("/api/v1/flows", &h), 200);
    kp.run(&["profile", "rm", &pw]).ok();
    assert!(!kp.status().contains_key(&pw));
}

#[test]
fn one_agent_at_a_time_and_sigterm_stops_it_cleanly() {
    require_session();
    let kp = Keyport::new();
    kp.add_basic("b");
    let mut agent = kp.start_agent(&["--no-notifications"], &[]);
    let pid = agent.child.id();
    let o = kp
        .command()
        .args(["agent", "--foreground"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("an agent is already running (pid {pid})")),
        "{err}"
    );
    let info: Value = serde_json::from_str(
        &std::fs::read_to_string(agent.runtime_dir.join("agent.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(info["pid"], pid);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(agent.runtime_dir.join("agent.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the control socket is the user's only");
    let mode = std::fs::metadata(agent.runtime_dir.join("agent.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // status --watch redraws every second
    let mut watch = kp
        .command()
        .args(["status", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    watch.kill().unwrap();
    let out = String::from_utf8_lossy(&watch.wait_with_output().unwrap().stdout).into_owned();
    assert!(out.matches("PROFILE").count() >= 2, "{out}");
    assert!(
        out.contains("\x1b[2J") && out.contains("b ") && out.contains("valid"),
        "{out}"
    );
    assert!(agent.stop().success(), "SIGTERM is a clean stop");
    assert!(!agent.runtime_dir.join("agent.sock").exists());
    assert!(!agent.runtime_dir.join("agent.json").exists());
    // without an agent, the CLI works standalone
    assert_eq!(
        kp.run(&["header", "b"]).ok().stdout,
        "Authorization: Basic dTpwdw==\n"
    );
    kp.run(&["status"]).fails_with("no agent is running");
    kp.run(&["profile", "rm", "b"]).ok();
}
