//! Data and probe checks run in two phases. The check's SQL is a *plan*: one row
//! per object with the query that examines it, built from the catalog with
//! `format('%I')`. The engine then runs each query — data queries inside the
//! audit's read-only snapshot, probes in their own transaction as the app role,
//! always rolled back. Each query returns one row: `ok boolean, evidence text`.
//!
//! Plan columns (by name): `object text`, `query text`, and optionally
//! `args text[]` (bound to the query and setup as `$1..$n`, text: cast them),
//! `skip_reason text` (any non-null value makes the check skipped), `unknown_reason
//! text` (non-null: the object is unknown with this reason and nothing is read, e.g.
//! row level security hides rows of its table from the auditing role), and for probes
//! `role text` (the role to become), `setup text` (a statement run first, e.g.
//! `select set_config($2, $1, true)`), `refusal_ok boolean` (an error from the query
//! means the database refused, which is what the probe wants; an object dropped or
//! locked, a timeout or a lost connection is never a refusal), `strict_refusal boolean`
//! (only a policy or a privilege, SQLSTATE 42501, counts as a refusal: any other error
//! makes the object unknown), `error_refuses boolean` (default true: without strict
//! refusal, another error, such as a policy failing on a setting the probe left unset,
//! is a refusal, as when the probe unsets the context on purpose; false: unknown, as
//! when the probe set the context and a policy fails on another setting), `attempts int` (a
//! write probe's candidate rows: the query gets the attempt number 0, 1, … as one more
//! argument after `args` and runs under a savepoint; only a refusal by a policy or a
//! privilege (SQLSTATE 42501) proves isolation, any other error (a foreign key, a
//! unique, a trigger) makes that row inconclusive and the next one is tried; ok NULL
//! from the query on the first attempt is the query's own verdict, unknown; on a later
//! one, no candidate is left; all inconclusive is unknown).
//!
//! A data check may instead describe a row test (`hit`, see `crate::audit::scan`): the engine
//! then answers the tests of every data check on one table with one shared scan, and
//! `query` renders the outcome from the figures that scan gives.

use crate::audit::outcome::Row3;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

pub(crate) struct Step {
    pub(crate) object: String,
    pub(crate) query: String,
    pub(crate) args: Vec<String>,
    pub(crate) role: Option<String>,
    pub(crate) setup: Option<String>,
    pub(crate) refusal_ok: bool,
    /// Only a refusal by a policy or a privilege (42501) counts; another error from
    /// the query makes the object unknown (inconclusive).
    pub(crate) strict_refusal: bool,
    /// Whether another error from the query (a policy failing on a setting the probe
    /// left unset) counts as a refusal: true where the probe unsets the context on
    /// purpose (failing closed), false where it set it (the application, which sets
    /// what the policy reads, may see more: unknown).
    pub(crate) error_refuses: bool,
    /// Candidate rows a write probe tries (0: one plain attempt).
    pub(crate) attempts: u32,
    /// A row test answered by a shared scan (data checks only).
    pub(crate) part: Option<Part>,
}

/// A row test answered by a shared scan (see `crate::audit::scan`).
#[derive(Debug, Clone)]
pub struct Part {
    pub scan: String,
    pub key: String,
    pub join: Option<String>,
    pub hit: String,
    pub detail: Option<String>,
    pub lowest: Option<String>,
}

fn col<T: for<'a> tokio_postgres::types::FromSql<'a>>(r: &Row, name: &str) -> Option<T> {
    r.columns()
        .iter()
        .position(|c| c.name() == name)
        .and_then(|i| r.try_get::<_, Option<T>>(i).ok().flatten())
}

/// Read the plan; `Err(Ok(reason))` when the plan says the check cannot run here
/// (`no.map(skipped)` is then the check's outcome: the skip, or the error).
pub(crate) fn plan(rows: &[Row]) -> Result<Vec<Step>, Result<String, String>> {
    let mut steps = vec![];
    for r in rows {
        if let Some(reason) = col::<String>(r, "skip_reason") {
            return Err(Ok(reason));
        }
        if let (Some(object), Some(reason)) = (
            col::<String>(r, "object"),
            col::<String>(r, "unknown_reason"),
        ) {
            // Nothing to read: the verdict is unknown, with the reason.
            steps.push(Step {
                object,
                query: "select null::boolean as ok, $1::text as evidence".into(),
                args: vec![reason],
                role: None,
                setup: None,
                refusal_ok: false,
                strict_refusal: false,
                error_refuses: false,
                attempts: 0,
                part: None,
            });
            continue;
        }
        let (Some(object), Some(query)) = (col::<String>(r, "object"), col::<String>(r, "query"))
        else {
            return Err(Err(
                "a data or probe check's plan must return object and query columns".into(),
            ));
        };
        let part = match col::<String>(r, "hit") {
            None => None,
            Some(hit) => {
                let (Some(scan), Some(key)) = (col::<String>(r, "scan"), col(r, "scan_key")) else {
                    return Err(Err(format!(
                        "{object}: a plan row with hit must give scan and scan_key"
                    )));
                };
                Some(Part {
                    scan,
                    key,
                    join: col(r, "scan_join"),
                    hit,
                    detail: col(r, "detail"),
                    lowest: col(r, "lowest"),
                })
            }
        };
        steps.push(Step {
            object,
            query,
            args: col::<Vec<String>>(r, "args").unwrap_or_default(),
            role: col(r, "role"),
            setup: col(r, "setup"),
            refusal_ok: col(r, "refusal_ok").unwrap_or(false),
            strict_refusal: col(r, "strict_refusal").unwrap_or(false),
            error_refuses: col(r, "error_refuses").unwrap_or(true),
            attempts: col::<i32>(r, "attempts").map_or(0, |n| n.clamp(0, 20) as u32),
            part,
        });
    }
    Ok(steps)
}

pub(crate) fn skipped(reason: String) -> Vec<Row3> {
    vec![(String::new(), None, reason)]
}

pub(crate) fn outcome(object: &str, rows: &[Row]) -> Result<Row3, String> {
    let r = rows.first().ok_or_else(|| {
        format!("{object}: the query returned no row (it must return ok, evidence)")
    })?;
    let ok: Option<bool> = r
        .try_get(0)
        .map_err(|e| format!("{object}: column ok: {e}"))?;
    let evidence: Option<String> = r
        .try_get(1)
        .map_err(|e| format!("{object}: column evidence: {e}"))?;
    // ok NULL: the query could not judge the object (unknown, SPEC §3)
    Ok((object.to_string(), ok, evidence.unwrap_or_default()))
}

pub(crate) fn bind(args: &[String]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

/// The highest `$n` a statement uses (it may use fewer than the plan's args).
pub(crate) fn count_params(sql: &str) -> usize {
    let b = sql.as_bytes();
    let mut max = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let mut j = i + 1;
            let mut n = 0usize;
            while j < b.len() && b[j].is_ascii_digit() {
                n = n * 10 + (b[j] - b'0') as usize;
                j += 1;
            }
            if j > i + 1 && (j >= b.len() || b[j] != b'$') {
                max = max.max(n);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_positional_parameters() {
        assert_eq!(
            super::count_params("select $1::uuid, $3 from t where x = $2"),
            3
        );
        assert_eq!(super::count_params("select 1"), 0);
        assert_eq!(super::count_params("select $tag$ x $tag$"), 0);
    }
}
