-- Reference-like columns: `<stem>_id` where a table `<stem>`, `<stem>s`, `<stem>es`
-- or `<ste>ies` other than its own is in scope (same schema preferred:
-- categories.category_id is the table's own identifier), and every column already in a
-- foreign key; the tenant column is left to the tenancy checks.
-- Columns: table_oid, attnum, object, table_object, column_name, target_oid,
-- target_object (the guessed or referenced table), fk_object (a covering FK, if
-- any), fk_validated.
-- params: tenant_columns
-- requires: scope_tables, scope_columns, foreign_keys
-- cost: 10
select c.table_oid,
       c.attnum,
       c.object,
       c.table_object,
       c.column_name,
       coalesce(fk.ref_oid, guess.oid) as target_oid,
       coalesce(fk.ref_object, guess.object) as target_object,
       fk.object as fk_object,
       fk.validated as fk_validated
from scope_columns c
-- the covering foreign key, if any: equi-joins on (table, column), so hash joins
left join (
    select distinct on (f.table_oid, k.attnum) f.table_oid, k.attnum, f.ref_oid, f.ref_object, f.object, f.validated
    from foreign_keys f
    cross join unnest(f.attnums) as k(attnum)
    order by f.table_oid, k.attnum, f.validated desc, f.conname
) fk on fk.table_oid = c.table_oid and fk.attnum = c.attnum
-- the table a `<stem>_id` column names: <stem>, <stem>s, <stem>es or <ste>ies
left join (
    select distinct on (c2.table_oid, c2.attnum) c2.table_oid, c2.attnum, t.oid, t.object
    from scope_columns c2
    cross join lateral (
        select substr(c2.column_name, 1, length(c2.column_name) - 3) as stem
    ) s
    cross join lateral unnest(array[s.stem, s.stem || 's', s.stem || 'es',
                                    case when s.stem like '%y' then left(s.stem, -1) || 'ies' end]) as n(name)
    join scope_tables t on t.table_name = n.name and not t.is_partition and t.oid <> c2.table_oid
    where c2.column_name like '_%\_id'  -- LIKE, not a regex: it runs over every column
    order by c2.table_oid, c2.attnum, (t.schema_name = c2.schema_name) desc, t.object
) guess on guess.table_oid = c.table_oid and guess.attnum = c.attnum
where (fk.object is not null or guess.oid is not null)
  and not (c.column_name = any((select tenant_columns from params)::text[]))
