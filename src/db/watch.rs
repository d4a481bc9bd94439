//! Is the server still answering? A client-side deadline over a whole command and
//! the record of a lost connection (SPEC §2: a server that stops answering ends the
//! audit with exit 3, in bounded time).
//!
//! The server bounds each statement with `statement_timeout`, but a server that is
//! frozen (stopped, swapped out, behind a dead link that TCP has not noticed yet)
//! never answers at all, and tokio-postgres waits for ever. So every statement that
//! gets an answer (a result or an error) says so with [`answered`], and [`within`]
//! gives up once no statement has been answered for the deadline: the statement
//! timeout plus a margin. A healthy audit is never cut: each of its statements ends
//! within `statement_timeout` on the server's side, however long the audit.
//!
//! A statement that fails because the connection is gone (the server stopped or
//! crashed, the backend was terminated) is recorded with [`note_failure`]: the
//! command then ends with exit 3 and no report, rather than a report whose checks
//! "errored" because nothing was there to answer them.
//!
//! The deadline is also kept per connection: a statement that is waiting for its
//! answer (see [`waiting`]) on a connection that has answered nothing for the
//! deadline ends the command too, however busily the other connections of the audit
//! answer theirs. One stuck backend among `--jobs` connections is caught at its own
//! deadline, not once the others have run out of work.
//!
//! Process-wide, as the command is: several audits in one process (tests) only make
//! the deadline more lenient, never trip it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// The margin above `statement_timeout` before a silent server is given up on.
pub const DEFAULT_MARGIN: Duration = Duration::from_secs(10);

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Milliseconds since [`EPOCH`] at the latest answer.
static LAST: AtomicU64 = AtomicU64::new(0);
static LOST: Mutex<Option<String>> = Mutex::new(None);
/// Each connection with a statement waiting for its answer: how many wait, and the
/// milliseconds since [`EPOCH`] of the connection's latest answer (or of the first
/// wait, if it has answered nothing since).
static WAITING: Mutex<Option<HashMap<usize, (u32, u64)>>> = Mutex::new(None);

fn key(client: &Client) -> usize {
    client as *const Client as usize
}

/// A statement (or a unit of statements, each answered in turn and told with
/// [`note`] or [`progress`]) waits for its answer on a connection, until dropped.
#[must_use]
pub struct Waiting(usize);

/// `client` sends a statement and waits: from now on, that connection has the
/// deadline to answer, whatever the other connections do.
pub fn waiting(client: &Client) -> Waiting {
    wait_on(key(client))
}

fn wait_on(k: usize) -> Waiting {
    if let Ok(mut w) = WAITING.lock() {
        let e = w
            .get_or_insert_with(HashMap::new)
            .entry(k)
            .or_insert((0, 0));
        if e.0 == 0 {
            e.1 = now_ms();
        }
        e.0 += 1;
    }
    Waiting(k)
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut w) = WAITING.lock() {
            if let Some(map) = w.as_mut() {
                if let Some(e) = map.get_mut(&self.0) {
                    e.0 = e.0.saturating_sub(1);
                    if e.0 == 0 {
                        map.remove(&self.0);
                    }
                }
            }
        }
    }
}

/// `client` answered a statement of a unit that sends several: its deadline starts
/// again.
pub fn progress(client: &Client) {
    let now = now_ms();
    LAST.fetch_max(now, Ordering::Relaxed);
    if let Ok(mut w) = WAITING.lock() {
        if let Some(e) = w.as_mut().and_then(|m| m.get_mut(&key(client))) {
            e.1 = e.1.max(now);
        }
    }
}

/// Milliseconds the longest-waiting connection has gone without an answer.
fn longest_wait() -> u64 {
    let now = now_ms();
    WAITING
        .lock()
        .ok()
        .and_then(|w| w.as_ref().and_then(|m| m.values().map(|e| e.1).min()))
        .map_or(0, |since| now.saturating_sub(since))
}

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The server answered a statement (a result or an error).
pub fn answered() {
    LAST.fetch_max(now_ms(), Ordering::Relaxed);
}

/// The connection is gone: the first reason is kept.
pub fn lost(reason: &str) {
    if let Ok(mut l) = LOST.lock() {
        if l.is_none() {
            *l = Some(reason.to_string());
        }
    }
}

/// Why the connection was lost, if it was since [`reset`].
pub fn lost_reason() -> Option<String> {
    LOST.lock().ok().and_then(|l| l.clone())
}

/// Forget an earlier loss (a new command starts).
pub fn reset() {
    if let Ok(mut l) = LOST.lock() {
        *l = None;
    }
    answered();
}

/// Whether a statement's error (as [`crate::db::db_message`] writes it) means the
/// connection is gone rather than that the statement failed: the client is closed,
/// or the server said it is shutting down, crashed, or terminated the backend
/// (SQLSTATE 57P01..57P03, class 08).
pub fn is_connection_lost(client: &Client, message: &str) -> bool {
    client.is_closed()
        || ["(57P01)", "(57P02)", "(57P03)", "(08"]
            .iter()
            .any(|c| message.contains(c))
        || message.starts_with("connection closed")
        || message.starts_with("error communicating with the server")
}

/// A statement ended: it was answered, and if its error says the connection is
/// gone, that is recorded.
pub fn note<T>(client: &Client, result: &Result<T, String>) {
    progress(client);
    if let Err(message) = result {
        note_failure(client, message);
    }
}

/// Record `message` as the connection's loss if it is one.
pub fn note_failure(client: &Client, message: &str) {
    if is_connection_lost(client, message) {
        lost(message);
    }
}

/// No statement was answered for `after`.
#[derive(Debug, Clone, Copy)]
pub struct Stalled {
    pub after: Duration,
}

/// Run `fut`, giving up once no statement has been answered for `deadline`, or one
/// connection has waited that long for an answer (see [`waiting`]).
pub async fn within<F: Future>(deadline: Duration, fut: F) -> Result<F::Output, Stalled> {
    answered();
    tokio::pin!(fut);
    loop {
        let quiet = now_ms().saturating_sub(LAST.load(Ordering::Relaxed));
        let since = Duration::from_millis(quiet.max(longest_wait()));
        let left = deadline.saturating_sub(since);
        if left.is_zero() {
            return Err(Stalled { after: deadline });
        }
        tokio::select! {
            out = &mut fut => return Ok(out),
            _ = tokio::time::sleep(left) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_future_or_connection_is_given_up_and_a_talking_one_is_not() {
        let silent = within(Duration::from_millis(50), std::future::pending::<()>()).await;
        assert!(silent.is_err());
        let talking = within(Duration::from_millis(200), async {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                answered();
            }
            7
        })
        .await;
        assert_eq!(talking.unwrap(), 7);

        // one connection waits without an answer while another answers all along
        // (in the same test: the record is process-wide)
        let started = Instant::now();
        let stuck = within(Duration::from_millis(300), async {
            let _wait = wait_on(1);
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                answered();
            }
        })
        .await;
        assert!(stuck.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
