//! `{field}` placeholders in header templates.
//!
//! A template is rendered exactly once against a profile's values; a value (which may be a
//! secret) is never itself treated as a template. `{{` and `}}` stand for literal braces.
//! Deliberately left out: formatting options, defaults and conditionals inside the template.

use crate::error::{Error, Result};

enum Piece<'a> {
    Text(&'a str),
    Field(&'a str),
}

fn parse<'a>(template: &'a str, what: &str) -> Result<Vec<Piece<'a>>> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("{{") {
            pieces.push(Piece::Text("{"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix("}}") {
            pieces.push(Piece::Text("}"));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| {
                Error::invalid(what, "a '{' is not closed (write '{{' for a literal brace)")
            })?;
            let name = &r[..end];
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
            {
                return Err(Error::invalid(
                    what,
                    format!("'{{{name}}}' is not a placeholder: use {{field_name}} with a-z, 0-9 and '_' (or {{parent.field_name}})"),
                ));
            }
            pieces.push(Piece::Field(name));
            rest = &r[end + 1..];
        } else if rest.starts_with('}') {
            return Err(Error::invalid(
                what,
                "a lone '}' (write '}}' for a literal brace)",
            ));
        } else {
            let end = rest.find(['{', '}']).unwrap_or(rest.len());
            pieces.push(Piece::Text(&rest[..end]));
            rest = &rest[end..];
        }
    }
    Ok(pieces)
}

/// The field names a template refers to, in order of first use.
pub fn placeholders(template: &str, what: &str) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for piece in parse(template, what)? {
        if let Piece::Field(n) = piece {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
    }
    Ok(names)
}

/// Renders `template`; `lookup` returns a field's value, `None` when it has none.
/// Returns `Ok(None)` when a referenced field has no value.
pub fn render<'v>(
    template: &str,
    what: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Result<Option<String>> {
    let mut out = String::new();
    for piece in parse(template, what)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Field(n) => match lookup(n) {
                Some(v) => out.push_str(v),
                None => return Ok(None),
            },
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(n: &str) -> Option<&'static str> {
        match n {
            "api_key" => Some("k"),
            "api_secret" => Some("s{x}"),
            _ => None,
        }
    }

    #[test]
    fn renders_fields_once_and_escapes() {
        let r = render("token {api_key}:{api_secret} {{lit}}", "t", lookup).unwrap();
        // the secret's own braces are not expanded again
        assert_eq!(r.as_deref(), Some("token k:s{x} {lit}"));
    }

    #[test]
    fn missing_value_is_none() {
        assert_eq!(render("Bearer {token}", "t", lookup).unwrap(), None);
    }

    #[test]
    fn lists_placeholders() {
        assert_eq!(
            placeholders("{a}-{b}-{a}", "t").unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in ["{unclosed", "x}", "{Bad}", "{}", "{a b}"] {
            let e = placeholders(bad, "template").unwrap_err().to_string();
            assert!(e.starts_with("invalid value for 'template'"), "{bad}: {e}");
        }
    }
}
