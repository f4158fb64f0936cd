//! Redacted secret values.
//!
//! A [`Secret`] is a string that cannot be printed by accident: `Debug` shows `[redacted]`,
//! there is no `Display`, and the value comes out only through [`Secret::expose`], so every
//! place that handles the clear text is greppable. Left out on purpose: zeroing memory on
//! drop (it would need `unsafe` or another dependency, and the keychain client copies the
//! value anyway) and serde impls (serialization of secrets happens in exactly one place,
//! the keychain bundle in `store.rs`).

use std::fmt;

/// A secret string (password, API key, token, rendered auth header value).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text. Call only where the value must leave the process (keychain, HTTP
    /// header, the user's own stdout).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(!format!("{:?}", Some(vec![s.clone()])).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
