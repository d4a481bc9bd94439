//! pg-integrity: audit and remediate the integrity of multi-tenant PostgreSQL databases.
//!
//! Dependencies run one way, downward (see docs/architecture.md and the test
//! `tests/architecture.rs`, which fails on any import circle):
//!
//! - `cli`: the commands (arguments, exit codes, targets);
//! - `init`: proposes a `pg-integrity.toml` from what a database shows;
//! - `audit`: plans and runs checks over one snapshot, judges them (`gate`), and
//!   `checks test`; `report`: renders an audit's outcome (never the database);
//!   `migrate`: the remediation migrations; `fix`: migrations written for an audit's
//!   findings from the checks' `[fix]` templates;
//! - `checks`: the check catalog (`checks/*.toml`, `lib/*.sql`) and its parameters;
//! - `config` (`pg-integrity.toml`), `db` (connections, throwaway servers),
//!   `model` (severities, kinds, statuses), `diag` (problems with their source).

pub mod audit;
pub mod checks;
pub mod cli;
pub mod config;
pub mod db;
pub mod diag;
pub mod fix;
pub mod init;
pub mod migrate;
pub mod model;
pub mod report;
