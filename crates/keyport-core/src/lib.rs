//! Keyport's engine, free of any desktop dependency so that it builds and tests anywhere.
//!
//! - [`preset`]: the built-in presets (data) with their field metadata.
//! - [`profile`]: profiles and the rules they must follow.
//! - [`config`]: the profile file (TOML, no secrets, atomic updates).
//! - [`store`]: the OS keychain behind the [`store::SecretStore`] port.
//! - [`scheme`]: static auth schemes turning a profile into headers.
//! - [`token`], [`http`], [`engine`]: token state in the keychain, token calls, and the
//!   engines (login endpoints, token exchange, OAuth2) that keep a credential valid.
//! - [`keyport`]: the use cases the CLI and the app share.
//!
//! Not here: argument parsing and prompts (keyport-cli), windows and tray (src-tauri).

#[cfg(unix)]
pub mod agent;
pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod keyport;
pub mod notify;
pub mod paths;
pub mod preset;
pub mod profile;
pub mod scheme;
pub mod secret;
pub mod store;
pub mod template;
pub mod token;

pub use error::{Error, Result};
pub use keyport::{Keyport, ProfileView};
pub use secret::Secret;
