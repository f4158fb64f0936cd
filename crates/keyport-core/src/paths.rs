//! Where Keyport keeps run-time files: the agent's socket and pid file, and per-profile lock
//! files that keep two processes from refreshing one token (or running two logins of one
//! profile) at the same time.
//!
//! The runtime dir, by this rule (the first that applies):
//!
//! 1. `$KEYPORT_RUNTIME_DIR` (tests use it);
//! 2. `$XDG_RUNTIME_DIR/keyport`;
//! 3. `/run/user/<uid>/keyport`, when `/run/user/<uid>` is a directory of ours: the one
//!    systemd-logind makes for the user's sessions and sets as `XDG_RUNTIME_DIR` there, so a
//!    CLI run from cron or a bare ssh command (no `XDG_RUNTIME_DIR`) finds the agent the
//!    desktop session started, and takes the same lock files;
//! 4. `<temp>/keyport-<uid>` (named by the numeric uid: `$USER` can be anything).
//!
//! The directory is created `0700` and must be a real directory that is ours (in a shared
//! /tmp another user could have made it first: refused, naming it). Left out on purpose:
//! anything that must survive a reboot (that is the config dir and the keychain).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The rule above, with what it looks at passed in.
fn choose(
    keyport: Option<OsString>,
    xdg: Option<OsString>,
    uid: Option<u32>,
    ours: impl Fn(&Path) -> bool,
    temp: PathBuf,
) -> PathBuf {
    if let Some(d) = keyport.filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = xdg.filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("keyport");
    }
    match uid {
        Some(uid) => {
            let run_user = PathBuf::from(format!("/run/user/{uid}"));
            if ours(&run_user) {
                run_user.join("keyport")
            } else {
                temp.join(format!("keyport-{uid}"))
            }
        }
        // (no uids: Windows, where the temp dir is per user anyway)
        None => temp.join("keyport"),
    }
}

/// Is `dir` a real directory owned by `uid`?
#[cfg(unix)]
fn owned_by(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid)
}

pub fn runtime_dir() -> Result<PathBuf> {
    #[cfg(unix)]
    let (uid, ours) = {
        let uid = crate::process::uid();
        (Some(uid), move |d: &Path| owned_by(d, uid))
    };
    #[cfg(not(unix))]
    let (uid, ours) = (None, |_: &Path| false);
    let dir = choose(
        std::env::var_os("KEYPORT_RUNTIME_DIR"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        uid,
        ours,
        std::env::temp_dir(),
    );
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(&dir).map_err(|e| Error::RuntimeDir {
        path: dir.clone(),
        message: format!("cannot create it ({e}): set KEYPORT_RUNTIME_DIR to a private directory"),
    })?;
    #[cfg(unix)]
    check_private(&dir)?;
    Ok(dir)
}

/// The runtime dir holds the agent's socket: it must be ours, a real directory (not a
/// symlink), and closed to others. In a shared /tmp another user could have made it first.
#[cfg(unix)]
fn check_private(dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let bad = |why: &str| Error::RuntimeDir {
        path: dir.to_path_buf(),
        message: format!("it {why}: remove it, or set KEYPORT_RUNTIME_DIR to a private directory"),
    };
    let meta = fs::symlink_metadata(dir).map_err(|e| bad(&format!("cannot be inspected ({e})")))?;
    if !meta.is_dir() {
        return Err(bad("is not a directory (a symlink?)"));
    }
    let mine = crate::process::uid();
    if meta.uid() != mine {
        return Err(bad(&format!(
            "belongs to another user (uid {}, not {mine})",
            meta.uid()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|_| bad("is open to other users"))?;
    }
    Ok(())
}

fn lock_file(profile: &str, suffix: &str) -> Result<(fs::File, PathBuf)> {
    let dir = runtime_dir()?.join("locks");
    fs::create_dir_all(&dir).map_err(|e| Error::RuntimeDir {
        path: dir.clone(),
        message: format!("cannot create the lock dir ({e})"),
    })?;
    let path = dir.join(format!("{profile}.{suffix}"));
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| Error::Io {
            action: "cannot open lock file",
            path: path.clone(),
            source,
        })?;
    Ok((f, path))
}

/// An exclusive lock on one profile's token, across processes; released on drop. Every
/// write or delete of a profile's token state happens under it.
pub struct ProfileLock(#[allow(dead_code)] fs::File);

impl ProfileLock {
    /// Waits for the lock (blocking: call from a blocking context).
    pub fn acquire(profile: &str) -> Result<Self> {
        let (f, path) = lock_file(profile, "lock")?;
        f.lock().map_err(|source| Error::Io {
            action: "cannot lock",
            path,
            source,
        })?;
        Ok(ProfileLock(f))
    }
}

/// Held while an interactive login of a profile runs, so that a second one (from another
/// terminal, the app or a notification) is refused instead of opening a second browser.
pub struct LoginLock(#[allow(dead_code)] fs::File);

impl LoginLock {
    /// `None` when another login of the profile holds it.
    pub fn try_acquire(profile: &str) -> Result<Option<Self>> {
        let (f, path) = lock_file(profile, "login")?;
        match f.try_lock() {
            Ok(()) => Ok(Some(LoginLock(f))),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(source)) => Err(Error::Io {
                action: "cannot lock",
                path,
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CLI and the agent agree however they were started.
    #[test]
    fn every_way_of_starting_finds_the_same_runtime_dir() {
        let temp = PathBuf::from("/tmp");
        let session = |d: &Path| d == Path::new("/run/user/1000");
        let none = |_: &Path| false;
        let xdg = Some(OsString::from("/run/user/1000"));
        // the desktop session / systemd user unit, and ssh with pam_systemd
        let agent = choose(None, xdg.clone(), Some(1000), session, temp.clone());
        // cron, or `ssh host keyport token x`: no XDG_RUNTIME_DIR, same session dir
        let cron = choose(None, None, Some(1000), session, temp.clone());
        assert_eq!(agent, PathBuf::from("/run/user/1000/keyport"));
        assert_eq!(cron, agent);
        // no session at all: the temp dir, by uid
        assert_eq!(
            choose(None, None, Some(1000), none, temp.clone()),
            PathBuf::from("/tmp/keyport-1000")
        );
        // the override wins; an empty variable counts as unset
        assert_eq!(
            choose(Some("/x".into()), xdg, Some(1000), session, temp.clone()),
            PathBuf::from("/x")
        );
        assert_eq!(
            choose(
                Some("".into()),
                Some("".into()),
                Some(1000),
                none,
                temp.clone()
            ),
            PathBuf::from("/tmp/keyport-1000")
        );
    }
}
