//! The loopback helper: any local tool reaches a profile's API through
//! `http://127.0.0.1:PORT/<profile>/<path>` with the profile's auth headers added, so it needs
//! a URL and a helper key, never the real secret (issue 9).
//!
//! Built in steps. Here so far: [`guard`], the admission rules every request passes before
//! anything is forwarded (who may ask: the key, the Host, the Origin; what may be asked: the
//! request target and the path inside the profile's API). Left out on purpose: the proxy
//! itself, key storage and the CLI (later steps of the same issue).

pub mod guard;
