//! The page's commands, grouped by area. Each is a short adapter over keyport-core: it
//! reads [`AppState`](crate::AppState), calls the core and answers the core's types, or
//! the one error shape `{kind, message}`. All are async, so nothing blocks the main
//! thread (a keychain call or a renewal waits on the agent, not on the window).

pub mod helper;
pub mod logins;
pub mod profiles;
pub mod settings;
pub mod tokens;
