-- V2__timeouts: server-side timeouts for the roles the services log in as.
--
-- Fixes: pool.statement_timeout, locking.lock_timeout,
--        transactions.idle_in_transaction_timeout, pool.idle_session_timeout
--
-- Settings are stored per role *in this database* (ALTER ROLE ... IN DATABASE ... SET):
-- roles are cluster-wide, and a plain ALTER ROLE ... SET would change every database of the
-- cluster the role logs into (other services' databases, test databases). The role-in-database
-- level wins over role, database and server settings at login, so the values below are what
-- a new session of ticket_app gets here. The database name is taken from current_database(),
-- hence the DO blocks. Catalog-only: no table is locked.
--
-- They apply to NEW sessions only: recycle the connection pools after applying. A request that
-- legitimately needs more (a report) raises them for itself with SET LOCAL inside its
-- transaction; a transaction-pooled connection (PgBouncer) cannot rely on session SET, which is
-- why the defaults live on the role.
--
-- ticket_app (the API, OLTP, behind a pool):
--   statement_timeout                   = 10s  every API query finishes in milliseconds; 10 s
--                                              stops a runaway query long before the client
--                                              (30 s HTTP timeout) and the pool give up, and
--                                              frees its connection and locks.
--   lock_timeout                        = 3s   well under statement_timeout (an equal or larger
--                                              value would be pointless); a request queued behind
--                                              a migration's ACCESS EXCLUSIVE lock or a long row
--                                              lock fails fast (SQLSTATE 55P03 -> 409/503 +
--                                              Retry-After) instead of piling up the pool.
--   idle_in_transaction_session_timeout = 30s  a transaction left open across an external call
--                                              (payment provider) or a crashed handler holds row
--                                              locks and blocks vacuum of the jobs queue; kill
--                                              the session after 30 s idle inside it.
--   idle_session_timeout                = 30min PostgreSQL 14+ only. Reclaims connections of
--                                              leaked or oversized pools. The pool must retire
--                                              idle connections sooner (idle_timeout < 30 min)
--                                              and test connections on checkout, or it will hand
--                                              out a connection the server has closed.
--
-- ticket_service (background workers, BYPASSRLS; reconciliation and fraud sweeps scan more):
--   statement_timeout                   = 5min  sweeps are batch work, still bounded;
--   lock_timeout                        = 5s    a worker must not queue behind DDL for long;
--   idle_in_transaction_session_timeout = 60s   workers claim a job and commit at once
--                                               (claim_next_job, SKIP LOCKED) and work outside
--                                               the transaction; a longer idle transaction is a bug.
--   no idle_session_timeout: workers hold long-lived connections between polls.
--
-- A migration role should have its own, very different values (lock_timeout of a few seconds
-- with retries, a long statement_timeout for CREATE INDEX CONCURRENTLY); pg-integrity migrate
-- sets lock_timeout per migration itself.

DO $$
BEGIN
    EXECUTE format('ALTER ROLE ticket_app IN DATABASE %I SET statement_timeout = %L',
                   current_database(), '10s');
    EXECUTE format('ALTER ROLE ticket_app IN DATABASE %I SET lock_timeout = %L',
                   current_database(), '3s');
    EXECUTE format('ALTER ROLE ticket_app IN DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '30s');

    -- idle_session_timeout exists from PostgreSQL 14 on; on 13 the setting would be rejected.
    IF current_setting('server_version_num')::int >= 140000 THEN
        EXECUTE format('ALTER ROLE ticket_app IN DATABASE %I SET idle_session_timeout = %L',
                       current_database(), '30min');
    END IF;

    EXECUTE format('ALTER ROLE ticket_service IN DATABASE %I SET statement_timeout = %L',
                   current_database(), '5min');
    EXECUTE format('ALTER ROLE ticket_service IN DATABASE %I SET lock_timeout = %L',
                   current_database(), '5s');
    EXECUTE format('ALTER ROLE ticket_service IN DATABASE %I SET idle_in_transaction_session_timeout = %L',
                   current_database(), '60s');
END
$$;
