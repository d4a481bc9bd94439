-- V1__idempotency_keys: tenant-scoped idempotency keys for purchase requests.
--
-- Fixes: races.idempotency_keys, races.idempotency_expiry
-- (the new table is born compliant with rls.enabled, rls.forced, rls.tenant_policies,
-- rls.write_check, rls.policy_initplan, tenancy.tenant_foreign_key,
-- tenancy.tenant_scoped_uniques and tenancy.tenant_indexes; its user foreign key is made
-- tenant-scoped in V8__tenant_scoped_keys, once users has a unique (tenant_id, id)).
--
-- Runs in one transaction. A new table: no existing traffic to block.
--
-- How the application uses it (full version: docs/idempotency.md)
-- -----------------------------------------------------------------
-- A client sends `Idempotency-Key: "<uuid>"` with a POST. The API, connected as
-- ticket_app, in READ COMMITTED, with the tenant set transaction-locally:
--
--   BEGIN;
--   SELECT set_config('app.current_tenant', $tenant, true);
--   -- claim: the unique (tenant_id, user_id, idempotency_key) decides, never SELECT-then-INSERT
--   INSERT INTO idempotency_keys (tenant_id, user_id, idempotency_key,
--                                 request_method, request_path, request_hash)
--   VALUES ($tenant, $user, $key, 'POST', '/v1/orders', sha256($canonical_request))
--   ON CONFLICT (tenant_id, user_id, idempotency_key) DO NOTHING
--   RETURNING id;
--
--   * 1 row: this request owns the key (locked_at = now() is its lease). Do the work; each
--     atomic phase commits its new recovery_point ('started' -> 'order_created' ->
--     'payment_captured' -> 'finished'); the last one stores response_code/response_body and
--     sets locked_at = NULL. On a transient error, release the lease (locked_at = NULL) so a
--     retry may proceed at once.
--   * 0 rows: the key exists (a concurrent duplicate INSERT waits for the first transaction:
--     bound that wait with lock_timeout and answer 409 on SQLSTATE 55P03). Try to take over an
--     abandoned request:
--       UPDATE idempotency_keys SET locked_at = now()
--        WHERE tenant_id = $tenant AND user_id = $user AND idempotency_key = $key
--          AND request_method = 'POST' AND request_path = '/v1/orders' AND request_hash = $hash
--          AND recovery_point <> 'finished'
--          AND (locked_at IS NULL OR locked_at < now() - interval '90 seconds')   -- lease expired
--       RETURNING id, recovery_point;                                            -- resume from it
--     and if no row comes back, read the key and answer:
--       - request_method, request_path or request_hash differ  -> 422 (key reused for another request)
--       - recovery_point = 'finished'                           -> replay response_code + response_body
--       - otherwise (lease held, locked_at within 90 s)         -> 409 + Retry-After (in progress)
--
-- Reaper: keys live 72 hours (expires_at; clients may retry for 24 h). A maintenance job, as
-- ticket_service (BYPASSRLS: it sees every tenant), deletes expired keys in small batches
-- using idempotency_keys_expires_at_idx, and never a key whose lease is still live:
--   DELETE FROM idempotency_keys
--    WHERE id IN (SELECT id FROM idempotency_keys
--                  WHERE expires_at < now()
--                    AND (locked_at IS NULL OR locked_at < now() - interval '90 seconds')
--                  ORDER BY expires_at LIMIT 1000
--                  FOR UPDATE SKIP LOCKED);
-- repeated until it deletes fewer than 1000 rows. A retry that arrives after its key was
-- reaped runs again as a new request.

CREATE TABLE idempotency_keys (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        uuid        NOT NULL REFERENCES tenants (id),
    -- the authenticated principal; made (tenant_id, user_id) -> users (tenant_id, id) in V8
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    idempotency_key  text        NOT NULL
                                 CHECK (char_length(idempotency_key) BETWEEN 1 AND 255),
    request_method   text        NOT NULL
                                 CHECK (request_method IN ('POST', 'PUT', 'PATCH', 'DELETE')),
    request_path     text        NOT NULL
                                 CHECK (char_length(request_path) BETWEEN 1 AND 2048),
    -- SHA-256 of method, path and the canonical request body: 32 bytes, always
    request_hash     bytea       NOT NULL
                                 CHECK (octet_length(request_hash) = 32),
    -- the last atomic phase committed; 'finished' once a response is stored
    recovery_point   text        NOT NULL DEFAULT 'started'
                                 CHECK (recovery_point ~ '^[a-z][a-z0-9_]{0,49}$'),
    -- lease: set while a request works the key; NULL when nobody does
    locked_at        timestamptz DEFAULT now(),
    response_code    smallint    CHECK (response_code BETWEEN 100 AND 599),
    response_body    jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL DEFAULT now() + interval '72 hours',
    CONSTRAINT idempotency_keys_tenant_id_user_id_idempotency_key_key
        UNIQUE (tenant_id, user_id, idempotency_key),
    CONSTRAINT idempotency_keys_expires_after_created
        CHECK (expires_at > created_at),
    CONSTRAINT idempotency_keys_finished_has_response
        CHECK (recovery_point <> 'finished' OR (response_code IS NOT NULL AND locked_at IS NULL))
);

COMMENT ON TABLE idempotency_keys IS
    'One row per (tenant, user, Idempotency-Key): claimed with INSERT ... ON CONFLICT DO NOTHING RETURNING; '
    '409 while the locked_at lease is live, 422 when the request hash differs, replay of the stored response '
    'once recovery_point = finished; reaped after expires_at. See docs/idempotency.md.';

-- Reaping: the reaper scans by expiry.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- Tenant isolation, as on every tenant table (V3__tenant_rls): forced, so that even the table
-- owner is filtered unless it is a superuser or has BYPASSRLS.
ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;

CREATE POLICY tenant_isolation ON idempotency_keys
    AS PERMISSIVE
    FOR ALL
    TO ticket_app
    USING (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid))
    WITH CHECK (tenant_id = (SELECT nullif(current_setting('app.current_tenant', true), '')::uuid));

GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO ticket_app, ticket_service;
