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
-- requires: scope_tables, scope_attributes
-- cost: 12
with ix as (
    select t.oid as table_oid, t.schema_name, t.table_name, t.object as table_object,
           t.is_partition as table_is_partition,
           -- named, not i.*: indexprs and the rest would make the rows too big to
           -- stay in work_mem
           i.indexrelid, i.indrelid, i.indnatts, i.indnkeyatts, i.indisunique, i.indisprimary,
           i.indisvalid, i.indisready, i.indkey, i.indcollation, i.indclass, i.indoption,
           i.indpred,
           ic.relname::text as index_name, ic.relkind::text as relkind, ic.relispartition,
           ic.relam, ic.reloptions, am.amname::text as am
    from scope_tables t
    join pg_index i on i.indrelid = t.oid
    join pg_class ic on ic.oid = i.indexrelid
    join pg_am am on am.oid = ic.relam
),
-- The key written out from the catalog, for all indexes in one grouped pass, rather
-- than by pg_get_indexdef(oid) per index (it looks up each column's default
-- operator class: ~20 µs an index, half a second at 20,000 indexes) or by a
-- subquery per index. Same text for columns, expressions, non-default operator
-- classes, DESC/NULLS, INCLUDE, WITH and WHERE, and COLLATE on columns; not shown:
-- NULLS NOT DISTINCT (15+) and COLLATE on an expression (its own collation is not
-- in the catalog).
-- one row per index column: an index on one column (the usual one) as it is, the
-- columns of a wider one unnested
key_cols as (
    select x.indexrelid, x.indrelid, x.indnkeyatts, x.relam, x.indclass, x.indcollation,
           x.indoption, x.indkey[0] as attnum, 1::bigint as ord, false as multi
    from ix x
    where x.indnatts = 1
    union all
    select x.indexrelid, x.indrelid, x.indnkeyatts, x.relam, x.indclass, x.indcollation,
           x.indoption, k.attnum, k.ord, true
    from ix x
    cross join unnest(x.indkey::int2[]) with ordinality k(attnum, ord)
    where x.indnatts > 1
),
named as (
    select k.indexrelid, k.ord, k.multi, k.indnkeyatts, e.*
    from key_cols k
    left join scope_attributes a on a.table_oid = k.indrelid and a.attnum = k.attnum
    left join pg_opclass opc on opc.oid = k.indclass[k.ord - 1] and not opc.opcdefault
    left join pg_collation co on co.oid = k.indcollation[k.ord - 1] and co.oid <> a.attcollation
    cross join lateral (
        select coalesce(quote_ident(a.attname), pg_get_indexdef(k.indexrelid, k.ord::int, true)) as pretty,
               coalesce(quote_ident(a.attname), pg_get_indexdef(k.indexrelid, k.ord::int, false)) as plain,
               case when k.ord > k.indnkeyatts then ''
                    else coalesce(' COLLATE ' || quote_ident(co.collname), '')
                         || coalesce(' ' || quote_ident(opc.opcname), '')
                         || case when k.indoption[k.ord - 1] = 0 then ''
                                 when not pg_indexam_has_property(k.relam, 'can_order') then ''
                                 when k.indoption[k.ord - 1] & 1 = 1
                                 then ' DESC' || case when k.indoption[k.ord - 1] & 2 = 0 then ' NULLS LAST' else '' end
                                 else ' NULLS FIRST' end
               end as decor
    ) e
),
-- a one-column key as it is; a wider one aggregated (ordered aggregates sort each
-- group: worth it only where there is more than one column)
keys as (
    select n.indexrelid, array[n.pretty] as key_columns, n.plain || n.decor as key_def,
           null::text as include_def
    from named n
    where not n.multi
    union all
    select n.indexrelid,
           array_agg(n.pretty order by n.ord) filter (where n.ord <= n.indnkeyatts),
           string_agg(n.plain || n.decor, ', ' order by n.ord) filter (where n.ord <= n.indnkeyatts),
           string_agg(n.plain, ', ' order by n.ord) filter (where n.ord > n.indnkeyatts)
    from named n
    where n.multi
    group by n.indexrelid
)
select x.indexrelid as index_oid,
       x.table_oid,
       x.schema_name,
       x.table_name,
       x.table_object,
       x.table_object || '.' || x.index_name as object,
       x.index_name,
       x.relkind,
       x.table_is_partition,
       x.relispartition as is_partition,
       x.am,
       x.indisvalid as is_valid,
       x.indisready as is_ready,
       x.indisunique as is_unique,
       x.indisprimary as is_primary,
       x.indpred is not null as is_partial,
       pg_get_expr(x.indpred, x.indrelid, true) as predicate,
       x.indnkeyatts::int as key_count,
       (x.indkey::int2[])[0:x.indnkeyatts - 1] as key_attnums,
       (x.indkey::int2[])[x.indnkeyatts:] as include_attnums,
       k.key_columns,
       x.am || ' (' || k.key_def || ')'
           || coalesce(' INCLUDE (' || k.include_def || ')', '')
           || coalesce(' WITH (' || (select string_agg(split_part(o, '=', 1) || '='
                                                       || quote_literal(substr(o, strpos(o, '=') + 1)), ', ')
                                     from unnest(x.reloptions) o) || ')', '')
           || coalesce(' WHERE ' || pg_get_expr(x.indpred, x.indrelid), '') as definition,
       con.conname::text as constraint_name,
       con.contype::text as constraint_type
from ix x
join keys k on k.indexrelid = x.indexrelid
left join pg_constraint con on con.conindid = x.indexrelid and con.conrelid = x.table_oid
                           and con.contype in ('p', 'u', 'x')
