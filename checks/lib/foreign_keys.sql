-- Foreign keys declared on tables in scope (copies a partition inherits from its
-- parent are left out: conparentid = 0; a key declared on a partition itself is kept).
-- Columns: conoid, conname, table_oid, table_object, object (schema.table.conname),
-- ref_oid, ref_object, attnums, ref_attnums, columns (text[]), ref_columns (text[]),
-- validated, definition.
-- requires: scope_tables
select con.oid as conoid,
       con.conname::text as conname,
       t.oid as table_oid,
       t.object as table_object,
       t.object || '.' || con.conname as object,
       con.confrelid as ref_oid,
       rn.nspname || '.' || rc.relname as ref_object,
       con.conkey as attnums,
       con.confkey as ref_attnums,
       array(select a.attname::text from unnest(con.conkey) with ordinality k(attnum, ord)
             join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.attnum
             order by k.ord) as columns,
       array(select a.attname::text from unnest(con.confkey) with ordinality k(attnum, ord)
             join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.attnum
             order by k.ord) as ref_columns,
       con.convalidated as validated,
       pg_get_constraintdef(con.oid) as definition
from pg_constraint con
join scope_tables t on t.oid = con.conrelid
join pg_class rc on rc.oid = con.confrelid
join pg_namespace rn on rn.oid = rc.relnamespace
where con.contype = 'f'
  and con.conparentid = 0
