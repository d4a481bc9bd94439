-- Which tables a tenant owns, and how (SPEC §4 "Ownership"). A table is tenant-owned
-- through its tenant column, or through a declared foreign key whose columns are
-- all NOT NULL to a tenant-owned table (a chain of them, followed to any depth); the
-- tenant table itself owns its rows. A nullable key does not own: its row may belong
-- to no parent. NOT ENFORCED keys (PostgreSQL 18) do not count; NOT VALID ones do
-- (they hold for every new row; schema.constraints_validated reports them). Keys
-- declared on partitions are left out (the partitioned table's own keys are read).
-- One row per non-partition table in scope.
-- Columns: oid, object, is_tenant (tenant_tables), tenant_column, owned, direct
-- (owned through its own tenant column, or it is the tenant table), parent_oid,
-- parent_object (the owned table it is owned through, when not direct: a parent
-- owned directly is preferred, then the first by name), via (that key's name),
-- via_columns (text[]: its columns), user_owned (membership model only: the table has no
-- tenant column, no tenant owns it, and it is the users' table of tenancy_model or reaches
-- it through NOT NULL foreign keys (a chain of them) through such tables: its rows belong
-- to a user, who may belong to several tenants), user_parent_object and user_via_columns
-- (the table it is owned through and that key's columns; null for the users' table itself).
-- params: tenant_table
-- requires: tenant_tables, foreign_keys, tenancy_model
-- cost: 2
with roots as (
    select t.oid
    from tenant_tables t
    where (t.is_tenant and t.tenant_column is not null)
       or t.table_name = (select tenant_table from params)
       or t.object = (select tenant_table from params)
),
-- keys that own their row: every column NOT NULL (a correlated lookup by the
-- pg_attribute index, per key)
owning_keys as (
    select f.conoid, f.table_oid, f.ref_oid, f.conname, f.columns
    from foreign_keys f
    where f.enforced
      and f.table_oid <> f.ref_oid
      and (select bool_and(a.attnotnull) from pg_attribute a
           where a.attrelid = f.table_oid and a.attnum = any(f.attnums))
),
-- one row per (table, owned parent, key): UNION stops at rows already found, so
-- cycles end and each key is walked once
chain as (
    with recursive walk(oid, parent_oid, conoid) as (
        select r.oid, null::oid, null::oid
        from roots r
        union
        select k.table_oid, w.oid, k.conoid
        from walk w
        join owning_keys k on k.ref_oid = w.oid
        where not exists (select 1 from roots r where r.oid = k.table_oid)
    )
    select * from walk
),
best as (
    select distinct on (c.oid) c.oid, c.parent_oid, k.conname as via, k.columns as via_columns,
           p.object as parent_object
    from chain c
    left join tenant_tables p on p.oid = c.parent_oid
    left join owning_keys k on k.conoid = c.conoid
    left join roots r on r.oid = c.parent_oid
    order by c.oid, (c.parent_oid is null) desc, (r.oid is not null) desc, p.object, k.conname
),
-- membership model: tables whose rows belong to a user, from the users' table down NOT NULL
-- keys through tables that have no tenant column and no tenant owner
user_walk as (
    with recursive uw(oid, parent_oid, conoid) as (
        select m.user_table_oid, null::oid, null::oid
        from tenancy_model m
        where m.user_table_oid is not null
        union
        select k.table_oid, w.oid, k.conoid
        from uw w
        join owning_keys k on k.ref_oid = w.oid
        join tenant_tables c on c.oid = k.table_oid and c.tenant_column is null
        where not exists (select 1 from chain o where o.oid = k.table_oid)
    )
    select distinct on (uw.oid) uw.oid, p.object as parent_object, k.columns as via_columns
    from uw
    left join tenant_tables p on p.oid = uw.parent_oid
    left join owning_keys k on k.conoid = uw.conoid
    order by uw.oid, (uw.parent_oid is null) desc, p.object, k.conname
)
select t.oid, t.object, t.is_tenant, t.tenant_column,
       b.oid is not null as owned,
       b.oid is not null and b.parent_oid is null as direct,
       b.parent_oid, b.parent_object, b.via, b.via_columns,
       u.oid is not null and b.oid is null and t.tenant_column is null as user_owned,
       u.parent_object as user_parent_object,
       u.via_columns as user_via_columns
from tenant_tables t
left join best b on b.oid = t.oid
left join user_walk u on u.oid = t.oid
