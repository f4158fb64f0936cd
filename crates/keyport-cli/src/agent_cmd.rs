//! `keyport agent`, `keyport status`, `keyport refresh`, and the CLI's use of a running
//! agent: `token`/`header` ask it first and work standalone when none runs; profile
//! changes tell it to reload.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keyport_core::agent::control::{self, Client, Request, Response};
use keyport_core::agent::{Agent, AgentConfig, AgentError, ProfileStatus};
use keyport_core::keyport::Keyport;
use keyport_core::notify::{DesktopNotifier, Notifier, SilentNotifier};
use keyport_core::scheme::Credential;
use time::OffsetDateTime;

/// An error the agent reported; its kind decides the exit code.
#[derive(Debug)]
pub struct AgentFailure(pub AgentError);

impl std::fmt::Display for AgentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for AgentFailure {}

fn credential_of(resp: Response) -> Result<Credential> {
    match resp {
        Response::Credential { credential } => Ok(credential.into()),
        Response::Error { error } => Err(AgentFailure(error).into()),
        other => bail!("unexpected answer from the agent: {other:?}"),
    }
}

/// A credential valid for `min_valid` seconds: from the agent when one runs, else standalone.
pub fn credential(name: &str, min_valid: i64) -> Result<Credential> {
    if let Some(mut c) = Client::connect() {
        return credential_of(c.call(&Request::Token {
            profile: name.into(),
            min_valid,
        })?);
    }
    let kp = Keyport::open()?;
    Ok(crate::block_on(kp.credential_valid_for(name, min_valid))??)
}

/// Tells a running agent that profiles or secrets changed (best effort).
pub fn reload() {
    if let Some(mut c) = Client::connect() {
        let _ = c.call(&Request::Reload);
    }
}

pub fn refresh(name: &str) -> Result<Credential> {
    if let Some(mut c) = Client::connect() {
        return credential_of(c.call(&Request::Refresh {
            profile: name.into(),
        })?);
    }
    let kp = Keyport::open()?;
    Ok(crate::block_on(kp.renew(name, None))??)
}

pub struct AgentArgs {
    pub foreground: bool,
    pub config: AgentConfig,
    /// The arguments to pass on to the foreground process.
    pub passthrough: Vec<String>,
}

pub fn agent(args: AgentArgs) -> Result<()> {
    if !args.foreground {
        return start_background(&args.passthrough);
    }
    use_one_malloc_arena();
    let kp = Arc::new(Keyport::open()?);
    kp.load()?; // a broken config file is reported before anything starts
                // Small on purpose: the agent mostly sleeps; keychain work is sequential.
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
        let listener = control::bind()?;
        let notifier: Arc<dyn Notifier> = if args.config.notifications {
            Arc::new(DesktopNotifier)
        } else {
            Arc::new(SilentNotifier)
        };
        let agent = Agent::start(kp, args.config, notifier);
        eprintln!(
            "keyport agent running (pid {}, socket {})",
            std::process::id(),
            control::socket_path()?.display()
        );
        let handle = agent.handle();
        {
            let serve = control::serve(&listener.listener, agent.handle());
            tokio::pin!(serve);
            loop {
                tokio::select! {
                    _ = &mut serve => break,
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => { let _ = handle.reload().await; }
                }
            }
        }
        agent.stop().await;
        drop(listener); // removes the socket and agent.json
        eprintln!("keyport agent stopped");
        anyhow::Ok(())
    })
}

/// glibc gives every thread that allocates its own malloc arena and keeps freed memory in
/// it; for a process that mostly sleeps that is most of its memory (measured: 13 MB -> 6 MB
/// of heap with 1,000 profiles, docs/BENCHMARKS.md). The arena limit is read at start-up
/// only, so the agent re-executes itself (same pid) with it set, unless the user set it.
fn use_one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        if let Ok(exe) = std::env::current_exe() {
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("MALLOC_ARENA_MAX", "1")
                .exec();
            eprintln!("keyport agent: could not limit malloc arenas ({err}); going on");
        }
    }
}

/// Starts `keyport agent --foreground` detached, and returns once it answers.
fn start_background(passthrough: &[String]) -> Result<()> {
    if let Some(info) = control::running_info().filter(|_| Client::connect().is_some()) {
        bail!(
            "an agent is already running (pid {}): use it, or stop it with `kill {}` first",
            info.pid,
            info.pid
        );
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

fn fetch_status() -> Result<Vec<ProfileStatus>> {
    let Some(mut c) = Client::connect() else {
        bail!("no agent is running: start one with `keyport agent`");
    };
    match c.call(&Request::Status)? {
        Response::Status { profiles } => Ok(profiles),
        Response::Error { error } => Err(AgentFailure(error).into()),
        other => bail!("unexpected answer from the agent: {other:?}"),
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

pub fn status(json: bool, watch: bool) -> Result<()> {
    loop {
        let profiles = fetch_status()?;
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", serde_json::to_string_pretty(&profiles)?)?;
        } else {
            if watch {
                write!(out, "\x1b[2J\x1b[H")?;
            }
            let now = OffsetDateTime::now_utc();
            writeln!(
                out,
                "{:<24} {:<14} {:<14} {:<14} {:<14} LAST ERROR",
                "PROFILE", "STATE", "EXPIRES", "NEXT REFRESH", "LAST REFRESH"
            )?;
            for p in &profiles {
                let state = serde_json::to_value(p.state)?
                    .as_str()
                    .unwrap_or("?")
                    .to_string();
                let state = if p.failures > 0 {
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
        }
        drop(out);
        if !watch {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
