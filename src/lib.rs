//! pg-integrity: audit and remediate the integrity of multi-tenant PostgreSQL databases.
//!
//! Where things are: `cli` (arguments) → `app` (commands) → `catalog` (check files),
//! `config`, `connection`, `runner` (runs checks), `gate` (score, waivers, baseline),
//! `report/` (renders), `sandbox` (throwaway servers), `checktest` (`[[test]]` cases).

pub mod app;
pub mod catalog;
pub mod checktest;
pub mod cli;
pub mod config;
pub mod connection;
pub mod diag;
pub mod gate;
pub mod glob;
pub mod init;
pub mod migrate;
pub mod migrate_cmd;
pub mod model;
pub mod params;
pub mod partition;
pub mod phased;
pub mod preflight;
pub mod report;
pub mod runner;
pub mod sandbox;
pub mod scan;
pub mod scope;
pub mod sqlsplit;
