-- pg-integrity: no-transaction
--
-- V7__tenant_key_indexes: build, without blocking writes, the indexes the tenant-scoped keys
-- of V8__tenant_scoped_keys need.
--
-- Fixes: tenancy.tenant_scoped_uniques, tenancy.tenant_scoped_foreign_keys, schema.foreign_keys,
--        schema.foreign_key_indexes, schema.redundant_indexes
-- (together with V8__tenant_scoped_keys, which turns these indexes into constraints and adds
-- the foreign keys they serve, and V9__validate_tenant_keys; schema.unique_keys keeps passing).
--
-- CREATE INDEX CONCURRENTLY cannot run in a transaction: this migration runs statement by
-- statement. Each build takes SHARE UPDATE EXCLUSIVE (reads and writes go on), scans the
-- table twice and waits for older transactions. IF NOT EXISTS makes every statement safe to
-- re-run. A build that fails (a duplicate within a tenant, a cancelled statement) leaves an
-- INVALID index of that name, which IF NOT EXISTS would skip: the runner drops invalid
-- leftovers of this migration and builds them again.
--
-- Fails on fixtures/ticket-service/dirty.sql: tenant 1 has the event slug 'spring-jazz-2026'
-- twice (data.tenant_duplicates), so events_tenant_id_slug_key cannot be built.

-- 1. unique (tenant_id, id) on every table a tenant table references: the targets of the
--    composite foreign keys (tenant_id, x_id) -> x (tenant_id, id), which make a reference to
--    another tenant's row impossible (foreign key checks bypass row level security).
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_tenant_id_id_key ON users (tenant_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS venues_tenant_id_id_key ON venues (tenant_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_tenant_id_id_key ON events (tenant_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ticket_types_tenant_id_id_key ON ticket_types (tenant_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_tenant_id_id_key ON orders (tenant_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tickets_tenant_id_id_key ON tickets (tenant_id, id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS payments_tenant_id_id_key ON payments (tenant_id, id);

-- 2. natural keys unique per tenant, replacing the global uniques (a global unique is an
--    existence oracle across tenants, since unique checks bypass row level security, and
--    makes one tenant's numbers collide with another's).
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_tenant_id_external_id_key
    ON users (tenant_id, external_id);

-- events were unique per (venue_id, slug); per tenant is stricter (a venue belongs to one
-- tenant) and makes /events/{slug} unambiguous within a tenant.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_tenant_id_slug_key
    ON events (tenant_id, slug);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_tenant_id_order_number_key
    ON orders (tenant_id, order_number);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS tickets_tenant_id_ticket_number_key
    ON tickets (tenant_id, ticket_number);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS payments_tenant_id_external_id_key
    ON payments (tenant_id, external_id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS refunds_tenant_id_external_id_key
    ON refunds (tenant_id, external_id);

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_tenant_id_provider_external_id_key
    ON webhook_events (tenant_id, provider, external_id);

-- 3. one index per composite foreign key of V8, on the referencing table, with the reference
--    column first and tenant_id second: it serves the foreign key (deletes and key updates of
--    the parent), lookups by the reference alone (workers, BYPASSRLS) and lookups under the
--    tenant policy. Each replaces the single-column index on the reference column, which V8
--    drops. tickets (tenant_id, event_id) is already indexed by tickets_tenant_event_idx.
CREATE INDEX CONCURRENTLY IF NOT EXISTS venues_owner_user_id_tenant_id_idx
    ON venues (owner_user_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS events_venue_id_tenant_id_idx
    ON events (venue_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS ticket_types_event_id_tenant_id_idx
    ON ticket_types (event_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_tenant_id_idx
    ON orders (user_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_event_id_tenant_id_idx
    ON orders (event_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_order_id_tenant_id_idx
    ON order_items (order_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS order_items_ticket_type_id_tenant_id_idx
    ON order_items (ticket_type_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tickets_ticket_type_id_tenant_id_idx
    ON tickets (ticket_type_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tickets_order_id_tenant_id_idx
    ON tickets (order_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS tickets_user_id_tenant_id_idx
    ON tickets (user_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS ticket_transfers_ticket_id_tenant_id_idx
    ON ticket_transfers (ticket_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS ticket_transfers_from_user_id_tenant_id_idx
    ON ticket_transfers (from_user_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS ticket_transfers_to_user_id_tenant_id_idx
    ON ticket_transfers (to_user_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS payments_order_id_tenant_id_idx
    ON payments (order_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS refunds_payment_id_tenant_id_idx
    ON refunds (payment_id, tenant_id);

CREATE INDEX CONCURRENTLY IF NOT EXISTS refunds_order_id_tenant_id_idx
    ON refunds (order_id, tenant_id);

-- 4. the queue claim of V5__queue_claims reads pending jobs of one queue in (priority DESC,
--    run_at) order; schema.sql already has this index, this only restores it if it is missing.
CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_pending_run_at_idx
    ON jobs (queue, priority DESC, run_at) WHERE status = 'pending';

-- 5. an index the new ones make redundant: refunds (tenant_id) is a leading prefix of the
--    unique (tenant_id, external_id) built above, which serves the same lookups. DROP INDEX
--    CONCURRENTLY waits for queries using it to finish and blocks neither reads nor writes.
DROP INDEX CONCURRENTLY IF EXISTS refunds_tenant_id_idx;
