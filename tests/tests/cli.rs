//! The `keyport` CLI against the real keychain: each preset gives the exact header its seed
//! document specifies, secrets live only in the keychain, and bad input fails with one clear
//! line and saves nothing.

use base64::Engine as _;
use keyport_system_tests::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

struct Case {
    preset: &'static str,
    sets: &'static [&'static str],
    secrets: &'static [(&'static str, &'static str)],
    /// The header lines the seed doc specifies.
    expected: fn() -> Vec<String>,
}

const CASES: &[Case] = &[
    // 000 Improvado: "Authorization: 'Basic <credentials value>'", base64(username:password)
    Case {
        preset: "improvado-basic",
        sets: &["username=analyst@example.com"],
        secrets: &[("password", "imp-Pw-7f3a9c")],
        expected: || {
            vec![format!(
                "Authorization: Basic {}",
                b64("analyst@example.com:imp-Pw-7f3a9c")
            )]
        },
    },
    // 001 Patchworks: "The API key should be passed in the `Authorization` header" (raw)
    Case {
        preset: "patchworks-api-key",
        sets: &[],
        secrets: &[("api_key", "pw-key-51c0ffee")],
        expected: || vec!["Authorization: pw-key-51c0ffee".into()],
    },
    // 002 Frappe: "Authorization: token <api_key>:<api_secret>"
    Case {
        preset: "frappe-token",
        sets: &["base_url=https://erp.example.com", "api_key=fk1"],
        secrets: &[("api_secret", "fr-sec-88d1e2")],
        expected: || vec!["Authorization: token fk1:fr-sec-88d1e2".into()],
    },
    // 002 Frappe: plus "'Frappe-Authorization-Source': ..." for keys from another DocType
    Case {
        preset: "frappe-token",
        sets: &[
            "base_url=https://erp.example.com",
            "api_key=fk2",
            "authorization_source=Event Consumer",
        ],
        secrets: &[("api_secret", "fr-sec-2b7c44")],
        expected: || {
            vec![
                "Authorization: token fk2:fr-sec-2b7c44".into(),
                "Frappe-Authorization-Source: Event Consumer".into(),
            ]
        },
    },
    // 002 Frappe: "Authorization: Basic base64encode(<api_key>:<api_secret>)"
    Case {
        preset: "frappe-basic",
        sets: &["base_url=https://erp.example.com", "api_key=fk3"],
        secrets: &[("api_secret", "fr-sec-0a9e31")],
        expected: || vec![format!("Authorization: Basic {}", b64("fk3:fr-sec-0a9e31"))],
    },
    Case {
        preset: "basic",
        sets: &["username=bob"],
        secrets: &[("password", "basic-pw-4d2f")],
        expected: || vec![format!("Authorization: Basic {}", b64("bob:basic-pw-4d2f"))],
    },
    Case {
        preset: "api-key",
        sets: &["header=X-API-Key", "extra_headers.Accept=application/json"],
        secrets: &[("api_key", "ak-93e1b7")],
        expected: || {
            vec![
                "X-API-Key: ak-93e1b7".into(),
                "Accept: application/json".into(),
            ]
        },
    },
    Case {
        preset: "api-key",
        sets: &["template=Bearer {token}"],
        secrets: &[("token", "tok-77aa01")],
        expected: || vec!["Authorization: Bearer tok-77aa01".into()],
    },
    Case {
        preset: "bearer",
        sets: &["expires_at=2099-01-01T00:00:00Z"],
        secrets: &[("token", "bearer-tok-c3d4")],
        expected: || vec!["Authorization: Bearer bearer-tok-c3d4".into()],
    },
];

/// For every preset: add, header, token, the keychain item, no secret on disk, rm.
#[test]
fn every_preset_gives_the_seed_header_and_keeps_secrets_in_the_keychain() {
    require_session();
    for case in CASES {
        let kp = Keyport::new();
        let name = unique(case.preset);
        let mut args = vec!["profile", "add", &name, "--preset", case.preset];
        for s in case.sets {
            args.extend(["--set", s]);
        }
        let mut stdin = String::new();
        for (field, value) in case.secrets {
            args.extend(["--secret", field]);
            stdin.push_str(value);
            stdin.push('\n');
        }
        kp.run_with(&args, &stdin).ok();

        let expected = (case.expected)();
        let header = kp.run(&["header", &name]).ok();
        assert_eq!(
            header.stdout.lines().collect::<Vec<_>>(),
            expected,
            "{}",
            case.preset
        );

        // `token` prints the credential of the main header (no scheme word for basic).
        let main_value = expected[0].split_once(": ").unwrap().1;
        let want_token = main_value
            .strip_prefix("Basic ")
            .or(if case.preset == "bearer" {
                main_value.strip_prefix("Bearer ")
            } else {
                None
            })
            .unwrap_or(main_value);
        assert_eq!(
            kp.run(&["token", &name]).ok().stdout.trim_end(),
            want_token,
            "{}",
            case.preset
        );
        let json: serde_json::Value =
            serde_json::from_str(&kp.run(&["token", &name, "--json"]).ok().stdout).unwrap();
        assert_eq!(json["profile"], name.as_str());
        for line in &expected {
            let (h, v) = line.split_once(": ").unwrap();
            assert_eq!(json["headers"][h], v, "{}", case.preset);
        }
        if case.preset == "bearer" {
            assert_eq!(json["expires_at"], "2099-01-01T00:00:00Z");
        } else {
            assert!(json["expires_at"].is_null());
        }

        // The secret is in the keychain under service "keyport", account = profile name...
        let item = secret_tool_lookup("keyport", &name).expect("keychain item");
        let stored: serde_json::Value = serde_json::from_str(&item).unwrap();
        for (field, value) in case.secrets {
            assert_eq!(stored[field], *value, "{}", case.preset);
        }
        assert!(secret_tool_search("keyport", &name)
            .contains(&format!("label = Keyport secrets: {name}")));
        // ...and nowhere under the config dir.
        let values: Vec<&str> = case.secrets.iter().map(|(_, v)| *v).collect();
        assert_no_bytes_under(kp.dir.path(), &values);
        let show = kp.run(&["profile", "show", &name]).ok();
        for (field, value) in case.secrets {
            assert!(
                show.stdout.contains(&format!("{field}: set")),
                "{}",
                show.stdout
            );
            assert!(!show.stdout.contains(value));
        }

        kp.run(&["profile", "rm", &name]).ok();
        assert_eq!(
            secret_tool_lookup("keyport", &name),
            None,
            "rm must remove the item"
        );
        kp.run(&["header", &name]).fails_with("no profile named");
    }
}

#[test]
fn presets_lists_fields_defaults_and_secrets() {
    let kp = Keyport::new();
    let out = kp.run(&["presets", "--json"]).ok();
    let presets: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = presets
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in [
        "improvado-basic",
        "patchworks-api-key",
        "frappe-token",
        "frappe-basic",
        "basic",
        "api-key",
        "bearer",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let imp = presets
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "improvado-basic")
        .unwrap();
    let fields = imp["fields"].as_array().unwrap();
    let field = |n: &str| fields.iter().find(|f| f["name"] == n).unwrap().clone();
    assert_eq!(
        field("base_url")["default"],
        "https://embedded.improvado.io/api/v3"
    );
    assert_eq!(field("password")["secret"], true);
    assert_eq!(field("username")["secret"], false);
    let text = kp.run(&["presets"]).ok().stdout;
    assert!(
        text.contains("frappe-token") && text.contains("api_secret") && text.contains("secret")
    );
}

#[test]
fn secret_set_changes_the_item_and_leaves_an_unchanged_value_alone() {
    require_session();
    let kp = Keyport::new();
    let name = unique("rotate");
    kp.add(
        &name,
        "patchworks-api-key",
        &[],
        &[("api_key", "old-key-1")],
    );
    let modified = || {
        secret_tool_search("keyport", &name)
            .lines()
            .find(|l| l.starts_with("modified"))
            .map(str::to_string)
    };
    let before = modified();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // timestamps have 1 s steps
    let r = kp
        .run_with(&["secret", "set", &name, "api_key"], "old-key-1\n")
        .ok();
    assert!(r.stderr.contains("unchanged"), "{r:#?}");
    assert_eq!(
        modified(),
        before,
        "an unchanged secret must not rewrite the item"
    );
    kp.run_with(&["secret", "set", &name, "api_key"], "new-key-2\n")
        .ok();
    assert_eq!(
        kp.run(&["header", &name]).ok().stdout,
        "Authorization: new-key-2\n"
    );
    assert_ne!(modified(), before);
    kp.run_with(&["secret", "set", &name, "base_url"], "x\n")
        .fails_with("not a secret field");
    kp.run_with(&["secret", "set", &name, "api_key"], "\n")
        .fails_with("empty");
    assert_eq!(
        kp.run(&["header", &name]).ok().stdout,
        "Authorization: new-key-2\n"
    );
    kp.run(&["profile", "rm", &name]).ok();
}

#[test]
fn profile_set_list_and_show() {
    require_session();
    let kp = Keyport::new();
    let name = unique("frappe");
    kp.add(
        &name,
        "frappe-token",
        &["--set", "base_url=https://a.example", "--set", "api_key=k"],
        &[("api_secret", "s")],
    );
    kp.run(&[
        "profile",
        "set",
        &name,
        "authorization_source=Event Consumer",
    ])
    .ok();
    assert!(kp
        .run(&["header", &name])
        .ok()
        .stdout
        .contains("Frappe-Authorization-Source: Event Consumer"));
    kp.run(&["profile", "set", &name, "authorization_source="])
        .ok();
    assert_eq!(
        kp.run(&["header", &name]).ok().stdout,
        "Authorization: token k:s\n"
    );
    // http to a remote host only with the explicit opt-in
    kp.run(&["profile", "set", &name, "base_url=http://erp.internal"])
        .fails_with("allow_insecure_http=true");
    kp.run(&["profile", "set", &name, "allow_insecure_http=true"])
        .ok();
    kp.run(&["profile", "set", &name, "base_url=http://erp.internal"])
        .ok();
    let list: serde_json::Value =
        serde_json::from_str(&kp.run(&["profile", "list", "--json"]).ok().stdout).unwrap();
    assert_eq!(list[0]["name"], name.as_str());
    assert_eq!(list[0]["base_url"], "http://erp.internal");
    let show: serde_json::Value =
        serde_json::from_str(&kp.run(&["profile", "show", &name, "--json"]).ok().stdout).unwrap();
    assert_eq!(show["secrets"]["api_secret"], true);
    assert_eq!(show["allow_insecure_http"], true);
    assert_eq!(show["keychain_item"], format!("keyport/{name}"));
    kp.run(&["profile", "rm", &name]).ok();
}

/// Each bad `profile add` fails with one line, exit 1, and saves nothing anywhere.
#[test]
fn bad_input_is_one_clear_line_and_saves_nothing() {
    require_session();
    let kp = Keyport::new();
    let existing = unique("existing");
    kp.add_basic(&existing);
    let config_before = kp.config_bytes();
    let name = unique("bad");
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[
                "--preset",
                "frappe-token",
                "--set",
                "api_key=k",
                "--secret",
                "api_secret",
            ],
            "s\n",
            "missing required field 'base_url'",
        ),
        (
            &["--preset", "basic", "--set", "username=u"],
            "",
            "add `--secret password`",
        ),
        (
            &[
                "--preset",
                "basic",
                "--set",
                "colour=red",
                "--secret",
                "password",
            ],
            "pw\n",
            "preset 'basic' has no field 'colour'",
        ),
        (
            &[
                "--preset",
                "frappe-token",
                "--set",
                "base_url=not a url",
                "--set",
                "api_key=k",
                "--secret",
                "api_secret",
            ],
            "s\n",
            "is not a URL",
        ),
        (
            &[
                "--preset",
                "frappe-token",
                "--set",
                "base_url=http://erp.example.com",
                "--set",
                "api_key=k",
                "--secret",
                "api_secret",
            ],
            "s\n",
            "plain http",
        ),
        (
            &[
                "--preset",
                "basic",
                "--set",
                "username=u",
                "--set",
                "password=pw",
            ],
            "",
            "never on the command line",
        ),
        (&["--preset", "nope"], "", "unknown preset 'nope'"),
        (
            &[
                "--preset",
                "basic",
                "--set",
                "username=u",
                "--secret",
                "password",
            ],
            "\n",
            "empty",
        ),
        (
            &[
                "--preset",
                "basic",
                "--set",
                "username=u",
                "--secret",
                "password",
            ],
            "",
            "stdin ended",
        ),
        (
            &[
                "--preset",
                "basic",
                "--set",
                "username=u",
                "--secret",
                "username",
            ],
            "x\n",
            "not a secret field",
        ),
        (
            &[
                "--preset",
                "bearer",
                "--set",
                "expires_at=tomorrow",
                "--secret",
                "token",
            ],
            "t\n",
            "RFC 3339",
        ),
    ];
    for (args, stdin, needle) in cases {
        let mut full = vec!["profile", "add", &name];
        full.extend_from_slice(args);
        kp.run_with(&full, stdin).fails_with(needle);
        assert_eq!(
            secret_tool_lookup("keyport", &name),
            None,
            "{args:?} left a keychain item"
        );
        assert_eq!(
            kp.config_bytes(),
            config_before,
            "{args:?} changed the config"
        );
    }
    // duplicate name: the existing profile and its secret are untouched
    kp.run_with(
        &[
            "profile",
            "add",
            &existing,
            "--preset",
            "basic",
            "--set",
            "username=v",
            "--secret",
            "password",
        ],
        "other\n",
    )
    .fails_with("already exists");
    assert!(secret_tool_lookup("keyport", &existing)
        .unwrap()
        .contains("\"pw\""));
    kp.run(&["profile", "add", "Bad Name", "--preset", "basic"])
        .fails_with("invalid profile name 'Bad Name'");
    assert_eq!(kp.config_bytes(), config_before);
    // usage errors exit 2
    assert_eq!(
        kp.run(&["profile", "set", &existing, "no-equals-sign"])
            .code,
        2
    );
    assert_eq!(kp.run(&["frobnicate"]).code, 2);
    kp.run(&["profile", "rm", &existing]).ok();
}

#[test]
fn malformed_config_names_file_line_and_field_and_is_not_overwritten() {
    let kp = Keyport::new();
    std::fs::create_dir_all(kp.config_dir()).unwrap();
    let text = "version = 1\n\n[profiles.erp]\npreset = \"frappe-token\"\nsecrets = [\"api_secret\"]\n\n[profiles.erp.settings]\nbase_url = \"https://erp.example.com\"\napi_key = 42\n";
    std::fs::write(kp.config_file(), text).unwrap();
    let file = kp.config_file().display().to_string();
    for args in [
        &["profile", "list"][..],
        &["header", "erp"],
        &["profile", "set", "erp", "api_key=k"],
    ] {
        kp.run(args).fails_with(&format!(
            "config file {file}: line 9, field profiles.erp.settings.api_key: invalid type"
        ));
    }
    kp.run_with(
        &[
            "profile",
            "add",
            "other",
            "--preset",
            "basic",
            "--set",
            "username=u",
            "--secret",
            "password",
        ],
        "pw\n",
    )
    .fails_with("nothing was changed");
    assert_eq!(std::fs::read_to_string(kp.config_file()).unwrap(), text);
}

#[test]
fn pasted_bearer_token_past_its_expiry_is_refused() {
    require_session();
    let kp = Keyport::new();
    let name = unique("expired");
    kp.add(
        &name,
        "bearer",
        &["--set", "expires_at=2020-01-01T00:00:00Z"],
        &[("token", "old-tok")],
    );
    let r = kp
        .run(&["header", &name])
        .fails_with("expired at 2020-01-01T00:00:00Z");
    assert!(!r.stderr.contains("old-tok"));
    kp.run(&["profile", "rm", &name]).ok();
}

/// The runtime dir holds the agent's socket: a symlink there (e.g. planted in a shared /tmp)
/// is refused.
#[test]
fn a_runtime_dir_that_is_a_symlink_is_refused() {
    let kp = Keyport::new();
    let real = kp.dir.path().join("elsewhere");
    std::fs::create_dir_all(&real).unwrap();
    std::os::unix::fs::symlink(&real, kp.dir.path().join("run")).unwrap();
    kp.run(&["agent", "--foreground"])
        .fails_with("is not a directory (a symlink?)");
}

/// Without a session bus there is no keychain: one line saying what to start.
#[test]
fn no_session_bus_is_a_clear_error() {
    let kp = Keyport::new();
    std::fs::create_dir_all(kp.config_dir()).unwrap();
    std::fs::write(kp.config_file(), "version = 1\n[profiles.p]\npreset = \"patchworks-api-key\"\nsecrets = [\"api_key\"]\n[profiles.p.settings]\nbase_url = \"https://app.wearepatchworks.com\"\n").unwrap();
    let o = kp
        .command()
        .args(["header", "p"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        // with a DISPLAY, libdbus would autolaunch a bus through X11
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no D-Bus session bus"), "{err}");
}

/// A crash must not write secrets or tokens to disk: the CLI (waiting for a secret on
/// stdin) and the agent run with core dumps off.
#[test]
fn neither_the_cli_nor_the_agent_can_dump_core() {
    require_session();
    let kp = Keyport::new();
    kp.add_basic("b");
    let core_limit = |pid: u32| {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .skip(4)
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut cli = kp
        .command()
        .args(["secret", "set", "b", "password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // (it waits for the secret's line; the front has exec'd keyport-cli by then)
    let pid = cli.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.ends_with("keyport-cli"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "keyport-cli did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(core_limit(pid), "0 0", "the CLI");
    use std::io::Write;
    cli.stdin.take().unwrap().write_all(b"pw\n").unwrap();
    assert!(cli.wait().unwrap().success());
    let agent = kp.start_agent(&["--no-notifications"], &[]);
    assert_eq!(core_limit(agent.child.id()), "0 0", "the agent");
}
