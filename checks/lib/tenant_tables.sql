-- Every table in scope that is not a partition, with its tenant column (the first
-- name of tenancy.column it has, or null) and whether it is global: the tenant
-- table, tables matching tenancy.global_tables, and known migration-history tables.
-- A table is a tenant table when it is not global and the database is multi-tenant
-- at all (some table in scope has a tenant column); otherwise nothing is.
-- Columns: those of scope_tables, tenant_column, tenant_attnum (its attnum),
-- is_global, is_tenant.
-- params: tenant_columns, tenant_table, global_tables, global_tables_re
-- requires: scope_tables, scope_attributes
-- cost: 1
with tc as (
    -- each table's first tenant column, all tables in one join (partitions too: they
    -- count for "the database is multi-tenant at all")
    select distinct on (a.table_oid) a.table_oid as oid, a.attname as tenant_column,
           a.attnum as tenant_attnum
    from scope_attributes a
    join unnest((select tenant_columns from params)) with ordinality as want(name, ord)
      on want.name = a.attname
    order by a.table_oid, want.ord
)
select x.*,
       (not x.is_global and exists (select 1 from tc)) as is_tenant
from (
    select t.*,
           tc.tenant_column,
           tc.tenant_attnum,
           (t.table_name = (select tenant_table from params)
            or t.object = (select tenant_table from params)
            or (t.table_name like any((select global_tables from params)::text[])
                or t.table_name ~ any((select global_tables_re from params)::text[]))
            or (t.object like any((select global_tables from params)::text[])
                or t.object ~ any((select global_tables_re from params)::text[]))
            or t.table_name in ('schema_migrations', 'ar_internal_metadata',
                                'refinery_schema_history', 'pg_integrity_migration_steps',
                                'flyway_schema_history',
                                '_sqlx_migrations', 'knex_migrations', 'knex_migrations_lock',
                                'alembic_version', 'goose_db_version',
                                '__diesel_schema_migrations', 'databasechangelog',
                                'databasechangeloglock', 'django_migrations',
                                '__EFMigrationsHistory', 'pgmigrations', '_prisma_migrations',
                                'schema_version')) as is_global
    from scope_tables t
    left join tc on tc.oid = t.oid
    where not t.is_partition
) x
