//! Where Keyport keeps run-time files: the agent's socket and pid file, and per-profile lock
//! files that keep two processes from refreshing one token (or running two logins of one
//! profile) at the same time.
//!
//! `$KEYPORT_RUNTIME_DIR` (tests use it), else `$XDG_RUNTIME_DIR/keyport`, else
//! `<temp>/keyport-<user>`. The directory is created `0700`. Left out on purpose: anything
//! that must survive a reboot (that is the config dir and the keychain).

use std::fs;
use std::path::PathBuf;

use crate::error::{Error, Result};

pub fn runtime_dir() -> Result<PathBuf> {
    let dir = if let Some(d) = std::env::var_os("KEYPORT_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        PathBuf::from(d).join("keyport")
    } else {
        let user = std::env::var("USER").unwrap_or_else(|_| "user".into());
        std::env::temp_dir().join(format!("keyport-{user}"))
    };
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
    // Our uid: the owner of a file we just created.
    let probe = tempfile::tempfile_in(dir).map_err(|e| bad(&format!("is not writable ({e})")))?;
    let mine = probe.metadata().map(|m| m.uid()).unwrap_or(u32::MAX);
    if meta.uid() != mine {
        return Err(bad("belongs to another user"));
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
