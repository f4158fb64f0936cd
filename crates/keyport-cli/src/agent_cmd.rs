//! `keyport agent`, `status`, `refresh`, `login`, and the CLI's use of a running agent:
//! `token`/`header` ask it first and work standalone when none runs; profile changes tell
//! it which profile changed; a login runs in the agent when one runs (its steps shown
//! here, Ctrl-C cancels it), else in this process.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keyport_core::agent::control::{Client, Request, Response};
use keyport_core::agent::host::running_info;
use keyport_core::agent::{AgentConfig, AgentEvent, Host, HostOptions, ProfileStatus};
use keyport_core::browser::{self, Opened};
use keyport_core::keyport::Keyport;
use keyport_core::login::{Cancel, LoginOptions, LoginStep, LoginUi};
use keyport_core::notify::{DesktopNotifier, Notifier, SilentNotifier};
use keyport_core::scheme::Credential;
use keyport_core::Error;
use time::OffsetDateTime;

fn unexpected(other: Response) -> anyhow::Error {
    Error::Agent(format!("unexpected answer from the agent: {other:?}")).into()
}

fn credential_of(resp: Response) -> Result<Credential> {
    match resp {
        Response::Credential { credential } => Ok(credential.into()),
        Response::Error { error } => Err(Error::from(error).into()),
        other => Err(unexpected(other)),
    }
}

/// A running agent's channel, waiting at most long enough for a chain of token calls.
fn connect() -> Option<Client> {
    let c = Client::connect()?;
    c.set_timeout(Some(Duration::from_secs(150)));
    Some(c)
}

/// A credential valid for `min_valid` seconds: from the agent when one runs, else standalone.
pub fn credential(name: &str, min_valid: i64) -> Result<Credential> {
    if let Some(mut c) = connect() {
        return credential_of(c.call(&Request::Token {
            profile: name.into(),
            min_valid,
        })?);
    }
    let kp = Keyport::open()?;
    let cred = crate::block_on(kp.credential_valid_for(name, min_valid))??;
    warn_unsaved(&kp)?;
    Ok(cred)
}

/// A renewed token the keychain refused to store lives only in this process: one more
/// try, else say so (the next call will need the old one, which may be dead).
fn warn_unsaved(kp: &Keyport) -> Result<()> {
    for (name, e) in crate::block_on(kp.save_unsaved())? {
        eprintln!("keyport: warning: the renewed token of '{name}' could not be saved ({e}); it is lost when this command ends");
    }
    Ok(())
}

/// Tells a running agent that `name` (its settings, secrets or token) changed. Waits until
/// the agent knows, so the next command sees the change; best effort.
pub fn changed(name: &str) {
    if let Some(mut c) = connect() {
        let _ = c.call(&Request::Changed {
            profile: Some(name.into()),
        });
    }
}

pub fn refresh(name: &str) -> Result<Credential> {
    if let Some(mut c) = connect() {
        return credential_of(c.call(&Request::Refresh {
            profile: name.into(),
        })?);
    }
    let kp = Keyport::open()?;
    let cred = crate::block_on(kp.renew(name, None))??;
    warn_unsaved(&kp)?;
    Ok(cred)
}

/// A login's steps, for a person at a terminal.
struct TerminalUi {
    name: String,
    no_browser: bool,
}

impl TerminalUi {
    fn open(&self, url: &str) {
        if self.no_browser {
            return;
        }
        match browser::open(url) {
            Opened::Started => {}
            Opened::NoBrowser => {
                eprintln!("(no display and no BROWSER set: open it yourself; Keyport is waiting)")
            }
            Opened::Failed(e) => {
                eprintln!("(could not start a browser: {e}; open the URL yourself)")
            }
        }
    }
}

impl LoginUi for TerminalUi {
    fn show(&self, step: &LoginStep) {
        let name = &self.name;
        match step {
            LoginStep::OpenUrl { url, open } => {
                eprintln!("Open this URL to log in:\n  {url}");
                // (the browser gets a one-time loopback URL: the real one carries secrets
                // that every local user could read on its command line)
                self.open(open);
            }
            LoginStep::DeviceCode {
                verification_uri,
                user_code,
                open,
                ..
            } => {
                eprintln!(
                    "To log in '{name}', open {verification_uri} and enter the code: {user_code}"
                );
                if let Some(u) = open {
                    self.open(u);
                }
            }
            LoginStep::AlreadyLoggedIn => {
                eprintln!("'{name}' is already logged in (use --force to log in again)")
            }
            LoginStep::Succeeded { expires_at } => {
                eprintln!("logged in '{name}'{}", crate::valid_until(*expires_at))
            }
            // The failure is the command's one line of error.
            LoginStep::Waiting { .. } | LoginStep::Exchanging | LoginStep::Failed { .. } => {}
        }
    }
}

/// `keyport login`: in the agent when one runs (so it is the one login of the profile,
/// and the agent holds the session at once), else here. Ctrl-C cancels it.
pub fn login(name: &str, opts: LoginOptions, no_browser: bool) -> Result<()> {
    let ui = TerminalUi {
        name: name.to_string(),
        no_browser,
    };
    if let Some(mut c) = Client::connect() {
        c.send(&Request::Login {
            profile: name.into(),
            options: opts,
        })?;
        let mut sender = c.sender()?;
        let cancel = serde_json::to_string(&Request::CancelLogin {
            profile: name.into(),
        })?;
        std::thread::spawn(move || {
            if crate::block_on(tokio::signal::ctrl_c()).is_ok() {
                let _ = sender.write_all(format!("{cancel}\n").as_bytes());
            }
        });
        loop {
            match c.receive()? {
                Response::Step { step } => ui.show(&step),
                other => return credential_of(other).map(drop),
            }
        }
    }
    let kp = Keyport::open()?;
    crate::block_on(async {
        let cancel = Cancel::new();
        let run = kp.login(name, &opts, &ui, &cancel);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => r,
            _ = tokio::signal::ctrl_c() => {
                cancel.cancel();
                run.await
            }
        }
    })??;
    changed(name);
    Ok(())
}

pub struct AgentArgs {
    pub foreground: bool,
    pub config: AgentConfig,
    pub helper: Option<keyport_core::helper::HelperOptions>,
    /// The arguments to pass on to the foreground process.
    pub passthrough: Vec<String>,
}

pub fn agent(args: AgentArgs) -> Result<()> {
    if !args.foreground {
        return start_background(&args.passthrough);
    }
    tune_allocators();
    let kp = Arc::new(Keyport::open()?);
    kp.load()?; // a broken config file is reported before anything starts
                // Small on purpose: the agent mostly sleeps, and keychain calls have a thread of their own.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Signal handlers first: a SIGTERM that arrives while the first keychain reads are in
        // flight must stop the agent cleanly, not kill it mid-call (gnome-keyring 42 has been
        // seen to abort when a client vanishes during OpenSession).
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        // (the desktop's unless turned off here: the config's setting may turn them on later)
        let notifier: Arc<dyn Notifier> = if args.config.notifications != Some(false) {
            Arc::new(DesktopNotifier)
        } else {
            Arc::new(SilentNotifier)
        };
        let host = Host::start(
            kp,
            HostOptions {
                config: args.config,
                notifier,
                helper: args.helper.map(|h| keyport_core::helper::HelperOptions {
                    // (only while the purge delay is ours to change)
                    on_load: (std::env::var("MIMALLOC_PURGE_DELAY").as_deref() == Ok("0"))
                        .then_some(crate::alloc::helper_load as fn(bool)),
                    ..h
                }),
            },
        )
        .await?;
        eprintln!(
            "keyport agent running (pid {}, socket {})",
            std::process::id(),
            host.socket().unwrap_or_default().display()
        );
        if let Some(h) = host.helper().map(|h| h.status()) {
            if let Some(u) = &h.url {
                eprintln!("keyport helper on {u}/PROFILE (key: keyport helper key)");
            }
            if let Some(e) = &h.error {
                eprintln!("keyport agent: helper: {e}");
            }
        }
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                // Hand edits of profiles.toml: re-read it (changed profiles only, and the
                // settings).
                _ = hup.recv() => {
                    if let Err(e) = host.reload(None).await {
                        eprintln!("keyport agent: {e}");
                    }
                }
            }
        }
        host.stop().await;
        eprintln!("keyport agent stopped");
        anyhow::Ok(())
    })
}

/// The agent mostly sleeps, so what its allocators keep is most of its memory; and the
/// helper threads allocate on every proxied request, so their allocator must be fast. Rust
/// code allocates with mimalloc (`main.rs`: 10% less CPU per proxied request than glibc's
/// malloc with an arena per thread), told to give freed pages back at once
/// (`MIMALLOC_PURGE_DELAY=0`: 16.5 MB -> 14.8 MB idle with 1,000 profiles), except while
/// the helper has connections (`crate::alloc`). The C libraries (libdbus) use glibc's
/// malloc: one arena, as they allocate little. Both are read at process start only, so the
/// agent re-executes itself (same pid) with them set, unless the user set them
/// (docs/BENCHMARKS.md).
fn tune_allocators() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
        || std::env::var_os("MALLOC_ARENA_MAX").is_none()
    {
        if let Ok(exe) = std::env::current_exe() {
            use std::os::unix::process::CommandExt;
            let mut cmd = std::process::Command::new(exe);
            cmd.args(std::env::args_os().skip(1));
            for (k, v) in [("MIMALLOC_PURGE_DELAY", "0"), ("MALLOC_ARENA_MAX", "1")] {
                if std::env::var_os(k).is_none() {
                    cmd.env(k, v);
                }
            }
            let err = cmd.exec();
            eprintln!("keyport agent: could not tune the allocators ({err}); going on");
        }
    }
}

/// Starts `keyport agent --foreground` detached, and returns once it answers.
fn start_background(passthrough: &[String]) -> Result<()> {
    if let Some(info) = running_info().filter(|_| Client::connect().is_some()) {
        return Err(Error::AgentRunning {
            pid: info.pid.to_string(),
        }
        .into());
    }
    let log_path = keyport_core::paths::runtime_dir()?.join("agent.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg("agent").arg("--foreground").args(passthrough);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn()?;
    for _ in 0..100 {
        if Client::connect().is_some() {
            eprintln!(
                "keyport agent started (pid {}; log {})",
                child.id(),
                log_path.display()
            );
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "the agent exited ({status}): {}",
                text.lines()
                    .last()
                    .unwrap_or("see the log")
                    .trim_start_matches("keyport: ")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "the agent did not answer within 10 s: see {}",
        log_path.display()
    )
}

fn no_agent() -> anyhow::Error {
    Error::Agent("no agent is running: start one with `keyport agent`".into()).into()
}

fn fetch_status() -> Result<Vec<ProfileStatus>> {
    let mut c = connect().ok_or_else(no_agent)?;
    match c.call(&Request::Status)? {
        Response::Status { profiles } => Ok(profiles),
        Response::Error { error } => Err(Error::from(error).into()),
        other => Err(unexpected(other)),
    }
}

fn countdown(t: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    let Some(t) = t else { return "-".into() };
    let d = t - now;
    let (neg, s) = (d.is_negative(), d.whole_seconds().unsigned_abs());
    let text = if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    };
    if neg {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

fn table<'a>(
    out: &mut impl Write,
    profiles: impl IntoIterator<Item = &'a ProfileStatus>,
) -> Result<()> {
    let now = OffsetDateTime::now_utc();
    writeln!(
        out,
        "{:<24} {:<14} {:<14} {:<14} {:<14} LAST ERROR",
        "PROFILE", "STATE", "EXPIRES", "NEXT REFRESH", "LAST REFRESH"
    )?;
    for p in profiles {
        let state = serde_json::to_value(p.state)?
            .as_str()
            .unwrap_or("?")
            .to_string();
        let state = if p.login_in_progress {
            format!("{state} (login)")
        } else if p.failures > 0 {
            format!("{state} ({}x)", p.failures)
        } else {
            state
        };
        writeln!(
            out,
            "{:<24} {:<14} {:<14} {:<14} {:<14} {}",
            p.name,
            state,
            countdown(p.expires_at, now),
            countdown(p.next_refresh_at, now),
            countdown(p.last_refresh_at, now),
            p.last_error.as_deref().unwrap_or("")
        )?;
    }
    Ok(())
}

pub fn status(json: bool, watch: bool) -> Result<()> {
    if !watch {
        let profiles = fetch_status()?;
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(&profiles)?)?;
        } else {
            table(&mut out, &profiles)?;
            if let Some(line) = crate::helper_cmd::status_line() {
                writeln!(out, "\n{line}")?;
            }
        }
        return Ok(());
    }
    // --watch: the agent pushes every change; nothing polls it. The table is redrawn on
    // each change and once a second for the countdowns; --json prints each event as a line.
    let mut c = Client::connect().ok_or_else(no_agent)?;
    c.send(&Request::Watch)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || loop {
        let r = c.receive();
        let end = r.is_err();
        if tx.send(r).is_err() || end {
            return;
        }
    });
    let mut profiles: BTreeMap<String, ProfileStatus> = BTreeMap::new();
    loop {
        let event = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(r) => match r? {
                Response::Event { event } => Some(event),
                Response::Error { error } => return Err(Error::from(error).into()),
                other => return Err(unexpected(other)),
            },
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => bail!("the agent stopped"),
        };
        let mut out = std::io::stdout().lock();
        if json {
            if let Some(e) = event {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
                out.flush()?;
            }
            continue;
        }
        match event {
            Some(AgentEvent::Snapshot { profiles: all }) => {
                profiles = all.into_iter().map(|p| (p.name.clone(), p)).collect();
            }
            Some(AgentEvent::Removed { name }) => {
                profiles.remove(&name);
            }
            Some(
                AgentEvent::Added { profile }
                | AgentEvent::Changed { profile }
                | AgentEvent::State { profile, .. }
                | AgentEvent::RenewalSucceeded { profile }
                | AgentEvent::RenewalFailed { profile, .. },
            ) => {
                profiles.insert(profile.name.clone(), profile);
            }
            Some(AgentEvent::RenewalStarted { .. } | AgentEvent::Login { .. }) | None => {}
        }
        write!(out, "\x1b[2J\x1b[H")?;
        table(&mut out, profiles.values())?;
        out.flush()?;
    }
}
