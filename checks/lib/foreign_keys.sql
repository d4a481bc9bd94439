-- Foreign keys declared on tables in scope (copies a partition inherits from its
-- parent are left out: conparentid = 0; a key declared on a partition itself is kept).
-- Columns: conoid, conname, table_oid, table_object, object (schema.table.conname),
-- ref_oid, ref_object, attnums, ref_attnums, columns (text[]), ref_columns (text[]),
-- validated, enforced (false for a NOT ENFORCED key).
-- requires: scope_tables
-- cost: 4
with fk as (
    select con.*, t.object as table_object
    from pg_constraint con
    join scope_tables t on t.oid = con.conrelid
    where con.contype = 'f'
      and con.conparentid = 0
),
-- column names of both sides for all keys in one grouped pass (not a subquery per key)
cols as (
    select f.oid,
           array_agg(a.attname::text order by k.ord) as columns,
           array_agg(ra.attname::text order by k.ord) as ref_columns
    from fk f
    cross join unnest(f.conkey, f.confkey) with ordinality k(attnum, ref_attnum, ord)
    join pg_attribute a on a.attrelid = f.conrelid and a.attnum = k.attnum
    join pg_attribute ra on ra.attrelid = f.confrelid and ra.attnum = k.ref_attnum
    group by f.oid
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
