//! The loopback helper from the command line: `keyport helper ...` (its URL, socket, keys,
//! log and status), `keyport exec` (a command with a URL and a key of its own),
//! `keyport curl` (curl through the helper's unix socket) and `keyport git-credential`
//! (git's credential-helper protocol).
//!
//! Everything but key changes needs the running agent, which serves the helper. Key changes
//! go through the agent when it runs (it keeps the keys in memory) and straight to the
//! keychain when none does.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, Write};

use anyhow::{bail, Result};
use clap::Subcommand;
use keyport_core::agent::control::{Client, Request, Response};
use keyport_core::helper::keys::{KeyAction, KeyInfo};
use keyport_core::helper::HelperInfo;
use keyport_core::keyport::Keyport;
use keyport_core::Error;

#[derive(Subcommand)]
pub enum HelperCmd {
    /// Print the base URL a tool should use for profile NAME.
    Url { name: String },
    /// Print the unix socket path (no key needed: curl --unix-socket PATH http://keyport/NAME/...).
    Socket,
    /// Print the default key (--rotate replaces it), or manage named keys.
    Key {
        /// Replace the default key (tools using the old one are refused from now on).
        #[arg(long)]
        rotate: bool,
        #[command(subcommand)]
        cmd: Option<KeyCmd>,
    },
    /// The access log: the last requests, forwarded or refused (no secrets, no queries).
    Log {
        /// Keep printing new entries.
        #[arg(long)]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// The running helper's address, counters and any problem.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Refuse every request (503, X-Keyport-Error: helper_paused) until `resume`; the
    /// agent keeps renewing. Lasts until resumed or the agent stops.
    Pause,
    /// Serve requests again after `pause`.
    Resume,
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Make a key for some profiles only; prints it.
    Create {
        keyname: String,
        /// A profile the key may use (repeatable, at least one).
        #[arg(long = "profile", value_name = "NAME", required = true)]
        profiles: Vec<String>,
        /// GET, HEAD and OPTIONS only.
        #[arg(long)]
        read_only: bool,
    },
    /// List the keys with what they may do and their last use.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a named key: it is refused from now on.
    Revoke { keyname: String },
}

fn unexpected(other: Response) -> anyhow::Error {
    Error::Agent(format!("unexpected answer from the agent: {other:?}")).into()
}

fn no_agent() -> anyhow::Error {
    Error::Agent(
        "no agent is running, and the agent serves the helper: start one with `keyport agent`"
            .into(),
    )
    .into()
}

/// The running helper's status; `None` when no agent runs.
fn helper_info(c: &mut Client) -> Result<HelperInfo> {
    match c.call(&Request::Helper)? {
        Response::Helper { info } => Ok(info),
        Response::Error { error } => Err(Error::from(error).into()),
        other => Err(unexpected(other)),
    }
}

/// The helper's TCP base URL, or why there is none.
fn base_url(c: &mut Client) -> Result<String> {
    let info = helper_info(c)?;
    match info.url {
        Some(u) => Ok(u),
        None => bail!(
            "the helper does not listen on TCP: {}",
            info.error
                .as_deref()
                .unwrap_or("the agent was started without a helper port")
        ),
    }
}

fn key_op(action: KeyAction) -> Result<(Option<String>, Vec<KeyInfo>)> {
    if let Some(mut c) = Client::connect() {
        return match c.call(&Request::HelperKey { action })? {
            Response::Keys { secret, keys } => Ok((secret, keys)),
            Response::Error { error } => Err(Error::from(error).into()),
            other => Err(unexpected(other)),
        };
    }
    let kp = Keyport::open()?;
    let (secret, keys) =
        crate::block_on(keyport_core::helper::keys::change_standalone(&kp, &action))??;
    Ok((secret.map(|s| s.expose().to_string()), keys))
}

fn socket_path() -> Result<std::path::PathBuf> {
    Ok(keyport_core::paths::runtime_dir()?.join("helper.sock"))
}

fn time_text(t: Option<time::OffsetDateTime>) -> String {
    t.and_then(|t| t.replace_nanosecond(0).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".into())
}

pub fn helper(cmd: HelperCmd) -> Result<()> {
    match cmd {
        HelperCmd::Url { name } => {
            Keyport::open()?.load()?.get(&name)?;
            let base = match Client::connect() {
                Some(mut c) => base_url(&mut c)?,
                None => {
                    let port = Keyport::open()?.load()?.helper.port;
                    eprintln!("keyport: note: no agent is running; the URL works once `keyport agent` runs");
                    format!("http://127.0.0.1:{port}")
                }
            };
            println!("{base}/{name}");
        }
        HelperCmd::Socket => println!("{}", socket_path()?.display()),
        HelperCmd::Key { rotate, cmd } => match cmd {
            None => {
                let action = if rotate {
                    KeyAction::Rotate
                } else {
                    KeyAction::Show
                };
                let (secret, _) = key_op(action)?;
                println!("{}", secret.unwrap_or_default());
                if rotate {
                    eprintln!("replaced the default helper key: tools using the old one are refused from now on");
                }
            }
            Some(_) if rotate => bail!("--rotate goes alone: keyport helper key --rotate"),
            Some(KeyCmd::Create {
                keyname,
                profiles,
                read_only,
            }) => {
                let (secret, _) = key_op(KeyAction::Create {
                    name: keyname.clone(),
                    profiles: profiles.clone(),
                    read_only,
                    ephemeral: false,
                })?;
                println!("{}", secret.unwrap_or_default());
                eprintln!(
                    "created helper key '{keyname}' for {}{}",
                    profiles.join(", "),
                    if read_only { " (read-only)" } else { "" }
                );
            }
            Some(KeyCmd::List { json }) => {
                let (_, keys) = key_op(KeyAction::List)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&keys)?);
                } else {
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "{:<20} {:<10} {:<26} {:<26} PROFILES",
                        "KEY", "ACCESS", "CREATED", "LAST USED"
                    )?;
                    for k in keys {
                        let profiles = k.profiles.as_ref().map_or_else(
                            || "(all)".to_string(),
                            |p| p.iter().cloned().collect::<Vec<_>>().join(", "),
                        );
                        writeln!(
                            out,
                            "{:<20} {:<10} {:<26} {:<26} {profiles}",
                            k.name,
                            if k.read_only { "read-only" } else { "all" },
                            time_text(Some(k.created_at)),
                            time_text(k.last_used_at),
                        )?;
                    }
                }
            }
            Some(KeyCmd::Revoke { keyname }) => {
                key_op(KeyAction::Revoke {
                    name: keyname.clone(),
                })?;
                eprintln!("revoked helper key '{keyname}'");
            }
        },
        HelperCmd::Log { follow, json } => {
            let mut c = Client::connect().ok_or_else(no_agent)?;
            c.set_timeout(None);
            c.send(&Request::HelperLog { follow })?;
            loop {
                match c.receive()? {
                    Response::Log { entry } => {
                        let mut out = std::io::stdout().lock();
                        if json {
                            writeln!(out, "{}", serde_json::to_string(&entry)?)?;
                        } else {
                            writeln!(
                                out,
                                "{} {:<10} {:<16} {:<7} {} {} {:.1}ms {}B{}",
                                time_text(Some(entry.at)),
                                entry.key.as_deref().unwrap_or("-"),
                                entry.profile.as_deref().unwrap_or("-"),
                                entry.method,
                                entry.path,
                                entry.status,
                                entry.ms,
                                entry.bytes,
                                entry
                                    .refusal
                                    .as_ref()
                                    .map(|r| format!(
                                        " REFUSED {r}: {}",
                                        entry.reason.as_deref().unwrap_or("")
                                    ))
                                    .unwrap_or_default()
                            )?;
                        }
                        out.flush()?;
                    }
                    Response::Done => return Ok(()),
                    Response::Error { error } => return Err(Error::from(error).into()),
                    other => return Err(unexpected(other)),
                }
            }
        }
        HelperCmd::Pause | HelperCmd::Resume => {
            let paused = matches!(cmd, HelperCmd::Pause);
            let mut c = Client::connect().ok_or_else(no_agent)?;
            match c.call(&Request::HelperPause { paused })? {
                Response::Helper { info } if info.paused == paused => eprintln!(
                    "{}",
                    if paused {
                        "the helper is paused: every request is refused until `keyport helper resume`"
                    } else {
                        "the helper serves requests again"
                    }
                ),
                Response::Error { error } => return Err(Error::from(error).into()),
                other => return Err(unexpected(other)),
            }
        }
        HelperCmd::Status { json } => {
            let mut c = Client::connect().ok_or_else(no_agent)?;
            let info = helper_info(&mut c)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!(
                    "url:      {}",
                    info.url.as_deref().unwrap_or("(not on TCP)")
                );
                println!(
                    "socket:   {}",
                    info.socket
                        .as_ref()
                        .map_or("-".into(), |p| p.display().to_string())
                );
                println!("requests: {} ({} refused)", info.requests, info.refusals);
                if info.paused {
                    println!("paused:   every request is refused (keyport helper resume)");
                }
                if let Some(e) = info.error {
                    println!("problem:  {e}");
                }
            }
        }
    }
    Ok(())
}

/// One line for `keyport status`: where the helper is, or what is wrong with it.
pub fn status_line() -> Option<String> {
    let mut c = Client::connect()?;
    let info = helper_info(&mut c).ok()?;
    if info.paused {
        return Some("helper: paused, every request is refused (keyport helper resume)".into());
    }
    Some(match (&info.url, &info.error) {
        (Some(u), None) => format!("helper: {u}/PROFILE (keyport helper url PROFILE)"),
        (Some(u), Some(e)) => format!("helper: {u}/PROFILE; problem: {e}"),
        (None, Some(e)) => format!("helper: not on TCP: {e}"),
        (None, None) => "helper: unix socket only".into(),
    })
}

/// `keyport exec NAME -- CMD...`: CMD gets the profile's helper URL and a key for that
/// profile only, revoked when CMD exits.
pub fn exec(name: &str, token: bool, cmd: &[OsString]) -> Result<i32> {
    Keyport::open()?.load()?.get(name)?;
    let mut c = Client::connect().ok_or_else(no_agent)?;
    let base = base_url(&mut c)?;
    let keyname = format!(
        "exec-{}-{}",
        std::process::id(),
        &keyport_core::helper::keys::new_secret()?[..6]
    );
    let action = KeyAction::Create {
        name: keyname.clone(),
        profiles: vec![name.to_string()],
        read_only: false,
        ephemeral: true,
    };
    let secret = match c.call(&Request::HelperKey { action })? {
        Response::Keys {
            secret: Some(s), ..
        } => s,
        Response::Error { error } => return Err(Error::from(error).into()),
        other => return Err(unexpected(other)),
    };
    let mut child = std::process::Command::new(&cmd[0]);
    child
        .args(&cmd[1..])
        .env("KEYPORT_BASE_URL", format!("{base}/{name}"))
        .env("KEYPORT_HELPER_KEY", &secret);
    if token {
        let cred = crate::agent_cmd::credential(name, 30)?;
        let mut t = Vec::new();
        keyport_cli::write(&mut t, keyport_cli::Format::Token, name, &cred)?;
        let mut h = Vec::new();
        keyport_cli::write(&mut h, keyport_cli::Format::Header, name, &cred)?;
        let first = |b: Vec<u8>| {
            String::from_utf8_lossy(&b)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        child
            .env("KEYPORT_TOKEN", first(t))
            .env("KEYPORT_AUTH_HEADER", first(h));
    }
    // Ctrl-C reaches CMD (same process group); this process waits for it and then revokes.
    std::thread::spawn(|| loop {
        if crate::block_on(tokio::signal::ctrl_c()).is_err() {
            return;
        }
    });
    let status = child
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", cmd[0].to_string_lossy()));
    let revoke = KeyAction::Revoke { name: keyname };
    let _ = Client::connect().map(|mut c| c.call(&Request::HelperKey { action: revoke }));
    let status = status?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// `keyport curl NAME PATH [ARGS...]`: curl through the helper's unix socket (no key).
pub fn curl(name: &str, path: &str, args: &[OsString]) -> Result<()> {
    Keyport::open()?.load()?.get(name)?;
    let sock = socket_path()?;
    if Client::connect().is_none() || !sock.exists() {
        return Err(no_agent());
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut c = std::process::Command::new("curl");
    // quiet unless it fails (ARGS may add -v, -i, ...)
    c.arg("--silent")
        .arg("--show-error")
        .arg("--unix-socket")
        .arg(&sock)
        .arg(format!("http://localhost/{name}{path}"))
        .args(args);
    use std::os::unix::process::CommandExt;
    let e = c.exec();
    bail!("cannot run curl ({e}): install it (apt-get install curl)")
}

/// `keyport git-credential get|store|erase`: git's credential-helper protocol. `get`
/// answers for the profile whose API base URL matches the URL git asks about (the
/// longest match); `store` and `erase` do nothing (Keyport owns its credentials).
pub fn git_credential(op: &str) -> Result<()> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut capabilities = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k == "capability[]" {
                capabilities.push(v.to_string());
            } else {
                fields.insert(k.to_string(), v.to_string());
            }
        }
    }
    if op != "get" {
        return Ok(());
    }
    let (Some(protocol), Some(host)) = (fields.get("protocol"), fields.get("host")) else {
        return Ok(());
    };
    let path = fields
        .get("path")
        .map(|p| format!("/{}", p.trim_start_matches('/')));
    let kp = Keyport::open()?;
    let cfg = kp.load()?;
    let mut best: Option<(usize, String)> = None;
    for name in cfg.profiles.keys() {
        let Some(base) = cfg.api_base_url(name).and_then(|b| url::Url::parse(b).ok()) else {
            continue;
        };
        let bhost = match base.port() {
            Some(p) => format!("{}:{p}", base.host_str().unwrap_or_default()),
            None => base.host_str().unwrap_or_default().to_string(),
        };
        if base.scheme() != protocol || !bhost.eq_ignore_ascii_case(host) {
            continue;
        }
        let bpath = base.path().trim_end_matches('/');
        if let Some(p) = &path {
            if !(p == bpath || p.starts_with(&format!("{bpath}/")) || bpath.is_empty()) {
                continue;
            }
        }
        if best.as_ref().is_none_or(|(l, _)| bpath.len() > *l) {
            best = Some((bpath.len(), name.clone()));
        }
    }
    let Some((_, name)) = best else {
        return Ok(()); // not ours: git asks its next helper, or the user
    };
    let cred = crate::agent_cmd::credential(&name, 30)?;
    let Some((header, value)) = cred.headers.first() else {
        return Ok(());
    };
    let value = value.expose();
    if value.contains(['\n', '\r', '\0']) {
        bail!("the credential of '{name}' contains a line break, which git's credential protocol cannot carry");
    }
    let mut out = std::io::stdout().lock();
    let (scheme, rest) = value.split_once(' ').unwrap_or(("", value));
    if !header.eq_ignore_ascii_case("authorization") {
        eprintln!("keyport: profile '{name}' sends its credential in {header}, which git cannot send: use a Basic or bearer-token profile for git");
        return Ok(());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim())?;
        let text = String::from_utf8(decoded)?;
        let (u, p) = text.split_once(':').unwrap_or((&text, ""));
        writeln!(out, "username={u}\npassword={p}")?;
    } else if capabilities.iter().any(|c| c == "authtype") {
        writeln!(
            out,
            "capability[]=authtype\nauthtype={scheme}\ncredential={rest}"
        )?;
    } else {
        writeln!(out, "username=keyport\npassword={rest}")?;
    }
    if let Some(x) = cred.expires_at {
        writeln!(out, "password_expiry_utc={}", x.unix_timestamp())?;
    }
    Ok(())
}
