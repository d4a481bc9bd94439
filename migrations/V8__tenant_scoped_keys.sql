-- pg-integrity: no-transaction
--
-- V8__tenant_scoped_keys: tenant-scoped unique constraints and foreign keys, on the indexes
-- V7__tenant_key_indexes built.
--
-- Fixes: tenancy.tenant_scoped_uniques, tenancy.tenant_scoped_foreign_keys, schema.foreign_keys
-- (schema.foreign_keys: order_items.ticket_type_id, payments.order_id, tickets.order_id had
-- none). The foreign keys are validated by V9__validate_tenant_keys; until then
-- schema.constraints_validated reports them NOT VALID.
-- Keeps passing: schema.unique_keys, schema.foreign_key_indexes (every new key is indexed by
-- V7), tenancy.tenant_indexes, schema.duplicate_indexes.
--
-- One table locked per transaction, each a BEGIN … COMMIT block that `migrate
-- apply` runs once and records as a step (a re-run after a crash goes on where it stopped);
-- no statement reads a table. In four passes:
--   1. per table, ADD CONSTRAINT ... UNIQUE USING INDEX attaches the indexes V7 built
--      CONCURRENTLY (no scan), and the global unique each replaces is dropped in the same
--      ALTER TABLE: ACCESS EXCLUSIVE on that table for an instant;
--   2. per foreign key, the composite (tenant_id, x_id) -> x (tenant_id, id) key is added NOT
--      VALID (no scan; new and updated rows are checked at once, existing ones by V9): SHARE
--      ROW EXCLUSIVE on the table and its parent;
--   3. per foreign key, the single-column key the composite one replaces is dropped (only
--      now, so no table is ever without its foreign key): PostgreSQL drops the key's triggers
--      on the parent too, so this takes ACCESS EXCLUSIVE on both for an instant, in a
--      transaction that does nothing else;
--   4. the single-column indexes V7's (x_id, tenant_id) indexes supersede are dropped
--      CONCURRENTLY (outside a transaction; blocks neither reads nor writes).
-- The runner's lock_timeout and retries keep each step from queueing behind a long reader.
-- (Until this release V8 ran in one transaction and held ACCESS EXCLUSIVE on a dozen tables
-- at once: under a live writer it could wait forever, see issue 16.)
--
-- Why composite foreign keys: foreign key checks bypass row level security, so with
-- tickets (event_id) -> events (id) a tenant-1 ticket could point at a tenant-2 event (as
-- fixtures/ticket-service/dirty.sql plants). (tenant_id, event_id) -> events (tenant_id, id)
-- makes the referenced row belong to the same tenant. A nullable reference (tickets.order_id
-- of complimentary tickets, ticket_transfers.to_user_id) stays optional: MATCH SIMPLE does not
-- check a row whose reference is NULL. ON DELETE actions are kept as they were.

-- 1. tenant-scoped uniques, one table per transaction -------------------------------------
BEGIN;
ALTER TABLE users
    ADD CONSTRAINT users_tenant_id_id_key UNIQUE USING INDEX users_tenant_id_id_key,
    ADD CONSTRAINT users_tenant_id_external_id_key UNIQUE USING INDEX users_tenant_id_external_id_key,
    DROP CONSTRAINT users_external_id_key;
COMMIT;

BEGIN;
ALTER TABLE venues
    ADD CONSTRAINT venues_tenant_id_id_key UNIQUE USING INDEX venues_tenant_id_id_key;
COMMIT;

BEGIN;
ALTER TABLE events
    ADD CONSTRAINT events_tenant_id_id_key UNIQUE USING INDEX events_tenant_id_id_key,
    ADD CONSTRAINT events_tenant_id_slug_key UNIQUE USING INDEX events_tenant_id_slug_key,
    DROP CONSTRAINT events_venue_slug_key;
COMMIT;

BEGIN;
ALTER TABLE ticket_types
    ADD CONSTRAINT ticket_types_tenant_id_id_key UNIQUE USING INDEX ticket_types_tenant_id_id_key;
COMMIT;

BEGIN;
ALTER TABLE orders
    ADD CONSTRAINT orders_tenant_id_id_key UNIQUE USING INDEX orders_tenant_id_id_key,
    ADD CONSTRAINT orders_tenant_id_order_number_key UNIQUE USING INDEX orders_tenant_id_order_number_key,
    DROP CONSTRAINT orders_order_number_key;
COMMIT;

BEGIN;
ALTER TABLE payments
    ADD CONSTRAINT payments_tenant_id_id_key UNIQUE USING INDEX payments_tenant_id_id_key,
    ADD CONSTRAINT payments_tenant_id_external_id_key UNIQUE USING INDEX payments_tenant_id_external_id_key,
    DROP CONSTRAINT payments_external_id_key;
COMMIT;

BEGIN;
ALTER TABLE tickets
    ADD CONSTRAINT tickets_tenant_id_id_key UNIQUE USING INDEX tickets_tenant_id_id_key,
    ADD CONSTRAINT tickets_tenant_id_ticket_number_key UNIQUE USING INDEX tickets_tenant_id_ticket_number_key,
    DROP CONSTRAINT tickets_ticket_number_key;
COMMIT;

BEGIN;
ALTER TABLE refunds
    ADD CONSTRAINT refunds_tenant_id_external_id_key UNIQUE USING INDEX refunds_tenant_id_external_id_key,
    DROP CONSTRAINT refunds_external_id_key;
COMMIT;

BEGIN;
ALTER TABLE webhook_events
    ADD CONSTRAINT webhook_events_tenant_id_provider_external_id_key UNIQUE USING INDEX webhook_events_tenant_id_provider_external_id_key,
    DROP CONSTRAINT webhook_events_provider_external_id_key;
COMMIT;

-- 2. composite foreign keys, NOT VALID, one per transaction ---------------------------------
-- payments.order_id, tickets.order_id (NULL for complimentary tickets: still allowed) and
-- order_items.ticket_type_id had no foreign key at all: a purged order left its payment
-- behind, a deleted ticket type left orphan lines. idempotency_keys (V1): the key's principal
-- must be a user of the key's tenant; indexed by the unique (tenant_id, user_id,
-- idempotency_key).
BEGIN;
ALTER TABLE venues
    ADD CONSTRAINT venues_tenant_id_owner_user_id_fkey
        FOREIGN KEY (tenant_id, owner_user_id) REFERENCES users (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE events
    ADD CONSTRAINT events_tenant_id_venue_id_fkey
        FOREIGN KEY (tenant_id, venue_id) REFERENCES venues (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE ticket_types
    ADD CONSTRAINT ticket_types_tenant_id_event_id_fkey
        FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE orders
    ADD CONSTRAINT orders_tenant_id_user_id_fkey
        FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE orders
    ADD CONSTRAINT orders_tenant_id_event_id_fkey
        FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE payments
    ADD CONSTRAINT payments_tenant_id_order_id_fkey
        FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE tickets
    ADD CONSTRAINT tickets_tenant_id_event_id_fkey
        FOREIGN KEY (tenant_id, event_id) REFERENCES events (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE tickets
    ADD CONSTRAINT tickets_tenant_id_ticket_type_id_fkey
        FOREIGN KEY (tenant_id, ticket_type_id) REFERENCES ticket_types (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE tickets
    ADD CONSTRAINT tickets_tenant_id_order_id_fkey
        FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE tickets
    ADD CONSTRAINT tickets_tenant_id_user_id_fkey
        FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE order_items
    ADD CONSTRAINT order_items_tenant_id_order_id_fkey
        FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id) ON DELETE CASCADE NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE order_items
    ADD CONSTRAINT order_items_tenant_id_ticket_type_id_fkey
        FOREIGN KEY (tenant_id, ticket_type_id) REFERENCES ticket_types (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE ticket_transfers
    ADD CONSTRAINT ticket_transfers_tenant_id_ticket_id_fkey
        FOREIGN KEY (tenant_id, ticket_id) REFERENCES tickets (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE ticket_transfers
    ADD CONSTRAINT ticket_transfers_tenant_id_from_user_id_fkey
        FOREIGN KEY (tenant_id, from_user_id) REFERENCES users (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE ticket_transfers
    ADD CONSTRAINT ticket_transfers_tenant_id_to_user_id_fkey
        FOREIGN KEY (tenant_id, to_user_id) REFERENCES users (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE refunds
    ADD CONSTRAINT refunds_tenant_id_payment_id_fkey
        FOREIGN KEY (tenant_id, payment_id) REFERENCES payments (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE refunds
    ADD CONSTRAINT refunds_tenant_id_order_id_fkey
        FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, id) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE idempotency_keys
    ADD CONSTRAINT idempotency_keys_tenant_id_user_id_fkey
        FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE NOT VALID;
COMMIT;

-- 3. the single-column foreign keys they replace, one per transaction ----------------------
BEGIN;
ALTER TABLE venues DROP CONSTRAINT venues_owner_user_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE events DROP CONSTRAINT events_venue_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE ticket_types DROP CONSTRAINT ticket_types_event_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE orders DROP CONSTRAINT orders_user_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE orders DROP CONSTRAINT orders_event_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE tickets DROP CONSTRAINT tickets_event_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE tickets DROP CONSTRAINT tickets_ticket_type_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE tickets DROP CONSTRAINT tickets_user_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE order_items DROP CONSTRAINT order_items_order_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE ticket_transfers DROP CONSTRAINT ticket_transfers_ticket_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE ticket_transfers DROP CONSTRAINT ticket_transfers_from_user_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE ticket_transfers DROP CONSTRAINT ticket_transfers_to_user_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE refunds DROP CONSTRAINT refunds_payment_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE refunds DROP CONSTRAINT refunds_order_id_fkey;
COMMIT;

BEGIN;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_user_id_fkey;
COMMIT;

-- 4. the single-column indexes the (x_id, tenant_id) indexes of V7 supersede -----------------
-- ticket_types (tenant_id) is the prefix of ticket_types_tenant_id_id_key, which now serves
-- the tenant foreign key and tenant filters.
DROP INDEX CONCURRENTLY IF EXISTS venues_owner_user_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS ticket_types_event_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS ticket_types_tenant_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS orders_user_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS orders_event_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS payments_order_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS tickets_ticket_type_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS tickets_order_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS tickets_user_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS order_items_order_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS order_items_ticket_type_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS ticket_transfers_ticket_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS ticket_transfers_from_user_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS ticket_transfers_to_user_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS refunds_payment_id_idx;

DROP INDEX CONCURRENTLY IF EXISTS refunds_order_id_idx;
