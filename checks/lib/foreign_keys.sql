-- Foreign keys declared on tables in scope (copies a partition inherits from its
-- parent are left out: conparentid = 0; a key declared on a partition itself is kept).
-- Columns: conoid, conname, table_oid, table_object, object (schema.table.conname),
-- ref_oid, ref_object, attnums, ref_attnums, columns (text[]), ref_columns (text[]),
-- validated, enforced (false for a NOT ENFORCED key).
-- requires: scope_tables, scope_attributes
-- cost: 6
with fk as (
    -- only the columns used: a materialized CTE holding whole pg_constraint rows
    -- (conbin and all) outgrows work_mem and goes to disk
    select con.oid, con.conname, con.conrelid, con.confrelid, con.conkey, con.confkey,
           con.convalidated, t.object as table_object
    from pg_constraint con
    join scope_tables t on t.oid = con.conrelid
    where con.contype = 'f'
      and con.conparentid = 0
),
-- one row per column pair: a one-column key (the usual one) as it is, the columns of
-- a wider key unnested (kept apart so that the joins below hash it rather than look
-- names up per key inside the unnest's nested loop)
pairs as materialized (
    select f.oid, f.conrelid, f.confrelid, f.conkey[1] as attnum, f.confkey[1] as ref_attnum,
           1::bigint as ord, false as multi
    from fk f
    where cardinality(f.conkey) = 1
    union all
    select f.oid, f.conrelid, f.confrelid, k.attnum, k.ref_attnum, k.ord, true
    from fk f
    cross join unnest(f.conkey, f.confkey) with ordinality k(attnum, ref_attnum, ord)
    where cardinality(f.conkey) > 1
),
named as (
    select p.oid, p.ord, p.multi, a.attname,
           -- a referenced table outside the scope is looked up in pg_attribute
           coalesce(ra.attname,
                    (select x.attname::text from pg_attribute x
                     where x.attrelid = p.confrelid and x.attnum = p.ref_attnum)) as ref_attname
    from pairs p
    join scope_attributes a on a.table_oid = p.conrelid and a.attnum = p.attnum
    left join scope_attributes ra on ra.table_oid = p.confrelid and ra.attnum = p.ref_attnum
),
-- column names of both sides: a one-column key as it is, a wider one aggregated
-- (ordered aggregates sort each group: worth it only for more than one column)
cols as (
    select n.oid, array[n.attname] as columns, array[n.ref_attname] as ref_columns
    from named n
    where not n.multi
    union all
    select n.oid, array_agg(n.attname order by n.ord), array_agg(n.ref_attname order by n.ord)
    from named n
    where n.multi
    group by n.oid
)
select f.oid as conoid,
       f.conname::text as conname,
       f.conrelid as table_oid,
       f.table_object,
       f.table_object || '.' || f.conname as object,
       f.confrelid as ref_oid,
       rn.nspname || '.' || rc.relname as ref_object,
       f.conkey as attnums,
       f.confkey as ref_attnums,
       c.columns,
       c.ref_columns,
       f.convalidated as validated,
       -- NOT ENFORCED (PostgreSQL 18) keys are never validated: only those are deparsed
       f.convalidated or pg_get_constraintdef(f.oid) !~ ' NOT ENFORCED$' as enforced
from fk f
join cols c on c.oid = f.oid
join pg_class rc on rc.oid = f.confrelid
join pg_namespace rn on rn.oid = rc.relnamespace
