//! An audit: the selected checks planned, run over one read-only snapshot shared by a
//! small pool of connections, and judged.
//!
//! - `plan`: config + catalog + server facts -> `Plan` (every parameter bound there);
//! - `execute`: opens the session's connections and runs the plan's work on them;
//! - `session`: the read-only transaction and the safe-statement helper;
//! - `steps`: the steps a data or probe check's plan SQL returns;
//! - `scan`: shared scans (the row tests of the data checks, one read per table);
//! - `probe`: probes, each in its own rolled-back transaction as the app role;
//! - `outcome`: rows -> status, findings, a check's result;
//! - `scope`: before an audit, what is in scope and how many connections are free;
//! - `gate`: score, waivers, baseline, pass/fail;
//! - `selftest`: `pg-integrity checks test`, each check's `[[test]]` cases.

pub mod execute;
pub mod gate;
pub mod outcome;
pub mod plan;
pub mod probe;
pub mod scan;
pub mod scope;
pub mod selftest;
pub mod session;
pub mod steps;
