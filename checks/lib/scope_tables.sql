-- Tables in scope: ordinary and partitioned tables of the configured schemas (all
-- but system schemas and schemas owned by extensions when none are configured),
-- minus tables owned by extensions and tables matching scope.exclude_tables.
-- Columns: oid, schema_name, table_name, object, relkind, is_partition, owner,
-- rls_enabled, rls_forced.
-- params: schemas, exclude_tables, exclude_tables_re
-- cost: 2
select c.oid,
       n.nspname::text as schema_name,
       c.relname::text as table_name,
       n.nspname || '.' || c.relname as object,
       c.relkind::text as relkind,
       c.relispartition as is_partition,
       c.relowner as owner,
       c.relrowsecurity as rls_enabled,
       c.relforcerowsecurity as rls_forced
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p')
  and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
  and n.nspname !~ '^pg_(toast_)?temp_'
  and (cardinality((select schemas from params)) = 0
       and not exists (select 1 from pg_depend d
                       where d.classid = 'pg_namespace'::regclass and d.objid = n.oid
                         and d.deptype = 'e')
       or n.nspname = any((select schemas from params)::text[]))
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_class'::regclass and d.objid = c.oid
                    and d.deptype = 'e')
  and not ((c.relname like any((select exclude_tables from params)::text[])
            or c.relname ~ any((select exclude_tables_re from params)::text[]))
           or ((n.nspname || '.' || c.relname) like any((select exclude_tables from params)::text[])
               or (n.nspname || '.' || c.relname) ~ any((select exclude_tables_re from params)::text[])))
