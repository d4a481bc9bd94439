//! `pg-integrity migrate`: the remediation migrations of `migrations/` (compiled in),
//! applied through refinery's async tokio-postgres runner, plus what refinery lacks:
//! a session advisory lock, `lock_timeout` with retries, preflight data checks, plan
//! and dry-run, divergence reporting, and migrations that must run outside a
//! transaction (first line `-- pg-integrity: no-transaction`).

pub mod apply;
pub mod files;
pub mod lint;
pub mod locks;
pub mod parse;
pub mod plan;
pub mod preflight;
pub mod status;
