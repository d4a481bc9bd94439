//! Where the audited database is and how to reach it.
//!
//! [`ConnectOptions::resolve`] works out the target the way libpq (and so
//! psql) does: an explicit connection string (a `postgres://` URL or
//! `key=value` pairs), then the libpq environment variables for whatever the
//! string left out, then the built-in defaults, and finally the password file
//! when no password was given.
//!
//! tokio-postgres only knows `sslmode` disable/prefer/require and has no
//! notion of root or client certificates, so this module parses the
//! connection string into libpq keywords itself. It keeps the keywords it
//! resolves (hosts, ports, user, password, dbname, the TLS settings,
//! connect_timeout, application names, passfile) and hands everything else
//! (`options`, keepalives, `target_session_attrs`, ...) to
//! [`tokio_postgres::Config`], which validates it. TLS is done with rustls,
//! with certificate verifiers that follow libpq's `sslmode` semantics.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::fs;
use std::io::{self, BufReader};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Unix-socket directory used when no host is given (Debian's libpq default),
/// provided the directory exists.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// Port used when neither the connection string nor `PGPORT` gives one.
pub const DEFAULT_PORT: u16 = 5432;
/// Connect timeout used when neither `connect_timeout` nor `PGCONNECT_TIMEOUT` is set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// libpq's `sslmode` (without `allow`, which tokio-postgres cannot do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connection only.
    Disable,
    /// TLS if the server offers it, else plain; the certificate is not checked.
    Prefer,
    /// TLS only; the certificate is not checked, unless a root certificate
    /// file exists, in which case this behaves as `VerifyCa` (as libpq does).
    Require,
    /// TLS; the certificate chain must lead to a CA in `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`verify-full`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Result<Self, ConnectionError> {
        match value {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            "allow" => Err(invalid(
                "sslmode \"allow\" is not supported; use \"disable\" or \"prefer\"",
            )),
            other => Err(invalid(format!(
                "invalid sslmode value \"{other}\" (expected disable, prefer, require, \
                 verify-ca or verify-full)"
            ))),
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why connecting failed. None of the messages ever contains the password.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConnectionError {
    /// The connection string or a libpq environment variable is malformed (bad input).
    #[error("invalid connection string: {reason}")]
    #[diagnostic(
        code(pg_integrity::connection::invalid_conninfo),
        help(
            "write a URL such as postgres://user@host:5432/dbname?sslmode=verify-full, or \
             key=value pairs such as \"host=db.example.com port=5432 dbname=app\"; \
             also check the PG* environment variables"
        )
    )]
    InvalidConnInfo { reason: String },

    /// The server rejected the credentials (SQLSTATE 28P01 / 28000), or
    /// asked for a password that was not supplied.
    #[error("authentication failed for {target}: {message}")]
    #[diagnostic(code(pg_integrity::connection::authentication_failed))]
    AuthenticationFailed {
        target: String,
        message: String,
        #[help]
        help: String,
    },

    /// The host name does not resolve.
    #[error("could not resolve host name \"{host}\": {message}")]
    #[diagnostic(
        code(pg_integrity::connection::host_not_found),
        help("check the host name in the connection string or PGHOST, and that DNS resolves it")
    )]
    HostNotFound { host: String, message: String },

    /// Nothing listens on the address (or the socket file is missing).
    #[error("connection to {addr} refused: {message}")]
    #[diagnostic(
        code(pg_integrity::connection::connection_refused),
        help("is the server running on {addr} and accepting connections there?")
    )]
    ConnectionRefused { addr: String, message: String },

    /// `connect_timeout` elapsed before the session was established.
    #[error("timed out after {seconds}s connecting to {addr}")]
    #[diagnostic(
        code(pg_integrity::connection::timeout),
        help(
            "the server at {addr} did not answer within {seconds}s: check the address, \
             firewalls and the network, or raise connect_timeout / PGCONNECT_TIMEOUT"
        )
    )]
    Timeout { addr: String, seconds: u64 },

    /// TLS setup, handshake or certificate verification failed.
    #[error("TLS failure connecting to {target}: {message}")]
    #[diagnostic(code(pg_integrity::connection::tls))]
    Tls {
        target: String,
        message: String,
        #[help]
        help: String,
    },

    /// The database does not exist (SQLSTATE 3D000).
    #[error("database \"{dbname}\" does not exist on {addr}")]
    #[diagnostic(
        code(pg_integrity::connection::database_not_found),
        help(
            "check the database name in the connection string (the /dbname part of a URL) \
             or PGDATABASE; `psql -l` lists the databases"
        )
    )]
    DatabaseNotFound { addr: String, dbname: String },

    /// Anything else (server shutting down, too many connections, protocol error, ...).
    #[error("could not connect to {target}: {message}")]
    #[diagnostic(
        code(pg_integrity::connection::other),
        help("the server refused or dropped the connection; see the message for the reason")
    )]
    Other { target: String, message: String },
}

impl ConnectionError {
    /// True when the user's input is at fault (exit code 2); every other
    /// variant means the database is unreachable or refused us (exit code 3).
    pub fn is_input_error(&self) -> bool {
        matches!(self, ConnectionError::InvalidConnInfo { .. })
    }
}

fn invalid(reason: impl Into<String>) -> ConnectionError {
    ConnectionError::InvalidConnInfo {
        reason: reason.into(),
    }
}

/// Where the root certificates for verification come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum RootCert {
    /// `sslrootcert=system`: the webpki-roots Mozilla bundle.
    System,
    /// A PEM file (given, or the default `~/.postgresql/root.crt`); may not exist.
    File(PathBuf),
    /// No file given and no home directory to look in.
    Unset,
}

/// One entry of the host list: what to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// Host name, IP literal, or Unix-socket directory (starts with `/`).
    host: Option<String>,
    /// Numeric address to connect to instead of resolving `host`.
    hostaddr: Option<IpAddr>,
    port: u16,
}

impl Target {
    fn is_unix(&self) -> bool {
        self.host.as_deref().is_some_and(|h| h.starts_with('/'))
    }

    /// `host:port` (socket directory:port for Unix sockets).
    fn host_port(&self) -> String {
        if self.is_unix() {
            return format!("{}:{}", self.host.as_deref().unwrap_or_default(), self.port);
        }
        self.addr()
    }

    /// `host:port` (or the socket file) for messages.
    fn addr(&self) -> String {
        if self.is_unix() {
            let dir = self.host.as_deref().unwrap_or_default();
            return format!("{}/.s.PGSQL.{}", dir.trim_end_matches('/'), self.port);
        }
        let host = match (&self.host, self.hostaddr) {
            (Some(h), _) if h.contains(':') => format!("[{h}]"),
            (Some(h), _) => h.clone(),
            (None, Some(IpAddr::V6(a))) => format!("[{a}]"),
            (None, Some(a)) => a.to_string(),
            (None, None) => "localhost".to_owned(),
        };
        format!("{host}:{}", self.port)
    }

    /// Host name used to look up `.pgpass` (libpq: `localhost` stands for
    /// the default socket directory and for an empty host).
    fn pgpass_host(&self) -> String {
        match (&self.host, self.hostaddr) {
            (Some(h), _) if h.trim_end_matches('/') == DEFAULT_SOCKET_DIR => "localhost".into(),
            (Some(h), _) => h.clone(),
            (None, Some(a)) => a.to_string(),
            (None, None) => "localhost".into(),
        }
    }
}

/// Where the target came from, resolved once.
#[derive(Clone)]
pub struct ConnectOptions {
    targets: Vec<Target>,
    user: String,
    password: Option<String>,
    /// Password found in the password file for each target (same index),
    /// used only when `password` is `None`.
    pgpass_passwords: Vec<Option<String>>,
    passfile: Option<PathBuf>,
    dbname: String,
    ssl_mode: SslMode,
    ssl_root_cert: RootCert,
    ssl_cert: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
    /// `None` means wait indefinitely (`connect_timeout=0`, as libpq).
    connect_timeout: Option<Duration>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    /// Options passed through to tokio-postgres (no host, user or password in it).
    extra: tokio_postgres::Config,
    warnings: Vec<String>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        f.debug_struct("ConnectOptions")
            .field("targets", &self.targets)
            .field("user", &self.user)
            .field("password", &redact(&self.password))
            .field(
                "pgpass_passwords",
                &self.pgpass_passwords.iter().map(redact).collect::<Vec<_>>(),
            )
            .field("passfile", &self.passfile)
            .field("dbname", &self.dbname)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("ssl_cert", &self.ssl_cert)
            .field("ssl_key", &self.ssl_key)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .field("fallback_application_name", &self.fallback_application_name)
            .field("extra", &self.extra)
            .finish()
    }
}

/// libpq keywords and the environment variables that fill them in.
const ENV_VARS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
];

/// Keywords resolved here; all others go to `tokio_postgres::Config`.
const OWN_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "fallback_application_name",
];

/// What the operating system says, separated out so tests can fix it.
struct Defaults {
    socket_dir_exists: bool,
    os_user: Option<String>,
    home: Option<PathBuf>,
}

impl Defaults {
    fn from_system(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let passwd = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten();
        let env_nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        Defaults {
            socket_dir_exists: Path::new(DEFAULT_SOCKET_DIR).is_dir(),
            os_user: env_nonempty("USER").or_else(|| passwd.as_ref().map(|u| u.name.clone())),
            home: env_nonempty("HOME")
                .map(PathBuf::from)
                .or_else(|| passwd.map(|u| u.dir)),
        }
    }
}

impl ConnectOptions {
    /// Resolve like psql: the explicit conninfo (URL `postgres://` /
    /// `postgresql://` or a `key=value` string; the caller passes
    /// `DATABASE_URL` here when no explicit one was given), then the libpq
    /// environment variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
    /// `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`,
    /// `PGCONNECT_TIMEOUT`, `PGAPPNAME`, `PGHOSTADDR`, `PGPASSFILE`,
    /// `PGOPTIONS`) for what it left out, then the defaults: host = the
    /// socket directory [`DEFAULT_SOCKET_DIR`] if it exists else `localhost`,
    /// port 5432, user = the OS user (`$USER`, else the password database),
    /// dbname = user, connect timeout 10s. With no password, one is looked up
    /// in `PGPASSFILE` or `~/.pgpass` (`$HOME`, else the password database),
    /// which is ignored with a warning when group- or world-accessible.
    ///
    /// `env` reads environment variables (`USER` and `HOME` too); pass
    /// `&|k| std::env::var(k).ok()` in production.
    pub fn resolve(
        conninfo: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConnectionError> {
        Self::resolve_with(conninfo, env, &Defaults::from_system(env))
    }

    fn resolve_with(
        conninfo: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
        defaults: &Defaults,
    ) -> Result<Self, ConnectionError> {
        let mut params = match conninfo {
            Some(s) => parse_conninfo(s)?,
            None => Params::new(),
        };
        // libpq: a keyword present in the string, even empty, blocks its variable.
        for (keyword, var) in ENV_VARS {
            if !params.contains_key(*keyword) {
                if let Some(value) = env(var) {
                    params.insert((*keyword).to_owned(), value);
                }
            }
        }
        let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());

        let targets = resolve_targets(get("host"), get("hostaddr"), get("port"), defaults)?;
        let user = match get("user") {
            Some(u) => u.to_owned(),
            None => defaults.os_user.clone().ok_or_else(|| {
                invalid("could not determine the user name: give user= or set PGUSER")
            })?,
        };
        let dbname = get("dbname").unwrap_or(&user).to_owned();
        let password = get("password").map(str::to_owned);
        let home_file = |name: &str| defaults.home.as_ref().map(|h| h.join(name));

        let explicit_ssl_mode = get("sslmode").map(SslMode::parse).transpose()?;
        let ssl_root_cert = match get("sslrootcert") {
            Some("system") => RootCert::System,
            Some(path) => RootCert::File(PathBuf::from(path)),
            None => home_file(".postgresql/root.crt").map_or(RootCert::Unset, RootCert::File),
        };
        let ssl_mode = match (explicit_ssl_mode, &ssl_root_cert) {
            // libpq 16+: the system store only makes sense with host-name checks.
            (None, RootCert::System) => SslMode::VerifyFull,
            (Some(mode), RootCert::System) if mode != SslMode::VerifyFull => {
                return Err(invalid(format!(
                    "weak sslmode \"{mode}\" may not be used with sslrootcert=system \
                     (use \"verify-full\")"
                )))
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        let ssl_cert = get("sslcert")
            .map(PathBuf::from)
            .or_else(|| home_file(".postgresql/postgresql.crt"));
        let ssl_key = get("sslkey")
            .map(PathBuf::from)
            .or_else(|| home_file(".postgresql/postgresql.key"));
        let connect_timeout = match get("connect_timeout") {
            None => Some(DEFAULT_CONNECT_TIMEOUT),
            Some(v) => parse_connect_timeout(v)?,
        };

        let extra = passthrough_config(&params)?;

        let passfile = get("passfile")
            .map(PathBuf::from)
            .or_else(|| home_file(".pgpass"));
        let mut warnings = Vec::new();
        let pgpass_passwords = match (&password, &passfile) {
            (None, Some(file)) => {
                let entries = pgpass::read(file, &mut warnings);
                targets
                    .iter()
                    .map(|t| {
                        let port = t.port.to_string();
                        pgpass::lookup(&entries, &t.pgpass_host(), &port, &dbname, &user)
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        for warning in &warnings {
            // libpq prints this on stderr too; the caller may also show warnings().
            eprintln!("{warning}");
        }

        Ok(ConnectOptions {
            targets,
            user,
            password,
            pgpass_passwords,
            passfile,
            dbname,
            ssl_mode,
            ssl_root_cert,
            ssl_cert,
            ssl_key,
            connect_timeout,
            application_name: get("application_name").map(str::to_owned),
            fallback_application_name: get("fallback_application_name").map(str::to_owned),
            extra,
            warnings,
        })
    }

    /// Set the application name reported to the server unless the user
    /// gave one (`application_name=` or `PGAPPNAME`), like libpq's
    /// `fallback_application_name`.
    pub fn with_application_name(mut self, name: &str) -> Self {
        self.fallback_application_name = Some(name.to_owned());
        self
    }

    /// The same server and credentials, another database (test databases, the
    /// sandbox). A password from ~/.pgpass matched for the original database is kept.
    pub fn with_dbname(mut self, dbname: &str) -> Self {
        self.dbname = dbname.to_owned();
        self
    }

    /// A server on a private Unix socket directory (the throwaway servers).
    pub fn from_socket(dir: &Path, port: u16, user: &str, dbname: &str) -> Self {
        let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let conninfo = format!(
            "host={} port={port} user={} dbname={}",
            quote(&dir.display().to_string()),
            quote(user),
            quote(dbname)
        );
        Self::resolve(Some(&conninfo), &|_| None)
            .expect("a socket conninfo built from plain values always parses")
    }

    /// Display form with the password removed, for messages: e.g.
    /// `postgres@127.0.0.1:5432/test` (hosts comma-separated).
    pub fn redacted(&self) -> String {
        let hosts: Vec<String> = self.targets.iter().map(Target::host_port).collect();
        format!("{}@{}/{}", self.user, hosts.join(","), self.dbname)
    }

    /// The database to connect to.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The user to connect as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The resolved `sslmode`.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// Per-host time limit; `None` waits indefinitely.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// Warnings met while resolving (already printed on stderr, as libpq does).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn target_label(&self, target: &Target) -> String {
        format!("{}@{}/{}", self.user, target.host_port(), self.dbname)
    }
}

fn resolve_targets(
    host: Option<&str>,
    hostaddr: Option<&str>,
    port: Option<&str>,
    defaults: &Defaults,
) -> Result<Vec<Target>, ConnectionError> {
    fn split(v: Option<&str>) -> Vec<&str> {
        v.map(|s| s.split(',').collect()).unwrap_or_default()
    }
    let hosts = split(host);
    let hostaddrs = split(hostaddr);
    let ports = split(port);
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(invalid(format!(
            "could not match {} host names to {} hostaddr values",
            hosts.len(),
            hostaddrs.len()
        )));
    }
    let count = hosts.len().max(hostaddrs.len()).max(1);
    if ports.len() > 1 && ports.len() != count {
        return Err(invalid(format!(
            "could not match {} port numbers to {count} hosts",
            ports.len()
        )));
    }
    let default_host = if defaults.socket_dir_exists {
        DEFAULT_SOCKET_DIR
    } else {
        "localhost"
    };
    (0..count)
        .map(|i| {
            let hostaddr = match hostaddrs.get(i).map(|a| a.trim()).filter(|a| !a.is_empty()) {
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| {
                    invalid(format!(
                        "invalid hostaddr \"{a}\": not a numeric IP address"
                    ))
                })?),
                None => None,
            };
            let mut host = hosts
                .get(i)
                .filter(|h| !h.is_empty())
                .map(|h| (*h).to_owned());
            if host.is_none() && hostaddr.is_none() {
                host = Some(default_host.to_owned());
            }
            let port_text = if ports.len() == 1 {
                ports[0]
            } else {
                ports.get(i).copied().unwrap_or_default()
            };
            let port = match port_text.trim() {
                "" => DEFAULT_PORT,
                p => p
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| invalid(format!("invalid port number \"{p}\"")))?,
            };
            Ok(Target {
                host,
                hostaddr,
                port,
            })
        })
        .collect()
}

/// libpq: an integer number of seconds; zero or negative waits indefinitely,
/// and 1 is raised to 2.
fn parse_connect_timeout(value: &str) -> Result<Option<Duration>, ConnectionError> {
    let secs: i64 = value.trim().parse().map_err(|_| {
        invalid(format!(
            "invalid integer value \"{value}\" for connection option \"connect_timeout\""
        ))
    })?;
    Ok(match secs {
        s if s <= 0 => None,
        1 => Some(Duration::from_secs(2)),
        s => Some(Duration::from_secs(s.unsigned_abs())),
    })
}

/// Feed the keywords this module does not handle to tokio-postgres, which
/// validates them (unknown keyword, bad value) and keeps them for connecting.
fn passthrough_config(params: &Params) -> Result<tokio_postgres::Config, ConnectionError> {
    let rest: Vec<String> = params
        .iter()
        .filter(|(k, _)| !OWN_KEYWORDS.contains(&k.as_str()))
        .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect();
    rest.join(" ")
        .parse::<tokio_postgres::Config>()
        .map_err(|e| {
            // The cause names the keyword ("unknown option `foo`"), never a value.
            invalid(
                e.source()
                    .map_or_else(|| e.to_string(), ToString::to_string),
            )
        })
}

/// libpq keyword → value, as written in the connection string.
type Params = BTreeMap<String, String>;

fn parse_conninfo(s: &str) -> Result<Params, ConnectionError> {
    match s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        Some(rest) => parse_url(rest),
        None => parse_keyword_value(s),
    }
}

/// `postgres://[user[:password]@][host][:port][,...][/dbname][?param=value&...]`,
/// parsed as libpq's `conninfo_uri_parse_options` does.
fn parse_url(s: &str) -> Result<Params, ConnectionError> {
    let mut params = Params::new();
    let mut rest = s;
    // Credentials end at the first '@' that comes before any '/'.
    if let Some(at) = rest
        .find(['@', '/'])
        .filter(|&i| rest.as_bytes()[i] == b'@')
    {
        let (user, password) = match rest[..at].split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (&rest[..at], None),
        };
        if !user.is_empty() {
            params.insert("user".into(), percent_decode(user)?);
        }
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            params.insert("password".into(), percent_decode(p)?);
        }
        rest = &rest[at + 1..];
    }

    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hostlist, after) = rest.split_at(host_end);
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    if !hostlist.is_empty() {
        for chunk in hostlist.split(',') {
            let (host, port) = if let Some(v6) = chunk.strip_prefix('[') {
                let (addr, tail) = v6.split_once(']').ok_or_else(|| {
                    invalid("missing \"]\" after an IPv6 host address in the URL")
                })?;
                if addr.is_empty() {
                    return Err(invalid("IPv6 host address may not be empty in the URL"));
                }
                let port = match tail {
                    "" => "",
                    t => t.strip_prefix(':').ok_or_else(|| {
                        invalid("unexpected character after an IPv6 host address in the URL")
                    })?,
                };
                (addr, port)
            } else {
                chunk.split_once(':').unwrap_or((chunk, ""))
            };
            hosts.push(percent_decode(host)?);
            ports.push(percent_decode(port)?);
        }
    }
    let hosts = hosts.join(",");
    let ports = ports.join(",");
    if !hosts.is_empty() {
        params.insert("host".into(), hosts);
    }
    if !ports.chars().all(|c| c == ',') {
        params.insert("port".into(), ports);
    }

    let (path, query) = match after.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (after, None),
    };
    if let Some(db) = path.strip_prefix('/').filter(|d| !d.is_empty()) {
        params.insert("dbname".into(), percent_decode(db)?);
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            invalid("a URL query parameter has no \"=\" (expected ?keyword=value&...)")
        })?;
        let (key, value) = (percent_decode(key)?, percent_decode(value)?);
        // libpq accepts JDBC's ssl=true.
        if key == "ssl" && value == "true" {
            params.insert("sslmode".into(), "require".into());
        } else {
            params.insert(key, value);
        }
    }
    Ok(params)
}

fn percent_decode(s: &str) -> Result<String, ConnectionError> {
    let bad = || invalid("invalid percent-encoded token in the URL");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("a percent-encoded URL part is not valid UTF-8"))
}

/// `keyword = value ...`, values optionally single-quoted, `\` escaping the
/// next character (libpq's `conninfo_parse`). Errors never quote a value.
fn parse_keyword_value(s: &str) -> Result<Params, ConnectionError> {
    let mut params = Params::new();
    let mut it = s.char_indices().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while it.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut it);
        let Some(&(start, _)) = it.peek() else {
            break;
        };
        let mut keyword = String::new();
        while let Some((_, c)) = it.next_if(|(_, c)| !c.is_whitespace() && *c != '=') {
            keyword.push(c);
        }
        if keyword.is_empty() {
            return Err(invalid(format!(
                "missing keyword before \"=\" at byte {start}"
            )));
        }
        skip_ws(&mut it);
        if it.next_if(|(_, c)| *c == '=').is_none() {
            // Not quoting the word: it might be a password typed without "password=".
            return Err(invalid(format!(
                "missing \"=\" after the keyword starting at byte {start} \
                 (expected keyword=value pairs or a postgres:// URL)"
            )));
        }
        skip_ws(&mut it);
        let mut value = String::new();
        if it.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match it.next() {
                    None => return Err(invalid("unterminated quoted string in connection info")),
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => value.extend(it.next().map(|(_, c)| c)),
                    Some((_, c)) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = it.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next().map(|(_, c)| c));
                } else {
                    value.push(c);
                }
            }
        }
        params.insert(keyword, value);
    }
    Ok(params)
}

/// The libpq password file (`~/.pgpass`, `PGPASSFILE`).
///
/// Hand-written rather than taken from a crate: the format is one line of
/// `hostname:port:database:username:password` per entry, with `*` wildcards
/// and `\` escapes, and what matters is reproducing libpq's exact matching
/// rules (`passwordFromFile`/`pwdfMatchesString`); that is a few dozen lines,
/// and no maintained crate implements them.
mod pgpass {
    use super::*;

    pub(super) struct Entry {
        /// hostname, port, database, username; `None` is the `*` wildcard.
        keys: [Option<String>; 4],
        password: String,
    }

    /// Read the file, ignoring it (with a warning, as libpq) when it is not
    /// a plain file or is group/world accessible. A missing file is no error.
    pub(super) fn read(path: &Path, warnings: &mut Vec<String>) -> Vec<Entry> {
        let Ok(meta) = fs::metadata(path) else {
            return Vec::new();
        };
        if !meta.is_file() {
            warnings.push(format!(
                "WARNING: password file \"{}\" is not a plain file",
                path.display()
            ));
            return Vec::new();
        }
        if meta.permissions().mode() & 0o077 != 0 {
            warnings.push(format!(
                "WARNING: password file \"{}\" has group or world access; permissions \
                 should be u=rw (0600) or less",
                path.display()
            ));
            return Vec::new();
        }
        fs::read_to_string(path)
            .map(|text| parse(&text))
            .unwrap_or_default()
    }

    pub(super) fn parse(text: &str) -> Vec<Entry> {
        text.lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| {
                let mut fields = split_fields(line).into_iter();
                let mut key = || {
                    fields
                        .next()
                        .map(|(raw, value)| (raw != "*").then_some(value))
                };
                let keys = [key()?, key()?, key()?, key()?];
                let password = fields.next()?.1;
                Some(Entry { keys, password })
            })
            .collect()
    }

    /// Split on unescaped ':' into (raw text, unescaped value) pairs; the raw
    /// text tells an unescaped `*` (wildcard) from `\*` (a literal star).
    fn split_fields(line: &str) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let (mut raw, mut value) = (String::new(), String::new());
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    raw.push(c);
                    if let Some(next) = chars.next() {
                        raw.push(next);
                        value.push(next);
                    }
                }
                ':' => fields.push((std::mem::take(&mut raw), std::mem::take(&mut value))),
                c => {
                    raw.push(c);
                    value.push(c);
                }
            }
        }
        fields.push((raw, value));
        fields
    }

    /// The first entry whose four keys match wins.
    pub(super) fn lookup(
        entries: &[Entry],
        host: &str,
        port: &str,
        dbname: &str,
        user: &str,
    ) -> Option<String> {
        let wanted = [host, port, dbname, user];
        entries
            .iter()
            .find(|e| {
                e.keys
                    .iter()
                    .zip(wanted)
                    .all(|(k, w)| k.as_deref().is_none_or(|k| k == w))
            })
            .map(|e| e.password.clone())
    }
}

// ---------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------

/// Connect, spawning the connection task on tokio; returns the client.
///
/// Hosts are tried in order (each resolved address in turn), each attempt
/// limited by `connect_timeout`; the last failure is returned.
pub async fn connect(opts: &ConnectOptions) -> Result<Client, ConnectionError> {
    let mut tls = None;
    let mut failure = None;
    for (index, target) in opts.targets.iter().enumerate() {
        match connect_target(opts, index, target, &mut tls).await {
            Ok(client) => return Ok(client),
            Err(e) => failure = Some(most_informative(failure, e)),
        }
    }
    Err(failure.unwrap_or_else(|| invalid("no host to connect to")))
}

/// Of two failures, the one from a server that answered (bad password,
/// missing database, TLS) says more than not reaching one; on a tie, the later.
fn most_informative(earlier: Option<ConnectionError>, later: ConnectionError) -> ConnectionError {
    let reached = |e: &ConnectionError| {
        !matches!(
            e,
            ConnectionError::HostNotFound { .. }
                | ConnectionError::ConnectionRefused { .. }
                | ConnectionError::Timeout { .. }
        )
    };
    match earlier {
        Some(earlier) if reached(&earlier) && !reached(&later) => earlier,
        _ => later,
    }
}

/// What a failed attempt needs to explain itself.
struct Attempt<'a> {
    opts: &'a ConnectOptions,
    target: &'a Target,
    addr: String,
    password: PasswordSource,
}

#[derive(Clone, Copy)]
enum PasswordSource {
    None,
    Given,
    File,
}

async fn connect_target(
    opts: &ConnectOptions,
    index: usize,
    target: &Target,
    tls: &mut Option<MakeRustlsConnect>,
) -> Result<Client, ConnectionError> {
    let pgpass = opts.pgpass_passwords.get(index).cloned().flatten();
    let (password, source) = match (&opts.password, pgpass) {
        (Some(p), _) => (Some(p.clone()), PasswordSource::Given),
        (None, Some(p)) => (Some(p), PasswordSource::File),
        (None, None) => (None, PasswordSource::None),
    };
    let mut config = opts.extra.clone();
    config
        .user(&opts.user)
        .dbname(&opts.dbname)
        .port(target.port);
    if let Some(p) = &password {
        config.password(p);
    }
    let app_name = opts
        .application_name
        .as_ref()
        .or(opts.fallback_application_name.as_ref());
    if let Some(name) = app_name {
        config.application_name(name);
    }
    let attempt = |addr: String| Attempt {
        opts,
        target,
        addr,
        password: source,
    };

    if let Some(dir) = target.host.as_deref().filter(|_| target.is_unix()) {
        // PostgreSQL never does TLS over Unix sockets; libpq skips it whatever sslmode says.
        config
            .host_path(dir)
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        let at = attempt(target.addr());
        return limited(opts, &at, async { spawn(config.connect(NoTls).await) }).await;
    }

    // The name checked against the certificate (verify-full), else the address.
    let tls_name = match (&target.host, target.hostaddr) {
        (Some(h), _) => h.clone(),
        (None, Some(a)) => a.to_string(),
        (None, None) => unreachable!("resolve gives every target a host or a hostaddr"),
    };
    let connector = if opts.ssl_mode == SslMode::Disable {
        None
    } else {
        if opts.ssl_mode == SslMode::VerifyFull && target.host.is_none() {
            return Err(tls_error(
                &attempt(target.addr()),
                "a host name must be given for a verified TLS connection (sslmode=verify-full)"
                    .into(),
            ));
        }
        if tls.is_none() {
            *tls = Some(make_tls(opts).map_err(|m| tls_error(&attempt(target.addr()), m))?);
        }
        tls.clone()
    };
    config.host(&tls_name).ssl_mode(match opts.ssl_mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });

    let addrs: Vec<IpAddr> = match target.hostaddr {
        Some(a) => vec![a],
        None => {
            let at = attempt(target.addr());
            let lookup = async {
                tokio::net::lookup_host((tls_name.as_str(), target.port))
                    .await
                    .map_err(|e| ConnectionError::HostNotFound {
                        host: tls_name.clone(),
                        message: e.to_string(),
                    })
            };
            let found: Vec<IpAddr> = limited(opts, &at, lookup).await?.map(|a| a.ip()).collect();
            if found.is_empty() {
                return Err(ConnectionError::HostNotFound {
                    host: tls_name,
                    message: "no addresses found".into(),
                });
            }
            found
        }
    };

    let mut failure = None;
    for ip in addrs {
        let mut config = config.clone();
        config.hostaddr(ip);
        let addr = if tls_name == ip.to_string() {
            target.addr()
        } else {
            format!("{} ({ip})", target.addr())
        };
        let at = attempt(addr);
        let result = match connector.clone() {
            Some(tls) => limited(opts, &at, async { spawn(config.connect(tls).await) }).await,
            None => limited(opts, &at, async { spawn(config.connect(NoTls).await) }).await,
        };
        match result {
            Ok(client) => return Ok(client),
            Err(e) => failure = Some(most_informative(failure, e)),
        }
    }
    Err(failure.expect("at least one address"))
}

/// Start the connection task and hand back the client.
fn spawn<S, T>(
    result: Result<(Client, tokio_postgres::Connection<S, T>), tokio_postgres::Error>,
) -> Result<Client, tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, connection) = result?;
    tokio::spawn(async move {
        // A broken connection surfaces to the client as an error on its next
        // query; nothing more to do with it here.
        let _ = connection.await;
    });
    Ok(client)
}

/// Run one attempt under `connect_timeout` and classify its failure.
async fn limited<T, E, F>(
    opts: &ConnectOptions,
    at: &Attempt<'_>,
    fut: F,
) -> Result<T, ConnectionError>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: Into<AttemptError>,
{
    let outcome = match opts.connect_timeout {
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(ConnectionError::Timeout {
                    addr: at.addr.clone(),
                    seconds: limit.as_secs(),
                })
            }
        },
        None => fut.await,
    };
    outcome.map_err(|e| match e.into() {
        AttemptError::Postgres(e) => classify(&e, at),
        AttemptError::Ready(e) => e,
    })
}

enum AttemptError {
    Postgres(tokio_postgres::Error),
    Ready(ConnectionError),
}

impl From<tokio_postgres::Error> for AttemptError {
    fn from(e: tokio_postgres::Error) -> Self {
        AttemptError::Postgres(e)
    }
}

impl From<ConnectionError> for AttemptError {
    fn from(e: ConnectionError) -> Self {
        AttemptError::Ready(e)
    }
}

/// Sort a tokio-postgres failure into a [`ConnectionError`].
fn classify(err: &tokio_postgres::Error, at: &Attempt<'_>) -> ConnectionError {
    let target = at.opts.target_label(at.target);
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return auth_error(at, db.to_string());
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return ConnectionError::DatabaseNotFound {
                addr: at.addr.clone(),
                dbname: at.opts.dbname.clone(),
            };
        }
        return ConnectionError::Other {
            target,
            message: db.to_string(),
        };
    }
    let message = chain_message(err);
    let rustls_error = find_in_chain::<rustls::Error>(err);
    if let Some(rustls::Error::InvalidCertificate(
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
    )) = rustls_error
    {
        let host = at.target.host.as_deref().unwrap_or("the host");
        return ConnectionError::Tls {
            target,
            message,
            help: format!(
                "the server certificate is not issued for \"{host}\": connect with a host name \
                 the certificate lists, or use sslmode=verify-ca to skip the host-name check"
            ),
        };
    }
    if rustls_error.is_some() || err.to_string() == "error performing TLS handshake" {
        return tls_error(at, message);
    }
    if let Some(io) = find_in_chain::<io::Error>(err) {
        match io.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                return ConnectionError::ConnectionRefused {
                    addr: at.addr.clone(),
                    message: io.to_string(),
                }
            }
            io::ErrorKind::TimedOut => {
                return ConnectionError::Timeout {
                    addr: at.addr.clone(),
                    seconds: at.opts.connect_timeout.map_or(0, |d| d.as_secs()),
                }
            }
            _ => {}
        }
    }
    // tokio-postgres: the server asked for a password and none was supplied.
    if message.contains("password missing") {
        return auth_error(
            at,
            "the server requested a password but none was supplied".into(),
        );
    }
    ConnectionError::Other { target, message }
}

fn auth_error(at: &Attempt<'_>, message: String) -> ConnectionError {
    let user = &at.opts.user;
    let help = match at.password {
        PasswordSource::File => format!(
            "the password for user \"{user}\" was read from the password file \"{}\": \
             check that entry (or set PGPASSWORD); also check the server's pg_hba.conf",
            at.opts
                .passfile
                .as_deref()
                .map_or_else(|| "~/.pgpass".into(), |p| p.display().to_string())
        ),
        PasswordSource::Given => format!(
            "check the password for user \"{user}\" (PGPASSWORD, ~/.pgpass or the connection \
             string) and that the server's pg_hba.conf lets this user in"
        ),
        PasswordSource::None => format!(
            "no password was supplied for user \"{user}\": set PGPASSWORD, add a line to \
             ~/.pgpass (or PGPASSFILE), or put it in the connection string; also check the \
             server's pg_hba.conf"
        ),
    };
    ConnectionError::AuthenticationFailed {
        target: at.opts.target_label(at.target),
        message,
        help,
    }
}

fn tls_error(at: &Attempt<'_>, message: String) -> ConnectionError {
    let opts = at.opts;
    let root = match &opts.ssl_root_cert {
        RootCert::System => "the system certificate store (sslrootcert=system)".to_owned(),
        RootCert::File(p) => format!("\"{}\"", p.display()),
        RootCert::Unset => "sslrootcert".to_owned(),
    };
    let help = if message.contains("does not support TLS") {
        "the server does not accept TLS connections: enable ssl on the server, or use \
         sslmode=prefer or sslmode=disable"
            .to_owned()
    } else if message.contains("root certificate") || message.contains("private key") {
        "point sslrootcert / sslcert / sslkey (PGSSLROOTCERT, PGSSLCERT, PGSSLKEY) at readable \
         PEM files, or use sslmode=require to skip server certificate verification"
            .to_owned()
    } else {
        match opts.ssl_mode {
            SslMode::VerifyFull | SslMode::VerifyCa | SslMode::Require => format!(
                "the server certificate must be signed by a CA in {root}: check sslrootcert \
                 (PGSSLROOTCERT) and sslmode (PGSSLMODE)"
            ),
            SslMode::Prefer | SslMode::Disable => {
                "the TLS handshake failed: check the server's ssl settings, or use \
                 sslmode=disable"
                    .to_owned()
            }
        }
    };
    ConnectionError::Tls {
        target: opts.target_label(at.target),
        message,
        help,
    }
}

/// "outer: inner: innermost", skipping levels that repeat their parent.
fn chain_message(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// Find a `T` in the source chain, also inside `io::Error` wrappers (whose
/// `source()` skips the wrapped error itself).
fn find_in_chain<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        let wrapped = e.downcast_ref::<io::Error>().and_then(io::Error::get_ref);
        if let Some(found) = wrapped.and_then(|w| w.downcast_ref::<T>()) {
            return Some(found);
        }
        current = e.source();
    }
    None
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

/// How the server certificate is checked, per libpq's sslmode.
enum Verification {
    /// prefer, or require without a root certificate file.
    None,
    /// verify-ca, or require with a root certificate file: chain only.
    Chain(RootCertStore),
    /// verify-full: chain and host name.
    Full(RootCertStore),
}

fn make_tls(opts: &ConnectOptions) -> Result<MakeRustlsConnect, String> {
    let verification = match opts.ssl_mode {
        SslMode::Disable | SslMode::Prefer => Verification::None,
        // libpq: with a root certificate file present, require acts as verify-ca.
        SslMode::Require => load_roots(&opts.ssl_root_cert, opts.ssl_mode)?
            .map_or(Verification::None, Verification::Chain),
        SslMode::VerifyCa => Verification::Chain(required_roots(opts)?),
        SslMode::VerifyFull => Verification::Full(required_roots(opts)?),
    };
    // An explicit provider: the process-wide default may be unset or differ.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let webpki = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("TLS setup failed: {e}"))
    };
    let builder = match verification {
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider.clone()))),
        Verification::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(VerifyChainOnly(webpki(roots)?))),
        Verification::Full(roots) => builder.with_webpki_verifier(webpki(roots)?),
    };
    let mut config = match load_client_cert(opts)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("could not use the client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    // Required by servers for sslnegotiation=direct, harmless otherwise.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

fn required_roots(opts: &ConnectOptions) -> Result<RootCertStore, String> {
    load_roots(&opts.ssl_root_cert, opts.ssl_mode)?.ok_or_else(|| match &opts.ssl_root_cert {
        RootCert::File(p) => format!(
            "root certificate file \"{}\" does not exist; either provide the file or change \
             sslmode to disable server certificate verification",
            p.display()
        ),
        _ => format!(
            "could not find a home directory to locate the root certificate file; give \
             sslrootcert or change sslmode (now {})",
            opts.ssl_mode
        ),
    })
}

/// `Ok(None)` when there is no root certificate file to use.
fn load_roots(root: &RootCert, mode: SslMode) -> Result<Option<RootCertStore>, String> {
    match root {
        RootCert::System => Ok(Some(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })),
        RootCert::Unset => Ok(None),
        RootCert::File(path) if !path.exists() => Ok(None),
        RootCert::File(path) => {
            let certs = read_certs(path, "root certificate")?;
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "no usable certificate in root certificate file \"{}\" (sslmode={mode})",
                    path.display()
                ));
            }
            Ok(Some(store))
        }
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = fs::File::open(path)
        .map_err(|e| format!("could not read {what} file \"{}\": {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("could not parse {what} file \"{}\": {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no PEM certificate in {what} file \"{}\"",
            path.display()
        ));
    }
    Ok(certs)
}

type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// libpq: a missing client certificate file just means no client certificate;
/// a certificate without its key is an error.
fn load_client_cert(opts: &ConnectOptions) -> Result<Option<ClientIdentity>, String> {
    let Some(cert_path) = opts.ssl_cert.as_deref().filter(|p| p.exists()) else {
        return Ok(None);
    };
    let certs = read_certs(cert_path, "client certificate")?;
    let key_path = opts
        .ssl_key
        .as_deref()
        .filter(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "certificate present, but not private key file \"{}\"",
                opts.ssl_key
                    .as_deref()
                    .map_or_else(|| "sslkey".into(), |p| p.display().to_string())
            )
        })?;
    let file = fs::File::open(key_path).map_err(|e| {
        format!(
            "could not read private key file \"{}\": {e}",
            key_path.display()
        )
    })?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| {
            format!(
                "could not parse private key file \"{}\": {e}",
                key_path.display()
            )
        })?
        .ok_or_else(|| format!("no private key in file \"{}\"", key_path.display()))?;
    Ok(Some((certs, key)))
}

/// sslmode=prefer/require without a CA: encrypt, but accept any certificate
/// (libpq does the same). Handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// sslmode=verify-ca: full WebPKI verification except the host name.
/// WebPkiServerVerifier checks the chain (validity, issuer, usage) before
/// the name, so a name mismatch means everything else already passed.
#[derive(Debug)]
struct VerifyChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for VerifyChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn fixed_defaults(socket_dir_exists: bool, home: Option<&Path>) -> Defaults {
        Defaults {
            socket_dir_exists,
            os_user: Some("osuser".into()),
            home: home.map(Path::to_path_buf),
        }
    }

    fn resolve(
        conninfo: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<ConnectOptions, ConnectionError> {
        ConnectOptions::resolve_with(conninfo, &env_of(env), &fixed_defaults(false, None))
    }

    fn target(host: Option<&str>, hostaddr: Option<&str>, port: u16) -> Target {
        Target {
            host: host.map(str::to_owned),
            hostaddr: hostaddr.map(|a| a.parse().unwrap()),
            port,
        }
    }

    fn render(err: &ConnectionError) -> String {
        crate::diag::render_plain(err)
    }

    #[test]
    fn url_with_every_part() {
        let o = resolve(
            Some(
                "postgresql://alice:s%40cret@db.example.com:6432/sales?sslmode=verify-full\
                 &sslrootcert=/etc/ca.pem&application_name=audit&connect_timeout=5\
                 &options=-c%20statement_timeout%3D5s",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(o.user(), "alice");
        assert_eq!(o.password.as_deref(), Some("s@cret"));
        assert_eq!(o.targets, vec![target(Some("db.example.com"), None, 6432)]);
        assert_eq!(o.dbname(), "sales");
        assert_eq!(o.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(o.ssl_root_cert, RootCert::File("/etc/ca.pem".into()));
        assert_eq!(o.application_name.as_deref(), Some("audit"));
        assert_eq!(o.connect_timeout(), Some(Duration::from_secs(5)));
        assert_eq!(o.extra.get_options(), Some("-c statement_timeout=5s"));
        assert_eq!(o.redacted(), "alice@db.example.com:6432/sales");
    }

    #[test]
    fn url_multi_host_ipv6_and_socket_path() {
        let o = resolve(Some("postgres://u@[::1]:5433,%2Ftmp%2Fsock,db2/x"), &[]).unwrap();
        assert_eq!(
            o.targets,
            vec![
                target(Some("::1"), None, 5433),
                target(Some("/tmp/sock"), None, 5432),
                target(Some("db2"), None, 5432),
            ]
        );
        assert_eq!(o.redacted(), "u@[::1]:5433,/tmp/sock:5432,db2:5432/x");
    }

    #[test]
    fn url_details_follow_libpq() {
        // '?' before '@' still belongs to the password; '@' after '/' is not a credential.
        let o = resolve(Some("postgres://u:p?ss@h/db"), &[]).unwrap();
        assert_eq!(o.password.as_deref(), Some("p?ss"));
        assert_eq!(o.targets[0].host.as_deref(), Some("h"));
        // ssl=true is JDBC's spelling of sslmode=require.
        let o = resolve(Some("postgres://h/db?ssl=true"), &[]).unwrap();
        assert_eq!(o.ssl_mode(), SslMode::Require);
        // No host or port in the URL: the environment fills them in.
        let o = resolve(
            Some("postgres:///mydb"),
            &[
                ("PGHOST", "envhost"),
                ("PGPORT", "7777"),
                ("PGUSER", "envuser"),
            ],
        )
        .unwrap();
        assert_eq!(o.targets, vec![target(Some("envhost"), None, 7777)]);
        assert_eq!((o.user(), o.dbname()), ("envuser", "mydb"));
    }

    #[test]
    fn keyword_value_quoting_and_escapes() {
        let o = resolve(
            Some(concat!(
                r"host=h1,h2 port = 5432,5433 user='bob smith' password='a\'b c' dbname=d\ b",
                "  sslmode=verify-ca\tsslcert=/c.crt sslkey=/c.key",
            )),
            &[],
        )
        .unwrap();
        assert_eq!(
            o.targets,
            vec![
                target(Some("h1"), None, 5432),
                target(Some("h2"), None, 5433)
            ]
        );
        assert_eq!(o.user(), "bob smith");
        assert_eq!(o.password.as_deref(), Some("a'b c"));
        assert_eq!(o.dbname(), "d b");
        assert_eq!(o.ssl_mode(), SslMode::VerifyCa);
        assert_eq!(o.ssl_cert.as_deref(), Some(Path::new("/c.crt")));
        assert_eq!(o.ssl_key.as_deref(), Some(Path::new("/c.key")));
    }

    #[test]
    fn hostaddr_pairs_with_host() {
        let o = resolve(Some("host=db.internal hostaddr=127.0.0.1 port=5"), &[]).unwrap();
        assert_eq!(
            o.targets,
            vec![target(Some("db.internal"), Some("127.0.0.1"), 5)]
        );
        let o = resolve(Some("hostaddr=::1"), &[]).unwrap();
        assert_eq!(o.targets, vec![target(None, Some("::1"), 5432)]);
        assert_eq!(o.redacted(), "osuser@[::1]:5432/osuser");
    }

    #[test]
    fn environment_fills_gaps_and_conninfo_wins() {
        let env = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGPASSWORD", "envpw"),
            ("PGDATABASE", "envdb"),
            ("PGSSLMODE", "require"),
            ("PGSSLROOTCERT", "/env/ca.pem"),
            ("PGCONNECT_TIMEOUT", "7"),
            ("PGAPPNAME", "envapp"),
        ];
        let o = resolve(Some("host=h dbname=d"), &env).unwrap();
        assert_eq!(o.targets, vec![target(Some("h"), None, 6000)]);
        assert_eq!((o.user(), o.dbname()), ("envuser", "d"));
        assert_eq!(o.password.as_deref(), Some("envpw"));
        assert_eq!(o.ssl_mode(), SslMode::Require);
        assert_eq!(o.ssl_root_cert, RootCert::File("/env/ca.pem".into()));
        assert_eq!(o.connect_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(o.application_name.as_deref(), Some("envapp"));

        let o = resolve(None, &env).unwrap();
        assert_eq!(o.redacted(), "envuser@envhost:6000/envdb");

        // A keyword written in the string, even empty, blocks its variable (libpq).
        let o = resolve(Some("host=''"), &[("PGHOST", "envhost")]).unwrap();
        assert_eq!(o.targets, vec![target(Some("localhost"), None, 5432)]);
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let env = env_of(&[]);
        let o = ConnectOptions::resolve_with(None, &env, &fixed_defaults(false, None)).unwrap();
        assert_eq!(o.targets, vec![target(Some("localhost"), None, 5432)]);
        assert_eq!((o.user(), o.dbname()), ("osuser", "osuser"));
        assert_eq!(o.password, None);
        assert_eq!(o.ssl_mode(), SslMode::Prefer);
        assert_eq!(o.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(o.ssl_root_cert, RootCert::Unset);

        let home = Path::new("/home/someone");
        let o =
            ConnectOptions::resolve_with(None, &env, &fixed_defaults(true, Some(home))).unwrap();
        assert_eq!(
            o.targets,
            vec![target(Some(DEFAULT_SOCKET_DIR), None, 5432)]
        );
        assert_eq!(
            o.ssl_root_cert,
            RootCert::File(home.join(".postgresql/root.crt"))
        );
        assert_eq!(o.ssl_cert, Some(home.join(".postgresql/postgresql.crt")));
        assert_eq!(o.ssl_key, Some(home.join(".postgresql/postgresql.key")));
        assert_eq!(o.passfile, Some(home.join(".pgpass")));

        // The real system lookup finds some user (HOME set: no real ~/.pgpass is read).
        let env = env_of(&[("HOME", "/nonexistent/home")]);
        assert!(!ConnectOptions::resolve(None, &env)
            .unwrap()
            .user()
            .is_empty());
    }

    #[test]
    fn connect_timeout_follows_libpq() {
        let timeout = |v: &str| resolve(Some(&format!("connect_timeout='{v}'")), &[]);
        assert_eq!(timeout("0").unwrap().connect_timeout(), None);
        assert_eq!(timeout("-3").unwrap().connect_timeout(), None);
        assert_eq!(
            timeout("1").unwrap().connect_timeout(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            timeout(" 15 ").unwrap().connect_timeout(),
            Some(Duration::from_secs(15))
        );
        assert!(timeout("soon").unwrap_err().is_input_error());
        let o = resolve(None, &[("PGCONNECT_TIMEOUT", "3")]).unwrap();
        assert_eq!(o.connect_timeout(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn sslrootcert_system_means_verify_full() {
        let o = resolve(Some("sslrootcert=system"), &[]).unwrap();
        assert_eq!(o.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(o.ssl_root_cert, RootCert::System);
        let err = resolve(Some("sslrootcert=system sslmode=require"), &[]).unwrap_err();
        assert!(err.is_input_error(), "{err}");
    }

    #[test]
    fn malformed_input_is_an_input_error() {
        let cases = [
            "postgres://u@h/db?sslmode=bogus",
            "sslmode=allow",
            "port=0",
            "port=99999",
            "port=abc",
            "host=a,b port=1,2,3",
            "host=a hostaddr=127.0.0.1,127.0.0.2",
            "hostaddr=not-an-ip",
            "dbname='unterminated",
            "justaword",
            "=value",
            "postgres://h/db?novalue",
            "postgres://[::1/db",
            "postgres://[]/db",
            "postgres://[::1]x/db",
            "postgres://u:%zz@h/db",
            "postgres://h/%ff",
            "nosuchoption=1",
            "keepalives=maybe",
        ];
        for case in cases {
            match resolve(Some(case), &[]) {
                Err(e @ ConnectionError::InvalidConnInfo { .. }) => {
                    assert!(e.is_input_error());
                    let code = miette::Diagnostic::code(&e).unwrap().to_string();
                    assert_eq!(code, "pg_integrity::connection::invalid_conninfo");
                    assert!(miette::Diagnostic::help(&e).is_some());
                }
                other => panic!("{case:?} gave {other:?}"),
            }
        }
        let e = resolve(Some("host=a,b port=1,2,3"), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid connection string: could not match 3 port numbers to 2 hosts"
        );
        let e = resolve(Some("nosuchoption=1"), &[]).unwrap_err();
        assert!(e.to_string().contains("nosuchoption"), "{e}");
    }

    #[test]
    fn malformed_input_never_echoes_the_password() {
        let secret = "Sup3rS3cretValue";
        let cases = [
            format!("postgres://u:{secret}@h:notaport/db"),
            format!("postgres://u:{secret}@h/db?bogus=1"),
            format!("postgres://u:{secret}@h/db?sslmode=nope"),
            format!("user=u password={secret} port=x"),
            format!("user=u {secret}"),
            format!("user=u password='{secret}"),
        ];
        for case in &cases {
            let err = resolve(Some(case), &[]).unwrap_err();
            assert!(err.is_input_error(), "{case}: {err}");
            for text in [err.to_string(), format!("{err:?}"), render(&err)] {
                assert!(!text.contains(secret), "{case} leaked: {text}");
            }
        }
    }

    #[test]
    fn debug_and_redacted_hide_the_password() {
        let o = resolve(
            Some("postgres://postgres:hunter2secret@127.0.0.1:5432/test"),
            &[],
        )
        .unwrap();
        assert_eq!(o.redacted(), "postgres@127.0.0.1:5432/test");
        let debug = format!("{o:?}");
        assert!(!debug.contains("hunter2secret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let o = resolve(Some("host=/var/run/postgresql user=u dbname=d"), &[]).unwrap();
        assert_eq!(o.redacted(), "u@/var/run/postgresql:5432/d");
    }

    #[test]
    fn with_application_name_is_a_fallback() {
        let o = resolve(None, &[])
            .unwrap()
            .with_application_name("pg-integrity");
        assert_eq!(o.fallback_application_name.as_deref(), Some("pg-integrity"));
        assert_eq!(o.application_name, None);
        let o = resolve(None, &[("PGAPPNAME", "mine")])
            .unwrap()
            .with_application_name("pg-integrity");
        assert_eq!(o.application_name.as_deref(), Some("mine"));
    }

    #[test]
    fn pgpass_matching_follows_libpq() {
        let text = "# comment\n\
                    db.example.com:5432:sales:alice:pw1\n\
                    incomplete:5432:sales:alice\n\
                    *:*:*:bob:pw\\:with\\\\colon:ignored\n\
                    host\\:x:5432:*:carol:pw3\r\n\
                    \\*:*:*:dave:literal-star\n\
                    *:*:*:dave:wild\n\
                    localhost:5432:*:*:local\n";
        let entries = pgpass::parse(text);
        let find = |h: &str, p: &str, d: &str, u: &str| pgpass::lookup(&entries, h, p, d, u);
        assert_eq!(
            find("db.example.com", "5432", "sales", "alice").as_deref(),
            Some("pw1")
        );
        assert_eq!(find("db.example.com", "5433", "sales", "alice"), None);
        assert_eq!(find("db.example.com", "5432", "other", "alice"), None);
        assert_eq!(
            find("any", "1", "db", "bob").as_deref(),
            Some("pw:with\\colon")
        );
        assert_eq!(
            find("host:x", "5432", "db", "carol").as_deref(),
            Some("pw3")
        );
        assert_eq!(
            find("*", "5432", "db", "dave").as_deref(),
            Some("literal-star")
        );
        assert_eq!(find("h", "5432", "db", "dave").as_deref(), Some("wild"));
        assert_eq!(
            find("localhost", "5432", "db", "eve").as_deref(),
            Some("local")
        );
        assert_eq!(find("localhost", "5433", "db", "eve"), None);
    }

    #[test]
    fn pgpass_file_is_read_per_host_and_checked_for_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        fs::write(
            &file,
            "localhost:5432:app:u:socketpw\nh2:5433:app:u:h2pw\n10.0.0.9:5432:app:u:addrpw\n",
        )
        .unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let passfile = file.to_str().unwrap();
        let env = [("PGPASSFILE", passfile)];

        let o = resolve(
            Some("host=/var/run/postgresql,h2,,nomatch port=5432,5433,5432,5432 user=u dbname=app"),
            &env,
        )
        .unwrap();
        let found: Vec<Option<&str>> = o.pgpass_passwords.iter().map(|p| p.as_deref()).collect();
        // The default socket directory and an empty host both look up "localhost".
        assert_eq!(
            found,
            [Some("socketpw"), Some("h2pw"), Some("socketpw"), None]
        );
        assert!(o.warnings().is_empty());
        assert!(!format!("{o:?}").contains("socketpw"));

        let o = resolve(Some("hostaddr=10.0.0.9 user=u dbname=app"), &env).unwrap();
        assert_eq!(o.pgpass_passwords, [Some("addrpw".to_owned())]);

        // An explicit password wins; the file is not even read.
        let o = resolve(
            Some("host=h2 port=5433 user=u dbname=app password=given"),
            &env,
        )
        .unwrap();
        assert!(o.pgpass_passwords.is_empty());

        // Group/world-accessible: ignored with libpq's warning.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let o = resolve(Some("host=h2 port=5433 user=u dbname=app"), &env).unwrap();
        assert_eq!(o.pgpass_passwords, [None]);
        assert_eq!(o.warnings().len(), 1);
        assert!(
            o.warnings()[0].contains("has group or world access"),
            "{:?}",
            o.warnings()
        );

        // Missing file: silently nothing.
        let o = resolve(Some("user=u"), &[("PGPASSFILE", "/nonexistent/pgpass")]).unwrap();
        assert!(o.warnings().is_empty());
        assert_eq!(o.pgpass_passwords, [None]);
    }

    #[test]
    fn sslmode_spellings() {
        for mode in [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ] {
            assert_eq!(SslMode::parse(mode.as_str()).unwrap(), mode);
            assert_eq!(mode.to_string(), mode.as_str());
        }
    }

    #[test]
    fn only_invalid_conninfo_is_an_input_error() {
        let errors = [
            ConnectionError::HostNotFound {
                host: "h".into(),
                message: "m".into(),
            },
            ConnectionError::ConnectionRefused {
                addr: "h:1".into(),
                message: "m".into(),
            },
            ConnectionError::Timeout {
                addr: "h:1".into(),
                seconds: 2,
            },
            ConnectionError::DatabaseNotFound {
                addr: "h:1".into(),
                dbname: "d".into(),
            },
        ];
        for e in errors {
            assert!(!e.is_input_error());
            assert!(miette::Diagnostic::help(&e).is_some());
        }
    }
}
