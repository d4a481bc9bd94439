//! The configured names in the words of the checks. A check's title, description,
//! guidance and remediation may say `{tenant_column}`, `{tenant_table}`,
//! `{tenant_setting}` or `{app_role}`; they are written with the configuration's
//! names (`organization_id`, `organizations`, `app.org`, `lago_app`) wherever the
//! check is shown: every report, `checks list`, `checks show`, docs/checks.md. A
//! name the configuration leaves open (no app role, several tenant columns) reads
//! as a placeholder for the reader to fill in (`<app role>`).

use crate::checks::catalog::{Catalog, Check};
use crate::config::Config;

/// The names, from a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub tenant_column: String,
    pub tenant_table: String,
    pub tenant_setting: String,
    pub app_role: String,
}

impl Names {
    pub fn of(config: &Config) -> Names {
        let one = |v: Vec<String>, open: &str| match v.as_slice() {
            [one] if !one.is_empty() => one.clone(),
            _ => open.to_string(),
        };
        let set = |s: &str, open: &str| {
            if s.is_empty() {
                open.to_string()
            } else {
                s.to_string()
            }
        };
        let t = &config.tenancy;
        Names {
            tenant_column: one(t.column.to_vec(), "<tenant column>"),
            tenant_table: set(&t.tenant_table, "<tenant table>"),
            tenant_setting: set(&t.setting, "<tenant setting>"),
            app_role: one(config.roles.app.clone(), "<app role>"),
        }
    }

    /// `text` with every placeholder written out; other braces are left as they are.
    pub fn fill(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_string();
        }
        text.replace("{tenant_column}", &self.tenant_column)
            .replace("{tenant_table}", &self.tenant_table)
            .replace("{tenant_setting}", &self.tenant_setting)
            .replace("{app_role}", &self.app_role)
    }

    fn fill_check(&self, c: &mut Check) {
        c.title = self.fill(&c.title);
        c.description = self.fill(&c.description);
        c.remediation = self.fill(&c.remediation);
        if let Some(g) = &c.guidance {
            c.guidance = Some(self.fill(g));
        }
    }
}

/// Write the configured names into every check's words (see the module's comment).
pub fn fill_catalog(catalog: &mut Catalog, config: &Config) {
    let names = Names::of(config);
    for c in catalog.checks.values_mut() {
        names.fill_check(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_the_configured_names_or_stay_open() {
        let mut config = Config::default();
        let n = Names::of(&config);
        assert_eq!(
            n.fill("{tenant_column} references {tenant_table}; ALTER ROLE {app_role} {x}"),
            "tenant_id references tenants; ALTER ROLE <app role> {x}"
        );
        config.tenancy.tenant_table = "organizations".into();
        config.tenancy.setting = "app.org".into();
        config.roles.app = vec!["lago_app".into()];
        config.tenancy.column = crate::config::OneOrMany::One("organization_id".into());
        assert_eq!(
            Names::of(&config).fill("{tenant_column} {tenant_table} {tenant_setting} {app_role}"),
            "organization_id organizations app.org lago_app"
        );
        config.roles.app = vec!["a".into(), "b".into()];
        config.tenancy.column =
            crate::config::OneOrMany::Many(vec!["org_id".into(), "account_id".into()]);
        assert_eq!(
            Names::of(&config).fill("{tenant_column} {app_role}"),
            "<tenant column> <app role>"
        );
    }
}
