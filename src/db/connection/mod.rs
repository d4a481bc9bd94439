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
//!
//! - `options`: libpq keywords, URLs, environment, defaults → [`ConnectOptions`];
//! - `pgpass`: the password file; `tls`: rustls and the `sslmode` verifiers;
//! - `errors`: [`ConnectionError`]; here: connecting, and sorting a failed attempt
//!   into the error that explains it.

mod errors;
mod options;
mod pgpass;
#[cfg(test)]
mod tests;
mod tls;

pub use errors::ConnectionError;
pub use options::{
    ConnectOptions, SslMode, DEFAULT_CONNECT_TIMEOUT, DEFAULT_PORT, DEFAULT_SOCKET_DIR,
};

use errors::{chain_message, find_in_chain, invalid};
use options::{RootCert, Target};
use rustls::CertificateError;
use std::io;
use std::net::IpAddr;
use tls::make_tls;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

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
