//! Reading SQL text as psql and the server do: where a comment, a quoted string or
//! identifier, or a dollar-quoted body that starts at some byte ends. One lexer for
//! the psql-script rules (`db::shell`).

/// If a comment, a quoted string or identifier, or a dollar-quoted body starts at byte
/// `i` of `text`, the byte index just after it: for `--`, the newline that ends it;
/// `/* … */`; `'…'` and `"…"` with doubled quotes inside; `$tag$ … $tag$` (an empty tag
/// or an identifier not starting with a digit, so `$1` is not one). Unterminated, the
/// end of the text (a quote: one past it).
pub fn skip_quoted(text: &str, i: usize) -> Option<usize> {
    let b = text.as_bytes();
    let c = *b.get(i)?;
    if c == b'-' && b.get(i + 1) == Some(&b'-') {
        return Some(text[i..].find('\n').map_or(b.len(), |n| i + n));
    }
    if c == b'/' && b.get(i + 1) == Some(&b'*') {
        return Some(text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2));
    }
    if c == b'\'' || c == b'"' {
        let mut j = i + 1;
        while j < b.len() {
            if b[j] == c {
                if b.get(j + 1) == Some(&c) {
                    j += 2;
                    continue;
                }
                break;
            }
            j += 1;
        }
        return Some(j + 1);
    }
    if c == b'$' {
        let n = dollar_tag(&text[i..])?;
        let tag = &text[i..i + n];
        return Some(text[i + n..].find(tag).map_or(b.len(), |m| i + n + m + n));
    }
    None
}

/// `$tag$` at the start of `s`: its length.
fn dollar_tag(s: &str) -> Option<usize> {
    let rest = &s[1..];
    let close = rest.find('$')?;
    let tag = &rest[..close];
    let ok = tag.is_empty()
        || (tag.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !tag.starts_with(|c: char| c.is_ascii_digit()));
    ok.then_some(close + 2)
}

#[cfg(test)]
mod tests {
    use super::skip_quoted;

    #[test]
    fn comments_quotes_and_dollar_bodies_are_skipped_whole() {
        let t = "-- a; b\nx";
        assert_eq!(skip_quoted(t, 0), Some(7));
        assert_eq!(skip_quoted("/* ; */x", 0), Some(7));
        assert_eq!(skip_quoted("'it''s;'x", 0), Some(8));
        assert_eq!(skip_quoted("\"a\"\"b\"x", 0), Some(6));
        assert_eq!(skip_quoted("$f$ ; $f$x", 0), Some(9));
        assert_eq!(skip_quoted("$$;$$x", 0), Some(5));
        assert_eq!(skip_quoted("$1 + 2", 0), None);
        assert_eq!(skip_quoted("x", 0), None);
        assert_eq!(skip_quoted("'open", 0), Some(6));
    }
}
