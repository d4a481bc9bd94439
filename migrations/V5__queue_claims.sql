-- V5__queue_claims: workers claim jobs with FOR UPDATE SKIP LOCKED.
--
-- Fixes: locking.skip_locked (public.jobs)
--
-- The old claim_next_job selected the next due job FOR UPDATE: every worker polling the same
-- queue locked the same first row, so all but one waited for that transaction to end, one
-- after another. The new one skips rows another worker has locked and takes the next due
-- job instead, and claims it (status 'running', lease locked_at/locked_by, attempts + 1) in the
-- same single statement. The worker commits right after the claim and does the work outside
-- the transaction (idle_in_transaction_session_timeout for ticket_service is 60 s, see
-- V2__timeouts), then calls complete_job or fail_job, whose plain UPDATE ... WHERE id = $1
-- needs no SELECT ... FOR UPDATE.
--
-- Under READ COMMITTED a row another worker claimed and committed meanwhile is re-checked
-- (status is no longer 'pending') and skipped too, so a job is never handed out twice.
--
-- Same name, arguments, defaults and result type as before (CREATE OR REPLACE keeps the
-- grants); the body is now one SQL statement. Workers run as ticket_service (BYPASSRLS):
-- they see every tenant's jobs. Called as ticket_app it only sees the caller's tenant.
--
-- Index: the claim reads the due jobs of one queue in (priority DESC, run_at) order, which is
-- exactly the partial index jobs_pending_run_at_idx (queue, priority DESC, run_at)
-- WHERE status = 'pending' of schema.sql: the claim is an index scan that stops at the first
-- unlocked row. (V7__tenant_key_indexes re-creates it CONCURRENTLY if it is missing.)

CREATE OR REPLACE FUNCTION claim_next_job(p_worker text, p_queue text DEFAULT 'default')
RETURNS SETOF jobs
LANGUAGE sql
AS $$
    WITH next_job AS (
        SELECT id
          FROM jobs
         WHERE queue = p_queue
           AND status = 'pending'
           AND run_at <= now()
         ORDER BY priority DESC, run_at, id
         LIMIT 1
           FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs AS j
       SET status = 'running',
           locked_at = now(),
           locked_by = p_worker,
           attempts = j.attempts + 1
      FROM next_job
     WHERE j.id = next_job.id
    RETURNING j.*;
$$;

COMMENT ON FUNCTION claim_next_job(text, text) IS
    'Claims the next due pending job of a queue (FOR UPDATE SKIP LOCKED), marks it running with a '
    'lease (locked_at, locked_by) and returns it; returns no row when nothing is due. Commit right '
    'after the call, then complete_job or fail_job.';
