//! Login endpoints and token exchanges through the real binary and keychain, against fake
//! servers of the seed APIs (tests/src/fakes.rs): each preset's request matches its seed
//! doc, tokens are cached in the keychain and re-fetched when they expire, chains renew the
//! parent first, and every failure is one clear line that leaves the stored token alone.

use std::time::Duration;

use base64::Engine as _;
use keyport_system_tests::fakes::*;
use keyport_system_tests::*;
use serde_json::Value;

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {r:#?}"))
}

fn improvado(kp: &Keyport, fake: &Fake, lifetime: u64) -> String {
    let name = unique("improvado");
    fake.add_improvado(kp, &name, lifetime);
    name
}

#[test]
fn improvado_token_is_fetched_as_the_seed_says_cached_and_refetched() {
    require_session();
    let fake = Fake::start(Lifetimes {
        improvado: Duration::from_secs(2),
        ..Default::default()
    });
    let kp = Keyport::new();
    let name = improvado(&kp, &fake, 2);

    let header = kp.run(&["header", &name, "--min-valid", "1"]).ok().stdout;
    assert!(
        header.starts_with("Authorization: Bearer imp-token-"),
        "{header}"
    );
    assert_eq!(fake.call("/api/v3/datasources", &header), 200);
    // seed 000: POST {base}/token, Basic(username:password), json={'workspace_id': <int>}
    let req = fake
        .log()
        .into_iter()
        .find(|l| l.path == "/api/v3/token")
        .unwrap();
    assert_eq!(req.method, "POST");
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{IMPROVADO_USER}:{IMPROVADO_PASSWORD}"));
    assert_eq!(
        req.authorization.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        serde_json::from_str::<Value>(&req.body).unwrap(),
        serde_json::json!({"workspace_id": 42})
    );

    // cached: same token, no second token call; state is in the keyport-token item
    assert_eq!(
        kp.run(&["header", &name, "--min-valid", "1"]).ok().stdout,
        header
    );
    assert_eq!(fake.count("/api/v3/token"), 1);
    let state: Value =
        serde_json::from_str(&secret_tool_lookup("keyport-token", &name).expect("token item"))
            .unwrap();
    assert!(header.ends_with(&format!("{}\n", state["access_token"].as_str().unwrap())));
    assert_no_bytes_under(
        kp.dir.path(),
        &[state["access_token"].as_str().unwrap(), IMPROVADO_PASSWORD],
    );

    // still valid, but not for --min-valid more seconds: renewed before it expires
    std::thread::sleep(Duration::from_millis(1200));
    let renewed = kp.run(&["header", &name, "--min-valid", "1"]).ok().stdout;
    assert_ne!(renewed, header);
    assert_eq!(fake.count("/api/v3/token"), 2);
    assert_eq!(
        fake.call("/api/v3/datasources", &header),
        200,
        "the old one had not expired yet"
    );
    // `keyport refresh` renews now, whatever is left
    let refreshed = kp.run(&["refresh", &name]).ok();
    assert!(refreshed.stderr.contains("renewed"), "{refreshed:#?}");
    assert_eq!(fake.count("/api/v3/token"), 3);

    // Keyport never hands out a token the API rejects, through expiry after expiry.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        let h = kp.run(&["header", &name, "--min-valid", "1"]).ok().stdout;
        assert_eq!(fake.call("/api/v3/datasources", &h), 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(fake.unauthorized_uses(), 0);
    assert!(
        fake.count("/api/v3/token") >= 4,
        "expired tokens must be re-fetched"
    );
    let j = json(&kp.run(&["token", &name, "--json"]).ok());
    assert_eq!(j["scheme"], "login-endpoint");
    assert_eq!(j["refreshable"], true);
    assert!(j["expires_at"].is_string());
    kp.run(&["profile", "rm", &name]).ok();
    assert_eq!(
        secret_tool_lookup("keyport-token", &name),
        None,
        "rm removes the token item"
    );
}

#[test]
fn improvado_fake_renews_on_use_and_rejects_idle_tokens() {
    // The fake itself follows the seed ("renewed when the token is used"), so the agent's
    // later sliding logic is tested against the documented behaviour.
    require_session();
    let fake = Fake::start(Lifetimes {
        improvado: Duration::from_secs(2),
        ..Default::default()
    });
    let kp = Keyport::new();
    let name = improvado(&kp, &fake, 1800);
    let header = kp.run(&["header", &name]).ok().stdout;
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(
            fake.call("/api/v3/datasources", &header),
            200,
            "use renews the lifetime"
        );
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        fake.call("/api/v3/datasources", &header),
        401,
        "idle past the lifetime: expired"
    );
    kp.run(&["profile", "rm", &name]).ok();
}

#[test]
fn patchworks_login_uses_expires_in() {
    require_session();
    let fake = Fake::start(Lifetimes {
        patchworks: Duration::from_secs(3),
        ..Default::default()
    });
    let kp = Keyport::new();
    let name = unique("pwlogin");
    fake.add_patchworks(&kp, &name);
    let j = json(&kp.run(&["token", &name, "--json", "--min-valid", "1"]).ok());
    let token = j["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    assert!(token.starts_with("eyJ0eXAiOiJKV-pw-"));
    assert_eq!(
        kp.run(&["token", &name, "--min-valid", "1"])
            .ok()
            .stdout
            .trim(),
        token
    );
    // seed 001: {"username": ..., "password": ...} to /fabric/api/login
    let req = fake
        .log()
        .into_iter()
        .find(|l| l.path == "/fabric/api/login")
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&req.body).unwrap(),
        serde_json::json!({"username": PATCHWORKS_USER, "password": PATCHWORKS_PASSWORD})
    );
    // expires_in (3 s) decides the expiry
    let exp = time::OffsetDateTime::parse(
        j["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = exp - time::OffsetDateTime::now_utc();
    assert!(
        left <= time::Duration::seconds(3) && left > time::Duration::seconds(0),
        "{left}"
    );
    std::thread::sleep(Duration::from_millis(3200));
    let h = kp.run(&["header", &name, "--min-valid", "1"]).ok().stdout;
    assert!(!h.contains(&token));
    assert_eq!(fake.call("/api/v1/flows", &h), 200);
    assert_eq!(fake.count("/fabric/api/login"), 2);

    // wrong password: the vendor's message, exit 1, cached state untouched
    let before = secret_tool_lookup("keyport-token", &name);
    kp.run_with(&["secret", "set", &name, "password"], "wrong\n")
        .ok();
    assert_eq!(
        secret_tool_lookup("keyport-token", &name),
        None,
        "a new secret invalidates the cached token"
    );
    let r = kp
        .run(&["token", &name])
        .fails_with("answered 401: These credentials do not match our records.");
    assert!(!r.stderr.contains("wrong"));
    assert!(before.is_some());
    kp.run(&["profile", "rm", &name]).ok();
}

fn airbyte(kp: &Keyport, fake: &Fake) -> (String, String, String) {
    let (op, scoped, widget) = (unique("ab-op"), unique("ab-scoped"), unique("ab-widget"));
    fake.add_airbyte_operator(kp, &op);
    kp.add(
        &scoped,
        "airbyte-scoped",
        &[
            "--set",
            &format!("parent={op}"),
            "--set",
            "workspace_name=customer_workspace_123",
            "--set",
            "region=eu",
        ],
        &[],
    );
    kp.add(
        &widget,
        "airbyte-widget",
        &[
            "--set",
            &format!("parent={op}"),
            "--set",
            "workspace_name=customer_workspace_123",
            "--set",
            "allowed_origin=https://yourapp.com:443",
            "--set",
            "source_tags=crm, sales",
            "--set",
            "source_tags_mode=any",
        ],
        &[],
    );
    (op, scoped, widget)
}

#[test]
fn airbyte_operator_scoped_and_widget_chain() {
    require_session();
    let fake = Fake::start(Lifetimes {
        operator: Duration::from_secs(2),
        scoped: Duration::from_secs(4),
        ..Default::default()
    });
    let kp = Keyport::new();
    let (op, scoped, widget) = airbyte(&kp, &fake);

    // scoped: the operator token is fetched first, then the exchange
    let h = kp.run(&["header", &scoped, "--min-valid", "1"]).ok().stdout;
    let paths: Vec<String> = fake.log().iter().map(|l| l.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/account/applications/token",
            "/api/v1/embedded/scoped-token"
        ]
    );
    let log = fake.log();
    assert_eq!(
        serde_json::from_str::<Value>(&log[0].body).unwrap(),
        serde_json::json!({"client_id": AIRBYTE_CLIENT_ID, "client_secret": AIRBYTE_CLIENT_SECRET})
    );
    assert!(log[1]
        .authorization
        .as_deref()
        .unwrap()
        .starts_with("Bearer op-token-"));
    // seed 004 region table: eu -> b9e48d61-...
    assert_eq!(
        serde_json::from_str::<Value>(&log[1].body).unwrap(),
        serde_json::json!({"workspace_name": "customer_workspace_123", "region_id": "b9e48d61-f082-4a14-a8d0-799a907938cb"})
    );
    assert_eq!(fake.call("/api/v1/embedded/scoped-token/info", &h), 200);
    // expiry from the JWT's exp claim (4 s)
    let j = json(
        &kp.run(&["token", &scoped, "--json", "--min-valid", "1"])
            .ok(),
    );
    let jwt = j["headers"]["Authorization"]
        .as_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string();
    let ws = workspace_claim(&jwt).unwrap();
    assert!(j["expires_at"].is_string());
    // workspace isolation: this token can't read another workspace
    assert_eq!(
        fake.call(&format!("/api/v1/embedded/sources?workspace_id={ws}"), &h),
        200
    );
    assert_eq!(
        fake.call("/api/v1/embedded/sources?workspace_id=someone-else", &h),
        403
    );
    // the operator token is not a scoped token
    let op_header = kp.run(&["header", &op, "--min-valid", "1"]).ok().stdout;
    assert_eq!(
        fake.call("/api/v1/embedded/scoped-token/info", &op_header),
        401
    );

    // widget: base64 JSON decoded into the scoped token and the widget URL
    let w = json(
        &kp.run(&["token", &widget, "--json", "--min-valid", "1"])
            .ok(),
    );
    assert_eq!(w["scheme"], "token-exchange");
    assert!(
        w["widget_url"]
            .as_str()
            .unwrap()
            .contains("allowedOrigin=https://yourapp.com:443"),
        "{w}"
    );
    let wh = format!(
        "Authorization: {}\n",
        w["headers"]["Authorization"].as_str().unwrap()
    );
    assert_eq!(fake.call("/api/v1/embedded/scoped-token/info", &wh), 200);
    let req = fake
        .log()
        .into_iter()
        .find(|l| l.path.ends_with("widget-token"))
        .unwrap();
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(body["allowed_origin"], "https://yourapp.com:443");
    assert_eq!(
        body["selected_source_template_tags"],
        serde_json::json!(["crm", "sales"])
    );
    assert_eq!(body["selected_source_template_tags_mode"], "any");
    assert!(
        body.get("selected_connection_template_tags").is_none(),
        "unset optional fields are left out"
    );

    // after the operator token (2 s) expired, renewing the child renews the parent first
    std::thread::sleep(Duration::from_millis(4200));
    let before = fake.log().len();
    let h2 = kp.run(&["header", &scoped, "--min-valid", "1"]).ok().stdout;
    let after: Vec<String> = fake.log()[before..]
        .iter()
        .map(|l| l.path.clone())
        .collect();
    assert_eq!(
        after,
        [
            "/api/v1/account/applications/token",
            "/api/v1/embedded/scoped-token"
        ]
    );
    assert_eq!(fake.call("/api/v1/embedded/scoped-token/info", &h2), 200);
    assert_eq!(
        fake.unauthorized_uses(),
        1,
        "only the deliberate operator-token call was refused"
    );

    // a parent can't be removed under its children
    kp.run(&["profile", "rm", &op])
        .fails_with("is the parent of");
    for n in [&widget, &scoped, &op] {
        kp.run(&["profile", "rm", n]).ok();
    }
}

#[test]
fn airbyte_allowed_origin_is_checked_before_any_call() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let (op, scoped, widget) = airbyte(&kp, &fake);
    for (origin, why) in [
        ("https://yourapp.com/", "trailing slash"),
        ("yourapp.com", "no protocol"),
        ("*.yourapp.com", "wildcards"),
    ] {
        kp.run(&[
            "profile",
            "set",
            &widget,
            &format!("allowed_origin={origin}"),
        ])
        .fails_with(why);
        kp.run(&[
            "profile",
            "add",
            &unique("w"),
            "--preset",
            "airbyte-widget",
            "--set",
            &format!("parent={op}"),
            "--set",
            "workspace_name=x",
            "--set",
            &format!("allowed_origin={origin}"),
        ])
        .fails_with(why);
    }
    assert!(fake.log().is_empty(), "nothing may reach the API");
    // a parent of the wrong kind, and a missing one
    kp.run(&[
        "profile",
        "add",
        &unique("w"),
        "--preset",
        "airbyte-scoped",
        "--set",
        &format!("parent={scoped}"),
        "--set",
        "workspace_name=x",
    ])
    .fails_with("needs one of: airbyte-operator");
    kp.run(&[
        "profile",
        "add",
        &unique("w"),
        "--preset",
        "airbyte-scoped",
        "--set",
        "parent=nobody",
        "--set",
        "workspace_name=x",
    ])
    .fails_with("there is no profile 'nobody'");
    for n in [&widget, &scoped, &op] {
        kp.run(&["profile", "rm", n]).ok();
    }
}

/// The seed's error bodies reach the user in one line, and a failing endpoint never
/// damages the stored token.
#[test]
fn vendor_errors_and_endpoint_faults_leave_the_token_alone() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let (op, scoped, widget) = airbyte(&kp, &fake);
    kp.run(&["token", &scoped]).ok();
    let stored = secret_tool_lookup("keyport-token", &scoped).unwrap();
    let expired_run = |extra: &str| kp.run(&["refresh", &scoped]).fails_with(extra);

    let cases: Vec<(Fault, &str)> = vec![
        (Fault::Answer(401, r#"{"detail": "Invalid authentication credentials"}"#.into()), "answered 401: Invalid authentication credentials; check the profile's credentials"),
        (Fault::Answer(403, r#"{"detail": "Access denied to this resource"}"#.into()), "answered 403: Access denied to this resource"),
        (Fault::Answer(422, r#"{"detail": [{"loc": ["body", "allowed_origin"], "msg": "field required", "type": "value_error.missing"}]}"#.into()), "answered 422: allowed_origin: field required; check the profile's settings"),
        (Fault::Answer(500, "oops".into()), "answered 500 with a body that is not JSON; the service has a problem: try again later"),
        (Fault::Garbage, "answered 200 with a body that is not JSON: is the URL a token endpoint?"),
        (Fault::Answer(200, r#"{"something": "else"}"#.into()), "but its JSON has no token at /"),
        (Fault::Answer(302, String::new()), "a redirect, which Keyport never follows"),
    ];
    for (fault, needle) in cases {
        fake.set_fault(fault);
        let r = expired_run(needle);
        assert!(!r.stderr.contains(AIRBYTE_CLIENT_SECRET));
        assert_eq!(
            secret_tool_lookup("keyport-token", &scoped).as_deref(),
            Some(stored.as_str()),
            "{needle}"
        );
    }
    // slow past the timeout
    fake.set_fault(Fault::Slow(Duration::from_secs(3)));
    let r = kp
        .command()
        .args(["refresh", &scoped])
        .env("KEYPORT_HTTP_TIMEOUT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("did not answer within 1 s"), "{err}");
    assert_eq!(
        secret_tool_lookup("keyport-token", &scoped).as_deref(),
        Some(stored.as_str())
    );
    fake.set_fault(Fault::None);
    // the real fake's own 401 for a wrong client secret
    kp.run_with(&["secret", "set", &op, "client_secret"], "not-the-secret\n")
        .ok();
    kp.run(&["token", &op])
        .fails_with("answered 401: Invalid authentication credentials");
    // connection refused
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    kp.run(&[
        "profile",
        "set",
        &op,
        &format!("base_url=http://127.0.0.1:{dead}/api/v1"),
    ])
    .ok();
    kp.run(&["token", &op]).fails_with("cannot be reached");
    for n in [&widget, &scoped, &op] {
        kp.run(&["profile", "rm", n]).ok();
    }
}

#[test]
fn generic_login_endpoint_and_token_exchange() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let login = unique("generic-login");
    kp.add(
        &login,
        "login-endpoint",
        &[
            "--set",
            &format!("url={}/fabric/api/login", fake.url),
            "--set",
            r#"body={"username": "{username}", "password": "{password}"}"#,
            "--set",
            &format!("username={PATCHWORKS_USER}"),
            "--set",
            "expires_in_pointer=/expires_in",
        ],
        &[("password", PATCHWORKS_PASSWORD)],
    );
    // username is set, so the generic preset also sends Basic auth; the fake ignores it
    let h = kp.run(&["header", &login]).ok().stdout;
    assert_eq!(fake.call("/api/v1/flows", &h), 200);
    // A secret in the URL (some APIs want the key in the query) never reaches an error,
    // not even percent-encoded.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let keyed = unique("keyed");
    kp.add(
        &keyed,
        "login-endpoint",
        &[
            "--set",
            &format!("url=http://127.0.0.1:{dead}/login?key={{api_key}}"),
        ],
        &[("api_key", "k3y w1th@space")],
    );
    let r = kp.run(&["token", &keyed]).fails_with("cannot be reached");
    assert!(r.stderr.contains("key=[redacted]"), "{r:#?}");
    assert!(
        !r.stderr.contains("k3y") && !r.stderr.contains("w1th"),
        "{r:#?}"
    );
    kp.run(&["profile", "rm", &keyed]).ok();
    kp.run(&["profile", "set", &login, "body={not json"])
        .fails_with("not valid JSON");

    let op = unique("generic-op");
    fake.add_airbyte_operator(&kp, &op);
    let ex = unique("generic-exchange");
    kp.add(
        &ex,
        "token-exchange",
        &[
            "--set",
            &format!("parent={op}"),
            "--set",
            "url={parent.base_url}/embedded/scoped-token",
            "--set",
            r#"body={"workspace_name": "generic_ws"}"#,
        ],
        &[],
    );
    let h = kp.run(&["header", &ex]).ok().stdout;
    assert_eq!(fake.call("/api/v1/embedded/scoped-token/info", &h), 200);
    for n in [&ex, &op, &login] {
        kp.run(&["profile", "rm", n]).ok();
    }
}

/// A private CA: untrusted by default (one clear line), trusted with `ca_file`.
#[test]
fn ca_file_trusts_a_private_ca() {
    require_session();
    let dir = tempfile::tempdir().unwrap();
    let p = |f: &str| dir.path().join(f).display().to_string();
    keyport_system_tests::upstream::make_ca(dir.path());
    let mut server = std::process::Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("support/tls-token-server.py"))
        .args([p("leaf.pem"), p("leaf.key")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();

    let kp = Keyport::new();
    let name = unique("tls");
    kp.add(
        &name,
        "patchworks-login",
        &[
            "--set",
            &format!("base_url=https://127.0.0.1:{}", port.trim()),
            "--set",
            "username=u",
        ],
        &[("password", "pw")],
    );
    kp.run(&["token", &name]).fails_with("set ca_file=PATH");
    kp.run(&["profile", "set", &name, &format!("ca_file={}", p("ca.pem"))])
        .ok();
    assert_eq!(kp.run(&["token", &name]).ok().stdout.trim(), "tls-token-1");
    server.kill().ok();
    server.wait().ok();
    kp.run(&["profile", "rm", &name]).ok();
}
