//! The audit's session on one connection: the read-only transaction every audit
//! statement runs in (sharing one exported snapshot), and statements run so that an
//! error leaves that transaction usable.

use crate::config::LoadedConfig;
use crate::db::db_message;
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
    client.batch_execute(&sql).await
}

/// Run `work` under a savepoint: an error rolls back to it, leaving the transaction
/// usable for the next statement.
pub(crate) async fn in_savepoint<T>(
    client: &Client,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
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

/// Run `sql` under a savepoint so that an error leaves the transaction usable.
pub(crate) async fn query_in_savepoint(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, String> {
    in_savepoint(client, async {
        client.query(sql, params).await.map_err(|e| db_message(&e))
    })
    .await
}

/// Run `sql` with text `args` under a savepoint that is always rolled back: its rows
/// are kept, the locks it took are released. A deep audit reads thousands of tables
/// in one transaction: kept, their locks (a table and each of its indexes) would
/// overflow the server's lock table (max_locks_per_transaction x max_connections).
/// `setup` runs first inside the savepoint (a `SET LOCAL` the rollback takes back).
/// The three exchanges are pipelined: one round trip for a table with no rows.
pub(crate) async fn read_and_roll_back(
    client: &Client,
    setup: &str,
    sql: &str,
    args: &[String],
) -> Result<Vec<tokio_postgres::Row>, String> {
    let typed: Vec<(
        &(dyn tokio_postgres::types::ToSql + Sync),
        tokio_postgres::types::Type,
    )> = args
        .iter()
        .map(|a| (a as _, tokio_postgres::types::Type::TEXT))
        .collect();
    let begin = format!("savepoint pgi_read; {setup}");
    let (begin, read, end) = tokio::join!(
        client.batch_execute(&begin),
        client.query_typed(sql, &typed),
        client.batch_execute("rollback to savepoint pgi_read; release savepoint pgi_read"),
    );
    begin.map_err(|e| db_message(&e))?;
    let rows = read.map_err(|e| db_message(&e))?;
    end.map_err(|e| db_message(&e))?;
    Ok(rows)
}
