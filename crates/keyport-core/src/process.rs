//! What every Keyport process (the CLI, the agent, the app) does for itself, and facts
//! about it that security checks need.
//!
//! [`harden`] turns core dumps off (`RLIMIT_CORE` 0, soft and hard), so a crash does not
//! write the secrets and tokens in memory to disk; it runs first thing in `main`.
//! [`uid`] is the process's real user id, for checks of who owns the runtime dir and who
//! is on the other end of the control socket. Left out on purpose: anything that needs
//! `unsafe` (the crate forbids it; rustix gives safe wrappers) and sandboxing.

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

/// The process's real user id.
#[cfg(unix)]
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
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
