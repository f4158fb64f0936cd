//! `keyport`: the command-line face of keyport-core.
//!
//! Only argument parsing, secret input and output formats live here; every rule is in the
//! core. Output formats and exit codes are a contract (scripts parse them): 0 ok, 1 failure
//! with one line on stderr saying what is wrong and what to do, 2 usage error, 3 only an
//! interactive login can help (the core's [`keyport_core::ErrorKind`] decides).
//! Secrets are never accepted as arguments: `--secret FIELD` reads them from a hidden prompt
//! on a terminal, otherwise one line per secret from stdin.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

// The agent's control channel is a unix socket: this binary targets Linux and macOS for
// now (Windows would need a named pipe; docs/ARCHITECTURE.md).
mod agent_cmd;
mod alloc;
mod helper_cmd;

/// The agent's helper allocates on every proxied request: mimalloc is faster there than
/// glibc's malloc (v2 and no transparent huge pages, which cost idle memory: see
/// `agent_cmd::tune_allocators` and docs/BENCHMARKS.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use keyport_core::keyport::Keyport;
use keyport_core::login::LoginOptions;
use keyport_core::preset;
use keyport_core::store::SecretBundle;
use keyport_core::Secret;

#[derive(Parser)]
#[command(
    name = "keyport",
    version,
    about = "Keeps API credentials in the OS keychain and hands out auth headers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the built-in presets with their fields.
    Presets {
        #[arg(long)]
        json: bool,
    },
    /// Add, list, show, change or remove profiles.
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Set a profile's secrets (read from a hidden prompt or stdin, never from arguments).
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Print the header line(s) to send, one per line.
    Header {
        name: String,
        /// The token must stay valid this many more seconds (else it is renewed).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        min_valid: i64,
    },
    /// Print the credential value of the main header.
    Token {
        name: String,
        /// Print an object with profile, scheme, headers, expires_at, refreshable (and
        /// widget_url for Airbyte widget tokens).
        #[arg(long)]
        json: bool,
        /// The token must stay valid this many more seconds (else it is renewed).
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        min_valid: i64,
    },
    /// Log in interactively (OAuth2 in the browser, or the device flow) and store the token.
    Login {
        name: String,
        /// Log in again even when the session is still valid.
        #[arg(long)]
        force: bool,
        /// Don't open a browser; print the URL only.
        #[arg(long)]
        no_browser: bool,
        /// Give up after this many seconds.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        timeout: u64,
    },
    /// Forget a profile's token (revoking it at the identity provider when possible).
    Logout { name: String },
    /// Run the agent: keeps every token valid in the background and notifies you when a
    /// token needs you. Detaches unless --foreground.
    Agent {
        #[arg(long)]
        foreground: bool,
        /// Renew at the latest, and warn about tokens that can't be renewed, this long
        /// before expiry (default: `lead` under [agent] in profiles.toml, else 120).
        #[arg(long, value_name = "SECS")]
        lead: Option<u64>,
        /// No desktop notifications at all (default: `notifications` under [agent] in
        /// profiles.toml; per profile: `keyport profile set NAME notify=false`).
        #[arg(long)]
        no_notifications: bool,
        /// First retry delay after a failed renewal, in milliseconds (doubles, capped).
        #[arg(long, value_name = "MS", default_value_t = 2000, hide = true)]
        backoff_base_ms: u64,
        #[arg(long, value_name = "MS", default_value_t = 300_000, hide = true)]
        backoff_cap_ms: u64,
        /// Notify after this many failed renewals in a row.
        #[arg(long, value_name = "N", default_value_t = 3)]
        notify_after: u32,
        /// The loopback helper's TCP port (default: `port` under [helper] in profiles.toml,
        /// else 7137; 0 picks a free one).
        #[arg(long, value_name = "PORT", env = "KEYPORT_HELPER_PORT")]
        helper_port: Option<u16>,
        /// Don't serve the loopback helper (neither TCP nor its unix socket).
        #[arg(long)]
        no_helper: bool,
    },
    /// The loopback helper: local tools reach a profile's API at its URL with a helper key.
    #[command(subcommand)]
    Helper(helper_cmd::HelperCmd),
    /// Run CMD with KEYPORT_BASE_URL (the profile's helper URL) and KEYPORT_HELPER_KEY (a
    /// key for that profile only, revoked when CMD exits).
    Exec {
        name: String,
        /// Also set KEYPORT_TOKEN and KEYPORT_AUTH_HEADER, for tools that need the
        /// credential itself (it is then in CMD's environment).
        #[arg(long)]
        token: bool,
        #[arg(
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "CMD"
        )]
        cmd: Vec<std::ffi::OsString>,
    },
    /// curl PATH of profile NAME through the helper, for quick checks (ARGS go to curl).
    Curl {
        name: String,
        path: String,
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
    /// git's credential-helper protocol (credential.helper = "!keyport git-credential").
    GitCredential {
        #[arg(value_parser = ["get", "store", "erase"])]
        op: String,
    },
    /// Every profile's state in the running agent, with countdowns.
    Status {
        #[arg(long)]
        json: bool,
        /// Keep showing it: redrawn on every change the agent reports (with --json: one
        /// line per change event).
        #[arg(long)]
        watch: bool,
    },
    /// Renew a profile's token now.
    Refresh { name: String },
}

#[derive(Subcommand)]
enum ProfileCmd {
    /// Add a profile from a preset.
    Add {
        name: String,
        #[arg(long)]
        preset: String,
        /// A non-secret field, FIELD=VALUE (repeatable).
        #[arg(long = "set", value_name = "FIELD=VALUE", value_parser = parse_assignment)]
        set: Vec<(String, String)>,
        /// A secret field to read from a hidden prompt, or one line of stdin (repeatable).
        #[arg(long = "secret", value_name = "FIELD")]
        secret: Vec<String>,
    },
    /// List profiles.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a profile; secrets only as set / not set.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a profile and its keychain items.
    Rm { name: String },
    /// Change a non-secret field (an empty VALUE clears an optional one).
    Set {
        name: String,
        #[arg(value_name = "FIELD=VALUE", value_parser = parse_assignment)]
        assignment: (String, String),
    },
}

#[derive(Subcommand)]
enum SecretCmd {
    /// Set one secret field of a profile.
    Set { name: String, field: String },
}

fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not FIELD=VALUE")),
    }
}

fn main() -> ExitCode {
    // A crash must not write the secrets and tokens in memory to disk.
    let _ = keyport_core::process::harden();
    let cli = Cli::parse(); // usage errors exit 2
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the core's messages already say what to do.
            let msg = keyport_core::error::inert(&format!("{e:#}"));
            eprintln!("keyport: {msg}");
            ExitCode::from(
                e.downcast_ref::<keyport_core::Error>()
                    .map_or(1, |e| e.kind().exit_code()),
            )
        }
    }
}

/// Token calls are async; one short-lived single-threaded runtime per command is plenty.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Agent {
            foreground,
            lead,
            no_notifications,
            backoff_base_ms,
            backoff_cap_ms,
            notify_after,
            helper_port,
            no_helper,
        } => {
            let helper = if no_helper {
                None
            } else {
                let settings = Keyport::open()?.load()?.helper;
                Some(keyport_core::helper::HelperOptions::from_settings(
                    &settings,
                    helper_port,
                ))
            };
            let mut passthrough = vec![
                format!("--backoff-base-ms={backoff_base_ms}"),
                format!("--backoff-cap-ms={backoff_cap_ms}"),
                format!("--notify-after={notify_after}"),
            ];
            if let Some(lead) = lead {
                passthrough.push(format!("--lead={lead}"));
            }
            if no_notifications {
                passthrough.push("--no-notifications".into());
            }
            if no_helper {
                passthrough.push("--no-helper".into());
            }
            if let Some(p) = helper_port {
                passthrough.push(format!("--helper-port={p}"));
            }
            agent_cmd::agent(agent_cmd::AgentArgs {
                foreground,
                passthrough,
                helper,
                config: keyport_core::agent::AgentConfig {
                    lead: lead.map(std::time::Duration::from_secs),
                    backoff_base: std::time::Duration::from_millis(backoff_base_ms),
                    backoff_cap: std::time::Duration::from_millis(backoff_cap_ms),
                    notify_after_failures: notify_after,
                    notifications: no_notifications.then_some(false),
                    ..Default::default()
                },
            })
        }
        Command::Status { json, watch } => agent_cmd::status(json, watch),
        Command::Helper(cmd) => helper_cmd::helper(cmd),
        Command::Exec { name, token, cmd } => {
            let code = helper_cmd::exec(&name, token, &cmd)?;
            std::process::exit(code);
        }
        Command::Curl { name, path, args } => helper_cmd::curl(&name, &path, &args),
        Command::GitCredential { op } => helper_cmd::git_credential(&op),
        Command::Refresh { name } => {
            let cred = agent_cmd::refresh(&name)?;
            eprintln!("renewed '{name}'{}", valid_until(cred.expires_at));
            Ok(())
        }
        Command::Presets { json } => presets(json),
        Command::Login {
            name,
            force,
            no_browser,
            timeout,
        } => {
            let opts = LoginOptions {
                force,
                timeout: std::time::Duration::from_secs(timeout),
            };
            agent_cmd::login(&name, opts, no_browser)
        }
        Command::Logout { name } => {
            let kp = Keyport::open()?;
            let note = block_on(kp.logout(&name))??;
            eprintln!(
                "forgot the token of '{name}'{}",
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            );
            agent_cmd::changed(&name);
            Ok(())
        }
        Command::Profile(cmd) => profile(cmd),
        Command::Secret(SecretCmd::Set { name, field }) => {
            let kp = Keyport::open()?;
            kp.secret_field(&name, &field)?;
            let mut input = SecretInput::new();
            let value = input.read(&name, &field)?;
            let wrote = kp.set_secret(&name, &field, value)?;
            if wrote {
                eprintln!("saved secret '{field}' of '{name}' in the keychain");
                agent_cmd::changed(&name);
            } else {
                eprintln!("secret '{field}' of '{name}' is unchanged");
            }
            Ok(())
        }
        Command::Header { name, min_valid } => {
            let cred = agent_cmd::credential(&name, min_valid)?;
            let out = &mut std::io::stdout().lock();
            keyport_cli::write(out, keyport_cli::Format::Header, &name, &cred)?;
            Ok(())
        }
        Command::Token {
            name,
            json,
            min_valid,
        } => {
            let cred = agent_cmd::credential(&name, min_valid)?;
            let format = if json {
                keyport_cli::Format::TokenJson
            } else {
                keyport_cli::Format::Token
            };
            keyport_cli::write(&mut std::io::stdout().lock(), format, &name, &cred)?;
            Ok(())
        }
    }
}

/// ", valid until <RFC 3339>" when the expiry is known.
fn valid_until(expires_at: Option<time::OffsetDateTime>) -> String {
    expires_at
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map(|t| format!(", valid until {t}"))
        .unwrap_or_default()
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn presets(json: bool) -> Result<()> {
    let all = preset::all();
    if json {
        return print_json(&all);
    }
    let mut out = std::io::stdout().lock();
    for p in all {
        writeln!(out, "{}  [{}]  {}", p.name, p.scheme_name(), p.title)?;
        for f in &p.fields {
            let kind = if f.secret {
                "secret".to_string()
            } else {
                format!("{:?}", f.kind).to_lowercase()
            };
            let req = if f.required { "required" } else { "optional" };
            let default = f
                .default
                .as_deref()
                .map(|d| format!(" (default {d})"))
                .unwrap_or_default();
            writeln!(
                out,
                "    {:<22} {:<11} {req:<9} {}{default}",
                f.name, kind, f.help
            )?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn profile(cmd: ProfileCmd) -> Result<()> {
    let kp = Keyport::open()?;
    match cmd {
        ProfileCmd::Add {
            name,
            preset,
            set,
            secret,
        } => {
            let mut fields = BTreeSet::new();
            for f in &secret {
                if !fields.insert(f.clone()) {
                    bail!("--secret {f} is given twice: nothing was saved");
                }
            }
            // Check everything before asking for a single secret.
            let draft = kp.draft(&name, &preset, &set, &fields)?;
            let mut input = SecretInput::new();
            let mut bundle = SecretBundle::default();
            for f in &secret {
                bundle.insert(f.clone(), input.read(&name, f)?);
            }
            kp.add(&name, draft, bundle)?;
            agent_cmd::changed(&name);
            eprintln!(
                "added profile '{name}'{}",
                if secret.is_empty() {
                    String::new()
                } else {
                    format!(" (secrets in the OS keychain as keyport/{name})")
                }
            );
            Ok(())
        }
        ProfileCmd::List { json } => {
            let cfg = kp.load()?;
            if json {
                let list: Vec<_> = cfg
                    .profiles
                    .iter()
                    .map(|(n, p)| {
                        serde_json::json!({
                            "name": n,
                            "preset": p.preset,
                            "scheme": preset::get(&p.preset).map(|x| x.scheme_name()).unwrap_or("?"),
                            "base_url": cfg.api_base_url(n),
                        })
                    })
                    .collect();
                return print_json(&list);
            }
            if cfg.profiles.is_empty() {
                eprintln!("no profiles yet: add one with `keyport profile add NAME --preset PRESET` (see `keyport presets`)");
            }
            for (n, p) in &cfg.profiles {
                println!(
                    "{n:<24} {:<20} {}",
                    p.preset,
                    cfg.api_base_url(n).unwrap_or("")
                );
            }
            Ok(())
        }
        ProfileCmd::Show { name, json } => {
            let v = kp.show(&name)?;
            if json {
                return print_json(&v);
            }
            println!("name:     {}", v.name);
            println!("preset:   {} ({})", v.preset, v.scheme);
            if v.allow_insecure_http {
                println!("allow_insecure_http: true");
            }
            println!("settings:");
            for (k, val) in &v.settings {
                println!("  {k} = {val}");
            }
            for (k, val) in &v.extra_headers {
                println!("  extra_headers.{k} = {val}");
            }
            println!("secrets (keychain item {}):", v.keychain_item);
            for (k, set) in &v.secrets {
                println!("  {k}: {}", if *set { "set" } else { "not set" });
            }
            Ok(())
        }
        ProfileCmd::Rm { name } => {
            kp.remove(&name)?;
            agent_cmd::changed(&name);
            eprintln!("removed profile '{name}' and its keychain items");
            Ok(())
        }
        ProfileCmd::Set {
            name,
            assignment: (field, value),
        } => {
            kp.set(&name, &field, &value)?;
            agent_cmd::changed(&name);
            eprintln!("updated '{field}' of '{name}'");
            Ok(())
        }
    }
}

/// Reads secrets: a hidden prompt on a terminal, else one line of stdin per secret.
struct SecretInput {
    tty: bool,
}

impl SecretInput {
    fn new() -> Self {
        SecretInput {
            tty: std::io::stdin().is_terminal(),
        }
    }

    fn read(&mut self, profile: &str, field: &str) -> Result<Secret> {
        let value = if self.tty {
            rpassword::prompt_password(format!("{field} for {profile} (input hidden): "))?
        } else {
            let mut line = String::new();
            let n = std::io::stdin().lock().read_line(&mut line)?;
            if n == 0 {
                bail!("stdin ended before the value of secret '{field}': give one line per --secret, in order (nothing was saved)");
            }
            let trimmed = line.strip_suffix('\n').unwrap_or(&line);
            trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
        };
        if value.is_empty() {
            bail!("the value of secret '{field}' is empty: nothing was saved");
        }
        Ok(Secret::new(value))
    }
}
