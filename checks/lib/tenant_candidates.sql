-- What `pg-integrity init` proposes as the tenant table and column. A tenant table
-- owns the most tables: tables reach it through NOT NULL foreign keys, directly or
-- through a chain (an event owned by an account owns its tickets for that account too).
-- For each referenced table in scope: how many tables it owns that way, and the
-- column name most tables reference it by directly.
-- Columns: ref_oid, ref_object, ref_table, owned (tables reaching it through NOT NULL
-- foreign keys), column_name (the single-column foreign key name most tables use to
-- reference it), direct (tables referencing it by that column), with_column (tables
-- in scope that have a column of that name), rank (1 = the proposal: most owned, then
-- most direct references).
-- requires: foreign_keys, scope_columns
with recursive edges as (
    select distinct f.table_oid as child, f.ref_oid as parent
    from foreign_keys f
    where f.table_oid <> f.ref_oid
      and not exists (select 1 from unnest(f.attnums) k(attnum)
                      join scope_columns c on c.table_oid = f.table_oid and c.attnum = k.attnum
                      where not c.not_null)
),
reach(root, tbl) as (
    select e.parent, e.child from edges e
    union
    select r.root, e.child from reach r join edges e on e.parent = r.tbl
),
owned as (
    select r.root, count(distinct r.tbl) as owned from reach r group by r.root
),
direct as (
    select f.ref_oid, f.ref_object, f.columns[1] as column_name,
           count(distinct f.table_oid) as direct,
           row_number() over (partition by f.ref_oid order by count(distinct f.table_oid) desc, f.columns[1]) as pick
    from foreign_keys f
    where cardinality(f.columns) = 1 and f.table_oid <> f.ref_oid
    group by f.ref_oid, f.ref_object, f.columns[1]
),
named as (
    select c.column_name, count(distinct c.table_oid) as with_column from scope_columns c group by 1
)
select d.ref_oid,
       d.ref_object,
       rc.relname::text as ref_table,
       coalesce(o.owned, 0) as owned,
       d.column_name,
       d.direct,
       coalesce(n.with_column, 0) as with_column,
       row_number() over (order by coalesce(o.owned, 0) desc, d.direct desc, d.ref_object) as rank
from direct d
join pg_class rc on rc.oid = d.ref_oid
left join owned o on o.root = d.ref_oid
left join named n on n.column_name = d.column_name
where d.pick = 1 and d.direct >= 2
