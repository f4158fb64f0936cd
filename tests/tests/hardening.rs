//! Hardening (issue 8), through the real binary, keychain and fakes: each test is named
//! after the behaviour it pins. The threat model is in docs/ARCHITECTURE.md: other local
//! users, other local processes and web pages, a hostile token endpoint or identity
//! provider, and secrets leaking into files, logs, notifications or process arguments.

use keyport_system_tests::fakes::*;
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
