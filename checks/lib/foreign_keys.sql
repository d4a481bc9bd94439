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
-- each column pair of a multi-column key as a row, set apart so that the joins
-- below hash it rather than look names up per key inside the unnest's nested loop
pairs as materialized (
    select f.oid, f.conrelid, f.confrelid, k.attnum, k.ref_attnum, k.ord
    from fk f
    cross join unnest(f.conkey, f.confkey) with ordinality k(attnum, ref_attnum, ord)
    where cardinality(f.conkey) > 1
),
-- column names of both sides for all keys in joins (not a subquery per key): a
-- single-column key, the usual one, directly; a multi-column one grouped from pairs
cols as (
    select f.oid,
           array[a.attname] as columns,
           -- a referenced table outside the scope is looked up in pg_attribute
           array[coalesce(ra.attname,
                          (select x.attname::text from pg_attribute x
                           where x.attrelid = f.confrelid and x.attnum = f.confkey[1]))] as ref_columns
    from fk f
    join scope_attributes a on a.table_oid = f.conrelid and a.attnum = f.conkey[1]
    left join scope_attributes ra on ra.table_oid = f.confrelid and ra.attnum = f.confkey[1]
    where cardinality(f.conkey) = 1
    union all
    select p.oid,
           array_agg(a.attname order by p.ord) as columns,
           array_agg(coalesce(ra.attname,
                              (select x.attname::text from pg_attribute x
                               where x.attrelid = p.confrelid and x.attnum = p.ref_attnum))
                     order by p.ord)
    from pairs p
    join scope_attributes a on a.table_oid = p.conrelid and a.attnum = p.attnum
    left join scope_attributes ra on ra.table_oid = p.confrelid and ra.attnum = p.ref_attnum
    group by p.oid
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
