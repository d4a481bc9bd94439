//! Reaching PostgreSQL: connection options (libpq keywords, URLs, environment,
//! pgpass, TLS), throwaway servers (`sandbox`), whether the server still answers
//! (`watch`), and server errors as one line.

pub mod connection;
pub mod sandbox;
pub mod shell;
pub mod sqltext;
pub mod watch;

/// A server error as one line: message, then detail and hint when present.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("; {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("; hint: {h}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// Whether a message from [`db_message`] is a statement timeout (SQLSTATE 57014,
/// which `db_message` writes in parentheses after the message).
pub fn is_statement_timeout(message: &str) -> bool {
    message.contains("(57014)")
}
