//! The configured names in the words of the checks. A check's title, description,
//! guidance and remediation may say `{tenant_column}`, `{tenant_table}`,
//! `{tenant_setting}` or `{app_role}`; they are written with the configuration's
//! names (`organization_id`, `organizations`, `app.org`, `lago_app`) wherever the
//! check is shown: every report, `checks list`, `checks show`, docs/checks.md. A
//! name the configuration leaves open (no app role, several tenant columns) reads
//! as a placeholder for the reader to fill in (`<app role>`).
//!
//! `{tenant_bound}` is the tenant-bound expression of the tenancy model in force:
//! `organization_id = (select nullif(current_setting('app.org', true), '')::<its type>)`
//! under the setting model, `organization_id IN (select organization_id from
//! public.members where user_id = (select auth.uid()))` under the membership model,
//! both (each named) while the model is not known. The configuration decides it when
//! it sets `tenancy.model`; in an audit, the model in force and what its policies read
//! (the membership table, the identity, the user column) decide it ([`refine_run`]).

use crate::audit::outcome::AuditRun;
use crate::audit::scope::TenancyFacts;
use crate::checks::catalog::{Catalog, Check};
use crate::config::{Config, TenancyModel};
use std::sync::Arc;

/// The names, from a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub tenant_column: String,
    pub tenant_table: String,
    pub tenant_setting: String,
    pub app_role: String,
    /// The model in force; `None`: not known (auto, no database read).
    pub model: Option<TenancyModel>,
    pub membership_table: String,
    pub identity: String,
    pub user_column: String,
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
            model: match t.model {
                TenancyModel::Auto => None,
                m => Some(m),
            },
            membership_table: set(&t.membership_table, "<membership table>"),
            identity: set(t.user_identity.trim(), "<identity, e.g. auth.uid()>"),
            user_column: "<user column>".into(),
        }
    }

    /// The names with what an audit read from the database: the model in force and,
    /// where the configuration leaves them open, what the policies read.
    pub fn with_facts(config: &Config, facts: &TenancyFacts) -> Names {
        let mut n = Names::of(config);
        n.model = match facts.model.as_str() {
            "membership" => Some(TenancyModel::Membership),
            "setting" => Some(TenancyModel::Setting),
            _ => n.model,
        };
        if config.tenancy.membership_table.is_empty() && !facts.membership_table.is_empty() {
            n.membership_table = facts.membership_table.clone();
        }
        if config.tenancy.user_identity.trim().is_empty() {
            if let Some(i) = &facts.identity {
                n.identity = i.clone();
            }
        }
        if !facts.user_column.is_empty() {
            n.user_column = facts.user_column.clone();
        }
        n
    }

    /// `{tenant_bound}`: the tenant-bound expression of the model in force (see the
    /// module's comment).
    pub fn tenant_bound(&self) -> String {
        let c = &self.tenant_column;
        let setting = format!(
            "{c} = (select nullif(current_setting('{}', true), '')::<its type>)",
            self.tenant_setting
        );
        let membership = format!(
            "{c} IN (select {c} from {} where {} = (select {}))",
            self.membership_table, self.user_column, self.identity
        );
        match self.model {
            Some(TenancyModel::Setting) => setting,
            Some(TenancyModel::Membership) => membership,
            _ => format!(
                "{setting} under the setting model, {membership} under the membership model"
            ),
        }
    }

    /// `text` with every placeholder written out; other braces are left as they are.
    pub fn fill(&self, text: &str) -> String {
        if !text.contains('{') {
            return text.to_string();
        }
        text.replace("{tenant_bound}", &self.tenant_bound())
            .replace("{tenant_column}", &self.tenant_column)
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

/// After an audit: where the checks' words (filled by [`fill_catalog`]) say the
/// tenant-bound expression from the configuration alone, say it in the model in
/// force and with what its policies read.
pub fn refine_run(run: &mut AuditRun, config: &Config, facts: Option<&TenancyFacts>) {
    let Some(facts) = facts else { return };
    let (was, now) = (
        Names::of(config).tenant_bound(),
        Names::with_facts(config, facts).tenant_bound(),
    );
    if was == now {
        return;
    }
    for r in &mut run.results {
        let c = &r.check;
        let says = |t: &str| t.contains(&was);
        if says(&c.remediation) || says(&c.description) || c.guidance.as_deref().is_some_and(says) {
            let c = Arc::make_mut(&mut r.check);
            c.remediation = c.remediation.replace(&was, &now);
            c.description = c.description.replace(&was, &now);
            c.guidance = c.guidance.as_ref().map(|g| g.replace(&was, &now));
        }
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

    #[test]
    fn the_tenant_bound_expression_follows_the_model() {
        let mut config = Config::default();
        config.tenancy.column = crate::config::OneOrMany::One("org_id".into());
        config.tenancy.setting = "app.org".into();
        let both = Names::of(&config).fill("({tenant_bound})");
        assert!(
            both.contains("current_setting('app.org', true)")
                && both.contains("<membership table>"),
            "{both}"
        );
        config.tenancy.model = TenancyModel::Setting;
        assert_eq!(
            Names::of(&config).fill("({tenant_bound})"),
            "(org_id = (select nullif(current_setting('app.org', true), '')::<its type>))"
        );
        config.tenancy.model = TenancyModel::Auto;
        let facts = TenancyFacts {
            model: "membership".into(),
            reason: "auto".into(),
            identity: Some("auth.uid()".into()),
            membership_table: "app.members".into(),
            user_column: "user_id".into(),
        };
        assert_eq!(
            Names::with_facts(&config, &facts).fill("({tenant_bound})"),
            "(org_id IN (select org_id from app.members where user_id = (select auth.uid())))"
        );
        // the configuration's names win over what the policies read
        config.tenancy.membership_table = "app.teams".into();
        config.tenancy.user_identity = "current_user_id()".into();
        assert_eq!(
            Names::with_facts(&config, &facts).fill("{tenant_bound}"),
            "org_id IN (select org_id from app.teams where user_id = (select current_user_id()))"
        );
    }
}
