//! `pg-integrity init`: inspect a database and propose a commented
//! `pg-integrity.toml`. Every choice says why, and the alternatives are listed, so a
//! newcomer's first audit judges the tenancy the schema really has instead of the
//! defaults (`tenant_id`, `tenants`), which on most schemas match nothing.
//!
//! What it reads lives in `checks/lib/`: `tenant_candidates` (which table owns the
//! most tables through NOT NULL foreign keys, and the column they reference it by),
//! `tenancy_model` (setting or membership, from the policies), `role_grants` (who
//! is granted what in this database), composed as a check's query would be.

// The engine's own catalog questions, composed as a check's query is.
use crate::audit::scope::query as rows;
use crate::checks::catalog::Catalog;
use crate::config::LoadedConfig;
use std::fmt::Write as _;
use tokio_postgres::Client;

/// A candidate tenant table.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub table: String,
    pub column: String,
    /// Tables reaching it through NOT NULL foreign keys.
    pub owned: i64,
    /// Tables referencing it directly by `column`.
    pub direct: i64,
    /// Tables in scope with a column named `column`.
    pub with_column: i64,
}

/// What init proposes.
#[derive(Debug, Default)]
pub struct Proposal {
    pub database: String,
    pub tables: i64,
    pub schemas: Vec<String>,
    pub candidates: Vec<Candidate>,
    /// Settings the policies read: (name, policies reading it, policies comparing it
    /// with the tenant column), the tenant's setting first.
    pub settings: Vec<(String, i64, i64)>,
    /// (model, reason, identity, membership table), when policies were read.
    pub model: Option<(String, String, String, String)>,
    /// (role, tables it may use, tables it may write).
    pub app_roles: Vec<(String, i64, i64)>,
    pub service_roles: Vec<String>,
}

/// Read what the proposal needs, in a read-only transaction.
pub async fn inspect(client: &Client, catalog: &Catalog) -> Result<Proposal, String> {
    client
        .batch_execute("begin transaction isolation level repeatable read, read only; set local statement_timeout = '30s'; set local lock_timeout = '1s'")
        .await
        .map_err(|e| crate::db::db_message(&e))?;
    let defaults = LoadedConfig::default();
    let mut p = Proposal {
        database: rows(
            client,
            catalog,
            &defaults,
            &[],
            "select current_database()::text",
        )
        .await?[0]
            .get(0),
        ..Proposal::default()
    };
    for r in rows(
        client,
        catalog,
        &defaults,
        &["scope_tables"],
        "select t.schema_name, count(*) from scope_tables t where not t.is_partition group by 1 order by 2 desc, 1",
    )
    .await?
    {
        p.schemas.push(r.get(0));
        p.tables += r.get::<_, i64>(1);
    }
    for r in rows(
        client,
        catalog,
        &defaults,
        &["tenant_candidates"],
        "select ref_object, column_name, owned, direct, with_column from tenant_candidates order by rank limit 5",
    )
    .await?
    {
        p.candidates.push(Candidate {
            table: r.get(0),
            column: r.get(1),
            owned: r.get(2),
            direct: r.get(3),
            with_column: r.get(4),
        });
    }
    for r in rows(
        client,
        catalog,
        &defaults,
        &["policies"],
        "select m[1], concat_ws(' ', p.using_expr, p.check_expr, p.called_bodies)
         from policies p
         cross join lateral regexp_matches(
             concat_ws(' ', p.using_expr, p.check_expr, p.called_bodies),
             'current_setting\\(\\s*''([^'']+)''', 'g') m",
    )
    .await?
    {
        let (setting, text): (String, String) = (r.get(0), r.get(1));
        let compared = p
            .candidates
            .first()
            .is_some_and(|c| compared_with(&text, &setting, &c.column));
        match p.settings.iter_mut().find(|s| s.0 == setting) {
            Some(s) => {
                s.1 += 1;
                s.2 += i64::from(compared);
            }
            None => p.settings.push((setting, 1, i64::from(compared))),
        }
    }
    // The tenant's setting is the one compared with the tenant column; a user-id
    // setting read by user-based policies is not it.
    p.settings
        .sort_by(|a, b| (b.2, b.1, &a.0).cmp(&(a.2, a.1, &b.0)));
    if let Some(best) = p.candidates.first() {
        let text = format!(
            "[tenancy]\ncolumn = {:?}\ntenant_table = {:?}\n{}",
            best.column,
            best.table,
            p.settings
                .first()
                .filter(|s| s.2 > 0)
                .map(|(s, _, _)| format!("setting = {s:?}\n"))
                .unwrap_or_default()
        );
        let config = LoadedConfig::parse("<init>", &text).map_err(|e| format!("{e:?}"))?;
        if catalog.fragments.contains_key("tenancy_model") {
            if let Some(r) = rows(
                client,
                catalog,
                &config,
                &["tenancy_model"],
                "select model::text, reason::text, coalesce(identity::text, ''), coalesce(membership_table::text, '') from tenancy_model",
            )
            .await?
            .first()
            {
                p.model = Some((r.get(0), r.get(1), r.get(2), r.get(3)));
            }
        }
    }
    for r in rows(
        client,
        catalog,
        &defaults,
        &["role_grants"],
        "select role_name, tables, writes, superuser, bypassrls from role_grants order by writes desc, tables desc, role_name",
    )
    .await?
    {
        let (name, tables, writes, superuser, bypass): (String, i64, i64, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        if superuser {
            continue;
        }
        if bypass {
            p.service_roles.push(name);
        } else if writes > 0 {
            p.app_roles.push((name, tables, writes));
        }
    }
    let _ = client.batch_execute("rollback").await;
    Ok(p)
}

/// The model the proposal writes: the one the policies show, or `auto` when no
/// policy reads a tenant yet (nothing to decide from).
pub fn model_written(p: &Proposal) -> &str {
    match &p.model {
        Some((m, _, _, _)) if m == "membership" || p.settings.iter().any(|s| s.2 > 0) => m,
        _ => "auto",
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

/// Whether `text` (a policy's expressions and its helpers' bodies) compares the
/// setting with `column`: the column named within a few words of the setting's read.
fn compared_with(text: &str, setting: &str, column: &str) -> bool {
    let lower = text.to_lowercase();
    let needle = format!("current_setting('{}'", setting.to_lowercase());
    let column = column.to_lowercase();
    lower.match_indices(&needle).any(|(at, _)| {
        let window: String = lower[..at]
            .chars()
            .rev()
            .take(80)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .chain(lower[at..].chars().take(needle.len() + 80))
            .collect();
        window
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == column)
    })
}

/// The commented configuration file.
pub fn render(p: &Proposal) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# pg-integrity.toml, proposed by `pg-integrity init` from database {} ({} tables in scope).\n\
         # Every value below was read from the database; each comment says why. Review it,\n\
         # then run `pg-integrity audit`. All keys and their defaults: docs/configuration.md.\n",
        p.database, p.tables
    );
    let _ = writeln!(s, "[scope]");
    let _ = writeln!(
        s,
        "# the schemas that hold tables (tables per schema: {})",
        p.schemas.join(", ")
    );
    let _ = writeln!(s, "schemas = {}\n", list(&p.schemas));

    let _ = writeln!(s, "[tenancy]");
    match p.candidates.first() {
        None => {
            let _ = writeln!(
                s,
                "# No table is referenced by two or more tables through one foreign key column:\n\
                 # no tenant could be told apart. Name the tenant column and table yourself, e.g.\n\
                 # column = \"tenant_id\"\n# tenant_table = \"tenants\""
            );
        }
        Some(best) => {
            let rank = match p.candidates.get(1) {
                Some(next) if next.owned == best.owned => format!(
                    "as many as {}; chosen because more tables reference it directly ({} vs {})",
                    next.table, best.direct, next.direct
                ),
                _ => "more than any other table".into(),
            };
            let _ = writeln!(
                s,
                "# {} owns {} tables through NOT NULL foreign keys (directly or through a parent),\n\
                 # {rank};\n\
                 # {} tables reference it by {} directly, and {} tables have a column of that\n\
                 # name. A table without it that reaches {} through a parent is reported as\n\
                 # owned through that parent.",
                best.table, best.owned, best.direct, best.column, best.with_column, best.table
            );
            for alt in p.candidates.iter().skip(1).take(3) {
                let _ = writeln!(
                    s,
                    "#   also considered: {} (owns {}, {} tables reference it by {})",
                    alt.table, alt.owned, alt.direct, alt.column
                );
            }
            let _ = writeln!(s, "column = {:?}", best.column);
            let _ = writeln!(s, "tenant_table = {:?}", best.table);
        }
    }
    match &p.model {
        Some((model, reason, identity, membership)) if model_written(p) != "auto" => {
            let _ = writeln!(s, "# {reason}");
            let _ = writeln!(s, "model = {model:?}");
            if model == "membership" {
                if !identity.is_empty() {
                    let _ = writeln!(s, "# the identity most policies read");
                    let _ = writeln!(s, "user_identity = {identity:?}");
                }
                if !membership.is_empty() {
                    let _ = writeln!(s, "# the table those policies read the user's tenants from");
                    let _ = writeln!(s, "membership_table = {membership:?}");
                }
            }
        }
        _ => {
            let _ = writeln!(
                s,
                "# no row level security policy reads a tenant yet: \"auto\" decides from the\n\
                 # policies at each audit (setting: a policy compares the tenant column with a\n\
                 # setting; membership: with the tenants of the session's user)\nmodel = \"auto\""
            );
        }
    }
    let others = |skip: usize| {
        p.settings[skip..]
            .iter()
            .map(|(s, n, _)| format!("{s} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match p.settings.first() {
        Some((setting, n, compared)) if *compared > 0 => {
            let _ = writeln!(
                s,
                "# {compared} of the {n} polic{} reading it compare it with the tenant column{}",
                if *n == 1 { "y" } else { "ies" },
                if p.settings.len() > 1 {
                    format!("; also read: {}", others(1))
                } else {
                    String::new()
                }
            );
            let _ = writeln!(s, "setting = {setting:?}");
        }
        Some(_) => {
            let _ = writeln!(
                s,
                "# policies read {} through current_setting(), but none compares it with the\n\
                 # tenant column (a user id is not a tenant): the default\n\
                 # setting = \"app.current_tenant\" applies if you adopt the setting model",
                others(0)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "# no policy reads a setting with current_setting(): the default\n\
                 # setting = \"app.current_tenant\" applies if you adopt the setting model"
            );
        }
    }
    let _ = writeln!(
        s,
        "# Tables that are not per tenant (lookup tables, the tenant table is always global),\n\
         # and unique keys global by design (a public slug): add them after the first audit.\n\
         global_tables = []\nglobal_keys = []\n"
    );

    let _ = writeln!(s, "[roles]");
    if p.app_roles.is_empty() {
        let _ = writeln!(
            s,
            "# no role other than the owners is granted writes on these tables in this database"
        );
        let _ = writeln!(s, "app = []");
    } else {
        let why: Vec<String> = p
            .app_roles
            .iter()
            .map(|(r, t, w)| format!("{r} (may use {t} tables, write {w})"))
            .collect();
        let _ = writeln!(
            s,
            "# roles granted writes on tables in this database, without BYPASSRLS or superuser:\n# {}",
            why.join(", ")
        );
        let names: Vec<String> = p.app_roles.iter().map(|(r, _, _)| r.clone()).collect();
        let _ = writeln!(s, "app = {}", list(&names));
    }
    if p.service_roles.is_empty() {
        let _ = writeln!(s, "# no role with BYPASSRLS is granted privileges here");
        let _ = writeln!(s, "service = []");
    } else {
        let _ = writeln!(
            s,
            "# roles with BYPASSRLS granted privileges here (background jobs, admin tools)"
        );
        let _ = writeln!(s, "service = {}", list(&p.service_roles));
    }
    s
}
