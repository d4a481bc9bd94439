-- Indexes of the tables in scope (partitions included; a partitioned table's own
-- index has relkind 'I'). An index attached to a partitioned parent index has
-- is_partition = true: it mirrors the parent's definition.
-- Columns: index_oid, table_oid, schema_name, table_name, table_object, object
-- (schema.table.index), index_name, relkind ('i' or 'I'), table_is_partition,
-- is_partition, am, is_valid, is_ready, is_unique, is_primary, is_partial,
-- predicate (text or null), key_count, key_attnums (int2[], 0 for an expression),
-- include_attnums (int2[]), key_columns (text[]: column names or expression texts, in key order),
-- definition ('btree (a, lower(b)) WHERE ...', what follows USING),
-- constraint_name and constraint_type ('p', 'u', 'x') when it backs a constraint.
-- requires: scope_tables
select i.indexrelid as index_oid,
       t.oid as table_oid,
       t.schema_name,
       t.table_name,
       t.object as table_object,
       t.object || '.' || ic.relname as object,
       ic.relname::text as index_name,
       ic.relkind::text as relkind,
       t.is_partition as table_is_partition,
       ic.relispartition as is_partition,
       am.amname::text as am,
       i.indisvalid as is_valid,
       i.indisready as is_ready,
       i.indisunique as is_unique,
       i.indisprimary as is_primary,
       i.indpred is not null as is_partial,
       pg_get_expr(i.indpred, i.indrelid, true) as predicate,
       i.indnkeyatts::int as key_count,
       array(select k.attnum from unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
             where k.ord <= i.indnkeyatts order by k.ord) as key_attnums,
       array(select k.attnum from unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
             where k.ord > i.indnkeyatts order by k.ord) as include_attnums,
       array(select pg_get_indexdef(i.indexrelid, k.n, true)
             from generate_series(1, i.indnkeyatts::int) k(n) order by k.n) as key_columns,
       regexp_replace(pg_get_indexdef(i.indexrelid), '^.*? USING ', '') as definition,
       con.conname::text as constraint_name,
       con.contype::text as constraint_type
from scope_tables t
join pg_index i on i.indrelid = t.oid
join pg_class ic on ic.oid = i.indexrelid
join pg_am am on am.oid = ic.relam
left join pg_constraint con on con.conindid = i.indexrelid and con.conrelid = t.oid
                           and con.contype in ('p', 'u', 'x')
