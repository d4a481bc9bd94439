-- pg-integrity: no-transaction
--
-- V3__tenant_rls: tenant row level security on every tenant table.
--
-- Fixes: rls.enabled, rls.forced, rls.policies_present, rls.tenant_policies, rls.write_check,
--        rls.fail_closed, rls.policy_initplan, rls.views_security_invoker (PostgreSQL 15+),
--        rls.security_definer_search_path, isolation.cross_tenant_read,
--        isolation.cross_tenant_write, isolation.unset_context
-- (rls.app_role_bypass and rls.service_role keep passing: ticket_app gains no ownership or
-- attribute, ticket_service keeps BYPASSRLS)
--
-- One transaction per table (one table locked per transaction), each a BEGIN …
-- COMMIT block that `migrate apply` runs once and records as a step, so a re-run after a
-- crash goes on where it stopped. A table's user-based policy is dropped in the same
-- transaction that creates its tenant policy, so there is no moment with either no policy
-- (everything hidden from ticket_app) or both (OR-ed: user policies widen access). Between two
-- steps some tables are tenant-isolated and the rest still under their old policies: each
-- table is at every moment under one of the two, never without. CREATE/DROP POLICY and
-- ENABLE/FORCE take ACCESS EXCLUSIVE on the table for an instant; the runner's lock_timeout
-- and retries keep a long reader from stalling traffic behind it. (Until this release all
-- tables were switched in one transaction, holding ACCESS EXCLUSIVE on all of them at once:
-- a writer holding one table and waiting for another could keep it from ever finishing.)
--
-- Every tenant table gets one permissive policy for ALL commands, for the application role:
--     tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid)
-- in USING (which rows are visible, updatable, deletable) and WITH CHECK (which rows may be
-- written: a row cannot be inserted into or moved to another tenant).
--   * missing_ok = true and nullif(.., ''): with no tenant set (or the '' a transaction-local
--     setting leaves behind on a pooled connection) the comparison is NULL, so nothing is
--     visible and every write is refused: fail closed, never an error, never everything.
--   * (SELECT ...): an initplan, evaluated once per statement instead of once per row; the
--     comparison then uses the indexes that lead with tenant_id.
--   * The application sets the tenant per transaction: SELECT set_config('app.current_tenant',
--     $1, true) (or SET LOCAL); a session-level SET leaks to the next pooled client.
--     Deploy that application change BEFORE this migration, or ticket_app sees empty tables.
--
-- Roles:
--   * ticket_app: NOBYPASSRLS, owns nothing: filtered by the policies below.
--   * ticket_service (workers): BYPASSRLS, unaffected, sees every tenant (the reaper and the
--     queue workers rely on it). Any other role is denied by default (no policy applies to it).
--   * the table owner: FORCE ROW LEVEL SECURITY subjects it to the policies too (so a service
--     that ever connected as the owner would be filtered, not silently see everything).
--     Superusers are never filtered; a non-superuser migration owner running data fixes must
--     set the tenant or be given BYPASSRLS. Constraint validation and foreign key checks
--     bypass row security and are not affected.
--
-- Buyers-see-only-their-own-rows (the dropped user policies) is an application rule within a
-- tenant; it is enforced by the API's queries, not by a permissive policy that would be OR-ed
-- with the tenant policy.

-- users ----------------------------------------------------------------------------------
BEGIN;
DROP POLICY IF EXISTS users_self_access ON users;
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- venues ---------------------------------------------------------------------------------
BEGIN;
DROP POLICY IF EXISTS venues_owner_access ON venues;
ALTER TABLE venues ENABLE ROW LEVEL SECURITY;
ALTER TABLE venues FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON venues AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- events ---------------------------------------------------------------------------------
BEGIN;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON events AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- ticket_types ---------------------------------------------------------------------------
BEGIN;
ALTER TABLE ticket_types ENABLE ROW LEVEL SECURITY;
ALTER TABLE ticket_types FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ticket_types AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- orders ---------------------------------------------------------------------------------
BEGIN;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE orders FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON orders AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- order_items ----------------------------------------------------------------------------
BEGIN;
ALTER TABLE order_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE order_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON order_items AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- tickets --------------------------------------------------------------------------------
BEGIN;
DROP POLICY IF EXISTS tickets_holder_access ON tickets;
ALTER TABLE tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE tickets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tickets AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- ticket_transfers -----------------------------------------------------------------------
BEGIN;
ALTER TABLE ticket_transfers ENABLE ROW LEVEL SECURITY;
ALTER TABLE ticket_transfers FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ticket_transfers AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- payments -------------------------------------------------------------------------------
BEGIN;
ALTER TABLE payments ENABLE ROW LEVEL SECURITY;
ALTER TABLE payments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON payments AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- refunds --------------------------------------------------------------------------------
BEGIN;
ALTER TABLE refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE refunds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refunds AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- webhook_events -------------------------------------------------------------------------
BEGIN;
ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_events AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- jobs -----------------------------------------------------------------------------------
-- Workers claim as ticket_service (BYPASSRLS); purchase_tickets enqueues as ticket_app,
-- within the caller's tenant.
BEGIN;
ALTER TABLE jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON jobs AS PERMISSIVE FOR ALL TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));
COMMIT;

-- (idempotency_keys got the same policy in V1__idempotency_keys.)

-- Views ----------------------------------------------------------------------------------
-- A view reads its tables with its owner's rights: event_sales_summary, owned by the
-- migration owner, would show every tenant's sales to ticket_app. security_invoker (PostgreSQL
-- 15+) applies the caller's policies instead. On 13 and 14 the option does not exist; there
-- the view keeps owner rights (revoke SELECT on it from ticket_app, or add a tenant filter, if
-- the API reads it on those servers).
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 150000 THEN
        EXECUTE 'ALTER VIEW event_sales_summary SET (security_invoker = on)';
    END IF;
END
$$;

-- SECURITY DEFINER functions -------------------------------------------------------------
-- check_suspicious_activity runs with its owner's rights, so the names in its body must not
-- resolve to objects a caller controls. Its search_path is pinned: pg_catalog first (built-in
-- functions and operators are found there before anything in public, where everyone may
-- create objects before PostgreSQL 15), then public (the service's tables), then pg_temp
-- last (a caller's temporary table can never shadow a table the body reads). EXECUTE stays
-- revoked from PUBLIC (schema.sql), granted to ticket_app and ticket_service only.
ALTER FUNCTION check_suspicious_activity(uuid, uuid) SET search_path = pg_catalog, public, pg_temp;
