//! Hardening (issue 8), through the real binary, keychain and fakes: each test is named
//! after the behaviour it pins. The threat model is in docs/ARCHITECTURE.md: other local
//! users, other local processes and web pages, a hostile token endpoint or identity
//! provider, and secrets leaking into files, logs, notifications or process arguments.

use keyport_system_tests::fakes::*;
use keyport_system_tests::oidc::eventually;
use keyport_system_tests::*;

/// `{"token": "a\r\nX-Evil: 1"}` would make `keyport header` print a second header of the
/// endpoint's choosing: refused, one clear line, nothing stored.
#[test]
fn a_token_with_a_line_break_is_refused_and_nothing_is_stored() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let pw = unique("pw");
    fake.add_patchworks(&kp, &pw);
    for body in [
        r#"{"token": "a\r\nX-Evil: 1", "expires_in": 60}"#,
        r#"{"token": "a\u001b[31mred", "expires_in": 60}"#,
    ] {
        fake.set_fault(Fault::Answer(200, body.into()));
        let r = kp
            .run(&["header", &pw])
            .fails_with("line break or control character: refused, nothing was stored");
        assert_eq!(r.stdout, "");
        assert!(!r.stderr.contains("Evil"), "{r:#?}");
        assert_eq!(secret_tool_lookup("keyport-token", &pw), None);
    }
    // and a token exchange (Airbyte scoped token) the same way
    fake.set_fault(Fault::None);
    let op = unique("op");
    fake.add_airbyte_operator(&kp, &op);
    let scoped = unique("scoped");
    add_airbyte_scoped(&kp, &scoped, &op, "ws1");
    kp.run(&["token", &op]).ok();
    fake.set_fault(Fault::Answer(200, r#"{"token": "x\ny"}"#.into()));
    kp.run(&["token", &scoped])
        .fails_with("line break or control character");
    assert_eq!(secret_tool_lookup("keyport-token", &scoped), None);
}

/// Text from an endpoint can't drive the terminal or the notification server, and an
/// endpoint that echoes what it got can't put the tokens in use into an error.
#[test]
fn error_text_from_endpoints_is_inert_and_scrubbed_of_tokens() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let op = unique("op");
    fake.add_airbyte_operator(&kp, &op);
    let scoped = unique("scoped");
    add_airbyte_scoped(&kp, &scoped, &op, "ws1");
    let op_token = kp.run(&["token", &op]).ok().stdout.trim().to_string();
    // an exchange endpoint that echoes the operator token it was sent
    fake.set_fault(Fault::Echo(500));
    let r = kp.run(&["token", &scoped]).fails_with("answered 500");
    assert!(r.stderr.contains("you sent"), "{r:#?}");
    assert!(
        !r.stderr.contains(&op_token),
        "the parent's token leaked: {r:#?}"
    );
    assert!(!r.stderr.contains(AIRBYTE_CLIENT_SECRET));
    // escape sequences and markup in the vendor's words
    let hostile = r#"{"message": "bad \u001b[2J\u001b]0;pwned\u0007<b>token</b> & more"}"#;
    fake.set_fault(Fault::Answer(500, hostile.into()));
    let r = kp
        .run(&["token", &scoped])
        .fails_with("bad <b>token</b> & more");
    assert!(
        !r.stderr.contains('\u{1b}') && !r.stderr.contains('\u{7}'),
        "{r:#?}"
    );
    // the same through the agent: status and the notification
    let _agent = kp.start_agent(
        &[
            "--notify-after",
            "1",
            "--backoff-base-ms",
            "200",
            "--backoff-cap-ms",
            "400",
        ],
        &[],
    );
    let mut watch = kp.watch();
    let e = watch.wait_failure(&scoped, "more");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        !msg.contains('\u{1b}') && msg.contains("<b>token</b>"),
        "{msg}"
    );
    let status = &kp.status()[&scoped];
    assert!(
        !status["last_error"].as_str().unwrap().contains('\u{1b}'),
        "{status}"
    );
    eventually("the renewal-failing notification", || {
        !notifications_for(&scoped).is_empty()
    });
    let body = notifications_for(&scoped)[0]["body"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        body.contains("&lt;b&gt;token&lt;/b&gt; &amp; more"),
        "{body}"
    );
    assert!(!body.contains('\u{1b}'), "{body}");
}

/// An endpoint that answers far more than a token is an error naming it, read only up to
/// the cap: the process's memory stays bounded (peak RSS of the whole `keyport` process).
#[test]
fn an_endless_answer_is_refused_at_a_mebibyte_and_memory_stays_bounded() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let pw = unique("pw");
    fake.add_patchworks(&kp, &pw);
    fake.set_fault(Fault::Flood(512));
    // python3 reports its children's peak RSS (the front execs keyport-cli: one process)
    let script = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n\
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
        print(r.stderr, end='')";
    let out = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(bin("keyport"))
        .args(["header", &pw])
        .env("KEYPORT_CONFIG_DIR", kp.config_dir())
        .env("KEYPORT_RUNTIME_DIR", kp.runtime_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let first: Vec<u64> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let stderr: String = lines.collect();
    assert_eq!(first[0], 1, "{text}");
    assert!(
        stderr.contains("token endpoint") && stderr.contains("more than 1024 KiB: refused"),
        "{stderr}"
    );
    let peak_mib = first[1] / 1024;
    assert!(
        peak_mib < 64,
        "peak RSS {peak_mib} MiB while the endpoint offered 512 MiB"
    );
    assert_eq!(secret_tool_lookup("keyport-token", &pw), None);
}

/// The authorization URL (its `state` and PKCE challenge) and a device-flow user code
/// never appear on a command line, which every local user can read: the browser command
/// gets a one-time loopback URL that redirects. The logins still work.
#[test]
fn the_authorization_url_never_appears_on_a_command_line() {
    require_session();
    let idp = keyport_system_tests::oidc::Oidc::start(60);
    let kp = Keyport::new();
    let argv = tempfile::NamedTempFile::new().unwrap();
    let visited = tempfile::NamedTempFile::new().unwrap();
    for preset in ["oauth2-auth-code", "oauth2-device"] {
        let name = unique(preset);
        idp.add_native_profile(&kp, &name, preset);
        let o = kp
            .command()
            .args(["login", &name, "--timeout", "30"])
            .env("BROWSER", keyport_system_tests::oidc::fake_browser())
            .env("FAKE_BROWSER_ARGV", argv.path())
            .env("FAKE_BROWSER_LOG", visited.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{preset}: {err}");
        let started = std::fs::read_to_string(argv.path()).unwrap();
        let last = started.lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("http://127.0.0.1:"), "{preset}: {last}");
        for secret in ["state=", "code_challenge=", "user_code"] {
            assert!(
                !started.contains(secret),
                "{preset}: {secret} on a command line: {started}"
            );
        }
        if let Some(code) = err.split("enter the code: ").nth(1) {
            let code = code.split_whitespace().next().unwrap();
            assert!(
                !started.contains(code),
                "the user code on a command line: {started}"
            );
        }
        // the browser did get there, through the redirect
        let pages = std::fs::read_to_string(visited.path()).unwrap();
        assert!(pages.contains(&format!("{}/", idp.issuer)), "{pages}");
    }
}

/// The control socket serves only its own user, whatever its file modes say: another
/// user who can reach it (the modes opened by mistake) is refused. (Needs root to act as
/// another user, as CI is; elsewhere it says so and checks nothing.)
#[test]
fn the_control_socket_refuses_other_users_and_long_requests() {
    require_session();
    let kp = Keyport::new();
    kp.add_basic("b");
    let _agent = kp.start_agent(&["--no-notifications"], &[]);
    let socket = kp.runtime_dir().join("agent.sock");
    let ask = |line: &str, as_nobody: bool| {
        let script = "import socket, sys\n\
            s = socket.socket(socket.AF_UNIX)\n\
            s.connect(sys.argv[1])\n\
            s.sendall(sys.argv[2].encode() + b'\\n')\n\
            print(s.makefile().readline(), end='')";
        let mut c = if as_nobody {
            let mut c = std::process::Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "/usr/bin/python3",
            ]);
            c
        } else {
            std::process::Command::new("/usr/bin/python3")
        };
        let o = c
            .args(["-c", script])
            .arg(&socket)
            .arg(line)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let token = r#"{"op":"token","profile":"b","min_valid":30}"#;
    assert!(
        ask(token, false).contains("credential"),
        "the user is served"
    );
    // A request line over 64 KiB is refused, not buffered without end.
    let long = format!(
        r#"{{"op":"token","profile":"{}","min_valid":30}}"#,
        "x".repeat(70_000)
    );
    let answer = ask(&long, false);
    assert!(answer.contains("longer than 65536 bytes"), "{answer}");
    let root =
        std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if root.ok() != Some(true) {
        eprintln!("the other-user check needs root (to act as nobody): not checked here");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    for p in [kp.dir.path().to_path_buf(), kp.runtime_dir()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let answer = ask(token, true);
    assert!(
        answer.contains("refused: this agent serves only user 0, not 65534"),
        "{answer}"
    );
    assert!(!answer.contains("credential"), "{answer}");
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// A runtime dir that another user made (in a shared /tmp, say) is refused, naming it.
#[test]
fn a_runtime_dir_of_another_user_is_refused() {
    require_session();
    if !is_root() {
        eprintln!("needs root (to make a directory another user owns): not checked here");
        return;
    }
    let kp = Keyport::new();
    let xdg = kp.dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("keyport")).unwrap();
    let chown = std::process::Command::new("chown")
        .args(["65534:65534"])
        .arg(xdg.join("keyport"))
        .status()
        .unwrap();
    assert!(chown.success());
    let o = kp
        .command()
        .args(["agent", "--foreground"])
        .env_remove("KEYPORT_RUNTIME_DIR")
        .env("XDG_RUNTIME_DIR", &xdg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{}", xdg.join("keyport").display()))
            && err.contains("belongs to another user (uid 65534, not 0)"),
        "{err}"
    );
}

/// The agent started by the desktop session (or systemd) and a CLI run from cron or a
/// bare ssh command (no XDG_RUNTIME_DIR) find the same runtime dir, so the same agent and
/// the same lock files: /run/user/<uid>/keyport.
#[test]
fn the_cli_and_the_agent_agree_on_the_runtime_dir_however_started() {
    require_session();
    let uid = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let run_user = std::path::PathBuf::from(format!("/run/user/{uid}"));
    let mut made = false;
    if !run_user.exists() {
        if !is_root() {
            eprintln!(
                "no {} and not root to make it: not checked here",
                run_user.display()
            );
            return;
        }
        std::fs::create_dir_all(&run_user).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run_user, std::fs::Permissions::from_mode(0o700)).unwrap();
        made = true;
    }
    let kp = Keyport::new();
    kp.add_basic("b");
    let session = |c: &mut std::process::Command| {
        c.env_remove("KEYPORT_RUNTIME_DIR")
            .env("XDG_RUNTIME_DIR", &run_user);
    };
    let mut agent = kp.command();
    session(&mut agent);
    let mut agent = agent
        .args(["agent", "--foreground", "--no-notifications"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let socket = run_user.join("keyport/agent.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(status) = agent.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            agent
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            if err.contains("an agent is already running") {
                eprintln!(
                    "an agent already runs in {}: not checked here",
                    run_user.display()
                );
                return;
            }
            panic!("the agent exited ({status}): {err}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // cron: no XDG_RUNTIME_DIR at all
    let cron = kp
        .command()
        .args(["status", "--json"])
        .env_remove("KEYPORT_RUNTIME_DIR")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cron.stdout);
    assert!(
        cron.status.success(),
        "{}",
        String::from_utf8_lossy(&cron.stderr)
    );
    assert!(
        out.contains(r#""name": "b""#),
        "the cron CLI found the session's agent: {out}"
    );
    let _ = std::process::Command::new("kill")
        .arg(agent.id().to_string())
        .status();
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(run_user.join("keyport"));
    if made {
        let _ = std::fs::remove_dir(&run_user);
    }
}

/// Every seed flow with distinctive secrets, through the CLI, the agent (detached, with
/// its log, renewals, failures and notifications) and logins; then every file under the
/// config, runtime, home and temp dirs, every line of output that is not a credential the
/// user asked for, and the notification sink are searched for each secret and refresh
/// token: none is found outside the keychain.
#[test]
fn canary_secrets_appear_nowhere_but_the_keychain() {
    require_session();
    let fake = Fake::start(Lifetimes {
        patchworks: std::time::Duration::from_secs(3),
        ..Default::default()
    });
    let idp = keyport_system_tests::oidc::Oidc::start(60);
    let kp = Keyport::new();
    let (home, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut logs = String::new();
    // `credential`: stdout is a credential the user asked for (not searched)
    let mut run = |args: &[&str], stdin: &str, credential: bool| -> Run {
        let mut c = kp.command();
        c.args(args)
            .env("HOME", home.path())
            .env("TMPDIR", tmp.path())
            .env("BROWSER", keyport_system_tests::oidc::fake_browser())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let o = child.wait_with_output().unwrap();
        let r = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        logs += &r.stderr;
        if !credential {
            logs += &r.stdout;
        }
        r
    };
    let canary = |s: &str| format!("canary-{s}-9f1e");
    let mut secrets: Vec<String> = vec![
        IMPROVADO_PASSWORD.into(),
        PATCHWORKS_PASSWORD.into(),
        AIRBYTE_CLIENT_SECRET.into(),
        "service-secret-0f3b".into(),
    ];
    // static seed schemes (000 Improvado Basic, 001 Patchworks key, 002 Frappe)
    let statics: [(&str, &[&str], &str); 4] = [
        (
            "improvado-basic",
            &["--set", "username=analyst@example.com"],
            "password",
        ),
        ("patchworks-api-key", &[], "api_key"),
        (
            "frappe-token",
            &[
                "--set",
                "base_url=https://erp.example.com",
                "--set",
                "api_key=fk",
            ],
            "api_secret",
        ),
        (
            "frappe-basic",
            &[
                "--set",
                "base_url=https://erp.example.com",
                "--set",
                "api_key=fk",
            ],
            "api_secret",
        ),
    ];
    let mut names = Vec::new();
    for (preset, sets, field) in statics {
        let name = unique(preset);
        let value = canary(preset);
        let mut args = vec!["profile", "add", &name, "--preset", preset];
        args.extend_from_slice(sets);
        args.extend(["--secret", field]);
        assert_eq!(run(&args, &format!("{value}\n"), false).code, 0);
        secrets.push(value);
        names.push(name);
    }
    // token engines against the fakes (000, 001, 004) and the OpenID provider (003)
    let (imp, pw, op, scoped, widget) = (
        unique("imp"),
        unique("pw"),
        unique("op"),
        unique("scoped"),
        unique("widget"),
    );
    fake.add_improvado(&kp, &imp, 1800);
    fake.add_patchworks(&kp, &pw);
    fake.add_airbyte_operator(&kp, &op);
    add_airbyte_scoped(&kp, &scoped, &op, "ws1");
    kp.add(
        &widget,
        "airbyte-widget",
        &[
            "--set",
            &format!("parent={op}"),
            "--set",
            "workspace_name=ws1",
            "--set",
            "allowed_origin=https://app.example.com",
        ],
        &[],
    );
    let (user, service) = (unique("4insight-user"), unique("4insight-service"));
    idp.add_native_profile(&kp, &user, "4insight-user");
    kp.add(
        &service,
        "4insight-service",
        &[
            "--set",
            &format!("token_url={}/token", idp.issuer),
            "--set",
            "client_id=keyport-service",
        ],
        &[("client_secret", "service-secret-0f3b")],
    );
    assert_eq!(run(&["login", &user, "--timeout", "30"], "", false).code, 0);
    names.extend([
        imp,
        pw.clone(),
        op.clone(),
        scoped.clone(),
        widget,
        user.clone(),
        service,
    ]);
    for n in &names {
        assert_eq!(run(&["token", n], "", true).code, 0, "{n}");
        assert_eq!(run(&["header", n], "", true).code, 0, "{n}");
        assert_eq!(run(&["token", n, "--json"], "", true).code, 0, "{n}");
        run(&["profile", "show", n, "--json"], "", false);
    }
    // failures that quote what was sent
    fake.set_fault(Fault::Echo(500));
    assert_eq!(run(&["refresh", &scoped], "", false).code, 1);
    assert_eq!(run(&["refresh", &pw], "", false).code, 1);
    fake.set_fault(Fault::None);
    // the agent, detached (its log in the runtime dir), renewing and failing
    assert_eq!(
        run(
            &[
                "agent",
                "--lead",
                "1",
                "--notify-after",
                "1",
                "--backoff-base-ms",
                "300"
            ],
            "",
            false
        )
        .code,
        0
    );
    let mut watch = kp.watch();
    watch.wait_for("a renewal", |e| {
        e["event"] == "renewal_succeeded" && e["profile"]["name"] == pw.as_str()
    });
    fake.set_fault(Fault::Echo(500));
    watch.wait_failure(&pw, "you sent");
    eventually("the failure notification", || {
        !notifications_for(&pw).is_empty()
    });
    fake.set_fault(Fault::None);
    for n in &names {
        assert_eq!(run(&["token", n], "", true).code, 0, "{n}");
    }
    run(&["status"], "", false);
    run(&["status", "--json"], "", false);
    drop(watch);
    // the refresh token of the OAuth login is a canary too: it is never shown anywhere
    let rt: serde_json::Value =
        serde_json::from_str(&secret_tool_lookup("keyport-token", &user).unwrap()).unwrap();
    secrets.push(rt["refresh_token"].as_str().unwrap().to_string());
    let info: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(kp.runtime_dir().join("agent.json")).unwrap(),
    )
    .unwrap();
    let _ = std::process::Command::new("kill")
        .arg(info["pid"].to_string())
        .status();
    assert_eq!(run(&["logout", &user], "", false).code, 0);

    let needles: Vec<&str> = secrets.iter().map(String::as_str).collect();
    for dir in [
        kp.config_dir(),
        kp.runtime_dir(),
        home.path().into(),
        tmp.path().into(),
    ] {
        assert_no_bytes_under(&dir, &needles);
    }
    assert!(
        std::fs::read_to_string(kp.runtime_dir().join("agent.log")).is_ok_and(|l| !l.is_empty()),
        "the agent's log was searched"
    );
    let sink = std::env::var_os("NOTIFY_SINK_LOG")
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    assert!(sink.contains(&pw), "the sink has this test's notification");
    for s in &secrets {
        assert!(!logs.contains(s.as_str()), "{s} in the output: {logs}");
        assert!(!sink.contains(s.as_str()), "{s} in a notification");
    }
}
