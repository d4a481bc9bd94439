//! Throwaway PostgreSQL servers: `--schema FILE...` and the test suite.
//!
//! initdb into a temporary directory, start on a private Unix socket (no TCP port,
//! so nothing can collide), load files with the server's own `psql -v ON_ERROR_STOP=1`
//! (so every psql meta-command such as `\i`, `\ir`, `\set` and `\copy` works), run,
//! stop and delete — on success, on error, and on Ctrl-C (the guard's `Drop`). When we
//! run as root (CI does), initdb, pg_ctl and the server run as the unprivileged
//! `postgres` OS user, since they refuse to run as root.
//!
//! Not built on the `pgtemp` crate: it runs initdb as the current user (so it fails
//! as root), listens on TCP, and has no way to load files through psql.

use crate::db::connection::ConnectOptions;
use miette::Diagnostic;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const SUPERUSER: &str = "postgres";
const PORT: u16 = 5432;

#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum SandboxError {
    #[error("no PostgreSQL server binaries found (initdb, pg_ctl, postgres)")]
    #[diagnostic(
        code(pg_integrity::sandbox::no_binaries),
        help("install the server package (e.g. `apt-get install postgresql`), put its bin directory on PATH, or set PG_INTEGRITY_PG_BIN")
    )]
    NoBinaries,
    #[error(
        "running as root, but there is no unprivileged `postgres` OS user to run the server as"
    )]
    #[diagnostic(
        code(pg_integrity::sandbox::no_user),
        help("create one (`useradd --system postgres`) or run pg-integrity as a normal user")
    )]
    NoUser,
    #[error("{step} failed: {message}")]
    #[diagnostic(code(pg_integrity::sandbox::server))]
    Server { step: String, message: String },
    #[error("{file}:{line}: {message}")]
    #[diagnostic(
        code(pg_integrity::sandbox::load),
        help("fix the SQL at that line (the files are loaded with psql -v ON_ERROR_STOP=1), or load past it with --schema-errors continue")
    )]
    Load {
        file: String,
        line: usize,
        message: String,
        /// The file, when it can be read: the statement is shown in it (once, under
        /// the message, not as a second error).
        #[source_code]
        src: Option<std::sync::Arc<miette::NamedSource<std::sync::Arc<str>>>>,
        #[label("this statement")]
        span: Option<miette::SourceSpan>,
    },
}

impl SandboxError {
    /// A file that fails to load is bad input (exit 2); the rest are server trouble.
    pub fn is_input_error(&self) -> bool {
        matches!(self, SandboxError::Load { .. })
    }
}

/// A running throwaway server; stopped and removed when dropped.
pub struct Sandbox {
    dir: Option<tempfile::TempDir>,
    bindir: PathBuf,
    run_as: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
    running: bool,
    pub server_version_num: i32,
}

/// A client program (psql, pg_dump) beside the server binaries, else from PATH:
/// relocatable server builds (e.g. from npm) ship without the clients.
pub fn client_program(bindir: &Path, name: &str) -> PathBuf {
    let local = bindir.join(name);
    if local.is_file() {
        local
    } else {
        PathBuf::from(name)
    }
}

/// Where the server binaries are: PG_INTEGRITY_PG_BIN, PATH, `pg_config --bindir`,
/// then the newest /usr/lib/postgresql/*/bin.
pub fn find_bindir() -> Result<PathBuf, SandboxError> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("PG_INTEGRITY_PG_BIN").map(PathBuf::from) {
        return if has(&d) {
            Ok(d)
        } else {
            Err(SandboxError::NoBinaries)
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(d) = std::env::split_paths(&path).find(|d| has(d)) {
            // Follow a symlinked initdb (e.g. /usr/local/bin/initdb) to the real
            // bin directory, where psql and pg_dump of the same version live.
            let real = std::fs::canonicalize(d.join("initdb"))
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
                .filter(|r| has(r));
            return Ok(real.unwrap_or(d));
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&d) {
            return Ok(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let d = e.path().join("bin");
            has(&d).then_some((v, d))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d).ok_or(SandboxError::NoBinaries)
}

fn server_err(step: &str, out: &Output) -> SandboxError {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    SandboxError::Server {
        step: step.into(),
        message: text.trim().lines().last().unwrap_or("").to_string(),
    }
}

impl Sandbox {
    /// initdb and start a server; `settings` are extra postgresql.conf lines.
    pub fn start(settings: &[&str]) -> Result<Self, SandboxError> {
        Self::start_with(settings, None)
    }

    /// Like `start`, with `hba` replacing pg_hba.conf (the superuser keeps trust
    /// on the socket, which the sandbox itself uses).
    pub fn start_with(settings: &[&str], hba: Option<&str>) -> Result<Self, SandboxError> {
        let bindir = find_bindir()?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name(SUPERUSER)
                .ok()
                .flatten()
                .ok_or(SandboxError::NoUser)?;
            Some((user.uid, user.gid))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("pg-integrity-")
            .tempdir()
            .map_err(|e| SandboxError::Server {
                step: "creating a temporary directory".into(),
                message: e.to_string(),
            })?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(dir.path(), Some(uid), Some(gid)).map_err(|e| {
                SandboxError::Server {
                    step: "handing the temporary directory to the postgres user".into(),
                    message: e.to_string(),
                }
            })?;
        }
        let mut sb = Sandbox {
            dir: Some(dir),
            bindir,
            run_as,
            running: false,
            server_version_num: 0,
        };
        let data = sb.data_dir();
        let out = sb
            .server_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|e| SandboxError::Server {
                step: "initdb".into(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(server_err("initdb", &out));
        }
        let mut conf = format!(
            "\n# pg-integrity throwaway server\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {PORT}\nfsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_connections = 50\n",
            sb.socket_dir().display()
        );
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let conf_path = data.join("postgresql.conf");
        let mut existing = std::fs::read_to_string(&conf_path).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&conf_path, existing).map_err(|e| SandboxError::Server {
            step: "writing postgresql.conf".into(),
            message: e.to_string(),
        })?;
        if let Some(hba) = hba {
            let text = format!("local all {SUPERUSER} trust\n{hba}\n");
            std::fs::write(data.join("pg_hba.conf"), text).map_err(|e| SandboxError::Server {
                step: "writing pg_hba.conf".into(),
                message: e.to_string(),
            })?;
        }
        let log = sb.dir_path().join("server.log");
        let out = sb
            .server_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| SandboxError::Server {
                step: "pg_ctl start".into(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(SandboxError::Server {
                step: "starting the server".into(),
                message: tail.lines().rev().take(3).collect::<Vec<_>>().join(" / "),
            });
        }
        sb.running = true;
        sb.spawn_watchdog();
        let v = sb.psql_capture("postgres", "show server_version_num")?;
        sb.server_version_num = v.trim().parse().unwrap_or(0);
        Ok(sb)
    }

    /// A detached shell that removes the server if this process dies without
    /// running `Drop` (SIGKILL, or a test binary exiting with its statics alive).
    fn spawn_watchdog(&self) {
        let dir = self.dir_path().display().to_string();
        let script = format!(
            "trap '' INT TERM HUP; while kill -0 {pid} 2>/dev/null && [ -d '{dir}' ]; do sleep 1; done; \
             [ -f '{dir}/data/postmaster.pid' ] && kill -QUIT \"$(head -n 1 '{dir}/data/postmaster.pid')\" 2>/dev/null; \
             sleep 1; rm -rf '{dir}'",
            pid = std::process::id()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
    }

    fn dir_path(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/nonexistent"))
    }
    fn data_dir(&self) -> PathBuf {
        self.dir_path().join("data")
    }
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.dir_path().to_path_buf()
    }

    fn server_command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid.as_raw()).gid(gid.as_raw());
            c.env("HOME", self.dir_path());
        }
        c.env_remove("PGDATA");
        // Relocatable builds (e.g. from npm) keep their libraries beside bin/.
        let lib = self.bindir.join("../lib");
        if lib.join("libpq.so.5").exists() {
            let mut paths = vec![lib];
            if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
                paths.extend(std::env::split_paths(&old));
            }
            if let Ok(joined) = std::env::join_paths(paths) {
                c.env("LD_LIBRARY_PATH", joined);
            }
        }
        c
    }

    fn psql(&self, dbname: &str) -> Command {
        let mut c = Command::new(client_program(&self.bindir, "psql"));
        c.arg("-X")
            .arg("-q")
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &PORT.to_string(), "-U", SUPERUSER, "-d", dbname])
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .env("PGOPTIONS", "-c client_min_messages=warning")
            .stdin(Stdio::null());
        c
    }

    fn psql_capture(&self, dbname: &str, sql: &str) -> Result<String, SandboxError> {
        let out = self
            .psql(dbname)
            .args(["-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| SandboxError::Server {
                step: "psql".into(),
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(server_err("psql", &out));
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Connection options for `dbname` over the private socket.
    pub fn options(&self, dbname: &str) -> ConnectOptions {
        ConnectOptions::from_socket(&self.socket_dir(), PORT, SUPERUSER, dbname)
    }

    pub fn create_database(&self, name: &str) -> Result<(), SandboxError> {
        // `name` is ours (never user input), but quote it anyway.
        let sql = format!("create database \"{}\"", name.replace('"', "\"\""));
        self.psql_capture("postgres", &sql).map(|_| ())
    }

    /// Load SQL files into `dbname` in order, as `psql -v ON_ERROR_STOP=1 -f` would,
    /// from the file's directory so that `\i` finds its neighbours.
    pub fn load_files(&self, dbname: &str, files: &[PathBuf]) -> Result<(), SandboxError> {
        for file in files {
            let (abs, out) = self.psql_file(dbname, file, true)?;
            if !out.status.success() {
                return Err(load_error(
                    file,
                    &abs,
                    &String::from_utf8_lossy(&out.stderr),
                ));
            }
        }
        Ok(())
    }

    /// `psql -v ON_ERROR_STOP=1|0 -f FILE` into `dbname`, from the file's directory so
    /// that `\i` finds its neighbours: the file's absolute path and psql's output.
    fn psql_file(
        &self,
        dbname: &str,
        file: &Path,
        stop_on_error: bool,
    ) -> Result<(PathBuf, std::process::Output), SandboxError> {
        let abs = std::fs::canonicalize(file).map_err(|e| SandboxError::Load {
            file: file.display().to_string(),
            line: 0,
            message: format!("cannot read: {e}"),
            src: None,
            span: None,
        })?;
        let mut cmd = self.psql(dbname);
        let stop = if stop_on_error {
            "ON_ERROR_STOP=1"
        } else {
            "ON_ERROR_STOP=0"
        };
        cmd.args(["-v", stop, "-f"]).arg(&abs);
        if let Some(parent) = abs.parent() {
            cmd.current_dir(parent);
        }
        let out = cmd.output().map_err(|e| SandboxError::Server {
            step: "running psql".into(),
            message: e.to_string(),
        })?;
        Ok((abs, out))
    }

    /// Load `files` as [`Sandbox::load_files`] does, but past errors (`--schema-errors
    /// continue`): psql runs each file to its end, and every statement the server
    /// rejected comes back as one line, `file:line: message`.
    pub fn load_files_continuing(
        &self,
        dbname: &str,
        files: &[PathBuf],
    ) -> Result<Vec<String>, SandboxError> {
        let mut rejected = vec![];
        for file in files {
            let (abs, out) = self.psql_file(dbname, file, false)?;
            let abs_s = abs.display().to_string();
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                let Some(rest) = line.strip_prefix("psql:") else {
                    continue;
                };
                let Some(idx) = rest.find(": ERROR:").or_else(|| rest.find(": FATAL:")) else {
                    continue;
                };
                let loc = rest[..idx].replacen(&abs_s, &file.display().to_string(), 1);
                let message = rest[idx + 2..]
                    .split_once(':')
                    .map_or("", |(_, m)| m)
                    .trim();
                rejected.push(format!("{loc}: {message}"));
            }
        }
        Ok(rejected)
    }

    /// Stop the server (fast) and remove its directory.
    pub fn stop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let _ = self
                .server_command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.running = false;
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Turn psql's "psql:FILE:LINE: ERROR:  message" into file, line and message.
fn load_error(shown: &Path, abs: &Path, stderr: &str) -> SandboxError {
    let abs_s = abs.display().to_string();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("psql:") else {
            continue;
        };
        // The error may come from a file included with \i: take whatever file psql names.
        let Some(idx) = rest.find(": ERROR:").or_else(|| rest.find(": FATAL:")) else {
            continue;
        };
        let loc = &rest[..idx];
        let message = rest[idx + 2..]
            .split_once(':')
            .map_or("", |(_, m)| m)
            .trim()
            .to_string();
        let (file, lineno) = match loc.rsplit_once(':') {
            Some((f, l)) => (f.to_string(), l.parse::<usize>().unwrap_or(0)),
            None => (loc.to_string(), 0),
        };
        let display = if file == abs_s {
            shown.display().to_string()
        } else {
            file.clone()
        };
        // The statement in its file, when the file can be read and psql named a line.
        let (src, span) = match std::fs::read_to_string(&file) {
            Ok(text) if lineno > 0 => {
                let start = text
                    .split_inclusive('\n')
                    .take(lineno - 1)
                    .map(str::len)
                    .sum::<usize>()
                    .min(text.len());
                let len = text[start..].find('\n').unwrap_or(text.len() - start);
                let text: std::sync::Arc<str> = text.into();
                (
                    Some(std::sync::Arc::new(miette::NamedSource::new(
                        display.clone(),
                        text,
                    ))),
                    Some(miette::SourceSpan::from(start..start + len)),
                )
            }
            _ => (None, None),
        };
        return SandboxError::Load {
            file: display,
            line: lineno,
            message,
            src,
            span,
        };
    }
    SandboxError::Load {
        file: shown.display().to_string(),
        line: 0,
        message: stderr
            .trim()
            .lines()
            .last()
            .unwrap_or("psql failed")
            .to_string(),
        src: None,
        span: None,
    }
}
