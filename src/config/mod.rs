//! `pg-integrity.toml` (SPEC §4): every key defaulted; unknown keys, unknown check
//! ids, bad severities and bad globs are reported with the line and column.

pub mod glob;

use crate::diag::{did_you_mean, Problem, Problems, SourceFile};
use crate::model::Severity;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

pub const DEFAULT_FILE: &str = "pg-integrity.toml";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub scope: Scope,
    pub tenancy: Tenancy,
    pub roles: Roles,
    pub columns: Columns,
    pub queues: Queues,
    pub functions: Functions,
    pub checks: ChecksConfig,
    pub report: ReportConfig,
    pub audit: AuditConfig,
    pub waiver: Vec<Waiver>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    pub schemas: Vec<String>,
    pub exclude_tables: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tenancy {
    pub column: OneOrMany,
    pub tenant_table: String,
    /// How policies bind rows to a tenant (SPEC §4).
    pub model: TenancyModel,
    /// Setting model: the tenant id the session sets.
    pub setting: String,
    /// Membership model: the table that says which tenants a user belongs to
    /// ("" = read from the policies).
    pub membership_table: String,
    /// Membership model: the expression that names the session's user, e.g.
    /// `auth.uid()` ("" = read from the policies).
    pub user_identity: String,
    pub global_tables: Vec<Spanned<String>>,
    /// Unique keys that are global by design: "schema.table.constraint" or globs.
    pub global_keys: Vec<Spanned<String>>,
}

/// `[tenancy] model`: how a policy ties a row to the session's tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TenancyModel {
    /// Decided from the policies; the report says which and why.
    #[default]
    Auto,
    /// `tenant_col = current_setting(setting)`.
    Setting,
    /// `tenant_col IN (tenants of the session's user)`.
    Membership,
}

impl TenancyModel {
    pub fn as_str(self) -> &'static str {
        match self {
            TenancyModel::Auto => "auto",
            TenancyModel::Setting => "setting",
            TenancyModel::Membership => "membership",
        }
    }
}

impl Default for Tenancy {
    fn default() -> Self {
        Tenancy {
            column: OneOrMany::One("tenant_id".into()),
            tenant_table: "tenants".into(),
            model: TenancyModel::Auto,
            setting: "app.current_tenant".into(),
            membership_table: String::new(),
            user_identity: String::new(),
            global_tables: vec![],
            global_keys: vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Roles {
    pub app: Vec<String>,
    pub service: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Columns {
    pub required: Vec<Spanned<String>>,
    pub natural_keys: Vec<Spanned<String>>,
    pub inventory: Vec<Spanned<String>>,
    pub money: Vec<Spanned<String>>,
    pub checked_numbers: Vec<Spanned<String>>,
}

fn globs(items: &[&str]) -> Vec<Spanned<String>> {
    items
        .iter()
        .map(|s| Spanned::new(0..0, s.to_string()))
        .collect()
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            required: globs(&["created_at", "status"]),
            natural_keys: globs(&["*_number", "slug", "email", "external_id"]),
            inventory: globs(&["available_quantity", "*_available", "stock", "remaining_*"]),
            money: globs(&[
                "*price*",
                "*amount*",
                "*total*",
                "*fee*",
                "*cost*",
                "*revenue*",
            ]),
            checked_numbers: globs(&["*quantity*", "*price*", "*amount*", "capacity", "*_count"]),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Queues {
    pub tables: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Functions {
    pub expected: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ChecksConfig {
    pub disable: Vec<Spanned<String>>,
    pub severity: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// The service named in report titles.
    pub service: Option<String>,
}

/// Limits of the audit session (SPEC §2).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// statement_timeout of every audit statement, in milliseconds.
    pub statement_timeout_ms: u64,
    /// lock_timeout of every audit statement, in milliseconds.
    pub lock_timeout_ms: u64,
    /// Data checks read this percentage of large tables (TABLESAMPLE SYSTEM); none: all rows.
    pub sample_percent: Option<f64>,
    /// work_mem of the data checks' queries, in MB (raised to, never lowered): their
    /// duplicate test sorts, which spills to disk below a few MB per million rows.
    pub work_mem_mb: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            statement_timeout_ms: 30_000,
            lock_timeout_ms: 1_000,
            sample_percent: None,
            work_mem_mb: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    pub check: Spanned<String>,
    pub object: Spanned<String>,
    pub reason: String,
    pub expires: Option<Spanned<String>>,
}

impl Waiver {
    /// The expiry date, once validated.
    pub fn expiry(&self) -> Option<chrono::NaiveDate> {
        self.expires
            .as_ref()
            .and_then(|e| chrono::NaiveDate::parse_from_str(e.get_ref(), "%Y-%m-%d").ok())
    }
}

/// A loaded configuration and the file it came from (for later spans).
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub config: Config,
    pub source: Option<SourceFile>,
}

impl LoadedConfig {
    /// Load `path`, or `pg-integrity.toml` in the working directory when present, or defaults.
    /// The configuration: `path` (`--config`), else `PG_INTEGRITY_CONFIG`, else the
    /// first `pg-integrity.toml` found in the working directory or one of its parents
    /// (as squawk and cargo look for theirs), else the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, Problems> {
        let from_env = std::env::var_os("PG_INTEGRITY_CONFIG")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        let path = match path.map(Path::to_path_buf).or(from_env) {
            Some(p) => p,
            None => match Self::find(&std::env::current_dir().unwrap_or_default()) {
                Some(p) => p,
                None => return Ok(LoadedConfig::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            let src = SourceFile::new(path.display().to_string(), "");
            Problems::new(vec![src.problem(
                format!("cannot read configuration {}: {e}", path.display()),
                None,
                "",
                Some("pass an existing file with --config, or omit it to use defaults".into()),
            )])
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// The nearest `pg-integrity.toml` at `dir` or above it.
    pub fn find(dir: &Path) -> Option<std::path::PathBuf> {
        dir.ancestors()
            .map(|d| d.join(DEFAULT_FILE))
            .find(|p| p.is_file())
    }

    /// The file this configuration was read from (`None`: the defaults).
    pub fn file_name(&self) -> Option<&str> {
        self.source
            .as_ref()
            .map(|s| s.name.as_str())
            .filter(|n| !n.starts_with('<'))
    }

    pub fn parse(name: &str, text: &str) -> Result<Self, Problems> {
        let src = SourceFile::new(name, text);
        let config: Config = toml::from_str(text).map_err(|e| {
            Problems::new(vec![src.problem(
                format!("invalid configuration: {}", e.message()),
                e.span(),
                "here",
                Some("docs/configuration.md lists every key".into()),
            )])
        })?;
        let loaded = LoadedConfig {
            config,
            source: Some(src),
        };
        let problems = loaded.static_problems();
        if problems.is_empty() {
            Ok(loaded)
        } else {
            Err(Problems::new(problems))
        }
    }

    fn src(&self) -> SourceFile {
        self.source
            .clone()
            .unwrap_or_else(|| SourceFile::new("<defaults>", ""))
    }

    /// Problems that need no check catalog: globs, severities, dates.
    fn static_problems(&self) -> Vec<Problem> {
        let c = &self.config;
        let src = self.src();
        let mut out = vec![];
        let glob_lists = [
            &c.scope.exclude_tables,
            &c.tenancy.global_tables,
            &c.tenancy.global_keys,
            &c.columns.required,
            &c.columns.natural_keys,
            &c.columns.inventory,
            &c.columns.money,
            &c.columns.checked_numbers,
            &c.queues.tables,
        ];
        let waiver_globs = c.waiver.iter().map(|w| &w.object);
        for g in glob_lists.into_iter().flatten().chain(waiver_globs) {
            if let Err(e) = glob::validate(g.get_ref()) {
                out.push(src.problem(
                    format!("invalid glob `{}`: {e}", g.get_ref()),
                    Some(g.span()),
                    "this pattern",
                    Some("globs use `*`, `?` and `[...]`; close every bracket".into()),
                ));
            }
        }
        for (id, sev) in &c.checks.severity {
            if Severity::parse(sev.get_ref()).is_none() {
                out.push(src.problem(
                    format!("unknown severity `{}` for {}", sev.get_ref(), id.get_ref()),
                    Some(sev.span()),
                    "not a severity",
                    Some("use one of critical, high, medium, low".into()),
                ));
            }
        }
        for w in &c.waiver {
            if let Some(e) = &w.expires {
                if w.expiry().is_none() {
                    out.push(src.problem(
                        format!("invalid waiver expiry `{}`", e.get_ref()),
                        Some(e.span()),
                        "not a date",
                        Some("write the date as YYYY-MM-DD".into()),
                    ));
                }
            }
        }
        if c.tenancy.column.to_vec().is_empty() {
            out.push(src.problem(
                "tenancy.column is empty",
                None,
                "",
                Some("name the tenant column, e.g. column = \"tenant_id\"".into()),
            ));
        }
        // An empty name matches nothing: every check that needs it would pass or be
        // not applicable in silence.
        let empty = [
            (
                "tenancy.column",
                c.tenancy
                    .column
                    .to_vec()
                    .iter()
                    .any(|n| n.trim().is_empty()),
                "column = \"tenant_id\"",
            ),
            (
                "tenancy.tenant_table",
                c.tenancy.tenant_table.trim().is_empty(),
                "tenant_table = \"tenants\"",
            ),
            (
                "tenancy.setting",
                c.tenancy.setting.trim().is_empty(),
                "setting = \"app.current_tenant\"",
            ),
        ];
        for (key, is_empty, example) in empty {
            if is_empty {
                out.push(src.problem(
                    format!("{key} is an empty string, which matches nothing"),
                    None,
                    "",
                    Some(format!(
                        "name it, e.g. {example}, or leave the key out for the default"
                    )),
                ));
            }
        }
        if let Some(p) = c.audit.sample_percent {
            if !(p > 0.0 && p <= 100.0) {
                out.push(src.problem(
                    format!("audit.sample_percent = {p} is not a percentage above 0 and at most 100"),
                    None,
                    "",
                    Some("e.g. sample_percent = 5 reads about 5% of each large table; leave it out to read every row".into()),
                ));
            }
        }
        // A zero timeout turns the guard off: an audit must never wait without bound.
        for (key, v) in [
            ("audit.statement_timeout_ms", c.audit.statement_timeout_ms),
            ("audit.lock_timeout_ms", c.audit.lock_timeout_ms),
        ] {
            if v == 0 {
                out.push(src.problem(
                    format!("{key} = 0 would let the audit wait without bound"),
                    None,
                    "",
                    Some("set a positive number of milliseconds (the defaults are 30000 and 1000); the audit must never block the database's traffic".into()),
                ));
            }
        }
        out
    }

    /// Problems that need the check ids: unknown ids in `[checks]` and waivers.
    pub fn check_ids(&self, known: &[&str]) -> Result<(), Problems> {
        let c = &self.config;
        let src = self.src();
        let mut out = vec![];
        let referenced = c
            .checks
            .disable
            .iter()
            .chain(c.checks.severity.keys())
            .chain(c.waiver.iter().map(|w| &w.check));
        for id in referenced {
            if !known.contains(&id.get_ref().as_str()) {
                out.push(
                    src.problem(
                        format!("unknown check id `{}`", id.get_ref()),
                        Some(id.span()),
                        "no such check",
                        did_you_mean(id.get_ref(), known.iter().copied())
                            .or_else(|| Some("`pg-integrity checks list` shows every id".into())),
                    ),
                );
            }
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(Problems::new(out))
        }
    }

    pub fn service_name(&self) -> Option<&str> {
        self.config.report.service.as_deref()
    }

    /// The severity a check runs with, after `[checks] severity` overrides.
    pub fn severity_override(&self, id: &str) -> Option<Severity> {
        self.config
            .checks
            .severity
            .iter()
            .find(|(k, _)| k.get_ref() == id)
            .and_then(|(_, v)| Severity::parse(v.get_ref()))
    }

    pub fn is_disabled(&self, id: &str) -> bool {
        self.config.checks.disable.iter().any(|d| d.get_ref() == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_file() {
        let c = LoadedConfig::parse("x.toml", "").unwrap();
        assert_eq!(c.config.tenancy.column.to_vec(), vec!["tenant_id"]);
        assert_eq!(c.config.columns.required.len(), 2);
    }

    #[test]
    fn tenant_column_may_be_a_list() {
        let c = LoadedConfig::parse(
            "x.toml",
            "[tenancy]\ncolumn = [\"org_id\", \"organization_id_fk\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.config.tenancy.column.to_vec(),
            vec!["org_id", "organization_id_fk"]
        );
    }

    #[test]
    fn empty_names_and_zero_timeouts_are_refused() {
        for text in [
            "[tenancy]\ncolumn = \"\"\n",
            "[tenancy]\ncolumn = [\"org_id\", \" \"]\n",
            "[tenancy]\ntenant_table = \"\"\n",
            "[tenancy]\nsetting = \"\"\n",
            "[audit]\nlock_timeout_ms = 0\n",
            "[audit]\nstatement_timeout_ms = 0\n",
        ] {
            assert!(LoadedConfig::parse("x.toml", text).is_err(), "{text}");
        }
        let ok = "[tenancy]\nmodel = \"membership\"\nmembership_table = \"\"\n";
        assert!(LoadedConfig::parse("x.toml", ok).is_ok());
        assert!(LoadedConfig::parse("x.toml", "[tenancy]\nmodel = \"roles\"\n").is_err());
    }

    #[test]
    fn unknown_keys_point_at_the_line() {
        let err = LoadedConfig::parse("x.toml", "[tenancy]\ncolum = \"x\"\n").unwrap_err();
        let p = &err.problems[0];
        assert!(p.message.contains("unknown field `colum`"), "{}", p.message);
        assert_eq!(p.span.unwrap().offset(), 10);
    }

    #[test]
    fn collects_every_static_problem() {
        let text = "[columns]\nrequired = [\"[oops\"]\n[checks]\nseverity = { \"schema.primary_keys\" = \"urgent\" }\n";
        let err = LoadedConfig::parse("x.toml", text).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err:?}");
    }

    #[test]
    fn unknown_check_ids_get_a_suggestion() {
        let c = LoadedConfig::parse("x.toml", "[checks]\ndisable = [\"schema.primary_key\"]\n")
            .unwrap();
        let err = c.check_ids(&["schema.primary_keys"]).unwrap_err();
        assert_eq!(
            err.problems[0].help.as_deref(),
            Some("did you mean `schema.primary_keys`?")
        );
    }
}
