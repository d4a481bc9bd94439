-- The columns of column_types with what keeps NULL out of them besides attnotnull,
-- found for all columns in one pass (hash joins on the table, not a lookup per column).
-- Columns: those of column_types, plus
--   not_valid_not_null  a NOT VALID not-null constraint on the column (PostgreSQL 18:
--                       it sets attnotnull but no existing row was checked), or null;
--   null_check          the single-column CHECK (col IS NOT NULL) / CHECK (NOT (col IS
--                       NULL)) preferred (validated first, then by name), or null;
--   null_check_validated, null_check_expr (its text);
--   keeps_nulls_out     true when NULL cannot be stored and none is stored: attnotnull
--                       without a NOT VALID not-null constraint, a validated CHECK,
--                       or a NOT NULL domain.
-- requires: column_types
-- cost: 5
with nv as (
    select distinct on (con.conrelid, con.conkey[1])
           con.conrelid, con.conkey[1] as attnum, con.conname::text as conname
    from pg_constraint con
    where con.contype = 'n' and not con.convalidated and cardinality(con.conkey) = 1
    order by con.conrelid, con.conkey[1], con.conname
),
chk as (
    select distinct on (c.table_oid, c.attnum)
           c.table_oid, c.attnum, con.conname::text as conname, con.convalidated, e.expr
    from column_types c
    join pg_constraint con on con.conrelid = c.table_oid and con.contype = 'c'
                          and con.conkey = array[c.attnum]::int2[]
                          -- only a null test, or NOT of one, at the top of the stored
                          -- expression tree is deparsed: deparsing opens the table, tens
                          -- of µs each on a new connection, for every CHECK otherwise
                          and (con.conbin::text like '{NULLTEST %'
                               or con.conbin::text like '{BOOLEXPR :boolop not :args ({NULLTEST %')
    cross join lateral (select pg_get_expr(con.conbin, con.conrelid) as expr) e
    where e.expr in ('(' || quote_ident(c.column_name) || ' IS NOT NULL)',
                     '(NOT (' || quote_ident(c.column_name) || ' IS NULL))')
    order by c.table_oid, c.attnum, con.convalidated desc, con.conname
)
select c.*,
       nv.conname as not_valid_not_null,
       chk.conname as null_check,
       chk.convalidated as null_check_validated,
       chk.expr as null_check_expr,
       (c.not_null and nv.conname is null) or coalesce(chk.convalidated, false)
           or c.not_null_domain is not null as keeps_nulls_out
from column_types c
left join nv on nv.conrelid = c.table_oid and nv.attnum = c.attnum
left join chk on chk.table_oid = c.table_oid and chk.attnum = c.attnum
