//! Keyport's engine, free of any desktop dependency so that it builds and tests anywhere.
//!
//! - [`preset`]: the built-in presets (data) with their field metadata.
//! - [`profile`]: profiles and the rules they must follow.
//! - [`config`]: the profile file (TOML, no secrets, atomic updates).
//! - [`store`]: the OS keychain behind the [`store::SecretStore`] port.
//! - [`scheme`]: static auth schemes turning a profile into headers.
//! - [`token`], [`http`], [`engine`]: token state in the keychain, token calls, and the
//!   engines (login endpoints, token exchange, OAuth2) that keep a credential valid.
//! - [`keyport`], [`login`]: the use cases the CLI and the app share (interactive logins
//!   with a UI port).
//! - [`agent`]: keeps every token valid in the background; its read side serves
//!   credentials from memory; its host is what the CLI and the app start.
//! - [`clock`], [`paths`], [`notify`], [`browser`]: time, run-time files, desktop
//!   notifications and the system browser, each behind a small seam; [`process`]: what
//!   every Keyport process does for itself (no core dumps).
//!
//! Not here: argument parsing, prompts and signal handling (keyport-cli), windows and tray
//! (src-tauri).

pub mod agent;
pub mod browser;
pub mod clock;
pub mod config;
pub mod engine;
pub mod error;
pub mod helper;
pub mod http;
pub mod keyport;
pub mod login;
pub mod notify;
pub mod paths;
pub mod preset;
pub mod process;
pub mod profile;
pub mod scheme;
pub mod secret;
pub mod store;
pub mod template;
pub mod token;

pub use error::{Error, ErrorInfo, ErrorKind, Result};
pub use keyport::{Keyport, ProfileView};
pub use secret::Secret;
