-- pg-integrity: no-transaction
--
-- V4__integrity_constraints: CHECK, NOT NULL and tenant foreign key constraints that need no
-- new index, added NOT VALID.
--
-- Fixes: races.inventory_non_negative, schema.check_constraints, schema.not_null,
--        tenancy.tenant_foreign_key
-- (together with V6__validate_constraints, which validates what this adds NOT VALID):
--   races.inventory_non_negative   ticket_types.available_quantity >= 0
--   schema.check_constraints       ticket_types.available_quantity, order_items.unit_price,
--                                  payments.fee_amount, tickets.price
--   schema.not_null                ticket_types.status, payments.status, jobs.created_at
--   tenancy.tenant_foreign_key     jobs.tenant_id -> tenants
--   (schema.constraints_validated fails between V4 and V6: that is the point of NOT VALID)
-- The missing and tenant-scoped foreign keys (schema.foreign_keys,
-- tenancy.tenant_scoped_foreign_keys) and the tenant-scoped uniques
-- (tenancy.tenant_scoped_uniques) need unique indexes built CONCURRENTLY first:
-- V7__tenant_key_indexes, V8__tenant_scoped_keys, V9__validate_tenant_keys.
--
-- One transaction per table (one table locked per transaction; a foreign key also
-- locks its parent at SHARE ROW EXCLUSIVE), each a BEGIN … COMMIT block that `migrate apply`
-- runs once and records as a step, so a re-run after a crash goes on where it stopped.
-- NOT VALID: no row is read, each ALTER holds its lock (ACCESS EXCLUSIVE for a CHECK, SHARE
-- ROW EXCLUSIVE on both tables for a foreign key) for an instant; new and updated rows are
-- checked from now on. Existing rows are checked by V6__validate_constraints, in its own
-- transactions, under SHARE UPDATE EXCLUSIVE only. (Until this release the five ALTERs ran
-- in one transaction, holding ACCESS EXCLUSIVE on five tables at once.)
--
-- NOT NULL without a long ACCESS EXCLUSIVE scan: CHECK (col IS NOT NULL) NOT VALID here;
-- V6 validates it, then SET NOT NULL (PostgreSQL 12+ sees the validated check and skips the
-- scan) and drops the check.
--
-- On a database holding bad rows (fixtures/ticket-service/dirty.sql: negative inventory, NULL
-- payment status, NULL job created_at) this migration succeeds and V6 fails; the data checks
-- (data.negative_inventory, data.required_nulls) name the rows to fix first.

-- Inventory never goes negative (purchase_tickets checks availability under FOR UPDATE, but a
-- hand edit or a bug elsewhere must not oversell), and never exceeds what was put on sale.
BEGIN;
ALTER TABLE ticket_types
    ADD CONSTRAINT ticket_types_available_quantity_non_negative
        CHECK (available_quantity >= 0) NOT VALID,
    ADD CONSTRAINT ticket_types_available_quantity_within_total
        CHECK (available_quantity <= total_quantity) NOT VALID,
    ADD CONSTRAINT ticket_types_status_is_not_null
        CHECK (status IS NOT NULL) NOT VALID;
COMMIT;

-- Prices and fees: zero is legitimate (complimentary tickets, fee-free payments), negative
-- is not.
BEGIN;
ALTER TABLE order_items
    ADD CONSTRAINT order_items_unit_price_non_negative
        CHECK (unit_price >= 0) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE tickets
    ADD CONSTRAINT tickets_price_non_negative
        CHECK (price >= 0) NOT VALID;
COMMIT;

BEGIN;
ALTER TABLE payments
    ADD CONSTRAINT payments_fee_amount_non_negative
        CHECK (fee_amount >= 0) NOT VALID,
    ADD CONSTRAINT payments_status_is_not_null
        CHECK (status IS NOT NULL) NOT VALID;
COMMIT;

-- jobs had no foreign key on its tenant column; jobs_tenant_id_idx already indexes it.
BEGIN;
ALTER TABLE jobs
    ADD CONSTRAINT jobs_tenant_id_fkey
        FOREIGN KEY (tenant_id) REFERENCES tenants (id) NOT VALID,
    ADD CONSTRAINT jobs_created_at_is_not_null
        CHECK (created_at IS NOT NULL) NOT VALID;
COMMIT;
