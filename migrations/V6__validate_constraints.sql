-- pg-integrity: no-transaction
--
-- V6__validate_constraints: validate the constraints V4 added NOT VALID, then turn the
-- NOT NULL checks into real NOT NULL columns.
--
-- Fixes: races.inventory_non_negative, schema.constraints_validated, schema.not_null,
--        tenancy.tenant_foreign_key (with V4__integrity_constraints)
--
-- Runs outside a transaction, statement by statement (the runner records it once all have
-- succeeded). Each VALIDATE runs in its own transaction, so it holds only SHARE UPDATE
-- EXCLUSIVE on its table (plus ROW SHARE on the referenced table for a foreign key) while it
-- scans: reads and writes go on. It does not hold V4's ADD CONSTRAINT lock.
--
-- Every statement is safe to re-run: VALIDATE of a validated constraint does nothing, SET NOT
-- NULL of a NOT NULL column does nothing, the helper checks are dropped IF EXISTS, and the
-- helper checks are validated only while they still exist.
--
-- Fails (leaving the constraint NOT VALID, nothing else changed) when a row violates it; on
-- fixtures/ticket-service/dirty.sql: ticket_types 3c000000-...-000000000004 has
-- available_quantity = -2. Fix the rows (data.negative_inventory, data.required_nulls) and
-- run it again.

ALTER TABLE ticket_types VALIDATE CONSTRAINT ticket_types_available_quantity_non_negative;

ALTER TABLE ticket_types VALIDATE CONSTRAINT ticket_types_available_quantity_within_total;

ALTER TABLE order_items VALIDATE CONSTRAINT order_items_unit_price_non_negative;

ALTER TABLE tickets VALIDATE CONSTRAINT tickets_price_non_negative;

ALTER TABLE payments VALIDATE CONSTRAINT payments_fee_amount_non_negative;

ALTER TABLE jobs VALIDATE CONSTRAINT jobs_tenant_id_fkey;

-- NOT NULL, one column at a time: validate the helper check (scan, SHARE UPDATE EXCLUSIVE),
-- then SET NOT NULL (ACCESS EXCLUSIVE for an instant: PostgreSQL 12+ proves the column has no
-- NULL from the validated check and skips the scan), then drop the helper check.
-- The helper checks are named <table>_<column>_is_not_null, never <table>_<column>_not_null:
-- that is the name PostgreSQL 18 gives the not-null constraint SET NOT NULL creates, which the
-- DROP ... IF EXISTS of a re-run must never hit.

-- ticket_types.status
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
                WHERE conrelid = 'ticket_types'::regclass
                  AND conname = 'ticket_types_status_is_not_null' AND NOT convalidated) THEN
        ALTER TABLE ticket_types VALIDATE CONSTRAINT ticket_types_status_is_not_null;
    END IF;
END
$$;

ALTER TABLE ticket_types ALTER COLUMN status SET NOT NULL;

ALTER TABLE ticket_types DROP CONSTRAINT IF EXISTS ticket_types_status_is_not_null;

-- payments.status
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
                WHERE conrelid = 'payments'::regclass
                  AND conname = 'payments_status_is_not_null' AND NOT convalidated) THEN
        ALTER TABLE payments VALIDATE CONSTRAINT payments_status_is_not_null;
    END IF;
END
$$;

ALTER TABLE payments ALTER COLUMN status SET NOT NULL;

ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_status_is_not_null;

-- jobs.created_at
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
                WHERE conrelid = 'jobs'::regclass
                  AND conname = 'jobs_created_at_is_not_null' AND NOT convalidated) THEN
        ALTER TABLE jobs VALIDATE CONSTRAINT jobs_created_at_is_not_null;
    END IF;
END
$$;

ALTER TABLE jobs ALTER COLUMN created_at SET NOT NULL;

ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_created_at_is_not_null;
