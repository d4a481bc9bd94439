-- CHECK constraints of tables and domains with their text as pg_get_constraintdef
-- gives it. A validated table CHECK is written out from its expression instead
-- (the function costs tens of µs a constraint, and there may be tens of thousands);
-- domain CHECKs and CHECKs never validated (NOT VALID, NOT ENFORCED) are deparsed.
-- Only tables in scope (deparsing opens the table) and domains.
-- Columns: oid, conname, conrelid (0 for a domain's), contypid (0 for a table's),
-- conkey, coninhcount, validated, definition.
-- requires: scope_tables, scope_attributes
-- cost: 5
-- opens: tables
with con as (
    select con.oid, con.conname, con.conrelid, con.contypid, con.conkey, con.coninhcount,
           con.convalidated, con.connoinherit, con.conbin,
           con.convalidated and con.conrelid <> 0 as from_expr
    from pg_constraint con
    where con.contype = 'c'
      and (con.conrelid = 0 or exists (select 1 from scope_tables t where t.oid = con.conrelid))
),
-- A validated table CHECK's text depends only on its stored expression and the names
-- of the columns it references (conkey), plus the table's name when the expression
-- has a whole-row reference. The same CHECK on thousands of tables, as a migration
-- template writes it, is deparsed once: deparsing is what costs (each table's
-- catalog entries are read cold on a new connection, ~40 µs a table).
-- the columns each validated table CHECK references (conkey), one row each: a
-- one-column CHECK (the usual one) as it is, a wider one unnested
refs as materialized (
    select c.oid, c.conrelid, c.conkey[1] as attnum, 1::bigint as ord, false as multi
    from con c
    where c.from_expr and cardinality(c.conkey) = 1
    union all
    select c.oid, c.conrelid, k.attnum, k.ord, true
    from con c
    cross join unnest(c.conkey) with ordinality k(attnum, ord)
    where c.from_expr and cardinality(c.conkey) > 1
),
names as (
    select r.oid, a.attname as names
    from refs r
    join scope_attributes a on a.table_oid = r.conrelid and a.attnum = r.attnum
    where not r.multi
    union all
    select r.oid, string_agg(a.attname, E'\n' order by r.ord)
    from refs r
    join scope_attributes a on a.table_oid = r.conrelid and a.attnum = r.attnum
    where r.multi
    group by r.oid
),
keyed as (
    select c.oid,
           c.conbin::text || E'\n' || coalesce(n.names, '')
           -- a whole-row reference: the table itself (not shared)
           || case when strpos(c.conbin::text, ':varattno 0 ') > 0
                   then E'\n' || c.conrelid::text else '' end as deparse_key
    from con c
    left join names n on n.oid = c.oid
    where c.from_expr
),
deparsed as (
    select k.deparse_key, pg_get_expr(c.conbin, c.conrelid, true) as expr
    from (select k.deparse_key, min(k.oid) as oid from keyed k group by k.deparse_key) k
    join con c on c.oid = k.oid
)
select c.oid,
       c.conname::text as conname,
       c.conrelid,
       c.contypid,
       c.conkey,
       c.coninhcount,
       c.convalidated as validated,
       case when c.from_expr
            then 'CHECK (' || dp.expr || ')'
                 || case when c.connoinherit then ' NO INHERIT' else '' end
            else pg_get_constraintdef(c.oid, true) end as definition
from con c
left join keyed k on k.oid = c.oid
left join deparsed dp on dp.deparse_key = k.deparse_key
