#!/usr/bin/env bash
# How long does `migrate apply` take on the ticket-service fixture with many tickets,
# and how long does a concurrent writer stall while it runs?
#
#   scripts/stall-bench.sh [TICKETS] [LOCK_TIMEOUT_MS]     (defaults: 1000000, 50)
#
# Needs a PostgreSQL server (PGHOST/PGPORT/PGUSER, default 127.0.0.1 as postgres),
# pgbench, and target/release/pg-integrity (cargo build --release). Prints the apply
# time and the writer's transaction latency (max, p99) from pgbench's per-transaction log.
set -euo pipefail
cd "$(dirname "$0")/.."
tickets="${1:-1000000}"
lock_timeout="${2:-50}"
export PGHOST="${PGHOST:-127.0.0.1}" PGUSER="${PGUSER:-postgres}"
bin=target/release/pg-integrity
pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -n 1)
db="pgi_stall_$$"
work=$(mktemp -d)
trap 'psql -X -q -d postgres -c "drop database if exists $db with (force)" >/dev/null 2>&1; rm -rf "$work"' EXIT

psql -X -q -d postgres -c "create database $db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" -f fixtures/ticket-service/schema.sql -f fixtures/ticket-service/data.sql
start=$(date +%s.%N)
psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<SQL
insert into tickets (tenant_id, event_id, ticket_type_id, order_id, user_id, ticket_number, status, price, created_at, updated_at)
select t.tenant_id, t.event_id, t.ticket_type_id, t.order_id, t.user_id, t.ticket_number || '-' || g, t.status, t.price, t.created_at, t.updated_at
from tickets t cross join generate_series(1, ceil($tickets::numeric / (select count(*) from tickets))::int) g;
vacuum analyze;
SQL
echo "generated $(psql -X -At -d "$db" -c 'select count(*) from tickets') tickets in $(echo "$(date +%s.%N) - $start" | bc) s"

# The writer: as the service would, insert a ticket and update another, one transaction each.
psql -X -At -d "$db" > "$work/writer.sql" <<'SQL'
select '\set n random(1, 1000000000)' || chr(10) ||
       format('insert into tickets (tenant_id, event_id, ticket_type_id, user_id, ticket_number, status, price) values (%L, %L, %L, %L, ''BENCH-'' || :n, ''valid'', 10);',
              tenant_id, event_id, ticket_type_id, user_id) || chr(10) ||
       'update tickets set updated_at = now() where ticket_number = ''BENCH-'' || :n;'
from tickets limit 1
SQL
(cd "$work" && "$pgbench" -n -c 2 -j 2 -T 600 -f writer.sql --log --log-prefix=w "$db" > pgbench.out 2>&1) &
writer=$!
sleep 3
start=$(date +%s.%N)
"$bin" migrate apply --no-audit --lock-timeout "$lock_timeout" --retries 30 --database-url "dbname=$db" 2>&1 | sed 's/^/  /'
apply_s=$(echo "$(date +%s.%N) - $start" | bc)
sleep 2
kill -INT "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
echo "migrate apply: ${apply_s} s (lock_timeout ${lock_timeout} ms)"
tail -n 3 "$work/pgbench.out" | sed "s/^/  pgbench: /"
cat "$work"/w.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "writer: %d transactions, max latency %.1f ms, p99 %.1f ms, median %.1f ms\n", NR, a[NR]/1000, a[int(NR*0.99)]/1000, a[int(NR/2)]/1000}'
