//! What every Keyport process (the CLI, the agent, the app) does for itself, and facts
//! about it that security checks need.
//!
//! [`harden`] turns core dumps off (`RLIMIT_CORE` 0, soft and hard), so a crash does not
//! write the secrets and tokens in memory to disk; it runs first thing in `main`.
//! [`uid`] is the process's real user id, for checks of who owns the runtime dir and who
//! is on the other end of the control socket. [`set_own_env`] sets a variable for this
//! process and its own helpers only (the app's WebKit settings): [`user_command`] takes
//! them out again for a program started for the user (the browser). Left out on purpose:
//! anything that needs `unsafe` (the crate forbids it; rustix gives safe wrappers) and
//! sandboxing.

/// Disables core dumps for this process. Best effort: returns why it failed, if it did.
pub fn harden() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )?;
    }
    Ok(())
}

/// The variables [`set_own_env`] set.
static OWN_ENV: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Sets `var` to `value` for this process and the processes that work for it, unless the
/// user set it already; a program started with [`user_command`] does not inherit it. Call
/// it before other threads start (the environment is process-wide).
pub fn set_own_env(var: &'static str, value: &str) {
    if std::env::var_os(var).is_none() {
        std::env::set_var(var, value);
        OWN_ENV.lock().unwrap_or_else(|e| e.into_inner()).push(var);
    }
}

/// A command for a program the user sees as their own (a browser): it gets the user's
/// environment, without the variables Keyport set for itself ([`set_own_env`]).
pub fn user_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    for var in OWN_ENV.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        c.env_remove(var);
    }
    c
}

/// The process's real user id.
#[cfg(unix)]
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn own_variables_stay_out_of_user_programs_and_the_users_own_win() {
        std::env::set_var("KEYPORT_TEST_USERS_OWN", "theirs");
        super::set_own_env("KEYPORT_TEST_USERS_OWN", "ours");
        super::set_own_env("KEYPORT_TEST_OWN", "1");
        assert_eq!(std::env::var("KEYPORT_TEST_OWN").unwrap(), "1");
        assert_eq!(std::env::var("KEYPORT_TEST_USERS_OWN").unwrap(), "theirs");
        let out = super::user_command("env").output().unwrap();
        let env = String::from_utf8(out.stdout).unwrap();
        assert!(!env.contains("KEYPORT_TEST_OWN="), "{env}");
        assert!(env.contains("KEYPORT_TEST_USERS_OWN=theirs"), "{env}");
    }

    #[test]
    fn core_dumps_are_off_after_harden() {
        super::harden().unwrap();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        let words: Vec<&str> = core.split_whitespace().collect();
        assert_eq!(words[4..6], ["0", "0"], "{core}");
        assert_eq!(super::uid(), rustix::process::getuid().as_raw());
    }
}
