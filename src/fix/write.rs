//! Writing planned migrations: numbered after every migration already in the
//! directory and in the database's history, named for the runner that will apply them.

use crate::fix::plan::Planned;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// `V{n}__{name}.sql` (what `pg-integrity migrate apply --from` reads).
    Refinery,
    /// `V{n}__{name}.sql`, and `V{n}__{name}.sql.conf` with `executeInTransaction=false`
    /// for a no-transaction migration.
    Flyway,
    /// `{n}_{name}.sql`, `-- no-transaction` on the first line where needed.
    Sqlx,
    /// `{n:04}_{name}.sql`.
    Plain,
}

/// The highest version among the migration files of `dir` (`V12__x.sql`, `0012_x.sql`,
/// `20240101120000_x.sql`), or 0.
pub fn highest_version(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            if !name.ends_with(".sql") {
                return None;
            }
            let rest = name.strip_prefix(['V', 'v']).unwrap_or(&name);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
}

fn file_name(naming: Naming, version: u64, name: &str) -> String {
    match naming {
        Naming::Refinery | Naming::Flyway => format!("V{version}__{name}.sql"),
        Naming::Sqlx => format!("{version}_{name}.sql"),
        Naming::Plain => format!("{version:04}_{name}.sql"),
    }
}

/// Write `planned` into `dir` (created if needed), versions from `after + 1`; the
/// paths written, in order.
pub fn write(
    dir: &Path,
    planned: &[Planned],
    naming: Naming,
    after: u64,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = vec![];
    for (i, m) in planned.iter().enumerate() {
        let version = after + 1 + i as u64;
        let path = dir.join(file_name(naming, version, &m.name));
        let text = match naming {
            Naming::Sqlx if m.no_transaction => format!("-- no-transaction\n{}", m.sql),
            _ => m.sql.clone(),
        };
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists already", path.display()),
            ));
        }
        std::fs::write(&path, text)?;
        if naming == Naming::Flyway && m.no_transaction {
            std::fs::write(
                path.with_extension("sql.conf"),
                "executeInTransaction=false\n",
            )?;
        }
        out.push(path);
    }
    Ok(out)
}
