//! Filling a `[fix]` template: `{name}` from the finding's field `fix_<name>` as the
//! check's query returned it (identifiers quoted there), `{name:ident}` quoted as an
//! identifier, `{name:literal}` as a string literal, `{object}` the finding's object
//! (for comments), `{{` and `}}` literal braces. Nothing else is pasted in.

use std::collections::BTreeMap;

/// A finding's fields: the extra `fix_*` columns of its row, without the prefix.
pub type Fields = BTreeMap<String, String>;

/// `"name"`, doubling embedded quotes: always quoted, so no keyword or case surprises.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'`, doubling embedded quotes (standard_conforming_strings, on since 9.1).
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// How the elements of a text[] field are kept in its one string (PostgreSQL text
/// never holds NUL).
pub const LIST_SEPARATOR: char = '\0';

/// The elements of a text[] field (none when absent or empty).
pub fn elements(fields: &Fields, name: &str) -> Vec<String> {
    fields
        .get(name)
        .filter(|v| !v.is_empty())
        .map(|v| v.split(LIST_SEPARATOR).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether a field holds a true value (`true`, `t`).
pub fn truthy(fields: &Fields, name: &str) -> bool {
    matches!(fields.get(name).map(String::as_str), Some("true" | "t"))
}

/// The template with every placeholder filled, or which field is missing.
pub fn fill(template: &str, object: &str, fields: &Fields) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("a lone `}` in the template (write `}}`)".into());
        }
        let end = tail
            .find('}')
            .ok_or_else(|| "an unclosed `{` in the template (write `{{`)".to_string())?;
        let spec = &tail[1..end];
        let (name, how) = spec.split_once(':').unwrap_or((spec, ""));
        let value = if name == "object" {
            // comments only: one line, no comment terminators
            object.replace(['\n', '\r'], " ")
        } else {
            fields
                .get(name)
                .cloned()
                .ok_or_else(|| format!("the field fix_{name} is missing or NULL"))?
        };
        match how {
            "" => out.push_str(&value),
            "ident" => out.push_str(&quote_ident(&value)),
            "literal" => out.push_str(&quote_literal(&value)),
            other => return Err(format!("unknown quoting `{other}` in {{{spec}}}")),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fills_and_quotes() {
        let fields = f(&[
            ("table", "public.\"Order\""),
            ("col", "a\"b"),
            ("t", "it's"),
        ]);
        let s = fill(
            "alter table {table} alter column {col:ident} set default {t:literal}; -- {object} {{x}}",
            "public.Order.a\"b\nx",
            &fields,
        )
        .unwrap();
        assert_eq!(
            s,
            "alter table public.\"Order\" alter column \"a\"\"b\" set default 'it''s'; -- public.Order.a\"b x {x}"
        );
    }

    #[test]
    fn missing_fields_and_bad_braces_are_errors() {
        assert!(fill("{nope}", "o", &Fields::new())
            .unwrap_err()
            .contains("fix_nope"));
        assert!(fill("{a", "o", &f(&[("a", "1")])).is_err());
        assert!(fill("a}", "o", &Fields::new()).is_err());
        assert!(fill("{a:raw}", "o", &f(&[("a", "1")])).is_err());
        assert!(truthy(&f(&[("a", "true")]), "a") && !truthy(&f(&[("a", "false")]), "a"));
    }
}
