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
        // Pacing, not synchronization: a tool calling its APIs a few times a second.
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
    let mut watch = kp.watch();
    // A token fetched at start, ready before anyone asks.
    watch.wait_state(&imp, "valid");
    assert_eq!(fake.count("/api/v3/token"), 1, "one token call at start");
    // Nobody uses it: it is left to lapse.
    watch.wait_state(&imp, "expired");
    assert_eq!(fake.count("/api/v3/token"), 1, "no token calls while idle");
    let h = header(&kp, &imp);
    assert_eq!(fake.call("/api/v3/datasources", &h), 200);
    assert_eq!(fake.count("/api/v3/token"), 2, "fetched again on demand");
}

/// Sleeps until the moment the profile's stored token expires (read from `token --json`):
/// a computed wait for a wall-clock fact, not a guess.
fn sleep_past_expiry(kp: &Keyport, name: &str) {
    let r = kp.run(&["token", name, "--json", "--min-valid", "0"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let exp = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = exp - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(50);
    if left.is_positive() {
        std::thread::sleep(left.try_into().unwrap());
    }
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
    let _heavy = keychain_heavy();
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
    sleep_past_expiry(&kp, &pw);
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
    sleep_past_expiry(&kp, &pw);
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
    let mut watch = kp.watch();
    let first = header(&kp, &pw);
    fake.set_fault(Fault::Answer(500, r#"{"message": "Server Error"}"#.into()));
    // renewal is due at ~4 s; it fails and retries on a backoff
    let e = watch.wait_failure(&pw, "answered 500: Server Error");
    assert_eq!(e["profile"]["state"], "error", "{e}");
    assert!(e["profile"]["failures"].as_u64().unwrap() >= 1, "{e}");
    assert!(
        e["profile"]["next_refresh_at"].is_string(),
        "backoff is scheduled: {e}"
    );
    assert_eq!(e["error"]["kind"], "unavailable", "{e}");
    // the old token is still served, and still works
    assert_eq!(header(&kp, &pw), first);
    assert_eq!(fake.call("/api/v1/flows", &first), 200);
    // other faults: garbage, too slow (KEYPORT_HTTP_TIMEOUT=1: a 2 s answer times out)
    fake.set_fault(Fault::Garbage);
    watch.wait_failure(&pw, "not JSON");
    fake.set_fault(Fault::Slow(Duration::from_secs(2)));
    let e = watch.wait_failure(&pw, "did not answer within 1 s");
    assert_eq!(
        e["error"]["kind"], "unavailable",
        "a timeout is retried: {e}"
    );
    // connection refused: nobody listens any more. (Stop listening before clearing the
    // fault: a retry queued in between would otherwise be answered with a fresh token.)
    fake.stop_listening();
    fake.set_fault(Fault::None);
    let e = watch.wait_failure(&pw, "cannot be reached");
    assert_eq!(e["profile"]["state"], "error", "{e}");
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
    watch.wait_for("the recovery", |e| {
        e["event"] == "renewal_succeeded" && e["profile"]["name"] == pw.as_str()
    });
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
        // Pacing, not synchronization: a tool asking a few times a second.
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
    let mut watch = kp.watch();
    watch.wait_state(&loud, "expiring");
    watch.wait_state(&loud, "expired");
    watch.wait_state(&quiet, "expired");
    // (the notification server gets them on a thread of the agent's own)
    eventually("two notifications", || notifications_for(&loud).len() >= 2);
    // A request after expiry is refused, and tells nobody again.
    kp.run(&["header", &loud]).fails_with("expired at");
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
# the agent's events, until the profile is valid (bounded by timeout)
exec 3< <(timeout 30 "$KEYPORT" status --watch --json)
watcher=$!
grep -q -m1 '"state":"valid"' <&3
kill "$watcher" 2>/dev/null || true
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
    let mut watch = kp.watch();
    let pw = add_patchworks(&kp, &fake);
    watch.wait_for("the new profile", |e| {
        e["event"] == "added" && e["profile"]["name"] == pw.as_str()
    });
    watch.wait_state(&pw, "valid");
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
    assert_eq!(
        fake.count("/fabric/api/login"),
        tries,
        "no retries of a 401"
    );
    let s = &kp.status()[&pw];
    assert!(s["next_refresh_at"].is_null(), "and none scheduled: {s}");
    assert_eq!(s["last_error_kind"], "rejected", "{s}");
    kp.run_with(
        &["secret", "set", &pw, "password"],
        &format!("{PATCHWORKS_PASSWORD}\n"),
    )
    .ok();
    let h = header(&kp, &pw);
    assert_eq!(fake.call("/api/v1/flows", &h), 200);
    kp.run(&["profile", "rm", &pw]).ok();
    watch.wait_for("the removal", |e| {
        e["event"] == "removed" && e["name"] == pw.as_str()
    });
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
    // status --watch draws the table, and redraws it (on changes, and for the countdowns)
    let mut watch = kp
        .command()
        .args(["status", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = String::new();
    {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
        while out.matches("PROFILE").count() < 2 {
            out += &lines.next().expect("status --watch ended").unwrap();
            out.push('\n');
        }
    }
    watch.kill().unwrap();
    let _ = watch.wait();
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

/// A detached agent has no terminal: a device-flow login started from the "Log in" action
/// shows its code as a notification (and opens `verification_uri_complete`).
#[test]
fn a_detached_agent_shows_the_device_code_as_a_notification() {
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    let name = unique("device");
    let script = format!(
        r#"
set -e
"$KEYPORT" profile add {name} --preset oauth2-device --set issuer={issuer} --set client_id=keyport-native --set "scopes=openid offline_access"
"$KEYPORT" agent --lead 1
exec 3< <(timeout 30 "$KEYPORT" status --watch --json)
watcher=$!
grep -q -m1 '"state":"valid"' <&3
kill "$watcher" 2>/dev/null || true
echo "TOKEN=$("$KEYPORT" token {name})"
cp "$NOTIFY_SINK_LOG" "$OUT/sink.jsonl"
kill "$(sed -e 's/.*"pid":\([0-9]*\).*/\1/' "$KEYPORT_RUNTIME_DIR/agent.json")"
"#,
        issuer = idp.issuer
    );
    let out = tempfile::tempdir().unwrap();
    let browser_log = tempfile::NamedTempFile::new().unwrap();
    let o = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/headless-session.sh"),
    )
    .args(["bash", "-c", &script])
    .env("KEYPORT", bin("keyport"))
    .env("KEYPORT_CONFIG_DIR", kp.config_dir())
    .env("KEYPORT_RUNTIME_DIR", kp.runtime_dir())
    .env("BROWSER", fake_browser())
    .env("FAKE_BROWSER_LOG", browser_log.path())
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
    let bodies: Vec<String> = sink
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["method"] == "Notify")
        .map(|e| e["body"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("/device") && b.contains("enter the code")),
        "{bodies:#?}"
    );
    let visited = std::fs::read_to_string(browser_log.path()).unwrap();
    assert!(visited.contains("/device?user_code="), "{visited}");
}

/// With an agent running, `keyport login` runs in the agent: the steps show in the
/// terminal, a second login of the profile is refused clearly, Ctrl-C cancels it, and a
/// finished login is served by the agent at once.
#[test]
fn a_login_in_the_agent_is_single_flight_and_ctrl_c_cancels_it() {
    require_session();
    let idp = Oidc::start(60);
    let kp = Keyport::new();
    let name = unique("agent-login");
    idp.add_native_profile(&kp, &name, "4insight-user");
    let _agent = kp.start_agent(&["--no-notifications"], &[]);
    let log = tempfile::NamedTempFile::new().unwrap();
    let browser = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let first = kp
        .command()
        .args(["login", &name, "--timeout", "60"])
        .env("BROWSER", fake_browser())
        .env("FAKE_BROWSER_MODE", "ignore")
        .env("FAKE_BROWSER_LOG", log.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually("the browser to be started", || browser().contains("IGNORE"));
    assert_eq!(kp.status()[&name]["login_in_progress"], true);
    kp.run(&["login", &name, "--no-browser"])
        .fails_with("already in progress");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("Open this URL to log in"), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(kp.status()[&name]["login_in_progress"], false);
    assert_eq!(kp.status()[&name]["state"], "login_required");
    // now for real
    let o = kp
        .command()
        .args(["login", &name, "--timeout", "30"])
        .env("BROWSER", fake_browser())
        .env("FAKE_BROWSER_LOG", log.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("logged in '{name}'")), "{err}");
    assert_eq!(kp.status()[&name]["state"], "valid");
    assert_eq!(
        idp.userinfo(kp.run(&["token", &name]).ok().stdout.trim()),
        200
    );
}

/// A few hundred token profiles with stored tokens; while `keyport token` asks for unknown
/// names dozens of times a second, a valid profile keeps its normal latency, and the
/// keychain daemon is still alive afterwards. (Before the read side, each unknown name
/// re-read every stored token: a valid profile waited up to 156 s and gnome-keyring 42
/// aborted.)
#[test]
fn unknown_names_never_stall_a_valid_profile_or_the_keychain() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let prefix = unique("storm");
    const N: usize = 300;
    let mut toml = String::from("version = 1\n");
    for i in 0..N {
        toml += &format!(
            "[profiles.{prefix}-{i}]\npreset = \"patchworks-login\"\nsecrets = [\"password\"]\n[profiles.{prefix}-{i}.settings]\nbase_url = \"{}\"\nusername = \"u\"\n",
            fake.url
        );
    }
    std::fs::create_dir_all(kp.config_dir()).unwrap();
    std::fs::write(kp.config_file(), toml).unwrap();
    let _heavy = keychain_heavy();
    let fmt = &time::format_description::well_known::Rfc3339;
    let now = time::OffsetDateTime::now_utc();
    let (obtained, expires) = (
        now.format(fmt).unwrap(),
        (now + time::Duration::days(1)).format(fmt).unwrap(),
    );
    // One secret-tool after the other (sequential sessions are what the daemon copes with).
    for i in 0..N {
        let item = format!(
            r#"{{"v":1,"access_token":"stored-{i}","expires_at":"{expires}","obtained_at":"{obtained}"}}"#
        );
        let mut c = std::process::Command::new("secret-tool")
            .args([
                "store",
                "--label=Keyport token",
                "service",
                "keyport-token",
                "username",
            ])
            .arg(format!("{prefix}-{i}"))
            .args(["target", "default", "application", "rust-keyring"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(item.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    }
    let _agent = kp.start_agent(&["--no-notifications"], &[]);
    let mut watch = kp.watch();
    for i in 0..N {
        watch.wait_state(&format!("{prefix}-{i}"), "valid");
    }
    assert_eq!(
        fake.count("/fabric/api/login"),
        0,
        "every stored token was used"
    );
    let token7 = "stored-7";
    let target = format!("{prefix}-7");
    let expected = format!("{token7}\n");
    assert_eq!(kp.run(&["token", &target]).ok().stdout, expected);

    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let storm: Vec<_> = (0..5)
        .map(|t| {
            let (stop, asked) = (stop.clone(), asked.clone());
            let (cmd, cfg, run) = (bin("keyport"), kp.config_dir(), kp.runtime_dir());
            let prefix = prefix.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let o = std::process::Command::new(&cmd)
                        .args(["token", &format!("{prefix}-typo-{t}-{n}")])
                        .env("KEYPORT_CONFIG_DIR", &cfg)
                        .env("KEYPORT_RUNTIME_DIR", &run)
                        .output()
                        .unwrap();
                    assert_eq!(o.status.code(), Some(1));
                    assert!(String::from_utf8_lossy(&o.stderr).contains("no profile named"));
                    asked.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    // pacing: each of 5 threads asks ~10 times a second
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(8);
    let mut worst = Duration::ZERO;
    let mut calls = 0;
    while Instant::now() < until {
        let t = Instant::now();
        assert_eq!(kp.run(&["token", &target]).ok().stdout, expected);
        worst = worst.max(t.elapsed());
        calls += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for s in storm {
        s.join().unwrap();
    }
    let asked = asked.load(Ordering::Relaxed);
    assert!(asked >= 200, "only {asked} unknown-name requests in 8 s");
    // Generous for a debug build on 2 busy cores; a reload or a keychain stall would take
    // seconds.
    assert!(
        worst < Duration::from_millis(1500),
        "a valid profile took {worst:?} while unknown names were asked ({calls} calls)"
    );
    let ping = std::process::Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.DBus.Peer.Ping",
        ])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "the keychain daemon is gone: {ping:?}"
    );
    assert!(
        secret_tool_lookup("keyport-token", &format!("{prefix}-1"))
            .unwrap()
            .contains("stored-1"),
        "the keychain still answers, and its items are intact"
    );
    assert_eq!(
        fake.count("/fabric/api/login"),
        0,
        "no renewals were triggered"
    );
    // (the 300 items stay: the headless keyring is thrown away with the session, and
    // clearing them would be 300 more sessions)
}

/// `keyport` (the front) answers token/header from the agent itself and hands everything
/// else to `keyport-cli`: both must print the same and exit alike, agent or not.
#[test]
fn the_front_and_the_full_cli_answer_alike() {
    require_session();
    let kp = Keyport::new();
    kp.add_basic("b");
    let old = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    kp.add(
        "old",
        "bearer",
        &["--set", &format!("expires_at={old}")],
        &[("token", "t")],
    );
    let compare = |when: &str| {
        for args in [
            &["token", "b"][..],
            &["token", "b", "--json"],
            &["header", "b", "--min-valid", "5"],
            &["token", "no-such-profile"],
            &["token", "b", "--min-valid", "soon"],
        ] {
            let run = |bin_name: &str| {
                let o = kp.command().args(args).output().unwrap();
                let full = std::process::Command::new(bin(bin_name))
                    .args(args)
                    .env("KEYPORT_CONFIG_DIR", kp.config_dir())
                    .env("KEYPORT_RUNTIME_DIR", kp.runtime_dir())
                    .output()
                    .unwrap();
                (o, full)
            };
            let (front, full) = run("keyport-cli");
            assert_eq!(front.status.code(), full.status.code(), "{when} {args:?}");
            assert_eq!(front.stdout, full.stdout, "{when} {args:?}");
            assert_eq!(
                String::from_utf8_lossy(&front.stderr).replace("keyport-cli", "keyport"),
                String::from_utf8_lossy(&full.stderr).replace("keyport-cli", "keyport"),
                "{when} {args:?}"
            );
        }
    };
    compare("standalone");
    let _agent = kp.start_agent(&["--no-notifications"], &[]);
    compare("with an agent");
    // and an error the agent decides (a pasted token past its expiry)
    sleep_past_expiry(&kp, "old");
    let r = kp.run(&["header", "old"]).fails_with("expired at");
    assert_eq!(r.stdout, "");
}
