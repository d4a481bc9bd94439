//! The configuration values a check may name in `params`. Each is bound as a typed
//! parameter, never spliced into SQL. Globs arrive as anchored POSIX regexes.

use crate::config::Config;
use crate::glob::to_posix_regex;
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

/// Every parameter name with its meaning (shown by `checks show`).
pub const PARAMS: &[(&str, &str)] = &[
    (
        "schemas",
        "scope.schemas: schemas in scope (empty: all but system/extension schemas)",
    ),
    ("exclude_tables", "scope.exclude_tables as regexes"),
    (
        "tenant_columns",
        "tenancy.column: candidate tenant column names, in order",
    ),
    ("tenant_table", "tenancy.tenant_table"),
    ("tenant_setting", "tenancy.setting"),
    ("global_tables", "tenancy.global_tables as regexes"),
    ("app_roles", "roles.app"),
    ("service_roles", "roles.service"),
    ("required_columns", "columns.required as regexes"),
    ("natural_keys", "columns.natural_keys as regexes"),
    ("inventory_columns", "columns.inventory as regexes"),
    ("money_columns", "columns.money as regexes"),
    ("checked_numbers", "columns.checked_numbers as regexes"),
    ("queue_tables", "queues.tables as regexes"),
    ("expected_functions", "functions.expected"),
    ("sample_percent", "--sample PCT for data checks on large tables ('' = read every row)"),
    ("statement_timeout_ms", "audit.statement_timeout_ms, as text"),
];

pub fn is_known(name: &str) -> bool {
    PARAMS.iter().any(|(n, _)| *n == name)
}

fn regexes(globs: &[Spanned<String>]) -> ParamValue {
    ParamValue::TextArray(globs.iter().map(|g| to_posix_regex(g.get_ref())).collect())
}

/// The value of parameter `name` under `config`; `None` for an unknown name.
pub fn value(config: &Config, name: &str) -> Option<ParamValue> {
    Some(match name {
        "schemas" => ParamValue::TextArray(config.scope.schemas.clone()),
        "exclude_tables" => regexes(&config.scope.exclude_tables),
        "tenant_columns" => ParamValue::TextArray(config.tenancy.column.to_vec()),
        "tenant_table" => ParamValue::Text(config.tenancy.tenant_table.clone()),
        "tenant_setting" => ParamValue::Text(config.tenancy.setting.clone()),
        "global_tables" => regexes(&config.tenancy.global_tables),
        "app_roles" => ParamValue::TextArray(config.roles.app.clone()),
        "service_roles" => ParamValue::TextArray(config.roles.service.clone()),
        "required_columns" => regexes(&config.columns.required),
        "natural_keys" => regexes(&config.columns.natural_keys),
        "inventory_columns" => regexes(&config.columns.inventory),
        "money_columns" => regexes(&config.columns.money),
        "checked_numbers" => regexes(&config.columns.checked_numbers),
        "queue_tables" => regexes(&config.queues.tables),
        "expected_functions" => ParamValue::TextArray(config.functions.expected.clone()),
        "sample_percent" => ParamValue::Text(
            config.audit.sample_percent.map(|p| p.to_string()).unwrap_or_default(),
        ),
        "statement_timeout_ms" => ParamValue::Text(config.audit.statement_timeout_ms.to_string()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_param_has_a_value() {
        let c = Config::default();
        for (name, _) in PARAMS {
            assert!(value(&c, name).is_some(), "{name}");
        }
        assert!(value(&c, "nope").is_none());
    }
}
