//! The loopback helper as local tools use it: real clients (curl, Python requests, HTTPie,
//! git) through the real agent, to the fake seed APIs, the real OpenID provider and a test
//! API (src/upstream.rs); and hostile requests that must reach nothing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use keyport_system_tests::fakes::{self, Fake, Lifetimes};
use keyport_system_tests::oidc::{eventually, Oidc};
use keyport_system_tests::upstream::{make_ca, Upstream};
use keyport_system_tests::{require_session, unique, AgentProc, Keyport};

/// A running agent serving the helper, with its URL and default key.
struct Helper {
    agent: AgentProc,
    /// `http://127.0.0.1:PORT`
    url: String,
    port: u16,
    key: String,
}

fn serve(kp: &Keyport) -> Helper {
    let agent = kp.start_agent(&[], &[]);
    let status: serde_json::Value =
        serde_json::from_str(&kp.run(&["helper", "status", "--json"]).ok().stdout).unwrap();
    let url = status["url"]
        .as_str()
        .expect("the helper listens")
        .to_string();
    let port = status["port"].as_u64().unwrap() as u16;
    let key = kp.run(&["helper", "key"]).ok().stdout.trim().to_string();
    assert_eq!(key.len(), 64, "a 256-bit key in hex");
    Helper {
        agent,
        url,
        port,
        key,
    }
}

/// A `frappe-token` profile (seed 002: `Authorization: token <api_key>:<api_secret>`) on `base`.
fn add_frappe(kp: &Keyport, name: &str, base: &str) {
    kp.add(
        name,
        "frappe-token",
        &[
            "--set",
            &format!("base_url={base}"),
            "--set",
            "api_key=fk-1",
        ],
        &[("api_secret", "fs-2")],
    );
}

/// A `4insight-service` profile (client credentials at the real OpenID provider, as in
/// tests/oauth.rs) whose API is `base`.
fn add_4insight(kp: &Keyport, name: &str, idp: &Oidc, base: &str) {
    kp.add(
        name,
        "4insight-service",
        &[
            "--set",
            &format!("token_url={}/token", idp.issuer),
            "--set",
            "client_id=keyport-service",
            "--set",
            &format!("base_url={base}"),
        ],
        &[("client_secret", "service-secret-0f3b")],
    );
}

fn get(url: &str, key: &str) -> (u16, String) {
    let r = ureq::get(url).set("X-Keyport-Key", key).call();
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// curl (key in X-Keyport-Key), Python requests (key as the Basic password) and HTTPie
/// (key as a bearer token): each prints the status and the body.
fn three_clients(url: &str, key: &str) -> Vec<(String, u16, String)> {
    let runs = [
        (
            "curl",
            Command::new("curl")
                .args(["-sS", "-w", "\n%{http_code}", "-H"])
                .arg(format!("X-Keyport-Key: {key}"))
                .arg(url)
                .output(),
        ),
        (
            "requests",
            Command::new("python3")
                .args([
                    "-c",
                    "import os, requests; r = requests.get(os.environ['URL'], auth=('me', os.environ['KEY'])); print(r.text); print(r.status_code)",
                ])
                .env("URL", url)
                .env("KEY", key)
                .output(),
        ),
        (
            "httpie",
            Command::new("http")
                .args(["--ignore-stdin", "--print=b", "--check-status", "-A", "bearer", "-a", key, "GET", url])
                .output(),
        ),
    ];
    runs.into_iter()
        .map(|(who, o)| {
            let o =
                o.unwrap_or_else(|e| panic!("{who}: {e} (./scripts/install-deps.sh installs it)"));
            let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
            let (body, status) = match who {
                // httpie: --check-status exits 0 only for 2xx
                "httpie" => (text.clone(), if o.status.success() { 200 } else { 0 }),
                _ => {
                    let (b, s) = text.rsplit_once('\n').unwrap_or(("", &text));
                    (b.to_string(), s.trim().parse().unwrap_or(0))
                }
            };
            assert!(
                o.status.success() || who == "httpie",
                "{who}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            (who.to_string(), status, body)
        })
        .collect()
}

/// curl, requests and HTTPie, changed only in URL and key, reach all five seed services.
#[test]
fn real_clients_reach_all_five_seed_services() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let api = Upstream::start();
    let idp = Oidc::start(300);
    let kp = Keyport::new();
    let (imp, pw, op, ws, fr, fi) = (
        unique("imp"),
        unique("pw"),
        unique("op"),
        unique("ws"),
        unique("frappe"),
        unique("4i"),
    );
    fake.add_improvado(&kp, &imp, 1800);
    fake.add_patchworks(&kp, &pw);
    fake.add_airbyte_operator(&kp, &op);
    fakes::add_airbyte_scoped(&kp, &ws, &op, "acme");
    add_frappe(&kp, &fr, &api.url);
    add_4insight(&kp, &fi, &idp, &format!("{}/api", api.url));
    let h = serve(&kp);
    let cases = [
        // (profile, path under the helper, what the answer contains)
        (&imp, "/datasources", "datasources"),
        (&pw, "/api/v1/flows", "data"),
        (&ws, "/embedded/scoped-token/info", "workspace ID"),
        (&fr, "/api/resource/echo", "token fk-1:fs-2"),
        (&fi, "/v1/echo", "Bearer "),
    ];
    for (name, path, want) in cases {
        let url = format!("{}/{name}{path}", h.url);
        for (who, status, body) in three_clients(&url, &h.key) {
            assert_eq!(status, 200, "{who} -> {url}: {body}");
            assert!(body.contains(want), "{who} -> {url}: {body}");
        }
    }
    // The 4insight token the API got is one the identity provider issued and still knows.
    let seen = api.log();
    let bearer = seen
        .iter()
        .find(|s| s.path == "/api/v1/echo")
        .and_then(|s| s.headers.iter().find(|(k, _)| k == "authorization"))
        .map(|(_, v)| v.trim_start_matches("Bearer ").to_string())
        .unwrap();
    assert!(idp.active(&bearer));
    // The key never reached an upstream; the profile's header did, once per request.
    for s in &seen {
        assert!(!s.headers.iter().any(|(_, v)| v.contains(&h.key)), "{s:?}");
        assert_eq!(
            s.headers
                .iter()
                .filter(|(k, _)| k == "authorization")
                .count(),
            1
        );
    }
    assert!(fake.log().iter().all(|l| !l
        .authorization
        .clone()
        .unwrap_or_default()
        .contains(&h.key)));
    drop(h);
}

/// Sends `request` as is to the helper and returns the status and the whole answer.
fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// One keep-alive connection carries requests of every kind in turn: plain ones (served
/// directly, pipelined too), a small body, then a chunked upload, after which hyper serves
/// the rest of the connection; every answer is complete and framed, and each request
/// reached the upstream once, with the profile's header.
#[test]
fn one_connection_carries_plain_pipelined_and_chunked_requests() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let p = unique("mix");
    add_frappe(&kp, &p, &format!("{}/api", api.url));
    let h = serve(&kp);
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = |line: &str, extra: &str| {
        format!(
            "{line} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Keyport-Key: {}\r\n{extra}\r\n",
            h.port, h.key
        )
    };
    // Reads one answer (Content-Length or chunked) and returns its status, head, body.
    let mut pending = Vec::<u8>::new();
    let mut answer = |s: &mut TcpStream, head_only: bool| -> (u16, String, String) {
        let find = |b: &[u8], pat: &[u8]| b.windows(pat.len()).position(|w| w == pat);
        let mut fill = |pending: &mut Vec<u8>| {
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).expect("the helper answers");
            assert!(
                n > 0,
                "the connection closed early: {}",
                String::from_utf8_lossy(pending)
            );
            pending.extend_from_slice(&chunk[..n]);
        };
        let end = loop {
            if let Some(i) = find(&pending, b"\r\n\r\n") {
                break i + 4;
            }
            fill(&mut pending);
        };
        let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
        pending.drain(..end);
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = if head_only {
            Vec::new()
        } else if let Some(l) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            let n: usize = l.trim().parse().unwrap();
            while pending.len() < n {
                fill(&mut pending);
            }
            pending.drain(..n).collect::<Vec<u8>>()
        } else {
            assert!(
                head.contains("transfer-encoding: chunked"),
                "framed: {head}"
            );
            let mut body = Vec::new();
            loop {
                let line = loop {
                    if let Some(i) = find(&pending, b"\r\n") {
                        break i;
                    }
                    fill(&mut pending);
                };
                let size =
                    usize::from_str_radix(std::str::from_utf8(&pending[..line]).unwrap(), 16)
                        .unwrap();
                while pending.len() < line + 2 + size + 2 {
                    fill(&mut pending);
                }
                body.extend_from_slice(&pending[line + 2..line + 2 + size]);
                pending.drain(..line + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        };
        (status, head, String::from_utf8(body).unwrap())
    };
    let echo = |body: &str| -> serde_json::Value { serde_json::from_str(body).unwrap() };
    // plain GET, then two pipelined in one write, then a small POST body
    s.write_all(head(&format!("GET /{p}/echo/1"), "").as_bytes())
        .unwrap();
    let (st, hd, b) = answer(&mut s, false);
    assert_eq!(st, 200, "{hd}");
    assert!(hd.contains("date: "), "{hd}");
    assert_eq!(echo(&b)["path"], "/api/echo/1");
    let two = head(&format!("GET /{p}/echo/2"), "") + &head(&format!("HEAD /{p}/echo/3"), "");
    s.write_all(two.as_bytes()).unwrap();
    let (st, _, b) = answer(&mut s, false);
    assert_eq!((st, echo(&b)["path"].as_str()), (200, Some("/api/echo/2")));
    let (st, hd, _) = answer(&mut s, true);
    assert_eq!(st, 200, "HEAD: {hd}");
    let post = head(&format!("POST /{p}/upload"), "Content-Length: 5\r\n") + "hello";
    s.write_all(post.as_bytes()).unwrap();
    let (st, _, b) = answer(&mut s, false);
    assert_eq!((st, echo(&b)["bytes"].as_u64()), (200, Some(5)));
    // a chunked upload: hyper takes the connection over from here
    let chunked = head(
        &format!("POST /{p}/upload"),
        "Transfer-Encoding: chunked\r\n",
    ) + "4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n";
    s.write_all(chunked.as_bytes()).unwrap();
    let (st, _, b) = answer(&mut s, false);
    assert_eq!((st, echo(&b)["bytes"].as_u64()), (200, Some(7)));
    s.write_all(head(&format!("GET /{p}/echo/4"), "Connection: close\r\n").as_bytes())
        .unwrap();
    let (st, _, b) = answer(&mut s, false);
    assert_eq!((st, echo(&b)["path"].as_str()), (200, Some("/api/echo/4")));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.is_empty() && pending.is_empty(),
        "nothing after the last answer"
    );
    let seen = api.log();
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/echo/1",
            "/api/echo/2",
            "/api/echo/3",
            "/api/upload",
            "/api/upload",
            "/api/echo/4"
        ]
    );
    assert!(seen.iter().all(|r| r
        .headers
        .iter()
        .any(|(n, v)| n == "authorization" && v == "token fk-1:fs-2")));
    drop(h);
}

/// Every hostile request of the issue is refused with its status and a reason, logged, and
/// nothing reaches the upstream.
#[test]
fn hostile_requests_are_refused_and_reach_nothing() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let (p, other) = (unique("p"), unique("other"));
    add_frappe(&kp, &p, &api.url);
    add_frappe(&kp, &other, &api.url);
    let h = serve(&kp);
    let scoped = kp
        .run(&[
            "helper",
            "key",
            "create",
            "nb",
            "--profile",
            &other,
            "--read-only",
        ])
        .ok()
        .stdout
        .trim()
        .to_string();
    let revoked = kp
        .run(&["helper", "key", "create", "gone", "--profile", &p])
        .ok()
        .stdout
        .trim()
        .to_string();
    kp.run(&["helper", "key", "revoke", "gone"]).ok();
    let host = format!("127.0.0.1:{}", h.port);
    let req = |method: &str, target: &str, headers: &[String]| -> Vec<u8> {
        let mut r = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
        for line in headers {
            r.push_str(line);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        r.into_bytes()
    };
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![format!("Host: {host}"), format!("X-Keyport-Key: {}", h.key)];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let host_only = vec![format!("Host: {host}")];
    let key_only = vec![format!("X-Keyport-Key: {}", h.key)];
    let path = format!("/{p}/echo");
    let huge = format!("X-Big: {}", "a".repeat(40 * 1024));
    type Case = (&'static str, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("no key", req("GET", &path, &host_only), 401, "no_key"),
        (
            "wrong key",
            req(
                "GET",
                &path,
                &[
                    format!("Host: {host}"),
                    format!("X-Keyport-Key: {}", "f".repeat(64)),
                ],
            ),
            401,
            "wrong_key",
        ),
        (
            "key of the wrong length",
            req(
                "GET",
                &path,
                &[
                    format!("Host: {host}"),
                    format!("X-Keyport-Key: {}", &h.key[..63]),
                ],
            ),
            401,
            "wrong_key",
        ),
        (
            "revoked key",
            req(
                "GET",
                &path,
                &[
                    format!("Host: {host}"),
                    format!("Authorization: Bearer {revoked}"),
                ],
            ),
            401,
            "wrong_key",
        ),
        (
            "scoped key on another profile",
            req(
                "GET",
                &path,
                &[format!("Host: {host}"), format!("X-Keyport-Key: {scoped}")],
            ),
            403,
            "key_not_for_profile",
        ),
        (
            "read-only key with POST",
            req(
                "POST",
                &format!("/{other}/echo"),
                &[
                    format!("Host: {host}"),
                    format!("X-Keyport-Key: {scoped}"),
                    "Content-Length: 0".into(),
                ],
            ),
            403,
            "read_only_key",
        ),
        (
            "foreign Host",
            req(
                "GET",
                &path,
                &[
                    format!("Host: attacker.example:{}", h.port),
                    format!("X-Keyport-Key: {}", h.key),
                ],
            ),
            421,
            "wrong_host",
        ),
        (
            "empty Host",
            req(
                "GET",
                &path,
                &["Host: ".into(), format!("X-Keyport-Key: {}", h.key)],
            ),
            421,
            "wrong_host",
        ),
        (
            "missing Host",
            req("GET", &path, &key_only),
            421,
            "wrong_host",
        ),
        (
            "a browser Origin",
            req("GET", &path, &with(&["Origin: https://attacker.example"])),
            403,
            "origin_refused",
        ),
        (
            "absolute-form target",
            req("GET", &format!("http://{host}{path}"), &with(&[])),
            400,
            "bad_target",
        ),
        (
            "CONNECT",
            req("CONNECT", "example.com:443", &with(&[])),
            405,
            "connect_refused",
        ),
        (
            "raw ..",
            req("GET", &format!("/{p}/../{other}/echo"), &with(&[])),
            400,
            "bad_path",
        ),
        (
            "encoded ..",
            req("GET", &format!("/{p}/%2e%2E/echo"), &with(&[])),
            400,
            "bad_path",
        ),
        (
            "encoded slash",
            req("GET", &format!("/{p}/a%2Fb"), &with(&[])),
            400,
            "bad_path",
        ),
        (
            "double encoding",
            req("GET", &format!("/{p}/%252e%252e/echo"), &with(&[])),
            400,
            "bad_path",
        ),
        (
            "encoded backslash",
            req("GET", &format!("/{p}/a%5cb"), &with(&[])),
            400,
            "bad_path",
        ),
        (
            "//host",
            req("GET", &format!("/{p}//attacker.example/x"), &with(&[])),
            400,
            "bad_path",
        ),
        (
            "no profile, //host",
            req("GET", "//attacker.example/x", &with(&[])),
            400,
            "bad_profile",
        ),
        (
            "@ in the profile",
            req("GET", &format!("/{p}@attacker.example/x"), &with(&[])),
            400,
            "bad_profile",
        ),
        (
            "unknown profile",
            req("GET", "/no-such-profile/echo", &with(&[])),
            404,
            "not_found",
        ),
        (
            "oversized headers",
            req("GET", &path, &with(&[&huge])),
            431,
            "",
        ),
    ];
    for (what, request, status, kind) in &cases {
        let (got, text) = raw(h.port, request);
        assert_eq!(got, *status, "{what}: {text}");
        if !kind.is_empty() {
            assert!(
                text.to_ascii_lowercase()
                    .contains(&format!("x-keyport-error: {kind}")),
                "{what}: {text}"
            );
            let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
            let v: serde_json::Value =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
            assert_eq!(v["error"], *kind, "{what}");
            assert!(
                v["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty() && !m.contains('\n')),
                "{what}"
            );
        }
    }
    assert!(
        api.log().is_empty(),
        "something reached the upstream: {:?}",
        api.log()
    );
    // Each refusal is in the access log with its reason.
    let log = kp.run(&["helper", "log", "--json"]).ok().stdout;
    let refusals = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["refusal"].is_string() && e["reason"].is_string())
        .count();
    assert_eq!(refusals, cases.len(), "{log}");
    assert!(!log.contains(&h.key) && !log.contains(&scoped));
    // ... and a good request still goes through
    assert_eq!(get(&format!("{}{path}", h.url), &h.key).0, 200);
    assert_eq!(api.log().len(), 1);
}

/// 200 requests at once for a profile with no token yet: one token request, 200 answers.
#[test]
fn concurrent_requests_share_one_token_request() {
    require_session();
    let fake = Fake::start(Lifetimes::default());
    let kp = Keyport::new();
    let pw = unique("pw");
    fake.add_patchworks(&kp, &pw);
    let h = serve(&kp);
    let url = format!("{}/{pw}/api/v1/flows", h.url);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (url, key, barrier) = (url.clone(), h.key.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                get(&url, &key).0
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(fake.count("/fabric/api/login"), 1, "one login for all 200");
    assert_eq!(fake.count("/api/v1/flows"), 200);
}

/// An upstream that answers 401 once: the helper renews, replays, and the client sees 200.
#[test]
fn a_401_is_renewed_once_and_replayed() {
    require_session();
    let api = Upstream::start();
    let idp = Oidc::start(300);
    let kp = Keyport::new();
    let name = unique("4i");
    add_4insight(&kp, &name, &idp, &api.url.clone());
    let h = serve(&kp);
    let (status, body) = get(&format!("{}/{name}/v1/unauthorized-once", h.url), &h.key);
    assert_eq!(status, 200, "{body}");
    let auths: Vec<String> = api
        .log()
        .iter()
        .map(|s| {
            s.headers
                .iter()
                .find(|(k, _)| k == "authorization")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert_eq!(auths.len(), 2, "the request and its replay");
    assert_ne!(auths[0], auths[1], "the replay carries a renewed token");
    // a body small enough to keep is replayed too
    let r = ureq::post(&format!("{}/{name}/v1/echo", h.url))
        .set("X-Keyport-Key", &h.key)
        .send_string("hello")
        .unwrap();
    let v: serde_json::Value = r.into_json().unwrap();
    assert_eq!(v["body_bytes"], 5);
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// 1 GiB down and 1 GiB up through the helper: every byte arrives, and the agent's peak
/// memory grows by less than 16 MB.
#[test]
fn a_gib_each_way_streams_in_bounded_memory() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("big");
    add_frappe(&kp, &name, &api.url);
    let h = serve(&kp);
    let pid = h.agent.child.id();
    // warm up: connections, buffers, the first request's allocations
    assert_eq!(
        get(&format!("{}/{name}/download/1048576", h.url), &h.key).0,
        200
    );
    let before = rss_kib(pid, "VmRSS:");
    let gib: u64 = 1 << 30;
    let down = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_code}",
            "-H",
        ])
        .arg(format!("X-Keyport-Key: {}", h.key))
        .arg(format!("{}/{name}/download/{gib}", h.url))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&down.stdout), format!("{gib} 200"));
    let up = Command::new("sh")
        .arg("-c")
        .arg(r#"head -c 1073741824 /dev/zero | curl -sS -T - -H "X-Keyport-Key: $KEY" "$URL""#)
        .env("KEY", &h.key)
        .env("URL", format!("{}/{name}/upload", h.url))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&up.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&up.stderr)));
    assert_eq!(v["bytes"], gib);
    let peak = rss_kib(pid, "VmHWM:");
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "the agent's peak RSS grew from {before} KiB to {peak} KiB"
    );
}

/// Server-sent events reach the client one by one, as the upstream sends them.
#[test]
fn server_sent_events_arrive_as_sent() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("sse");
    add_frappe(&kp, &name, &api.url);
    let h = serve(&kp);
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET /{name}/sse HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Keyport-Key: {}\r\nAccept: text/event-stream\r\n\r\n",
        h.port, h.key
    )
    .unwrap();
    let mut seen = String::new();
    let read_until = |s: &mut TcpStream, seen: &mut String, needle: &str| {
        let mut buf = [0u8; 4096];
        while !seen.contains(needle) {
            let n = s.read(&mut buf).expect("the event arrives");
            assert!(n > 0, "closed before {needle:?}: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    eventually("the stream to open upstream", || api.send_event("one") == 1);
    read_until(&mut s, &mut seen, "data: one");
    assert!(!seen.contains("data: two"));
    api.send_event("two");
    read_until(&mut s, &mut seen, "data: two");
    assert!(seen
        .to_ascii_lowercase()
        .contains("content-type: text/event-stream"));
}

/// An `Upgrade` request (WebSocket and the like) passes through; bytes flow both ways.
#[test]
fn upgrades_pass_through() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("ws");
    add_frappe(&kp, &name, &api.url);
    let h = serve(&kp);
    let mut s = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /{name}/ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Keyport-Key: {}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
        h.port, h.key
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).unwrap(),
            1,
            "{}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"ping through the helper").unwrap();
    let mut back = [0u8; 23];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping through the helper");
    let seen = api.log();
    assert!(seen[0]
        .headers
        .iter()
        .any(|(k, v)| k == "authorization" && v == "token fk-1:fs-2"));
}

/// Redirects come back unfollowed, with a Location on the upstream made the helper's.
#[test]
fn redirects_stay_on_the_helper() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("redir");
    add_frappe(&kp, &name, &format!("{}/base", api.url));
    let h = serve(&kp);
    let (status, text) = raw(
        h.port,
        format!(
            "GET /{name}/redirect HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Keyport-Key: {}\r\nConnection: close\r\n\r\n",
            h.port, h.key
        )
        .as_bytes(),
    );
    assert_eq!(status, 302, "{text}");
    assert!(
        text.contains(&format!("location: /{name}/echo/after-redirect\r\n")),
        "{text}"
    );
    // curl -L follows it to the helper, not to the upstream
    let o = Command::new("curl")
        .args(["-sS", "-L", "-H"])
        .arg(format!("X-Keyport-Key: {}", h.key))
        .arg(format!("{}/{name}/redirect", h.url))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["path"], "/base/echo/after-redirect");
}

/// HTTP/2 to an upstream that offers it over TLS (a private CA in `ca_file`), h2c from a
/// client.
#[test]
fn http2_upstream_over_tls_and_h2c_clients() {
    require_session();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_ca(dir.path());
    let api = Upstream::start_tls(&cert, &key);
    let kp = Keyport::new();
    let name = unique("h2");
    add_frappe(&kp, &name, &api.url);
    kp.run(&[
        "profile",
        "set",
        &name,
        &format!("ca_file={}", ca.display()),
    ])
    .ok();
    let h = serve(&kp);
    let o = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
            "-H",
        ])
        .arg(format!("X-Keyport-Key: {}", h.key))
        .arg(format!("{}/{name}/echo", h.url))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "h2c from curl: {text}");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["version"], "HTTP/2.0", "{v}");
}

/// After warm-up, 10,000 proxied requests make no keychain call.
#[test]
fn proxying_never_calls_the_keychain() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("hot");
    add_frappe(&kp, &name, &api.url);
    let h = serve(&kp);
    let url = format!("{}/{name}/echo", h.url);
    let calls = || -> u64 {
        let v: serde_json::Value =
            serde_json::from_str(&kp.run(&["helper", "status", "--json"]).ok().stdout).unwrap();
        v["keychain_calls"].as_u64().unwrap()
    };
    let agent = ureq::AgentBuilder::new().build();
    let one = |agent: &ureq::Agent| {
        agent
            .get(&url)
            .set("X-Keyport-Key", &h.key)
            .call()
            .unwrap()
            .status()
    };
    assert_eq!(one(&agent), 200);
    let before = calls();
    for _ in 0..10_000 {
        assert_eq!(one(&agent), 200);
    }
    assert_eq!(calls(), before, "keychain calls during 10,000 requests");
    assert_eq!(api.log().len(), 10_001);
}

/// A port in use: one line saying so and what to do, in the agent's log and `status`; the
/// unix socket, the CLI and the tokens keep working.
#[test]
fn a_port_in_use_is_reported_and_the_socket_still_serves() {
    require_session();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("busy");
    add_frappe(&kp, &name, &api.url);
    let _agent = kp.start_agent(&["--helper-port", &port], &[]);
    let st: serde_json::Value =
        serde_json::from_str(&kp.run(&["helper", "status", "--json"]).ok().stdout).unwrap();
    let problem = st["error"].as_str().unwrap();
    assert!(
        problem.contains(&format!("port {port}")) && problem.contains("in use"),
        "{problem}"
    );
    assert!(
        problem.contains("--helper-port"),
        "says what to do: {problem}"
    );
    assert!(st["url"].is_null());
    let status = kp.run(&["status"]).ok().stdout;
    assert!(
        status.contains(&format!("helper: not on TCP: port {port}")),
        "{status}"
    );
    kp.run(&["helper", "url", &name]).fails_with("in use");
    // the unix socket needs no key
    let out = kp.run(&["curl", &name, "/echo"]).ok().stdout;
    assert!(out.contains("token fk-1:fs-2"), "{out}");
    assert_eq!(
        kp.run(&["header", &name]).ok().stdout.trim(),
        "Authorization: token fk-1:fs-2"
    );
}

/// `keyport helper pause`: every request is refused with Keyport's own kind and nothing
/// reaches the API, until `resume`; `keyport status` says so meanwhile.
#[test]
fn a_paused_helper_refuses_everything_until_resumed() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("pause");
    add_frappe(&kp, &name, &api.url);
    let h = serve(&kp);
    let url = format!("{}/{name}/echo", h.url);
    assert_eq!(get(&url, &h.key).0, 200);
    // A keep-alive connection open when the helper pauses is ended: nothing under way
    // goes on.
    let mut open = TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let ask = format!(
        "GET /{name}/echo HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Keyport-Key: {}\r\n\r\n",
        h.port, h.key
    );
    open.write_all(ask.as_bytes()).unwrap();
    let mut first = [0u8; 12];
    open.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    kp.run(&["helper", "pause"]).ok();
    // (the rest of the answer, then the end; a connection left open would time out)
    let ended = open.read_to_end(&mut Vec::new());
    assert!(
        ended.is_ok(),
        "the connection open at the pause goes on: {ended:?}"
    );
    let seen = api.log().len();
    let (status, body) = get(&url, &h.key);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("\"helper_paused\"") && body.contains("resume"),
        "{body}"
    );
    let out = kp.run(&["curl", &name, "/echo"]).stdout;
    assert!(out.contains("helper_paused"), "the unix socket too: {out}");
    assert_eq!(
        api.log().len(),
        seen,
        "nothing reached the API while paused"
    );
    assert!(kp.run(&["status"]).ok().stdout.contains("helper: paused"));
    kp.run(&["helper", "resume"]).ok();
    assert_eq!(get(&url, &h.key).0, 200);
    assert_eq!(api.log().len(), seen + 1);
    drop(h);
}

/// A hand edit of `[helper]` (port and allowed origins) takes effect on SIGHUP, without a
/// restart, when the port comes from the config; the old port is closed.
#[test]
fn a_hand_edit_of_the_helper_settings_applies_on_sighup() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let name = unique("hup");
    add_frappe(&kp, &name, &api.url);
    // Both held until used, so they differ and stay free meanwhile.
    let hold_a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hold_b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (
        hold_a.local_addr().unwrap().port(),
        hold_b.local_addr().unwrap().port(),
    );
    drop(hold_a);
    let file = kp.config_file();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n[helper]\nport = {a}\n")).unwrap();
    // The port follows the config: no --helper-port, no KEYPORT_HELPER_PORT.
    let mut agent = kp.command();
    agent
        .env_remove("KEYPORT_HELPER_PORT")
        .args(["agent", "--foreground"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut agent = AgentProc {
        child: agent.spawn().unwrap(),
        runtime_dir: kp.runtime_dir(),
    };
    let port = || -> Option<u64> {
        let out = kp.run(&["helper", "status", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out.stdout).ok()?["port"].as_u64()
    };
    eventually("the helper on the config's port", || {
        port() == Some(u64::from(a))
    });
    let key = kp.run(&["helper", "key"]).ok().stdout.trim().to_string();
    let request = |port: u16| {
        format!(
            "GET /{name}/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Keyport-Key: {key}\r\n\
             Origin: http://localhost:5173\r\nConnection: close\r\n\r\n"
        )
    };
    let (status, text) = raw(a, request(a).as_bytes());
    assert_eq!(status, 403, "the origin is not allowed yet: {text}");

    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            &format!("port = {a}"),
            &format!("port = {b}\nallowed_origins = [\"http://localhost:5173\"]"),
        ),
    )
    .unwrap();
    drop(hold_b);
    Command::new("kill")
        .args(["-HUP", &agent.child.id().to_string()])
        .status()
        .unwrap();
    eventually("the helper on the new port", || {
        port() == Some(u64::from(b))
    });
    let (status, text) = raw(b, request(b).as_bytes());
    assert_eq!(status, 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("access-control-allow-origin: http://localhost:5173"),
        "{text}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", a)).is_err(),
        "the old port is closed"
    );
    assert!(agent.stop().success());
}

/// `keyport exec`: the command gets the profile's URL and a key for that profile only,
/// which is revoked when it exits.
#[test]
fn exec_hands_a_command_a_url_and_its_own_key() {
    require_session();
    let api = Upstream::start();
    let kp = Keyport::new();
    let (name, other) = (unique("ex"), unique("other"));
    add_frappe(&kp, &name, &api.url);
    add_frappe(&kp, &other, &api.url);
    let h = serve(&kp);
    let script = r#"curl -sS -H "X-Keyport-Key: $KEYPORT_HELPER_KEY" "$KEYPORT_BASE_URL/echo"; echo; echo "KEY=$KEYPORT_HELPER_KEY"; echo "TOKEN=$KEYPORT_TOKEN"; echo "HEADER=$KEYPORT_AUTH_HEADER""#;
    let r = kp
        .run(&["exec", &name, "--token", "--", "sh", "-c", script])
        .ok();
    let out = r.stdout;
    assert!(out.contains("token fk-1:fs-2"), "{out}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("KEY="))
        .unwrap()
        .to_string();
    assert_eq!(key.len(), 64);
    assert_ne!(key, h.key);
    let token = kp.run(&["token", &name]).ok().stdout;
    assert!(
        out.contains(&format!("TOKEN={}", token.trim())),
        "as keyport token prints it: {out}"
    );
    assert!(
        out.contains("HEADER=Authorization: token fk-1:fs-2"),
        "{out}"
    );
    // revoked once the command ended
    assert_eq!(get(&format!("{}/{name}/echo", h.url), &key).0, 401);
    let keys = kp.run(&["helper", "key", "list", "--json"]).ok().stdout;
    assert!(!keys.contains("exec-"), "{keys}");
    // while it ran, it was for that profile only; and its exit code is passed on
    let r = kp.run(&[
        "exec",
        &name,
        "--",
        "sh",
        "-c",
        &format!(r#"test "$(curl -s -o /dev/null -w '%{{http_code}}' -H "X-Keyport-Key: $KEYPORT_HELPER_KEY" {}/{other}/echo)" = 403 && exit 7"#, h.url),
    ]);
    assert_eq!(r.code, 7, "{r:?}");
}

/// git clones from a server that demands Basic auth, with Keyport as its credential helper.
#[test]
fn git_clones_with_the_credential_helper() {
    require_session();
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str], cwd: &std::path::Path| {
        let o = Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", dir.path())
            .output()
            .expect("git (apt-get install git)");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("README"), "cloned through keyport\n").unwrap();
    for a in [
        &["init", "-q", "-b", "main"][..],
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "add",
            "README",
        ],
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "one",
        ],
    ] {
        assert!(git(a, &src).0);
    }
    let served = dir.path().join("served");
    std::fs::create_dir(&served).unwrap();
    assert!(
        git(
            &["clone", "-q", "--bare", src.to_str().unwrap(), "repo.git"],
            &served
        )
        .0
    );
    assert!(git(&["update-server-info"], &served.join("repo.git")).0);
    let mut server = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/support/git-http-server.py"
    ))
    .args([served.to_str().unwrap(), "gitter", "git-pw-9d"])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{}", line.trim());
    let kp = Keyport::new();
    let name = unique("git");
    kp.add(
        &name,
        "basic",
        &[
            "--set",
            "username=gitter",
            "--set",
            &format!("base_url={url}"),
        ],
        &[("password", "git-pw-9d")],
    );
    let (ok, err) = git(
        &["clone", "-q", &format!("{url}/repo.git"), "without"],
        dir.path(),
    );
    assert!(!ok, "the server demands credentials");
    assert!(
        err.contains("401") || err.contains("Authentication") || err.contains("terminal prompts"),
        "{err}"
    );
    let helper = format!(
        "!env KEYPORT_CONFIG_DIR={} KEYPORT_RUNTIME_DIR={} {} git-credential",
        kp.config_dir().display(),
        kp.runtime_dir().display(),
        keyport_system_tests::bin("keyport").display()
    );
    let (ok, err) = git(
        &[
            "-c",
            &format!("credential.helper={helper}"),
            "clone",
            "-q",
            &format!("{url}/repo.git"),
            "with",
        ],
        dir.path(),
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("with/README")).unwrap(),
        "cloned through keyport\n"
    );
    // nothing of the password was written under HOME by git
    keyport_system_tests::assert_no_bytes_under(&dir.path().join("with"), &["git-pw-9d"]);
}

/// 60 s of proxied traffic over four seed services whose tokens live 3 s: no failures.
#[test]
fn sixty_seconds_of_traffic_with_three_second_tokens() {
    require_session();
    let three = Duration::from_secs(3);
    let fake = Fake::start(Lifetimes {
        improvado: three,
        patchworks: three,
        operator: three,
        scoped: three,
    });
    let api = Upstream::start();
    let idp = Oidc::start(3);
    let kp = Keyport::new();
    let (imp, pw, op, ws, fi) = (
        unique("imp"),
        unique("pw"),
        unique("op"),
        unique("ws"),
        unique("4i"),
    );
    fake.add_improvado(&kp, &imp, 3);
    fake.add_patchworks(&kp, &pw);
    fake.add_airbyte_operator(&kp, &op);
    fakes::add_airbyte_scoped(&kp, &ws, &op, "acme");
    add_4insight(&kp, &fi, &idp, &api.url.clone());
    let h = serve(&kp);
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let paths = [
        format!("{}/{imp}/datasources", h.url),
        format!("{}/{pw}/api/v1/flows", h.url),
        format!("{}/{ws}/embedded/scoped-token/info", h.url),
        format!("{}/{fi}/v1/echo", h.url),
    ];
    let threads: Vec<_> = paths
        .into_iter()
        .map(|url| {
            let key = h.key.clone();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                let (mut ok, mut failed) = (0u32, Vec::new());
                while std::time::Instant::now() < until {
                    match agent.get(&url).set("X-Keyport-Key", &key).call() {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e.to_string()),
                    }
                }
                (url, ok, failed)
            })
        })
        .collect();
    for t in threads {
        let (url, ok, failed) = t.join().unwrap();
        assert!(
            failed.is_empty(),
            "{url}: {} failures, first: {:?}",
            failed.len(),
            failed.first()
        );
        assert!(ok > 100, "{url}: only {ok} requests");
    }
    assert_eq!(
        fake.unauthorized_uses(),
        0,
        "no expired token was ever sent"
    );
    assert!(
        fake.count("/fabric/api/login") >= 15,
        "tokens were renewed all along"
    );
}
