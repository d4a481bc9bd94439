//! `pg-integrity fix`: migrations for an audit's findings, written from the `[fix]`
//! templates of the checks (SPEC §3, §7; docs/fix.md).
//!
//! - `fill`: a template filled from a finding's fields, identifiers quoted;
//! - `fields`: the `fix_*` columns of a check's failing rows, and decision counts;
//! - `plan`: findings to migrations, one table locked per transaction, steps in order;
//! - `write`: the files, named for refinery, flyway, sqlx or plain.

pub mod fields;
pub mod fill;
pub mod plan;
pub mod write;
