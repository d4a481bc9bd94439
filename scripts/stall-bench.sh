#!/usr/bin/env bash
# How long does `migrate apply` take on the ticket-service fixture with many tickets,
# and how long does a concurrent writer stall while it runs?
#
#   scripts/stall-bench.sh [TICKETS] [LOCK_TIMEOUT_MS] [shipped|generated]
#                                                 (defaults: 1000000, 50, shipped)
#
# shipped: the compiled-in migrations (`migrate apply`); generated: what `pg-integrity fix`
# writes for the fixture (`fix --out DIR`, run before the writer starts, then
# `migrate apply --from DIR`).
#
# Needs a PostgreSQL server (PGHOST/PGPORT/PGUSER, default 127.0.0.1 as postgres),
# pgbench, and target/release/pg-integrity (cargo build --release; PG_INTEGRITY_BIN
# overrides). Prints the apply time, the writer's transaction latency (max, p99, median)
# before and during the apply from pgbench's per-transaction log, its longest lock wait
# during the apply (sampled from pg_stat_activity every 10 ms: what the migrations' locks
# cost the writer, apart from CPU scheduling on a loaded machine), and the writer's errors.
set -euo pipefail
cd "$(dirname "$0")/.."
tickets="${1:-1000000}"
lock_timeout="${2:-50}"
mode="${3:-shipped}"
export PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-postgres}"
bin="${PG_INTEGRITY_BIN:-target/release/pg-integrity}"
pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -n 1)
db="pgi_stall_$$"
work=$(mktemp -d)
trap 'psql -X -q -d postgres -c "drop database if exists $db with (force)" >/dev/null 2>&1; rm -rf "$work"' EXIT

# STALL_BENCH_TEMPLATE=NAME: generate the tickets once into database NAME (kept; drop it
# yourself) and copy it for each run (CREATE DATABASE … TEMPLATE), so the shipped and the
# generated runs start from the same data.
template="${STALL_BENCH_TEMPLATE:-}"
gen_db="$db"
if [ -n "$template" ]; then
  gen_db="$template"
  if [ "$(psql -X -At -d postgres -c "select count(*) from pg_database where datname = '$template'")" = 1 ]; then
    gen_db=""
  fi
fi
if [ -n "$gen_db" ]; then
psql -X -q -d postgres -c "create database $gen_db"
psql -X -q -v ON_ERROR_STOP=1 -d "$gen_db" -f fixtures/ticket-service/schema.sql -f fixtures/ticket-service/data.sql
start=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 -d "$gen_db" <<SQL
insert into tickets (tenant_id, event_id, ticket_type_id, order_id, user_id, ticket_number, status, price, created_at, updated_at)
select t.tenant_id, t.event_id, t.ticket_type_id, t.order_id, t.user_id, t.ticket_number || '-' || g, t.status, t.price, t.created_at, t.updated_at
from tickets t cross join generate_series(1, ceil($tickets::numeric / (select count(*) from tickets))::int) g;
vacuum analyze;
SQL
echo "generated $(psql -X -At -d "$gen_db" -c 'select count(*) from tickets') tickets in $(echo "$(date +%s.%N) - $start" | bc) s"
fi
if [ -n "$template" ]; then
  start=$(date +%s.%N)
  psql -X -q -d postgres -c "create database $db template $template"
  echo "copied $template ($(psql -X -At -d "$db" -c 'select count(*) from tickets') tickets) in $(echo "$(date +%s.%N) - $start" | bc) s"
fi

from=()
if [ "$mode" = generated ]; then
  start=$(date +%s.%N)
  "$bin" fix --config fixtures/ticket-service/pg-integrity.toml --out "$work/fixes" --database-url "dbname=$db" > "$work/fix.out" 2>&1 || { cat "$work/fix.out"; exit 1; }
  echo "fix wrote $(ls "$work/fixes" | grep -c '\.sql$') migrations in $(echo "$(date +%s.%N) - $start" | bc) s"
  from=(--from "$work/fixes")
fi

# The writer: as the service would, insert a ticket and update it by its tenant-scoped
# number (the key the fix makes (tenant_id, ticket_number)), one transaction each.
psql -X -At -d "$db" > "$work/writer.sql" <<'SQL'
select '\set n random(1, 1000000000000000)' || chr(10) ||
       format('insert into tickets (tenant_id, event_id, ticket_type_id, user_id, ticket_number, status, price) values (%L, %L, %L, %L, ''BENCH-'' || :n, ''valid'', 10);',
              tenant_id, event_id, ticket_type_id, user_id) || chr(10) ||
       format('update tickets set updated_at = now() where tenant_id = %L and ticket_number = ''BENCH-'' || :n;', tenant_id)
from tickets limit 1
SQL
# exec: $! is pgbench itself. It is stopped with SIGTERM (a background job ignores SIGINT),
# so it prints no summary; the per-transaction log is read instead (its last buffered lines,
# written after the apply ended, may be lost).
(cd "$work" && exec "$pgbench" -n -c 2 -j 2 -T 3600 -f writer.sql --log --log-prefix=w "$db" > pgbench.out 2>&1) &
writer=$!
# The writer alone first (its latency on this machine, now, without a migration), then the apply.
sleep "${STALL_BENCH_BASELINE_S:-15}"
start=$(date +%s.%N)
# Lock waits, apart from this machine's scheduling noise: every 10 ms, how long has a writer
# been waiting for a lock? Two measures, each the largest value seen (to within one sampling
# interval):
# - since its statement started, while pg_stat_activity says it waits for a lock
#   (wait_event_type = 'Lock'): this includes the statement's work before the wait and, after
#   the lock is granted, the time until the writer is scheduled to run again (on a loaded
#   machine, tens of ms);
# - queued: since it began to wait for a lock not yet granted (pg_locks.waitstart, PG 14+):
#   the time the migration's lock kept it in the queue, nothing else (a lock released is
#   granted to the next waiter at once, before it runs).
# Each sample: the first measure for the longest-waiting writer, its wait_event (`relation`: a
# table lock, what a migration's DDL takes; `extend`: the two writers growing the same file,
# no migration's doing), the statement it waits behind; then the second measure (table locks
# only) and the statement that writer waits behind.
cat > "$work/sampler.sql" <<'SQL'
select coalesce((select (extract(epoch from clock_timestamp() - a.query_start) * 1000)::int || '|' || a.wait_event || '|'
                        || coalesce((select left(regexp_replace(b.query, '\s+', ' ', 'g'), 90) from pg_stat_activity b
                                     where b.pid = any(pg_blocking_pids(a.pid)) limit 1), '?')
                 from pg_stat_activity a
                 where a.application_name = 'pgbench' and a.datname = current_database() and a.wait_event_type = 'Lock'
                 order by a.wait_event <> 'relation', a.query_start limit 1), '0|none|')
       || '|' ||
       coalesce((select (extract(epoch from clock_timestamp() - l.waitstart) * 1000)::int || '|'
                        || coalesce((select left(regexp_replace(b.query, '\s+', ' ', 'g'), 90) from pg_stat_activity b
                                     where b.pid = any(pg_blocking_pids(l.pid)) limit 1), '?')
                 from pg_locks l join pg_stat_activity a on a.pid = l.pid
                 where a.application_name = 'pgbench' and a.datname = current_database() and not l.granted and l.locktype = 'relation'
                 order by l.waitstart limit 1), '0|')
\watch 0.01
SQL
psql -X -At -d "$db" -f "$work/sampler.sql" > "$work/lockwaits.out" 2>&1 &
sampler=$!
echo "load average before apply: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" migrate apply --no-audit --lock-timeout "$lock_timeout" --retries 30 "${from[@]}" --database-url "dbname=$db" > "$work/apply.out" 2>&1 && applied=ok || applied=FAILED
sed 's/^/  /' "$work/apply.out" | grep -v '^  applying' | tail -n 60
retries=$(grep -c 'a lock was not granted' "$work/apply.out" || true)
end=$(date +%s.%N)
apply_s=$(echo "$end - $start" | bc)
kill -TERM "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sleep 2
kill -TERM "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
echo "load average after apply: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "migrate apply ($mode, $(grep -c '^applied  V' "$work/apply.out" || true) migrations): $applied in ${apply_s} s (lock_timeout ${lock_timeout} ms, $retries lock-timeout retries)"
grep -E 'aborted|ERROR' "$work/pgbench.out" | head -n 5 | sed "s/^/  pgbench: /" || true
echo "writer errors: $(grep -cE 'aborted|ERROR' "$work/pgbench.out" || true)"
for kind in relation other; do
  grep -E '^-?[0-9]+[|]' "$work/lockwaits.out" | awk -F'|' -v k="$kind" '(k == "relation") == ($2 == "relation") && $2 != "none"' \
    | sort -t'|' -k1,1n | awk -F'|' -v k="$kind" -v n="$(grep -cE '^-?[0-9]+[|]' "$work/lockwaits.out")" '{v[NR] = $1; e[NR] = $2; q[NR] = $3}
      END {if (k == "relation") printf "writer waits for a table lock (since its statement started): longest %d ms, behind `%s` (%d samples, %.0f per second)\n", v[NR], q[NR], n, n / '"$apply_s"';
           else printf "writer waits for other locks: longest %d ms (%s)\n", v[NR], e[NR]}'
done
grep -E '^-?[0-9]+[|]' "$work/lockwaits.out" | awk -F'|' 'NF >= 5 && $4 > 0' | sort -t'|' -k4,4n | tail -n 1 \
  | awk -F'|' '{printf "writer queued for a table lock (pg_locks.waitstart, not yet granted): longest %d ms, behind `%s`\n", $4, $5}
      END {if (NR == 0) print "writer queued for a table lock (pg_locks.waitstart, not yet granted): never sampled"}'
# pgbench's log: client, transaction, latency (us), script, end time (epoch s, us). Before the
# apply (from 1 s after the writer started) is the baseline; "during" is every transaction
# that ended while apply ran, or within 1 s after (one held by the last lock ends then).
cat "$work"/w.* | awk -v s="$start" -v e="$end" '
  { t = $5 + $6 / 1e6; if (t < s) { if (t > s - '"${STALL_BENCH_BASELINE_S:-15}"' + 1) print "b", $3 } else if (t <= e + 1) print "d", $3 }' \
  | sort -k1,1 -k2,2n | awk '
  function report(name, n,   p99, med) { if (n == 0) { printf "%s: no transactions\n", name; return }
    p99 = int(n * 0.99); if (p99 < 1) p99 = 1; med = int(n / 2); if (med < 1) med = 1
    printf "%s: %d transactions, max latency %.1f ms, p99 %.1f ms, median %.1f ms\n", name, n, v[n]/1000, v[p99]/1000, v[med]/1000 }
  $1 != k { if (k != "") report(k == "b" ? "writer before apply (baseline)" : "writer during apply", n); k = $1; n = 0 }
  { v[++n] = $2 }
  END { if (k != "") report(k == "b" ? "writer before apply (baseline)" : "writer during apply", n) }'
