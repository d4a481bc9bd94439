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

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(no_transaction: bool) -> Planned {
        Planned {
            name: "fk_indexes_1".into(),
            check: "schema.foreign_key_indexes".into(),
            no_transaction,
            objects: vec![],
            sql: "-- pg-integrity: no-transaction\nselect 1;\n".into(),
            todo: false,
        }
    }

    #[test]
    fn each_naming_and_numbering_after_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("V7__old.sql"), "").unwrap();
        assert_eq!(highest_version(dir.path()), 7);
        let p = write(dir.path(), &[planned(true)], Naming::Refinery, 7).unwrap();
        assert!(p[0].ends_with("V8__fk_indexes_1.sql"));
        let p = write(dir.path(), &[planned(true)], Naming::Flyway, 8).unwrap();
        assert!(p[0].ends_with("V9__fk_indexes_1.sql"));
        assert!(dir.path().join("V9__fk_indexes_1.sql.conf").exists());
        let p = write(dir.path(), &[planned(true)], Naming::Sqlx, 9).unwrap();
        assert!(p[0].ends_with("10_fk_indexes_1.sql"));
        let text = std::fs::read_to_string(&p[0]).unwrap();
        assert!(text.starts_with("-- no-transaction\n"));
        let p = write(dir.path(), &[planned(false)], Naming::Plain, 10).unwrap();
        assert!(p[0].ends_with("0011_fk_indexes_1.sql"));
        assert_eq!(highest_version(dir.path()), 11);
        assert!(
            write(dir.path(), &[planned(false)], Naming::Plain, 10).is_err(),
            "never overwrites"
        );
    }
}
