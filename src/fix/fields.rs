//! What the fix reads from the database besides the audit: the `fix_*` columns a
//! check's query returns for its findings (the audit keeps object, ok and evidence),
//! and the counts of a `[fix] decision`. Both in read-only transactions.

use crate::checks::catalog::{Catalog, Check};
use crate::checks::params::{self, ParamValue};
use crate::config::LoadedConfig;
use crate::db::db_message;
use crate::fix::fill::{Fields, LIST_SEPARATOR};
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// The check's query, composed as the audit composes it, with every `fix_*` column
/// of each row that is not ok, by object.
pub async fn fields(
    client: &Client,
    catalog: &Catalog,
    check: &Check,
    config: &LoadedConfig,
) -> Result<BTreeMap<String, Fields>, String> {
    let composed = catalog.compose(check);
    let values: Vec<ParamValue> = composed
        .params
        .iter()
        .map(|p| params::value(&config.config, p).unwrap_or(ParamValue::Text(String::new())))
        .collect();
    let args: Vec<_> = values.iter().map(ParamValue::as_sql).collect();
    client
        .batch_execute("begin transaction isolation level repeatable read read only")
        .await
        .map_err(|e| db_message(&e))?;
    let rows = client.query(&composed.sql, &args).await;
    let _ = client.batch_execute("rollback").await;
    let rows = rows.map_err(|e| db_message(&e))?;
    let mut out = BTreeMap::new();
    for r in &rows {
        let ok: Option<bool> = r.try_get(1).map_err(|e| format!("column ok: {e}"))?;
        if ok != Some(false) {
            continue;
        }
        let object: Option<String> = r.try_get(0).map_err(|e| format!("column object: {e}"))?;
        let mut fields = Fields::new();
        for (i, c) in r.columns().iter().enumerate() {
            let Some(name) = c.name().strip_prefix("fix_") else {
                continue;
            };
            let value = match r.try_get::<_, Option<String>>(i) {
                Ok(v) => v,
                Err(_) => match r.try_get::<_, Option<Vec<String>>>(i) {
                    Ok(list) => list.map(|l| l.join(&LIST_SEPARATOR.to_string())),
                    Err(_) => r
                        .try_get::<_, Option<bool>>(i)
                        .map_err(|e| format!("column {} (text, text[] or boolean): {e}", c.name()))?
                        .map(|b| b.to_string()),
                },
            };
            if let Some(v) = value {
                fields.insert(name.to_string(), v);
            }
        }
        out.insert(object.unwrap_or_default(), fields);
    }
    Ok(out)
}

/// Run a decision's count query (read only, bounded in time): its number, or why it
/// could not be counted (which leaves the decision to a person too).
pub async fn count(client: &Client, sql: &str) -> Result<i64, String> {
    client
        .batch_execute(
            "begin transaction read only; set local statement_timeout = '30s'; set local lock_timeout = '1s'",
        )
        .await
        .map_err(|e| db_message(&e))?;
    let row = client.query_one(sql, &[]).await;
    let _ = client.batch_execute("rollback").await;
    let row = row.map_err(|e| db_message(&e))?;
    row.try_get::<_, i64>(0)
        .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
        .map_err(|e| format!("the count is not a number: {e}"))
}
