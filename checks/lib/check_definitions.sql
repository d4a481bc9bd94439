-- CHECK constraints of tables and domains with their text as pg_get_constraintdef
-- gives it. A validated table CHECK is written out from its expression instead
-- (the function costs tens of µs a constraint, and there may be tens of thousands);
-- domain CHECKs and CHECKs never validated (NOT VALID, NOT ENFORCED) are deparsed.
-- Only tables in scope (deparsing opens the table) and domains.
-- Columns: oid, conname, conrelid (0 for a domain's), contypid (0 for a table's),
-- conkey, coninhcount, validated, definition.
-- requires: scope_tables
-- cost: 5
-- opens: tables
select con.oid,
       con.conname::text as conname,
       con.conrelid,
       con.contypid,
       con.conkey,
       con.coninhcount,
       con.convalidated as validated,
       case when con.convalidated and con.conrelid <> 0
            then 'CHECK (' || pg_get_expr(con.conbin, con.conrelid, true) || ')'
                 || case when con.connoinherit then ' NO INHERIT' else '' end
            else pg_get_constraintdef(con.oid, true) end as definition
from pg_constraint con
where con.contype = 'c'
  and (con.conrelid = 0 or exists (select 1 from scope_tables t where t.oid = con.conrelid))
