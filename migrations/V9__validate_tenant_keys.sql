-- pg-integrity: no-transaction
--
-- V9__validate_tenant_keys: validate the composite foreign keys V8 added NOT VALID.
--
-- Fixes: schema.constraints_validated, schema.foreign_keys, tenancy.tenant_scoped_foreign_keys
--        (with V8__tenant_scoped_keys)
--
-- Runs outside a transaction, statement by statement: each VALIDATE is its own transaction
-- and holds SHARE UPDATE EXCLUSIVE on the referencing table and ROW SHARE on the referenced
-- one while it checks the existing rows, so reads and writes of both go on. Safe to re-run:
-- validating a validated constraint does nothing.
--
-- Fails, leaving that foreign key NOT VALID (still enforced for new rows), when an existing
-- row points at a missing parent or at another tenant's parent. On
-- fixtures/ticket-service/dirty.sql (which V7 already refuses): payments.order_id and
-- order_items.ticket_type_id orphans (data.orphans), and a tenant-1 ticket whose event belongs
-- to tenant 2 (data.cross_tenant_references). Fix or remove those rows, then run it again.

ALTER TABLE venues VALIDATE CONSTRAINT venues_tenant_id_owner_user_id_fkey;

ALTER TABLE events VALIDATE CONSTRAINT events_tenant_id_venue_id_fkey;

ALTER TABLE ticket_types VALIDATE CONSTRAINT ticket_types_tenant_id_event_id_fkey;

ALTER TABLE orders VALIDATE CONSTRAINT orders_tenant_id_user_id_fkey;

ALTER TABLE orders VALIDATE CONSTRAINT orders_tenant_id_event_id_fkey;

ALTER TABLE payments VALIDATE CONSTRAINT payments_tenant_id_order_id_fkey;

ALTER TABLE tickets VALIDATE CONSTRAINT tickets_tenant_id_event_id_fkey;

ALTER TABLE tickets VALIDATE CONSTRAINT tickets_tenant_id_ticket_type_id_fkey;

ALTER TABLE tickets VALIDATE CONSTRAINT tickets_tenant_id_order_id_fkey;

ALTER TABLE tickets VALIDATE CONSTRAINT tickets_tenant_id_user_id_fkey;

ALTER TABLE order_items VALIDATE CONSTRAINT order_items_tenant_id_order_id_fkey;

ALTER TABLE order_items VALIDATE CONSTRAINT order_items_tenant_id_ticket_type_id_fkey;

ALTER TABLE ticket_transfers VALIDATE CONSTRAINT ticket_transfers_tenant_id_ticket_id_fkey;

ALTER TABLE ticket_transfers VALIDATE CONSTRAINT ticket_transfers_tenant_id_from_user_id_fkey;

ALTER TABLE ticket_transfers VALIDATE CONSTRAINT ticket_transfers_tenant_id_to_user_id_fkey;

ALTER TABLE refunds VALIDATE CONSTRAINT refunds_tenant_id_payment_id_fkey;

ALTER TABLE refunds VALIDATE CONSTRAINT refunds_tenant_id_order_id_fkey;

ALTER TABLE idempotency_keys VALIDATE CONSTRAINT idempotency_keys_tenant_id_user_id_fkey;
