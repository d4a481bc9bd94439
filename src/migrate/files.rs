//! The migration files: the embedded `migrations/` (or a directory), parsed into
//! versions, names and checksums, and the errors a migration command reports.

use include_dir::{include_dir, Dir};
use refinery::Migration;

static EMBEDDED: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/migrations");

pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Where the committed `BEGIN; … COMMIT;` steps of a migration not yet recorded in the
/// history are kept (rows removed when the migration is recorded).
pub const STEPS_TABLE: &str = "pg_integrity_migration_steps";

const NO_TRANSACTION_MARK: &str = "-- pg-integrity: no-transaction";

/// One embedded migration.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub version: u32,
    pub name: String,
    /// Normalised text: no BOM, LF line endings (so a checkout on another OS is not divergent).
    pub sql: String,
    pub no_transaction: bool,
    pub checksum: u64,
    pub(crate) refinery: Migration,
}

impl MigrationFile {
    pub fn label(&self) -> String {
        format!("V{}__{}", self.version, self.name)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum MigrateError {
    #[error("invalid migration file {0}: {1}")]
    #[diagnostic(
        code(pg_integrity::migrate::invalid),
        help("migrations are named V{{n}}__{{name}}.sql")
    )]
    Invalid(String, String),
    #[error("another migrator holds the lock (waited {0} s)")]
    #[diagnostic(
        code(pg_integrity::migrate::locked),
        help("another `pg-integrity migrate apply` is running on this database; retry when it finishes, or raise --lock-wait")
    )]
    Locked(u64),
    #[error("the migration history and the embedded migrations disagree: {0}")]
    #[diagnostic(
        code(pg_integrity::migrate::divergent),
        help("`pg-integrity migrate status` lists them; a changed migration must become a new migration")
    )]
    Divergent(String),
    #[error("preflight refused {migration}:\n{details}")]
    #[diagnostic(
        code(pg_integrity::migrate::preflight),
        help("nothing was changed: act on what is listed above, then apply again; `pg-integrity audit --deep` lists data problems")
    )]
    Preflight { migration: String, details: String },
    #[error("{migration} failed: {message}")]
    #[diagnostic(
        code(pg_integrity::migrate::failed),
        help("the failed migration was rolled back; the database is as it was before it")
    )]
    Failed { migration: String, message: String },
    #[error("the built-in migrations are the ticket-service fixture's, and this database is not that schema (no {0})")]
    #[diagnostic(
        code(pg_integrity::migrate::not_the_fixture),
        help("write migrations for this database with `pg-integrity fix --out DIR`, then apply them with `pg-integrity migrate apply --from DIR`")
    )]
    NotTheFixture(String),
    #[error("database error: {0}")]
    #[diagnostic(code(pg_integrity::migrate::database))]
    Database(String),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Database(crate::db::db_message(&e))
    }
}

pub(crate) fn normalise(text: &str) -> String {
    text.trim_start_matches('\u{feff}').replace("\r\n", "\n")
}

/// The embedded migrations in version order.
pub fn embedded() -> Result<Vec<MigrationFile>, MigrateError> {
    let files = EMBEDDED
        .files()
        .map(|f| {
            (
                f.path().to_path_buf(),
                f.contents_utf8().map(str::to_string),
            )
        })
        .collect();
    parse_files(files)
}

/// The migrations of `dir` when given, else the embedded ones.
pub fn load(dir: Option<&std::path::Path>) -> Result<Vec<MigrationFile>, MigrateError> {
    let Some(dir) = dir else { return embedded() };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| MigrateError::Invalid(dir.display().to_string(), e.to_string()))?;
    let files = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).ok();
            (p, text)
        })
        .collect();
    parse_files(files)
}

fn parse_files(
    files: Vec<(std::path::PathBuf, Option<String>)>,
) -> Result<Vec<MigrationFile>, MigrateError> {
    let mut out = vec![];
    for (path, text) in files {
        let Some(fname) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let Some(stem) = fname.strip_suffix(".sql") else {
            continue;
        };
        let text = text.ok_or_else(|| MigrateError::Invalid(fname.into(), "not UTF-8".into()))?;
        let sql = normalise(&text);
        let refinery = Migration::unapplied(stem, &sql)
            .map_err(|e| MigrateError::Invalid(fname.into(), e.to_string()))?;
        out.push(MigrationFile {
            version: refinery.version(),
            name: refinery.name().to_string(),
            no_transaction: sql
                .lines()
                .next()
                .is_some_and(|l| l.trim() == NO_TRANSACTION_MARK),
            checksum: refinery.checksum(),
            sql,
            refinery,
        });
    }
    out.sort_by_key(|m| m.version);
    for w in out.windows(2) {
        if w[0].version == w[1].version {
            return Err(MigrateError::Invalid(
                w[1].label(),
                "repeated version".into(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_parse_in_order() {
        let files = embedded().unwrap();
        assert!(files.windows(2).all(|w| w[0].version < w[1].version));
    }

    #[test]
    fn crlf_and_bom_do_not_change_the_checksum() {
        let a = Migration::unapplied("V1__x", &normalise("select 1;\nselect 2;\n")).unwrap();
        let b = Migration::unapplied("V1__x", &normalise("\u{feff}select 1;\r\nselect 2;\r\n"))
            .unwrap();
        assert_eq!(a.checksum(), b.checksum());
    }
}
