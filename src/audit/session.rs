//! The audit's session on one connection: the read-only transaction every audit
//! statement runs in (sharing one exported snapshot), and [`safely`], the one way a
//! statement runs in it, so that an error leaves that transaction usable.

use crate::config::LoadedConfig;
use crate::db::{db_message, watch};
use std::future::Future;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Client;

/// Open the read-only, time-limited transaction every audit statement runs in.
pub(crate) async fn begin_read_only(
    client: &Client,
    config: &LoadedConfig,
    snapshot: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    let audit = &config.config.audit;
    let mut sql = String::from("begin isolation level repeatable read, read only;\n");
    if let Some(s) = snapshot {
        // The snapshot id comes from pg_export_snapshot(); SET TRANSACTION SNAPSHOT
        // takes no bind parameter, so it is checked to be a plain id and quoted.
        debug_assert!(s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'));
        sql.push_str(&format!("set transaction snapshot '{s}';\n"));
    }
    // JIT compiles large catalog queries for seconds to save milliseconds: off.
    // Nested loops off: the building blocks are CTEs, which have no index and only
    // guessed row counts, and a nested loop over two of them (or over one inlined
    // many times) is quadratic: minutes at 5,000 tables. The checks are written as
    // hash joins; correlated lookups (LATERAL, into catalog indexes) still run as
    // nested loops, which is the only way to run them.
    sql.push_str(&format!(
        "set local jit = off;\nset local enable_nestloop = off;\nset local enable_mergejoin = off;\n\
         set local statement_timeout = {};\nset local lock_timeout = {};",
        audit.statement_timeout_ms, audit.lock_timeout_ms
    ));
    let waiting = watch::waiting(client);
    let begun = client.batch_execute(&sql).await;
    drop(waiting);
    watch::note(client, &begun.as_ref().map_err(db_message));
    begun
}

/// What a statement run by [`safely`] does with the locks it takes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Locks<'a> {
    /// Kept until the audit's transaction ends: on success the savepoint is released
    /// (a catalog statement's locks are few, on catalog tables); on error it is rolled
    /// back to, which drops the failed statement's locks with it.
    Keep,
    /// Dropped at once: the savepoint is always rolled back, whatever happened; the
    /// rows are kept, the locks the statement took are released. A deep audit reads
    /// thousands of tables in one transaction: kept, their locks (a table and each of
    /// its indexes) would overflow the server's lock table (max_locks_per_transaction
    /// x max_connections). `setup` runs first inside the savepoint (a `SET LOCAL` the
    /// rollback takes back). The work must send one statement: savepoint, statement
    /// and rollback are pipelined, one round trip for a table with no rows.
    Drop { setup: &'a str },
}

/// Run `work` inside the audit's transaction under a savepoint, so that an error
/// leaves the transaction usable for the next statement; `locks` says whether the
/// locks it takes are kept or dropped (see [`Locks`]). With [`Locks::Keep`], `work`
/// may send several statements (a batch read as it streams, prepared statements).
///
/// Every statement's end is told to [`watch`]: while `work` runs its connection waits
/// under the client-side deadline of its own (a unit of several statements tells
/// each answer with [`watch::progress`]); an answer keeps that deadline away, and an error that says the connection is gone ends the audit with
/// exit 3 instead of a report of errored checks.
pub(crate) async fn safely<T>(
    client: &Client,
    locks: Locks<'_>,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    // the connection has the client-side deadline to answer, whatever the others do
    let waiting = watch::waiting(client);
    let result = safely_inner(client, locks, work).await;
    watch::note(client, &result);
    drop(waiting);
    result
}

async fn safely_inner<T>(
    client: &Client,
    locks: Locks<'_>,
    work: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match locks {
        Locks::Keep => {
            client
                .batch_execute("savepoint pgi_check")
                .await
                .map_err(|e| db_message(&e))?;
            match work.await {
                Ok(v) => {
                    client
                        .batch_execute("release savepoint pgi_check")
                        .await
                        .map_err(|e| db_message(&e))?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = client
                        .batch_execute("rollback to savepoint pgi_check")
                        .await;
                    Err(e)
                }
            }
        }
        Locks::Drop { setup } => {
            let begin = format!("savepoint pgi_read; {setup}");
            let (begin, read, end) = tokio::join!(
                client.batch_execute(&begin),
                work,
                client.batch_execute("rollback to savepoint pgi_read; release savepoint pgi_read"),
            );
            begin.map_err(|e| db_message(&e))?;
            let v = read?;
            end.map_err(|e| db_message(&e))?;
            Ok(v)
        }
    }
}

/// Leads every statement a deep audit sends about a table's rows: pg_stat_statements
/// keeps it in the stored text, and the checks reading tracked statements leave out
/// statements marked `/* pg-integrity …` (`checks/lib/tracked_statements.sql`), so
/// the audit's own reads are never taken for the application's (a read without a
/// lock of a queue table, say).
pub(crate) const AUDIT_MARKER: &str = "/* pg-integrity audit */";

/// `sql` behind [`AUDIT_MARKER`].
pub(crate) fn audit_marked(sql: &str) -> String {
    format!("{AUDIT_MARKER} {sql}")
}

/// `args` as text parameters for `query_typed` (a plan's `args`: the SQL casts them).
pub(crate) fn text_params(args: &[String]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    args.iter().map(|a| (a as _, Type::TEXT)).collect()
}

/// A statement about one object (a table's data query) that failed because of that
/// object, not because of the check: the object was dropped after the audit read the
/// catalog, or another session holds a lock on it longer than `lock_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectFault {
    /// Dropped (or renamed away) mid-audit: the object is skipped, not an error.
    Vanished,
    /// A lock was not granted in time: the object is unknown, with the reason.
    Locked,
}

/// Whether `message` (as [`db_message`] writes it) is an [`ObjectFault`]: SQLSTATE
/// 42P01 (undefined table), 3F000 (undefined schema), or
/// the internal "cache lookup failed" / "could not open relation with OID" an object
/// dropped under a running statement gives; 55P03 for a lock not granted.
pub(crate) fn object_fault(message: &str) -> Option<ObjectFault> {
    if message.contains("(55P03)") {
        return Some(ObjectFault::Locked);
    }
    // Not 42703 (undefined column): a check whose row test names a column that does not
    // exist is broken, and must error rather than pass in silence; a column dropped
    // mid-audit errors too, loudly, which is the safe side.
    let vanished = ["(42P01)", "(3F000)"].iter().any(|c| message.contains(c))
        || message.contains("cache lookup failed for")
        || message.contains("could not open relation with OID");
    vanished.then_some(ObjectFault::Vanished)
}

/// The relation (or schema) an "undefined" error names: `relation "X" does not exist
/// (42P01)` gives `(false, X)`, `schema "X" does not exist (3F000)` gives `(true, X)`.
fn undefined_name(message: &str) -> Option<(bool, &str)> {
    let (schema, code) = if message.contains("(42P01)") {
        ("relation \"", "\" does not exist")
    } else if message.contains("(3F000)") {
        ("schema \"", "\" does not exist")
    } else {
        return None;
    };
    let start = message.find(schema)? + schema.len();
    let len = message[start..].find(code)?;
    Some((message.contains("(3F000)"), &message[start..start + len]))
}

/// Whether an error [`object_fault`] calls [`ObjectFault::Vanished`] is really about an
/// object dropped mid-audit, asked on `client` inside the audit's read-only snapshot:
/// the relation (or schema) the error names was there when the audit began (pg_class
/// and pg_namespace read in the snapshot) and is gone now, or is another object of
/// that name (`to_regclass`, which reads the current catalog). A statement naming a
/// relation that never existed (a broken row test) is not an object that vanished:
/// its check errors. The internal "cache lookup failed" / "could not open relation
/// with OID" errors arise only from an object dropped under a running statement.
pub(crate) async fn confirmed_vanished(client: &Client, message: &str) -> bool {
    let Some((is_schema, name)) = undefined_name(message) else {
        return object_fault(message) == Some(ObjectFault::Vanished);
    };
    let sql = if is_schema {
        "select exists (select 1 from pg_namespace n where n.nspname = $1::text \
         and to_regnamespace(quote_ident(n.nspname)) is distinct from n.oid)"
    } else {
        "select exists (select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where (n.nspname || '.' || c.relname = $1::text or c.relname = $1::text) \
         and to_regclass(format('%I.%I', n.nspname, c.relname)) is distinct from c.oid)"
    };
    let name = name.to_string();
    safely(client, Locks::Keep, async {
        client
            .query_one(sql, &[&name])
            .await
            .map(|r| r.get::<_, bool>(0))
            .map_err(|e| db_message(&e))
    })
    .await
    .unwrap_or(false)
}

/// The evidence of an object whose table was locked past `lock_timeout`.
pub(crate) fn locked_evidence(object: &str, message: &str) -> String {
    let message = message
        .strip_prefix(object)
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(message);
    format!(
        "{object}: not read: another session held a lock on its table longer than lock_timeout ({message}), and the audit never waits: verify it, or audit again when the lock is released"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_faults_are_told_from_check_errors() {
        assert_eq!(
            object_fault("canceling statement due to lock timeout (55P03)"),
            Some(ObjectFault::Locked)
        );
        assert_eq!(
            object_fault("relation \"public.t\" does not exist (42P01)"),
            Some(ObjectFault::Vanished)
        );
        assert_eq!(
            object_fault("cache lookup failed for relation 16384 (XX000)"),
            Some(ObjectFault::Vanished)
        );
        assert_eq!(object_fault("division by zero (22012)"), None);
        assert_eq!(
            object_fault("public.jobs.nope: column c.nope does not exist (42703)"),
            None
        );
        assert_eq!(
            object_fault("canceling statement due to statement timeout (57014)"),
            None
        );
    }

    #[test]
    fn the_undefined_object_is_read_from_the_message() {
        assert_eq!(
            undefined_name("public.t.x: relation \"public.t\" does not exist (42P01)"),
            Some((false, "public.t"))
        );
        assert_eq!(
            undefined_name("schema \"gone\" does not exist (3F000)"),
            Some((true, "gone"))
        );
        assert_eq!(
            undefined_name("cache lookup failed for relation 1 (XX000)"),
            None
        );
    }
}
