//! Where a database stands: the history table read (never created) and compared with
//! the migration files (applied, pending, divergent, missing).

use crate::migrate::files::{MigrateError, MigrationFile, HISTORY_TABLE};
use serde::Serialize;
use tokio_postgres::Client;

/// A row of the history table.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: u32,
    pub name: String,
    pub applied_on: String,
    pub checksum: String,
}

/// Read the history without creating it (status must never write).
pub async fn history(client: &Client) -> Result<Vec<Applied>, MigrateError> {
    let exists: bool = client
        .query_one("select to_regclass($1) is not null", &[&HISTORY_TABLE])
        .await?
        .get(0);
    if !exists {
        return Ok(vec![]);
    }
    let rows = client
        .query(
            &format!("select version, coalesce(name, ''), coalesce(applied_on, ''), coalesce(checksum, '') from {HISTORY_TABLE} order by version"),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get::<_, i32>(0) as u32,
            name: r.get(1),
            applied_on: r.get(2),
            checksum: r.get(3),
        })
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Applied,
    Pending,
    Divergent,
    Missing,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    pub version: u32,
    pub name: String,
    pub state: State,
    pub applied_on: Option<String>,
    pub no_transaction: bool,
    pub detail: Option<String>,
}

/// Compiled-in migrations rewritten after release with the same end state: (version, name,
/// the checksum of the earlier text, why). A database whose history holds that checksum
/// applied the earlier form: applied, not divergent; nothing is re-run.
pub const SUPERSEDED: &[(u32, &str, &str, &str)] = &[
    (
        3,
        "tenant_rls",
        "1683379792711478256",
        "applied in its earlier one-transaction form (same end state)",
    ),
    (
        4,
        "integrity_constraints",
        "14841217626477821569",
        "applied in its earlier one-transaction form (same end state)",
    ),
    (
        8,
        "tenant_scoped_keys",
        "15338931499750061601",
        "applied in its earlier one-transaction form (same end state)",
    ),
];

pub fn status(files: &[MigrationFile], applied: &[Applied]) -> Vec<StatusRow> {
    let mut rows = vec![];
    for f in files {
        let row = match applied.iter().find(|a| a.version == f.version) {
            None => StatusRow {
                version: f.version,
                name: f.name.clone(),
                state: State::Pending,
                applied_on: None,
                no_transaction: f.no_transaction,
                detail: None,
            },
            Some(a) => {
                let earlier = SUPERSEDED
                    .iter()
                    .find(|(v, n, c, _)| *v == f.version && *n == f.name && *c == a.checksum);
                let detail = if a.name != f.name {
                    Some(format!("applied as `{}`, embedded as `{}`", a.name, f.name))
                } else if a.checksum != f.checksum.to_string() && earlier.is_none() {
                    Some("the SQL changed after it was applied (checksum differs)".to_string())
                } else {
                    None
                };
                StatusRow {
                    version: f.version,
                    name: f.name.clone(),
                    state: if detail.is_some() {
                        State::Divergent
                    } else {
                        State::Applied
                    },
                    detail: detail.or(earlier.map(|(_, _, _, why)| why.to_string())),
                    applied_on: Some(a.applied_on.clone()),
                    no_transaction: f.no_transaction,
                }
            }
        };
        rows.push(row);
    }
    for a in applied {
        if !files.iter().any(|f| f.version == a.version) {
            rows.push(StatusRow {
                version: a.version,
                name: a.name.clone(),
                state: State::Missing,
                applied_on: Some(a.applied_on.clone()),
                no_transaction: false,
                detail: Some("applied, but not among the embedded migrations".into()),
            });
        }
    }
    rows.sort_by_key(|r| r.version);
    rows
}

/// The committed `BEGIN; … COMMIT;` steps of migrations not yet recorded: version -> how
/// many (read without creating the table).
pub async fn steps_done(client: &Client) -> Result<Vec<(u32, i64)>, MigrateError> {
    let table = crate::migrate::files::STEPS_TABLE;
    let exists: bool = client
        .query_one("select to_regclass($1) is not null", &[&table])
        .await?
        .get(0);
    if !exists {
        return Ok(vec![]);
    }
    Ok(client
        .query(
            &format!("select version, count(*) from {table} group by version order by version"),
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, i64>(1)))
        .collect())
}

/// Say of each pending migration part-way through how many of its steps are done.
pub fn with_steps(rows: &mut [StatusRow], files: &[MigrationFile], steps: &[(u32, i64)]) {
    for (version, done) in steps {
        let Some(r) = rows
            .iter_mut()
            .find(|r| r.version == *version && r.state == State::Pending)
        else {
            continue;
        };
        let total = files
            .iter()
            .find(|f| f.version == *version)
            .and_then(|f| {
                crate::migrate::locks::transactions(
                    &crate::migrate::parse::split(&f.sql),
                    f.no_transaction,
                )
                .ok()
            })
            .map_or(0, |t| t.iter().filter(|t| t.block).count());
        r.detail = Some(format!(
            "part-way: {done} of {total} BEGIN … COMMIT steps applied; `migrate apply` goes on from step {}",
            done + 1
        ));
    }
}

/// Divergent or missing rows, as one message; None when history and files agree.
pub fn disagreement(rows: &[StatusRow]) -> Option<String> {
    let bad: Vec<String> = rows
        .iter()
        .filter(|r| matches!(r.state, State::Divergent | State::Missing))
        .map(|r| {
            format!(
                "V{}__{} is {}{}",
                r.version,
                r.name,
                if r.state == State::Divergent {
                    "divergent"
                } else {
                    "missing"
                },
                r.detail
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            )
        })
        .collect();
    (!bad.is_empty()).then(|| bad.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use refinery::Migration;

    #[test]
    fn status_classifies_history() {
        let files = vec![
            MigrationFile {
                version: 1,
                name: "a".into(),
                sql: "select 1".into(),
                no_transaction: false,
                checksum: 11,
                refinery: Migration::unapplied("V1__a", "select 1").unwrap(),
            },
            MigrationFile {
                version: 2,
                name: "b".into(),
                sql: "select 2".into(),
                no_transaction: false,
                checksum: 22,
                refinery: Migration::unapplied("V2__b", "select 2").unwrap(),
            },
        ];
        let applied = |v: u32, n: &str, c: &str| Applied {
            version: v,
            name: n.into(),
            applied_on: String::new(),
            checksum: c.into(),
        };
        let rows = status(&files, &[applied(1, "a", "99"), applied(3, "c", "1")]);
        let states: Vec<State> = rows.iter().map(|r| r.state).collect();
        assert_eq!(
            states,
            vec![State::Divergent, State::Pending, State::Missing]
        );
        assert!(disagreement(&rows).unwrap().contains("V1__a is divergent"));
        let ok = status(&files, &[applied(1, "a", "11")]);
        assert!(disagreement(&ok).is_none());
    }

    #[test]
    fn an_earlier_form_of_a_rewritten_migration_is_applied_not_divergent() {
        let sql = "select 3";
        let files = vec![MigrationFile {
            version: 3,
            name: "tenant_rls".into(),
            sql: sql.into(),
            no_transaction: true,
            checksum: 33,
            refinery: Migration::unapplied("V3__tenant_rls", sql).unwrap(),
        }];
        let row = |c: &str| Applied {
            version: 3,
            name: "tenant_rls".into(),
            applied_on: String::new(),
            checksum: c.into(),
        };
        let rows = status(&files, &[row("1683379792711478256")]);
        assert_eq!(rows[0].state, State::Applied);
        assert!(rows[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("earlier one-transaction form"));
        assert!(disagreement(&rows).is_none());
        let rows = status(&files, &[row("1")]);
        assert_eq!(rows[0].state, State::Divergent);
    }
}
