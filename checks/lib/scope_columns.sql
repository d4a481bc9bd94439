-- Columns of the tables in scope (partitions excluded: their parent is judged).
-- Columns: table_oid, attnum, schema_name, table_name, column_name, object,
-- type_name (format_type), type_oid, not_null, table_object.
-- requires: scope_tables, scope_attributes
-- cost: 1
select t.oid as table_oid,
       a.attnum,
       t.schema_name,
       t.table_name,
       a.attname as column_name,
       t.object || '.' || a.attname as object,
       format_type(a.atttypid, a.atttypmod) as type_name,
       a.atttypid as type_oid,
       a.attnotnull as not_null,
       t.object as table_object
from scope_tables t
join scope_attributes a on a.table_oid = t.oid
where not t.is_partition
