//! Name patterns from the configuration. They are validated with `globset` and
//! translated to anchored POSIX regular expressions, which reach SQL as bind
//! parameters (`name ~ any($n)`); the same globs match in Rust for waivers.

/// Check a glob is well formed; the error text comes from globset.
pub fn validate(glob: &str) -> Result<(), String> {
    globset::Glob::new(glob)
        .map(|_| ())
        .map_err(|e| e.kind().to_string())
}

/// Whether `name` matches `glob` (case-sensitive, `*` crosses dots).
pub fn matches(glob: &str, name: &str) -> bool {
    globset::GlobBuilder::new(glob)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(false)
}

/// Translate a glob into an anchored POSIX regular expression for PostgreSQL's `~`.
/// globset's own `regex()` targets Rust's regex dialect (`(?-u)`), which PostgreSQL
/// does not accept, hence this small translation.
pub fn to_posix_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                out.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    out.push('^');
                }
                for c in chars.by_ref() {
                    if c == '\\' {
                        out.push_str("\\\\");
                        continue;
                    }
                    out.push(c);
                    if c == ']' {
                        break;
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    push_escaped(&mut out, next);
                }
            }
            other => push_escaped(&mut out, other),
        }
    }
    out.push('$');
    out
}

fn push_escaped(out: &mut String, c: char) {
    if ".^$|()[]{}+*?\\".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_globs() {
        assert_eq!(to_posix_regex("*_number"), "^.*_number$");
        assert_eq!(to_posix_regex("slug"), "^slug$");
        assert_eq!(to_posix_regex("a.b?"), "^a\\.b.$");
        assert_eq!(to_posix_regex("[!x]y"), "^[^x]y$");
    }

    #[test]
    fn rejects_broken_globs_and_matches_names() {
        assert!(validate("[abc").is_err());
        assert!(validate("*_id").is_ok());
        assert!(matches("public.audit_*", "public.audit_log.actor_id"));
        assert!(!matches("public.audit_log", "public.audit_log.actor_id"));
    }
}
