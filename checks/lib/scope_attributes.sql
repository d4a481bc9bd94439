-- The columns of every table in scope, partitions included, read from pg_attribute
-- once for the building blocks that need column names (scope_columns, tenant_tables,
-- scope_indexes, foreign_keys): each then joins this set instead of hashing all of
-- pg_attribute, which also holds the columns of every index, view and catalog.
-- Columns: table_oid, attnum, attname (text), atttypid, atttypmod, attnotnull,
-- attcollation.
-- requires: scope_tables
-- cost: 5
select a.attrelid as table_oid,
       a.attnum,
       a.attname::text as attname,
       a.atttypid,
       a.atttypmod,
       a.attnotnull,
       a.attcollation
from pg_attribute a
where a.attnum > 0
  and not a.attisdropped
  -- a semi-join: the tables in scope are hashed and pg_attribute streams past them
  -- (a plain join hashes pg_attribute, the planner knowing nothing of a CTE's keys)
  and exists (select 1 from scope_tables t where t.oid = a.attrelid)
