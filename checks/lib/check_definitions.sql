-- CHECK constraints of tables in scope and of domains, without their text: a
-- check deparses the few it shows (pg_get_constraintdef(oid, true)) in its
-- evidence, where a batch evaluates it only for rows a report shows. Deparsing
-- every CHECK here cost ~30 µs each (each table's catalog entries read cold on a
-- new connection): 150 ms at 5,000 tables, for text that was then thrown away.
-- Only the never-validated ones are deparsed, to tell NOT ENFORCED (PostgreSQL
-- 18) from NOT VALID.
-- Columns: oid, conname, conrelid (0 for a domain's), contypid (0 for a table's),
-- conkey, coninhcount, validated, enforced, unvalidated_definition (the text of a
-- never-validated CHECK, else null).
-- requires: scope_tables
-- cost: 1
select con.oid,
       con.conname::text as conname,
       con.conrelid,
       con.contypid,
       con.conkey,
       con.coninhcount,
       con.convalidated as validated,
       con.convalidated or d.def !~ ' NOT ENFORCED$' as enforced,
       d.def as unvalidated_definition
from pg_constraint con
cross join lateral (
    select case when con.convalidated then null else pg_get_constraintdef(con.oid, true) end as def
) d
where con.contype = 'c'
  and (con.conrelid = 0 or exists (select 1 from scope_tables t where t.oid = con.conrelid))
