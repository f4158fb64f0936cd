//! What both `keyport` binaries share: the output of `token` and `header`, which is a
//! contract (scripts parse it).

use std::io::Write;

use keyport_core::scheme::Credential;

/// How `token` / `header` print a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `keyport header`: one `Name: value` line per header, the main one first.
    Header,
    /// `keyport token`: the main header's credential.
    Token,
    /// `keyport token --json`.
    TokenJson,
}

/// `keyport token`: the credential without its scheme word for basic and bearer (the base64
/// value, the token) and for token engines (the token); the whole rendered value for api-key.
pub fn token_value<'a>(scheme: &str, value: &'a str) -> &'a str {
    match scheme {
        "basic" => value.strip_prefix("Basic ").unwrap_or(value),
        "api-key" => value,
        // bearer and every token engine
        _ => value.strip_prefix("Bearer ").unwrap_or(value),
    }
}

/// Prints `cred` of profile `name` in `format`.
pub fn write(
    out: &mut impl Write,
    format: Format,
    name: &str,
    cred: &Credential,
) -> std::io::Result<()> {
    match format {
        Format::Header => {
            for (h, v) in &cred.headers {
                writeln!(out, "{h}: {}", v.expose())?;
            }
        }
        Format::Token => writeln!(
            out,
            "{}",
            token_value(&cred.scheme, cred.main_value().expose())
        )?,
        Format::TokenJson => {
            let headers: serde_json::Map<String, serde_json::Value> = cred
                .headers
                .iter()
                .map(|(h, v)| (h.clone(), v.expose().into()))
                .collect();
            let expires_at = cred.expires_at.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
            let mut v = serde_json::json!({
                "profile": name,
                "scheme": cred.scheme,
                "headers": headers,
                "expires_at": expires_at,
                "refreshable": cred.refreshable,
            });
            if let Some(w) = &cred.widget_url {
                v["widget_url"] = w.as_str().into();
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
    }
    out.flush()
}
