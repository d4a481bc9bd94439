//! Why connecting failed, in terms a person can act on. None of the messages ever
//! contains the password.

use std::error::Error as StdError;
use std::io;

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

pub(super) fn invalid(reason: impl Into<String>) -> ConnectionError {
    ConnectionError::InvalidConnInfo {
        reason: reason.into(),
    }
}

/// "outer: inner: innermost", skipping levels that repeat their parent.
pub(super) fn chain_message(err: &(dyn StdError + 'static)) -> String {
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
pub(super) fn find_in_chain<'a, T: StdError + 'static>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a T> {
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
