//! The declarative login engine: one HTTP call that returns a token (login endpoints) or
//! exchanges a parent profile's credential for one (token exchanges).
//!
//! Everything about the call comes from the preset's `[auth]` (a [`LoginSpec`]): URL and
//! method templates, client auth (none, Basic, or the parent's headers), a JSON body whose
//! string leaves are templates (a leaf that is exactly `{field}` takes the field's type and
//! is left out when the field is empty), JSON pointers for the token and `expires_in`, and
//! an optional base64-JSON wrapper (Airbyte widget tokens).

use base64::Engine as _;
use serde_json::Value;

use super::Ctx;
use crate::error::{Error, Result};
use crate::http::{self, describe_status, describe_transport};
use crate::preset::{BodySource, ClientAuth, FieldKind, LoginSpec, TextSource, TokenDecode};
use crate::scheme::Credential;
use crate::template;
use crate::token::{expiry_after, jwt_expiry, TokenState};

/// Renders a template that must be complete; `what` names it in errors.
fn required(ctx: &Ctx, t: &str, what: &str) -> Result<String> {
    for f in template::placeholders(t, what)? {
        if ctx.lookup(&f).is_none() {
            return Err(ctx.missing(&f));
        }
    }
    Ok(template::render(t, what, |f| ctx.lookup(f))?.expect("all fields checked"))
}

fn render_body(ctx: &Ctx, v: &Value) -> Result<Option<Value>> {
    Ok(match v {
        Value::String(s) => {
            let names = template::placeholders(s, "body")?;
            let whole = names.len() == 1 && *s == format!("{{{}}}", names[0]);
            match (whole, template::render(s, "body", |f| ctx.lookup(f))?) {
                (_, None) => None,
                (true, Some(val)) => Some(typed(ctx, &names[0], val)?),
                (false, Some(val)) => Some(Value::String(val)),
            }
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, leaf) in map {
                if let Some(x) = render_body(ctx, leaf)? {
                    out.insert(k.clone(), x);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|i| render_body(ctx, i))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect(),
        )),
        other => Some(other.clone()),
    })
}

/// A whole-leaf value in the field's own JSON type.
fn typed(ctx: &Ctx, field: &str, val: String) -> Result<Value> {
    let kind = ctx.preset.field(field).map(|f| f.kind);
    Ok(match kind {
        Some(FieldKind::Integer) => Value::from(
            val.parse::<i64>()
                .map_err(|_| Error::invalid(field, format!("'{val}' is not a whole number")))?,
        ),
        Some(FieldKind::Bool) => Value::Bool(val == "true"),
        Some(FieldKind::List) => Value::Array(
            val.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        _ => Value::String(val),
    })
}

fn number(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Calls the endpoint and returns the new token state. Never touches stored state: the
/// caller saves it only on success, so a failing endpoint loses nothing.
pub(super) async fn fetch(
    ctx: &Ctx<'_>,
    spec: &LoginSpec,
    parent: Option<&Credential>,
) -> Result<TokenState> {
    let url_text = match &spec.url {
        TextSource::Template(t) => required(ctx, t, "url")?,
        TextSource::Field { field } => {
            let t = ctx
                .profile
                .settings
                .get(field)
                .ok_or_else(|| ctx.missing(field))?;
            required(ctx, t, field)?
        }
    };
    let url = http::check_endpoint("url", &url_text, &ctx.http).map_err(|e| ctx.scrub_err(e))?;
    let method = required(ctx, &spec.method, "method")?;
    let client = http::client(&ctx.http)?;
    let mut req = match method.as_str() {
        "GET" => client.get(url.clone()),
        "POST" => client.post(url.clone()),
        other => {
            return Err(Error::invalid(
                "method",
                format!("'{other}' is not GET or POST"),
            ))
        }
    };
    req = req.header("Accept", "application/json");
    match spec.client_auth {
        ClientAuth::None => {}
        ClientAuth::Basic => {
            let user = spec
                .username
                .as_deref()
                .map(|t| template::render(t, "username", |f| ctx.lookup(f)))
                .transpose()?
                .flatten();
            if let Some(user) = user {
                let pass = match &spec.password {
                    Some(t) => required(ctx, t, "password")?,
                    None => String::new(),
                };
                req = req.basic_auth(user, Some(pass));
            }
        }
        ClientAuth::Parent => {
            let parent = parent.expect("the engine resolves the parent first");
            for (h, v) in &parent.headers {
                req = req.header(h.as_str(), v.expose());
            }
        }
    }
    if method == "POST" {
        let body = match &spec.body {
            Some(BodySource::Value(v)) => render_body(ctx, v)?,
            Some(BodySource::Field { field }) => match ctx.lookup(field) {
                Some(text) => {
                    let v: Value = serde_json::from_str(text)
                        .map_err(|e| Error::invalid(field.as_str(), e.to_string()))?;
                    render_body(ctx, &v)?
                }
                None => None,
            },
            None => None,
        };
        req = req.json(&body.unwrap_or_else(|| Value::Object(Default::default())));
    }

    // The URL may carry a secret (a key in the query): scrubbed like the message.
    let fail_with = |status: Option<u16>, message: String| Error::Endpoint {
        what: "token endpoint",
        url: ctx.scrub(url_text.clone()),
        status,
        message: ctx.scrub(message),
    };
    let fail = |message: String| fail_with(None, message);
    let resp = req.send().await.map_err(|e| fail(describe_transport(&e)))?;
    let status = resp.status().as_u16();
    let bytes = http::read_capped(resp)
        .await
        .map_err(|e| fail(e.describe()))?;
    if !(200..300).contains(&status) {
        return Err(fail_with(Some(status), describe_status(status, &bytes)));
    }
    let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
        fail(format!(
            "answered {status} with a body that is not JSON: is the URL a token endpoint?"
        ))
    })?;
    let pointer = required(ctx, &spec.token_pointer, "token_pointer")?;
    let raw = json
        .pointer(&pointer)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            fail(format!(
                "answered {status} but its JSON has no token at {pointer}: check token_pointer"
            ))
        })?;

    let now = ctx.now();
    let (access, widget_url) = match spec.decode {
        TokenDecode::Plain => (raw.to_string(), None),
        TokenDecode::Base64Json => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .or_else(|_| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(raw.trim().trim_end_matches('='))
                })
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .ok_or_else(|| fail("returned a token that is not base64 JSON".into()))?;
            let inner = decoded
                .get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| fail("returned a widget token without a token inside".into()))?;
            (
                inner.to_string(),
                decoded
                    .get("widgetUrl")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            )
        }
    };
    super::check_token("token endpoint", &ctx.scrub(url_text.clone()), &access)?;
    let expires_in = match &spec.expires_in_pointer {
        Some(p) => template::render(p, "expires_in_pointer", |f| ctx.lookup(f))?
            .filter(|p| !p.is_empty())
            .and_then(|p| json.pointer(&p).and_then(number)),
        None => None,
    };
    let lifetime = spec
        .lifetime_field
        .as_deref()
        .and_then(|f| ctx.lookup(f))
        .and_then(|v| v.parse::<i64>().ok());
    let expires_at = expires_in
        .and_then(|s| expiry_after(now, s))
        .or_else(|| jwt_expiry(&access))
        .or_else(|| lifetime.and_then(|s| expiry_after(now, s)));
    Ok(TokenState {
        access_token: crate::Secret::new(access),
        refresh_token: None,
        expires_at,
        obtained_at: now,
        scopes: Vec::new(),
        sliding: spec.sliding,
        widget_url,
        fingerprint: None,
    })
}
