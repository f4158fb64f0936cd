//! `keyport`: the front of the command line. `keyport token NAME` and `keyport header
//! NAME` (with `--min-valid`, `--json`) are what scripts and tools run most, often once per
//! request,
//! so this binary answers them from a running agent and does nothing else: it is small,
//! so it starts in a fraction of the time the full command line (TLS, OAuth, the keychain
//! client, clap) takes to load. Everything else, and these two when no agent answers, is
//! handed to `keyport-cli` beside it (`exec`, same pid, same arguments and stdio), which
//! gives the same output and exit codes.

use std::ffi::OsString;
use std::process::ExitCode;

use keyport_cli::Format;
use keyport_core::agent::control::{Client, Request, Response};
use keyport_core::Error;

/// `token NAME [--json] [--min-valid SECS]` or `header NAME [--min-valid SECS]`, nothing
/// else (anything else, even a misspelled flag, goes to the full command line).
struct Quick {
    format: Format,
    name: String,
    min_valid: i64,
}

impl Quick {
    fn parse(args: &[OsString]) -> Option<Quick> {
        let args: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
        let (cmd, name, rest) = match args.as_slice() {
            [cmd, name, rest @ ..] => (*cmd, *name, rest),
            _ => return None,
        };
        let mut format = match cmd {
            "token" => Format::Token,
            "header" => Format::Header,
            _ => return None,
        };
        if name.starts_with('-') {
            return None;
        }
        let mut min_valid = None;
        let mut rest = rest.iter();
        while let Some(arg) = rest.next() {
            match *arg {
                "--json" if format == Format::Token => format = Format::TokenJson,
                "--min-valid" if min_valid.is_none() => {
                    min_valid = Some(rest.next()?.parse().ok()?)
                }
                a => match a.strip_prefix("--min-valid=") {
                    Some(v) if min_valid.is_none() => min_valid = Some(v.parse().ok()?),
                    _ => return None,
                },
            }
        }
        Some(Quick {
            format,
            name: name.to_string(),
            min_valid: min_valid.unwrap_or(30),
        })
    }

    /// The answer of a running agent; `None` when none answered.
    fn run(&self) -> Option<ExitCode> {
        let mut c = Client::connect()?;
        let resp = c
            .call(&Request::Token {
                profile: self.name.clone(),
                min_valid: self.min_valid,
            })
            .ok()?;
        match resp {
            Response::Credential { credential } => {
                let out = &mut std::io::stdout().lock();
                Some(
                    match keyport_cli::write(out, self.format, &self.name, &credential.into()) {
                        Ok(()) => ExitCode::SUCCESS,
                        Err(e) => {
                            eprintln!("keyport: cannot write the output ({e})");
                            ExitCode::FAILURE
                        }
                    },
                )
            }
            Response::Error { error } => {
                let e = Error::from(error);
                eprintln!("keyport: {}", keyport_core::error::inert(&e.to_string()));
                Some(ExitCode::from(e.kind().exit_code()))
            }
            _ => None,
        }
    }
}

fn main() -> ExitCode {
    // A crash must not write the tokens in memory to disk.
    let _ = keyport_core::process::harden();
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "keyport".into());
    let args: Vec<OsString> = args.collect();
    if let Some(code) = Quick::parse(&args).and_then(|q| q.run()) {
        return code;
    }
    let full = match std::env::current_exe() {
        Ok(p) => p.with_file_name(format!("keyport-cli{}", std::env::consts::EXE_SUFFIX)),
        Err(e) => {
            eprintln!("keyport: cannot tell where keyport is installed ({e})");
            return ExitCode::FAILURE;
        }
    };
    let mut cmd = std::process::Command::new(&full);
    cmd.args(&args);
    #[cfg(unix)]
    let err = {
        use std::os::unix::process::CommandExt;
        cmd.arg0(arg0).exec()
    };
    #[cfg(not(unix))]
    let err = {
        let _ = arg0;
        match cmd.status() {
            Ok(s) => return ExitCode::from(s.code().unwrap_or(1) as u8),
            Err(e) => e,
        }
    };
    eprintln!(
        "keyport: cannot run {} ({err}): it is installed beside keyport (cargo install --path crates/keyport-cli installs both)",
        full.display()
    );
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Option<(Format, String, i64)> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        Quick::parse(&args).map(|q| (q.format, q.name, q.min_valid))
    }

    #[test]
    fn answers_only_what_it_understands_exactly() {
        assert_eq!(
            parse(&["token", "p"]),
            Some((Format::Token, "p".into(), 30))
        );
        assert_eq!(
            parse(&["header", "p", "--min-valid", "5"]),
            Some((Format::Header, "p".into(), 5))
        );
        assert_eq!(
            parse(&["token", "p", "--min-valid=7", "--json"]),
            Some((Format::TokenJson, "p".into(), 7))
        );
        // everything else goes to keyport-cli, which knows the whole grammar (and its errors)
        for other in [
            &["token"][..],
            &["token", "--help"],
            &["token", "-p"],
            &["header", "p", "--json"],
            &["token", "p", "--min-valid"],
            &["token", "p", "--min-valid", "soon"],
            &["token", "p", "--min-valid=1", "--min-valid=2"],
            &["token", "p", "--jsn"],
            &["token", "p", "extra"],
            &["status"],
            &["profile", "list"],
        ] {
            assert_eq!(parse(other), None, "{other:?}");
        }
    }
}
