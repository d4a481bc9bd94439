//! Before an audit: what is in scope, and how many connections the server can spare.
//! A schema named in `scope.schemas` that does not exist, or a scope holding no
//! table, would turn every check off in silence (not applicable, or a pass): both are
//! bad input. `--jobs` beyond the server's free connection slots would take them from
//! the application.

use crate::audit::outcome::AuditRun;
use crate::checks::catalog::Catalog;
use crate::checks::params::{self, ParamValue};
use crate::config::LoadedConfig;
use crate::model::Status;
use tokio_postgres::Client;

/// What the scope holds on this database.
#[derive(Debug)]
pub struct Scope {
    /// Configured schemas that do not exist, each with the closest existing name.
    pub missing_schemas: Vec<(String, Option<String>)>,
    /// Tables in scope (partitions excluded).
    pub tables: i64,
    /// Connection slots a new non-superuser connection could still take.
    pub free_connections: i64,
}

/// Run `sql` over the building blocks `uses`, composed as a check's query is, with
/// the configuration's parameters bound: the engine's own questions (scope, tenancy
/// model, `init`) ask the catalog the way the checks do.
pub async fn query(
    client: &Client,
    catalog: &Catalog,
    config: &LoadedConfig,
    uses: &[&str],
    sql: &str,
) -> Result<Vec<tokio_postgres::Row>, String> {
    let composed = catalog.compose_query(uses, sql);
    let values = params::bind(&config.config, &composed.params);
    let refs: Vec<_> = values.iter().map(ParamValue::as_sql).collect();
    client
        .query(&composed.sql, &refs)
        .await
        .map_err(|e| crate::db::db_message(&e))
}

/// Read the scope through the `scope_tables` building block (the checks' own
/// definition of it), with the configured parameters bound.
pub async fn inspect(
    client: &Client,
    catalog: &Catalog,
    config: &LoadedConfig,
) -> Result<Scope, String> {
    let rows = query(
        client,
        catalog,
        config,
        &["scope_tables"],
        "select (select count(*) from scope_tables t where not t.is_partition),
       array(select s from unnest((select schemas from params)::text[]) s
             where not exists (select 1 from pg_namespace n where n.nspname = s)),
       array(select n.nspname::text from pg_namespace n
             where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
               and n.nspname !~ '^pg_(toast_)?temp_'),
       current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0)
       - (select count(*)::int from pg_stat_activity where backend_type = 'client backend')",
    )
    .await?;
    let row = rows.first().ok_or("the scope query returned no row")?;
    let existing: Vec<String> = row.get(2);
    let missing: Vec<String> = row.get(1);
    Ok(Scope {
        missing_schemas: missing
            .into_iter()
            .map(|s| {
                let near = crate::diag::did_you_mean(&s, existing.iter().map(String::as_str));
                (s, near)
            })
            .collect(),
        tables: row.get(0),
        free_connections: i64::from(row.get::<_, i32>(3)),
    })
}

/// The tenancy model in force, as the rls checks read it (`checks/lib/tenancy_model.sql`):
/// the model and why, and what the membership model's policies read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenancyFacts {
    /// `setting` or `membership`.
    pub model: String,
    pub reason: String,
    /// The identity most policies read (`auth.uid()`), or `tenancy.user_identity`;
    /// `None` when neither says it (the building block's default is a guess).
    pub identity: Option<String>,
    /// `tenancy.membership_table`, else the table the identity sub-selects read; "" unknown.
    pub membership_table: String,
    /// The membership table's column naming the user (`user_id`); "" unknown.
    pub user_column: String,
}

pub async fn tenancy_model(
    client: &Client,
    catalog: &Catalog,
    config: &LoadedConfig,
) -> Result<Option<TenancyFacts>, String> {
    let rows = query(
        client,
        catalog,
        config,
        &["tenancy_model"],
        "select model::text, reason::text, identity::text, membership_table::text, user_key::text from tenancy_model",
    )
    .await?;
    Ok(rows.first().map(|r| {
        let reason: String = r.get(1);
        let identity: Option<String> = r.get(2);
        let configured = !config.config.tenancy.user_identity.trim().is_empty();
        let membership_table: String = r.get::<_, Option<String>>(3).unwrap_or_default();
        let user_key: String = r.get::<_, Option<String>>(4).unwrap_or_default();
        TenancyFacts {
            model: r.get(0),
            identity: identity.filter(|i| configured || reason.contains(i.as_str())),
            user_column: user_column(&user_key, &membership_table),
            membership_table,
            reason,
        }
    }))
}

/// The user column of `user_key` (`public.members.user_id`: the membership table's
/// key to the users' table), when it is one column.
fn user_column(user_key: &str, membership_table: &str) -> String {
    let cols = user_key
        .strip_prefix(membership_table)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or_else(|| user_key.rsplit('.').next().unwrap_or(""));
    if cols.contains(',') {
        String::new()
    } else {
        cols.trim().to_string()
    }
}

/// When no table in scope has a tenant column (tenancy.column), the configuration does
/// not describe this database: why, naming the likely tenant tables and their columns
/// (`checks/lib/tenant_candidates.sql`, as `init` proposes them). `None` when some
/// table has the column.
pub async fn untenanted(
    client: &Client,
    catalog: &Catalog,
    config: &LoadedConfig,
) -> Result<Option<String>, String> {
    let rows = query(
        client,
        catalog,
        config,
        &["tenant_tables"],
        "select exists (select 1 from tenant_tables t where t.tenant_column is not null)",
    )
    .await?;
    if rows.first().is_none_or(|r| r.get::<_, bool>(0)) {
        return Ok(None);
    }
    let rows = query(
        client,
        catalog,
        config,
        &["tenant_candidates"],
        "select ref_object::text, column_name::text, with_column::bigint from tenant_candidates \
         where column_name is not null order by rank limit 3",
    )
    .await?;
    let candidates: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let columns = config.config.tenancy.column.to_vec().join(", ");
    let likely = match candidates.split_first() {
        None => "and no table is owned by others through NOT NULL foreign keys: if this database \
                 is multi-tenant, set [tenancy] column and tenant_table"
            .to_string(),
        Some(((table, column, n), rest)) => {
            let also: Vec<String> = rest.iter().map(|(t, c, _)| format!("{t} by {c}")).collect();
            format!(
                "the likely tenant is {table} by {column} ({n} table{} have it{}): run \
                 `pg-integrity init` to write pg-integrity.toml, or set [tenancy] column and \
                 tenant_table",
                if *n == 1 { "" } else { "s" },
                if also.is_empty() {
                    String::new()
                } else {
                    format!("; also considered: {}", also.join(", "))
                }
            )
        }
    };
    Ok(Some(format!(
        "no table in scope has the tenant column {columns} (tenancy.column), {likely}"
    )))
}

/// The checks about tenancy that found nothing to examine because no table has the
/// tenant column are skipped, with `reason` ([`untenanted`]), instead of "not
/// applicable": the configuration, not the database, left them nothing. A check is
/// about tenancy when it reads the tenant tables (`tenant_tables`, through its
/// building blocks) and is in the tenancy, rls or isolation section or names tenants.
pub fn explain_untenanted(run: &mut AuditRun, catalog: &Catalog, reason: &str) {
    for r in &mut run.results {
        let c = &r.check;
        let about_tenancy = ["tenancy", "rls", "isolation"].contains(&c.section.as_str())
            || c.id.contains("tenant");
        if r.status == Status::NotApplicable
            && r.objects.is_empty()
            && about_tenancy
            && reads(catalog, &c.uses, "tenant_tables")
        {
            r.status = Status::Skipped;
            r.reason = Some(reason.to_string());
        }
    }
}

/// Whether the building blocks `uses` read `block`, directly or through theirs.
fn reads(catalog: &Catalog, uses: &[String], block: &str) -> bool {
    let mut todo: Vec<&str> = uses.iter().map(String::as_str).collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(u) = todo.pop() {
        if u == block {
            return true;
        }
        if seen.insert(u) {
            if let Some(f) = catalog.fragments.get(u) {
                todo.extend(f.requires.iter().map(String::as_str));
            }
        }
    }
    false
}

/// Connections an audit may open: `jobs`, but never more than the free slots less a
/// reserve for the application (a tenth of them, at least 3), and at least 1.
pub fn cap_jobs(jobs: usize, free_connections: i64) -> usize {
    let reserve = (free_connections / 10).max(3);
    let spare = usize::try_from(free_connections - reserve).unwrap_or(0);
    jobs.min(spare).max(1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_user_column_is_read_from_the_user_key() {
        assert_eq!(
            super::user_column("app.members.user_id", "app.members"),
            "user_id"
        );
        assert_eq!(
            super::user_column("members.user_id", "public.members"),
            "user_id"
        );
        assert_eq!(super::user_column("app.members.a, b", "app.members"), "");
        assert_eq!(super::user_column("", ""), "");
    }

    #[test]
    fn jobs_keep_a_reserve_of_free_connections() {
        assert_eq!(super::cap_jobs(4, 97), 4);
        assert_eq!(super::cap_jobs(1000, 97), 88);
        assert_eq!(super::cap_jobs(4, 5), 2);
        assert_eq!(super::cap_jobs(4, 2), 1);
        assert_eq!(super::cap_jobs(4, -3), 1);
    }
}
