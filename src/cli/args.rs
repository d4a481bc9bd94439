//! Command-line arguments. Every flag's doc comment is its help.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "pg-integrity",
    version,
    about = "Audit and remediate the integrity of multi-tenant PostgreSQL databases",
    long_about = "Audit and remediate the integrity of multi-tenant PostgreSQL databases.\n\n\
        Runs declarative SQL checks (foreign keys, tenant-scoped uniques, row level security,\n\
        timeouts, queue claims, idempotency keys, ...) against a live database or a throwaway\n\
        server built from schema files, reports them, and gates CI with exit codes:\n\
        0 gate passed, 1 gate failed, 2 bad input, 3 database unreachable or refused us."
)]
pub struct Cli {
    /// When to colour output: auto (a terminal, unless NO_COLOR is set), always, never
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Audit a database and report; the exit code is the CI gate
    // The examples go in after_help, which clap prints as written: in a doc comment
    // its paragraph wrapping would run them into one line.
    #[command(after_help = "Examples:\n  \
        pg-integrity audit --database-url postgres://app@db/prod\n  \
        pg-integrity audit --schema schema.sql --format json --fail-on medium\n  \
        pg-integrity audit --deep --sample 5 --probe --jobs 4\n\n\
        What it does to the database:\n  \
        read     the catalog, statistics views, pg_stat_statements; --deep: every row of the\n           \
        tables in scope; --probe: each tenant table's lowest tenant values (membership model:\n           \
        and a member from the membership table), then rows as each app role sees them, as a\n           \
        member under the membership model (its identity in transaction-local settings, or\n           \
        its own role where policies name the user by current_user)\n  \
        written  nothing, except --probe write: rows updated as an app role (or that member's\n           \
        role), always rolled back\n  \
        locked   catalog checks take no table lock; --deep holds a table's ACCESS SHARE lock\n           \
        for one read (only DDL conflicts); --probe holds each tenant table's ACCESS SHARE\n           \
        lock until the audit ends (its lowest tenant values are read in the audit's\n           \
        transaction); --probe write takes row locks with SKIP LOCKED;\n           \
        never waits longer than lock_timeout (1 s), no statement runs past statement_timeout\n  \
        fired    --probe write fires row triggers: their effects outside the transaction, and\n           \
        the sequences they advance, survive the rollback\n\
        A server, or one of the audit's connections, that stops answering ends the audit with\n\
        exit 3 after statement_timeout + 10 s.")]
    Audit(Box<AuditArgs>),
    /// List, show, validate and test check definitions
    #[command(subcommand)]
    Checks(ChecksCommand),
    /// Inspect and apply the remediation migrations (compiled in), safely on a live database
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Audit, then write migrations for every finding with a safe mechanical fix (the
    /// checks' [fix] templates) and list the findings left to a person, with why
    #[command(after_help = "Examples:\n  \
        pg-integrity fix --database-url postgres://admin@db/app --out db/fixes\n  \
        pg-integrity fix --schema schema.sql --only schema.foreign_key_indexes --naming sqlx\n  \
        pg-integrity migrate apply --database-url postgres://admin@db/app --from db/fixes")]
    Fix(Box<FixArgs>),
    /// Throwaway server with the ticket-service fixture: audit, migrate, audit again, compare
    Demo,
    /// Inspect a database and write a commented pg-integrity.toml: the tenant column and
    /// table, the tenancy model, app and service roles, the schemas in scope, each with why
    Init(InitArgs),
    /// Print a shell completion script: `pg-integrity completions bash > /etc/bash_completion.d/pg-integrity`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `pg-integrity man > pg-integrity.1; man ./pg-integrity.1`
    Man,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Where to write the configuration (`-`: standard output)
    #[arg(
        long,
        short = 'o',
        default_value = "pg-integrity.toml",
        value_name = "FILE"
    )]
    pub output: PathBuf,
    /// Overwrite the file if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Applied, pending, divergent (name or checksum changed) and missing migrations. Never writes
    Status {
        #[command(flatten)]
        target: TargetArgs,
        /// Output format: table or json
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        #[command(flatten)]
        source: MigrationSource,
    },
    /// Pending migrations with their SQL, each statement's lock, scan or rewrite and table
    /// size, and every preflight's verdict (exit 1 when one would refuse). Changes nothing
    Plan {
        #[command(flatten)]
        target: TargetArgs,
        /// Output format: table (the SQL with a comment per statement) or json (a stable
        /// contract: docs/plan-format.md)
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Stop at this version
        #[arg(long, value_name = "VERSION")]
        target_version: Option<u32>,
        #[command(flatten)]
        source: MigrationSource,
    },
    /// Apply pending migrations: advisory lock, preflight data checks, lock_timeout with
    /// retries, one transaction per migration; then audit again and show the score change
    ///
    /// Example: pg-integrity migrate apply --database-url postgres://admin@db/tickets
    Apply(Box<ApplyArgs>),
    /// Exit 1 when the applied history and the embedded migrations disagree
    Verify {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        source: MigrationSource,
    },
}

#[derive(Debug, Args, Clone)]
pub struct FixArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Fix only the findings of these checks (comma-separated ids)
    #[arg(long, value_delimiter = ',', value_name = "ID,..")]
    pub only: Vec<String>,
    /// Directory the migrations are written to (created if missing); they are numbered
    /// after the migrations already there and in the database's history
    #[arg(long, default_value = "pg-integrity-fixes", value_name = "DIR")]
    pub out: PathBuf,
    /// File names for the runner that applies them: refinery and flyway V<n>__name.sql
    /// (what `migrate apply --from` reads), sqlx <n>_name.sql, plain NNNN_name.sql
    #[arg(long, value_enum, default_value_t = FixNaming::Refinery)]
    pub naming: FixNaming,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FixNaming {
    Refinery,
    Flyway,
    Sqlx,
    Plain,
}

/// Where migrations come from.
#[derive(Debug, Args, Clone, Default)]
pub struct MigrationSource {
    /// Use the V<n>__name.sql files of this directory instead of the built-in remediation migrations
    #[arg(long = "from", value_name = "DIR")]
    pub from: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub source: MigrationSource,
    /// Apply up to and including this version
    #[arg(long = "target", value_name = "VERSION")]
    pub target_version: Option<u32>,
    /// Show what would be applied, with its SQL, and change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for another migrator's advisory lock before giving up
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub lock_wait: u64,
    /// How long each transaction of a migration may wait for its table locks, in
    /// milliseconds, in total: one that locks several tables in a mode others queue behind
    /// (SHARE or stronger) waits for each at most its share, since readers and writers
    /// queue behind it meanwhile
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub lock_timeout: u64,
    /// Retries (with backoff) when a lock is not granted in time (SQLSTATE 55P03)
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Do not audit before and after
    #[arg(long)]
    pub no_audit: bool,
}

/// Which database to work on: a connection, or a throwaway server built from files.
#[derive(Debug, Args, Clone, Default)]
pub struct TargetArgs {
    /// Connection string, URL (postgres://user@host:5432/db?sslmode=require) or
    /// key=value (host=db dbname=app). Without it, DATABASE_URL, then the libpq
    /// variables PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE and
    /// ~/.pgpass are used, as psql does
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "schema"
    )]
    pub database_url: Option<String>,

    /// Start a throwaway PostgreSQL from the local server binaries, load these SQL
    /// files with psql (in order), work there, then remove it. Repeatable. psql runs
    /// them as you, as a superuser of a server started as you: load only files you
    /// trust. A file that would run a program (\!, \e, \o |, \g |, \w |, \copy ...
    /// program, a `backquoted` command, COPY ... PROGRAM) is refused unless --allow-shell
    #[arg(long, value_name = "FILE.sql", num_args = 1..)]
    pub schema: Vec<PathBuf>,

    /// With --schema: then apply the V<n>__name.sql files of this directory in version order
    #[arg(long, value_name = "DIR", requires = "schema")]
    pub migrations: Option<PathBuf>,

    /// With --schema: what a statement that fails to load does. `stop` (the default):
    /// exit 2 naming the file and line. `continue`: it is a warning (e.g. CREATE EXTENSION
    /// of an extension this machine lacks) and the rest of the files load
    #[arg(long, value_enum, value_name = "stop|continue", requires = "schema")]
    pub schema_errors: Option<SchemaErrors>,

    /// With --schema: let the files run programs on this machine through psql
    /// meta-commands (\!, \o |, \copy ... program, ...) or COPY ... PROGRAM
    #[arg(long, requires = "schema")]
    pub allow_shell: bool,
}

/// `--schema-errors stop|continue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaErrors {
    /// A statement that fails to load ends the command (exit 2).
    Stop,
    /// A statement that fails to load is a warning; the rest loads.
    Continue,
}

#[derive(Debug, Args, Clone)]
pub struct CatalogArgs {
    /// Add or override checks (by id) from this directory of *.toml files. Repeatable
    #[arg(long = "checks", value_name = "DIR")]
    pub checks_dirs: Vec<PathBuf>,

    /// Configuration file (default: PG_INTEGRITY_CONFIG, else the nearest
    /// pg-integrity.toml in the working directory or a parent, else built-in defaults)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct AuditArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub catalog: CatalogArgs,

    /// Run only these checks (comma-separated ids)
    #[arg(long, value_delimiter = ',', value_name = "ID,..")]
    pub only: Vec<String>,

    /// Do not run these checks (comma-separated ids)
    #[arg(long, value_delimiter = ',', value_name = "ID,..")]
    pub skip: Vec<String>,

    /// Also run the data checks (orphans, NULLs, duplicates...): reads every row of the
    /// tables in scope, each table under its ACCESS SHARE lock for the length of one read
    #[arg(long)]
    pub deep: bool,

    /// With --deep: read only this percentage of large tables (TABLESAMPLE SYSTEM), e.g. --sample 10
    #[arg(long, value_name = "PCT", requires = "deep")]
    pub sample: Option<f64>,

    /// Also run the isolation probes as each app role (under the membership model, as a
    /// member user: its identity set transaction-locally, or its own role where policies
    /// name the user by current_user). `--probe` (or `--probe read`): the
    /// read-only probes (cross-tenant read, unset context). `--probe write` adds the write
    /// probe: it updates rows as the app role to see whether they can move to another
    /// tenant, taking row locks (FOR UPDATE SKIP LOCKED, so it never waits) and firing
    /// row triggers, always rolled back (a trigger's effects outside the transaction, and
    /// sequences it advances, are not)
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "read", value_name = "MODE")]
    pub probe: Option<ProbeMode>,

    /// Output format on stdout (default: table on a terminal, json otherwise)
    #[arg(long, value_enum)]
    pub format: Option<crate::report::Format>,

    /// Also write a report to a file, e.g. --output sarif:results.sarif. Repeatable
    #[arg(long, value_name = "FORMAT:PATH")]
    pub output: Vec<String>,

    /// Lowest severity whose findings fail the gate: critical, high, medium, low or never
    #[arg(long, default_value = "high", value_name = "SEVERITY")]
    pub fail_on: String,

    /// Findings listed per check in the table and markdown formats, new ones first
    /// (a number, or `all`); the rest are counted as "and N more"
    #[arg(long, value_name = "N|all", default_value = "3", value_parser = parse_findings)]
    pub findings: FindingsShown,

    /// Fail the gate when the score (percent of applicable checks passing) is below this
    /// (0 to 100)
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub min_score: Option<f64>,

    /// Only findings not in this baseline file fail the gate
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,

    /// Write the current findings as a baseline file
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,

    /// Keep this audit's JSON report in DIR (created if missing), and show the trend
    /// over the JSON reports kept there (score, findings per severity and section) in
    /// the HTML report
    #[arg(long, value_name = "DIR")]
    pub history: Option<PathBuf>,

    /// Connections running checks concurrently
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,

    /// Run each catalog and runtime check as its own statement instead of one batched
    /// statement that reads the catalog once (slower; gives per-check timings)
    #[arg(long)]
    pub no_batch: bool,

    /// Do not emit GitHub annotations (workflow commands, on stderr) even when
    /// GITHUB_ACTIONS=true
    #[arg(long)]
    pub no_annotations: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChecksCommand {
    /// List every check: id, severity, kind, title (`--format markdown`: the reference
    /// page, docs/checks.md; `--format json`: every field, for tools)
    List(ListArgs),
    /// Show one check: its metadata, parameters, SQL and test cases
    Show {
        /// Check id, e.g. schema.foreign_keys
        id: String,
        /// Print the statement sent to the server (building blocks included), e.g. for EXPLAIN
        #[arg(long)]
        composed: bool,
        #[command(flatten)]
        catalog: CatalogArgs,
    },
    /// Validate check files and report every problem in every file (exit 2 if any)
    Validate {
        /// Directories of check files (default: the built-in checks)
        dirs: Vec<PathBuf>,
    },
    /// Run the [[test]] cases of checks, each in a fresh database, and report failures
    ///
    /// Without --database-url (or PG_INTEGRITY_TEST_URL) a throwaway server is started
    /// (DATABASE_URL is never read here: test databases are not made on an application's
    /// server by accident). The connecting role must be able to create databases and roles.
    Test {
        /// Directories of check files (default: the built-in checks)
        dirs: Vec<PathBuf>,
        /// Test only these checks (comma-separated ids)
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Server to create test databases on (a maintenance database URL)
        #[arg(
            long,
            env = "PG_INTEGRITY_TEST_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        database_url: Option<String>,
        /// Cases run concurrently (cases that create roles always run alone)
        #[arg(long, short = 'j', default_value_t = 4)]
        jobs: usize,
        /// Start the throwaway server with these libraries in shared_preload_libraries
        /// (e.g. pg_stat_statements), so that cases needing them run, and every other
        /// case is proven not to depend on them (not with --database-url)
        #[arg(long, value_delimiter = ',', conflicts_with = "database_url")]
        preload: Vec<String>,
        /// Mutation testing (scripts/mutate.py): each directory in DIR holds a variant of
        /// the one check given by --only; its cases run against every variant, each
        /// case set up once, and one JSON line per variant says which case killed it
        #[arg(long, value_name = "DIR", requires = "only")]
        variants: Option<PathBuf>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Output format: table, markdown (e.g. `> docs/checks.md`) or json
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Markdown,
    Json,
}

/// A percentage from 0 to 100 (`NaN` and out-of-range values would make the gate
/// meaningless: NaN compares false, so it would always pass).
fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() && (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not a percentage from 0 to 100"))
    }
}

#[cfg(test)]
mod percent_tests {
    #[test]
    fn min_score_is_a_percentage() {
        assert_eq!(super::parse_percent("80"), Ok(80.0));
        assert_eq!(super::parse_percent("0"), Ok(0.0));
        assert_eq!(super::parse_percent("100"), Ok(100.0));
        for bad in ["NaN", "nan", "150", "-1", "inf", "x"] {
            assert!(super::parse_percent(bad).is_err(), "{bad}");
        }
    }
}

/// `--probe [read|write]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeMode {
    /// The read-only probes.
    Read,
    /// The read-only probes and the write probe (rolled back).
    Write,
}

/// `--findings N|all`: `None` lists every finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FindingsShown(pub Option<usize>);

fn parse_findings(s: &str) -> Result<FindingsShown, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(FindingsShown(None));
    }
    s.parse::<usize>()
        .map(|n| FindingsShown(Some(n)))
        .map_err(|_| format!("`{s}` is neither a number nor `all`"))
}
