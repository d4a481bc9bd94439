//! The configuration values a check may name in `params`. Each is bound as a typed
//! parameter, never spliced into SQL. A name-pattern setting (globs) arrives as two
//! parameters: `<name>`, the LIKE patterns of its globs without a `[class]`, and
//! `<name>_re`, the anchored POSIX regexes of those with one (usually empty). A
//! check matches a name with both: `(n like any(p.<name>) or n ~ any(p.<name>_re))`.

use crate::config::glob::{expand_alternates, to_like_pattern, to_posix_regex};
use crate::config::Config;
use toml::Spanned;

/// A bound value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Text(String),
    TextArray(Vec<String>),
}

impl ParamValue {
    pub fn sql_type(&self) -> &'static str {
        match self {
            ParamValue::Text(_) => "text",
            ParamValue::TextArray(_) => "text[]",
        }
    }
    pub fn as_sql(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        match self {
            ParamValue::Text(s) => s,
            ParamValue::TextArray(v) => v,
        }
    }
    pub fn is_empty(&self) -> bool {
        match self {
            ParamValue::Text(s) => s.is_empty(),
            ParamValue::TextArray(v) => v.is_empty(),
        }
    }
}

/// The parameters other than name patterns, with their meaning (shown by `checks show`).
pub const PARAMS: &[(&str, &str)] = &[
    (
        "schemas",
        "scope.schemas: schemas in scope (empty: all but system/extension schemas)",
    ),
    (
        "tenant_columns",
        "tenancy.column: candidate tenant column names, in order",
    ),
    ("tenant_table", "tenancy.tenant_table"),
    ("tenant_setting", "tenancy.setting"),
    (
        "tenancy_model",
        "tenancy.model: auto | setting | membership",
    ),
    (
        "membership_table",
        "tenancy.membership_table: schema.table of memberships ('' = read from the policies)",
    ),
    (
        "user_identity",
        "tenancy.user_identity: the expression naming the session's user ('' = read from the policies)",
    ),
    ("app_roles", "roles.app"),
    ("service_roles", "roles.service"),
    ("expected_functions", "functions.expected"),
    (
        "sample_percent",
        "--sample PCT for data checks on large tables ('' = read every row)",
    ),
    (
        "statement_timeout_ms",
        "audit.statement_timeout_ms, as text",
    ),
];

/// The name-pattern parameters and the setting each comes from. Each is also
/// available as `<name>_re` (see the module comment).
pub const PATTERNS: &[(&str, &str)] = &[
    ("exclude_tables", "scope.exclude_tables"),
    ("global_tables", "tenancy.global_tables"),
    ("global_keys", "tenancy.global_keys"),
    ("required_columns", "columns.required"),
    ("natural_keys", "columns.natural_keys"),
    ("inventory_columns", "columns.inventory"),
    ("money_columns", "columns.money"),
    ("checked_numbers", "columns.checked_numbers"),
    ("queue_tables", "queues.tables"),
];

/// Every parameter name a check may use.
pub fn names() -> impl Iterator<Item = String> {
    PARAMS.iter().map(|(n, _)| n.to_string()).chain(
        PATTERNS
            .iter()
            .flat_map(|(n, _)| [n.to_string(), format!("{n}_re")]),
    )
}

/// What parameter `name` holds; `None` for an unknown name.
pub fn describe(name: &str) -> Option<String> {
    if let Some((_, d)) = PARAMS.iter().find(|(n, _)| *n == name) {
        return Some(d.to_string());
    }
    let (base, regex) = match name.strip_suffix("_re") {
        Some(base) => (base, true),
        None => (name, false),
    };
    let (_, setting) = PATTERNS.iter().find(|(n, _)| *n == base)?;
    Some(if regex {
        format!("{setting}: its globs with a [class], as regexes")
    } else {
        format!("{setting}: its globs as LIKE patterns (those with a [class]: {base}_re)")
    })
}

pub fn is_known(name: &str) -> bool {
    describe(name).is_some()
}

/// "did you mean …" for an unknown parameter name.
pub fn suggest(name: &str) -> Option<String> {
    let names: Vec<String> = names().collect();
    crate::diag::did_you_mean(name, names.iter().map(String::as_str))
}

/// The name-pattern settings, by parameter name.
fn globs<'a>(config: &'a Config, name: &str) -> Option<&'a [Spanned<String>]> {
    Some(match name {
        "exclude_tables" => &config.scope.exclude_tables,
        "global_tables" => &config.tenancy.global_tables,
        "global_keys" => &config.tenancy.global_keys,
        "required_columns" => &config.columns.required,
        "natural_keys" => &config.columns.natural_keys,
        "inventory_columns" => &config.columns.inventory,
        "money_columns" => &config.columns.money,
        "checked_numbers" => &config.columns.checked_numbers,
        "queue_tables" => &config.queues.tables,
        _ => return None,
    })
}

/// `<name>`: the LIKE patterns of the globs LIKE can express; `<name>_re`: the
/// regexes of the others. An alternation `{a,b}` becomes one pattern per branch.
fn patterns(config: &Config, name: &str) -> Option<ParamValue> {
    let (setting, regex) = match name.strip_suffix("_re") {
        Some(base) => (globs(config, base)?, true),
        None => (globs(config, name)?, false),
    };
    let globs = setting.iter().flat_map(|g| expand_alternates(g.get_ref()));
    Some(ParamValue::TextArray(if regex {
        globs
            .filter(|g| to_like_pattern(g).is_none())
            .map(|g| to_posix_regex(&g))
            .collect()
    } else {
        globs.filter_map(|g| to_like_pattern(&g)).collect()
    }))
}

/// The value of parameter `name` under `config`; `None` for an unknown name.
pub fn value(config: &Config, name: &str) -> Option<ParamValue> {
    if let Some(v) = patterns(config, name) {
        return Some(v);
    }
    Some(match name {
        "schemas" => ParamValue::TextArray(config.scope.schemas.clone()),
        "tenant_columns" => ParamValue::TextArray(config.tenancy.column.to_vec()),
        "tenant_table" => ParamValue::Text(config.tenancy.tenant_table.clone()),
        "tenant_setting" => ParamValue::Text(config.tenancy.setting.clone()),
        "tenancy_model" => ParamValue::Text(config.tenancy.model.as_str().into()),
        "membership_table" => ParamValue::Text(config.tenancy.membership_table.clone()),
        "user_identity" => ParamValue::Text(config.tenancy.user_identity.clone()),
        "app_roles" => ParamValue::TextArray(config.roles.app.clone()),
        "service_roles" => ParamValue::TextArray(config.roles.service.clone()),
        "expected_functions" => ParamValue::TextArray(config.functions.expected.clone()),
        "sample_percent" => ParamValue::Text(
            config
                .audit
                .sample_percent
                .map(|p| p.to_string())
                .unwrap_or_default(),
        ),
        "statement_timeout_ms" => ParamValue::Text(config.audit.statement_timeout_ms.to_string()),
        _ => return None,
    })
}

/// The configured value of each named parameter (empty text when unset), in `$n`
/// order: what a composed statement's `params` are bound to.
pub fn bind(config: &Config, names: &[String]) -> Vec<ParamValue> {
    names
        .iter()
        .map(|p| value(config, p).unwrap_or(ParamValue::Text(String::new())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_param_has_a_value() {
        let c = Config::default();
        for name in names() {
            assert!(value(&c, &name).is_some(), "{name}");
            assert!(is_known(&name), "{name}");
        }
        assert!(value(&c, "nope").is_none());
    }

    #[test]
    fn a_glob_goes_to_like_unless_it_has_a_class() {
        let mut c = Config::default();
        c.columns.natural_keys = ["*_number", "[ab]_code", "slug"]
            .into_iter()
            .map(|g| Spanned::new(0..0, g.to_string()))
            .collect();
        let like = vec!["%\\_number".to_string(), "slug".to_string()];
        assert_eq!(value(&c, "natural_keys"), Some(ParamValue::TextArray(like)));
        let re = vec!["^[ab]_code$".to_string()];
        assert_eq!(
            value(&c, "natural_keys_re"),
            Some(ParamValue::TextArray(re))
        );
        assert!(value(&c, "schemas_re").is_none());
    }
}
