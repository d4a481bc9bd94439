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
-- via_columns (text[]: its columns).
-- params: tenant_table
-- requires: tenant_tables, foreign_keys
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
)
select t.oid, t.object, t.is_tenant, t.tenant_column,
       b.oid is not null as owned,
       b.oid is not null and b.parent_oid is null as direct,
       b.parent_oid, b.parent_object, b.via, b.via_columns
from tenant_tables t
left join best b on b.oid = t.oid
