-- Reference-like columns: `<stem>_id` where a table `<stem>`, `<stem>s`, `<stem>es`
-- or `<ste>ies` is in scope (same schema preferred), and every column already in a
-- foreign key; the tenant column is left to the tenancy checks.
-- Columns: table_oid, attnum, object, table_object, column_name, target_oid,
-- target_object (the guessed or referenced table), fk_object (a covering FK, if
-- any), fk_validated.
-- params: tenant_columns
-- requires: scope_tables, scope_columns, foreign_keys
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
left join lateral (
    select f.*
    from foreign_keys f
    where f.table_oid = c.table_oid and c.column_name = any(f.columns)
    order by f.validated desc, f.conname
    limit 1
) fk on true
left join lateral (
    select t.oid, t.object
    from scope_tables t
    where c.column_name ~ '^.+_id$'
      and not t.is_partition
      and t.table_name in (substr(c.column_name, 1, length(c.column_name) - 3),
                           substr(c.column_name, 1, length(c.column_name) - 3) || 's',
                           substr(c.column_name, 1, length(c.column_name) - 3) || 'es',
                           regexp_replace(substr(c.column_name, 1, length(c.column_name) - 3), 'y$', 'ies'))
    order by (t.schema_name = c.schema_name) desc, t.object
    limit 1
) guess on true
where (fk.object is not null or guess.oid is not null)
  and not (c.column_name = any((select tenant_columns from params)::text[]))
