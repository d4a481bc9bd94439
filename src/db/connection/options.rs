//! The connection options, resolved the way libpq (and so psql) does: an explicit
//! connection string (a `postgres://` URL or `key=value` pairs), then the libpq
//! environment variables for whatever the string left out, then the built-in
//! defaults, and finally the password file when no password was given.

use crate::db::connection::errors::{invalid, ConnectionError};
use crate::db::connection::pgpass;
use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Unix-socket directory used when no host is given (Debian's libpq default),
/// provided the directory exists.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Port used when neither the connection string nor `PGPORT` gives one.
pub const DEFAULT_PORT: u16 = 5432;

/// Connect timeout used when neither `connect_timeout` nor `PGCONNECT_TIMEOUT` is set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TCP keepalives unless the connection string sets them (libpq waits for the
/// operating system's two hours): a peer that vanished without a word (a dead link,
/// a host gone) is noticed after idle + interval x retries = 25 s, and data left
/// unacknowledged for [`DEFAULT_TCP_USER_TIMEOUT`] closes the connection.
pub const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(10);
pub const DEFAULT_KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_KEEPALIVES_RETRIES: u32 = 3;
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

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

    pub(super) fn parse(value: &str) -> Result<Self, ConnectionError> {
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

/// Where the root certificates for verification come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RootCert {
    /// `sslrootcert=system`: the webpki-roots Mozilla bundle.
    System,
    /// A PEM file (given, or the default `~/.postgresql/root.crt`); may not exist.
    File(PathBuf),
    /// No file given and no home directory to look in.
    Unset,
}

/// One entry of the host list: what to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Target {
    /// Host name, IP literal, or Unix-socket directory (starts with `/`).
    pub(super) host: Option<String>,
    /// Numeric address to connect to instead of resolving `host`.
    pub(super) hostaddr: Option<IpAddr>,
    pub(super) port: u16,
}

impl Target {
    pub(super) fn is_unix(&self) -> bool {
        self.host.as_deref().is_some_and(|h| h.starts_with('/'))
    }

    /// `host:port` (socket directory:port for Unix sockets).
    pub(super) fn host_port(&self) -> String {
        if self.is_unix() {
            return format!("{}:{}", self.host.as_deref().unwrap_or_default(), self.port);
        }
        self.addr()
    }

    /// `host:port` (or the socket file) for messages.
    pub(super) fn addr(&self) -> String {
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
    pub(super) fn pgpass_host(&self) -> String {
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
    pub(super) targets: Vec<Target>,
    pub(super) user: String,
    pub(super) password: Option<String>,
    /// Password found in the password file for each target (same index),
    /// used only when `password` is `None`.
    pub(super) pgpass_passwords: Vec<Option<String>>,
    pub(super) passfile: Option<PathBuf>,
    pub(super) dbname: String,
    pub(super) ssl_mode: SslMode,
    pub(super) ssl_root_cert: RootCert,
    pub(super) ssl_cert: Option<PathBuf>,
    pub(super) ssl_key: Option<PathBuf>,
    /// `None` means wait indefinitely (`connect_timeout=0`, as libpq).
    pub(super) connect_timeout: Option<Duration>,
    pub(super) application_name: Option<String>,
    pub(super) fallback_application_name: Option<String>,
    /// Options passed through to tokio-postgres (no host, user or password in it).
    pub(super) extra: tokio_postgres::Config,
    pub(super) warnings: Vec<String>,
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
pub(super) const ENV_VARS: &[(&str, &str)] = &[
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
pub(super) const OWN_KEYWORDS: &[&str] = &[
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
pub(super) struct Defaults {
    pub(super) socket_dir_exists: bool,
    pub(super) os_user: Option<String>,
    pub(super) home: Option<PathBuf>,
}

impl Defaults {
    pub(super) fn from_system(env: &dyn Fn(&str) -> Option<String>) -> Self {
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

    pub(super) fn resolve_with(
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

        let mut extra = passthrough_config(&params)?;
        if !params.contains_key("keepalives_idle") {
            extra.keepalives_idle(DEFAULT_KEEPALIVES_IDLE);
        }
        if !params.contains_key("keepalives_interval") {
            extra.keepalives_interval(DEFAULT_KEEPALIVES_INTERVAL);
        }
        if !params.contains_key("keepalives_count") && !params.contains_key("keepalives_retries") {
            extra.keepalives_retries(DEFAULT_KEEPALIVES_RETRIES);
        }
        if !params.contains_key("tcp_user_timeout") {
            extra.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
        }

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

    pub(super) fn target_label(&self, target: &Target) -> String {
        format!("{}@{}/{}", self.user, target.host_port(), self.dbname)
    }
}

pub(super) fn resolve_targets(
    host: Option<&str>,
    hostaddr: Option<&str>,
    port: Option<&str>,
    defaults: &Defaults,
) -> Result<Vec<Target>, ConnectionError> {
    pub(super) fn split(v: Option<&str>) -> Vec<&str> {
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
pub(super) fn parse_connect_timeout(value: &str) -> Result<Option<Duration>, ConnectionError> {
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
pub(super) fn passthrough_config(
    params: &Params,
) -> Result<tokio_postgres::Config, ConnectionError> {
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
pub(super) type Params = BTreeMap<String, String>;

pub(super) fn parse_conninfo(s: &str) -> Result<Params, ConnectionError> {
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
pub(super) fn parse_url(s: &str) -> Result<Params, ConnectionError> {
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

pub(super) fn percent_decode(s: &str) -> Result<String, ConnectionError> {
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
pub(super) fn parse_keyword_value(s: &str) -> Result<Params, ConnectionError> {
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
