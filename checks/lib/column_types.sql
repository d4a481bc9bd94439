-- The columns of scope_columns with their type resolved through domains (a domain
-- over a domain over numeric: all three), so checks see the base type and the
-- constraints a domain adds.
-- Columns: those of scope_columns, type_oids (oid[]: the column's type, then each
-- domain's base type down to the base), base_type_oid, base_type_name (format_type,
-- no modifier), type_category (pg_type.typcategory: 'N' numeric, 'S' string, ...),
-- not_null_domain (name of a domain in the chain declared NOT NULL, or null).
-- requires: scope_columns
-- cost: 3
select c.*,
       coalesce(d.type_oids, array[c.type_oid]) as type_oids,
       coalesce(d.base_type_oid, c.type_oid) as base_type_oid,
       coalesce(d.base_type_name, format_type(c.type_oid, null)) as base_type_name,
       ty.typcategory::text as type_category,
       d.not_null_domain
from scope_columns c
join pg_type ty on ty.oid = c.type_oid
-- domain chains resolved once per domain type in use, not once per column
left join (
    with recursive chain(root, oid, base, is_not_null, typtype, depth) as (
        select t.oid, t.oid, t.typbasetype, t.typnotnull, t.typtype, 1
        from pg_type t
        where t.typtype = 'd'
        union all
        select chain.root, b.oid, b.typbasetype, b.typnotnull, b.typtype, chain.depth + 1
        from chain join pg_type b on b.oid = chain.base
        where chain.typtype = 'd'
    )
    select chain.root,
           array_agg(chain.oid order by chain.depth) as type_oids,
           (array_agg(chain.oid order by chain.depth desc))[1] as base_type_oid,
           format_type((array_agg(chain.oid order by chain.depth desc))[1], null) as base_type_name,
           (array_agg(format_type(chain.oid, null) order by chain.depth)
                filter (where chain.typtype = 'd' and chain.is_not_null))[1] as not_null_domain
    from chain
    group by chain.root
) d on d.root = c.type_oid
