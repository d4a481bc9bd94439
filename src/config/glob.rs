//! Name patterns from the configuration. They are validated with `globset` and
//! reach SQL as bind parameters: a glob without a `[class]` as a LIKE pattern
//! (`name like any($n)`), one with a class as an anchored POSIX regular expression
//! (`name ~ any($m)`). LIKE is used where it can say the same thing because
//! PostgreSQL's regex engine is ~7x slower: 60,000 column names against five
//! patterns take ~70 ms with `~ any` and ~10 ms with `like any`. The same globs
//! match in Rust for waivers.

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

/// The globs an alternation `{a,b}` stands for, one per branch (several groups
/// multiply), so that SQL matches what globset matches in Rust. globset rejects
/// nested groups, so one level is enough; an escaped brace or one inside a
/// `[class]` is kept as it is.
pub fn expand_alternates(glob: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut group: Option<Vec<String>> = None;
    let mut in_class = false;
    let mut chars = glob.chars();
    let push = |out: &mut Vec<String>, group: &mut Option<Vec<String>>, s: &str| match group {
        Some(branches) => branches
            .last_mut()
            .expect("a group has a branch")
            .push_str(s),
        None => out.iter_mut().for_each(|o| o.push_str(s)),
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let mut esc = String::from(c);
                esc.extend(chars.next());
                push(&mut out, &mut group, &esc);
            }
            '[' if !in_class => {
                in_class = true;
                push(&mut out, &mut group, "[");
            }
            ']' if in_class => {
                in_class = false;
                push(&mut out, &mut group, "]");
            }
            '{' if !in_class && group.is_none() => group = Some(vec![String::new()]),
            ',' if !in_class && group.is_some() => {
                group.as_mut().expect("in a group").push(String::new())
            }
            '}' if !in_class && group.is_some() => {
                let branches = group.take().expect("in a group");
                out = out
                    .iter()
                    .flat_map(|o| branches.iter().map(move |b| format!("{o}{b}")))
                    .collect();
            }
            other => push(&mut out, &mut group, &other.to_string()),
        }
    }
    out
}

/// Translate a glob into a LIKE pattern (escape character `\\`), or `None` when it
/// has a `[class]`, which LIKE cannot express: that glob goes to SQL as a regex.
pub fn to_like_pattern(glob: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '[' => return None,
            '\\' => {
                if let Some(next) = chars.next() {
                    push_like_literal(&mut out, next);
                }
            }
            other => push_like_literal(&mut out, other),
        }
    }
    Some(out)
}

fn push_like_literal(out: &mut String, c: char) {
    if "%_\\".contains(c) {
        out.push('\\');
    }
    out.push(c);
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
    fn expands_alternations_like_globset() {
        assert_eq!(expand_alternates("slug"), vec!["slug"]);
        assert_eq!(
            expand_alternates("{tip,fee}_amt"),
            vec!["tip_amt", "fee_amt"]
        );
        assert_eq!(
            expand_alternates("{a,b}_{x,y}"),
            vec!["a_x", "a_y", "b_x", "b_y"]
        );
        assert_eq!(expand_alternates("[{,]x"), vec!["[{,]x"]);
        assert_eq!(expand_alternates("\\{a,b\\}"), vec!["\\{a,b\\}"]);
        for (glob, name) in [("{tip,fee}_amt", "fee_amt"), ("x{1,2}", "x2")] {
            assert!(matches(glob, name));
            assert!(expand_alternates(glob).iter().any(|g| matches(g, name)));
        }
    }

    #[test]
    fn translates_globs_to_like_unless_they_have_a_class() {
        assert_eq!(to_like_pattern("*_number").as_deref(), Some("%\\_number"));
        assert_eq!(to_like_pattern("slug").as_deref(), Some("slug"));
        assert_eq!(to_like_pattern("a.b?").as_deref(), Some("a.b_"));
        assert_eq!(to_like_pattern("100\\%*").as_deref(), Some("100\\%%"));
        assert_eq!(
            to_like_pattern("back\\\\slash").as_deref(),
            Some("back\\\\slash")
        );
        assert_eq!(to_like_pattern("[!x]y"), None);
    }

    #[test]
    fn rejects_broken_globs_and_matches_names() {
        assert!(validate("[abc").is_err());
        assert!(validate("*_id").is_ok());
        assert!(matches("public.audit_*", "public.audit_log.actor_id"));
        assert!(!matches("public.audit_log", "public.audit_log.actor_id"));
    }
}
