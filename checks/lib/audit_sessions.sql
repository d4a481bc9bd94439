-- The backends of the audit itself: this connection, and every other connection the
-- engine opened for the same audit (its pool and its probe connection), which it
-- registers on each of them in the transaction-local setting pg_integrity.audit_pids
-- (comma-separated pids) before any check runs. Checks that read pg_stat_activity
-- leave these out: an audit never judges its own sessions. Matched by backend pid,
-- never by a name (an application may share the audit's role or application_name).
-- Columns: pid
select pg_backend_pid() as pid
union
select p::int
from unnest(string_to_array(nullif(current_setting('pg_integrity.audit_pids', true), ''), ',')) p
