-- The references the data checks follow from a child row to its parent: every
-- declared foreign key, and every reference-like column no foreign key covers (joined
-- to the guessed parent's single-column primary key; a parent without one is left out).
-- Columns: object (schema.table.conname, or schema.table.column for a guessed one),
-- table_oid, ref_oid, ref_object, columns, ref_columns (text[]), direct (bool[] per
-- column: the types compare as they are, through = between them or an implicit
-- conversion, else as text), declared, conname, validated
-- (false for a guessed one), match_full, and for the shared scan: alias (the parent's
-- alias, the same for every check following this reference, so the scan joins it
-- once) and join (`LEFT JOIN parent alias ON ...`).
-- requires: foreign_keys, reference_columns, column_types
-- cost: 2
select r.*,
       a.alias,
       format('left join %I.%I %I on %s', pn.nspname, pc.relname, a.alias,
              (select string_agg(case when x.direct then format('%I.%I = c.%I', a.alias, x.pcol, x.ccol)
                                      else format('%I.%I::text = c.%I::text', a.alias, x.pcol, x.ccol) end, ' and ')
               from unnest(r.columns, r.ref_columns, r.direct) x(ccol, pcol, direct))) as "join"
from (
    select f.object,
           f.table_oid,
           f.ref_oid,
           f.ref_object,
           f.columns,
           f.ref_columns,
           array_fill(true, array[cardinality(f.columns)]) as direct,
           true as declared,
           f.conname::text as conname,
           f.validated,
           (select con.confmatchtype = 'f' from pg_constraint con where con.oid = f.conoid) as match_full
    from foreign_keys f
    union all
    select r.object,
           r.table_oid,
           r.target_oid,
           r.target_object,
           array[r.column_name],
           array[pk.column_name],
           array[ct.base_type_oid = pk.base_type_oid
                 or exists (select 1 from pg_operator o
                            where o.oprname = '=' and o.oprleft = ct.base_type_oid
                              and o.oprright = pk.base_type_oid)
                 -- one type converts to the other implicitly, which has =: an integer
                 -- column against a numeric key compares as numeric (1 = 1.00, whose
                 -- texts differ); not when both convert (macaddr, macaddr8: = is ambiguous)
                 or exists (select 1 from pg_cast k
                            join pg_operator o on o.oprname = '=' and o.oprleft = k.casttarget
                                              and o.oprright = k.casttarget
                            where k.castcontext = 'i'
                              and ((k.castsource = ct.base_type_oid and k.casttarget = pk.base_type_oid)
                                   or (k.castsource = pk.base_type_oid and k.casttarget = ct.base_type_oid))
                              and not exists (select 1 from pg_cast b
                                              where b.castsource = k.casttarget and b.casttarget = k.castsource
                                                and b.castcontext = 'i'))],
           false,
           null,
           false,
           false
    from reference_columns r
    join column_types ct on ct.table_oid = r.table_oid and ct.attnum = r.attnum
    join lateral (
        select min(pc.column_name) as column_name, min(pc.base_type_oid) as base_type_oid
        from pg_constraint con
        join column_types pc on pc.table_oid = con.conrelid and pc.attnum = con.conkey[1]
        where con.conrelid = r.target_oid and con.contype = 'p' and cardinality(con.conkey) = 1
    ) pk on pk.column_name is not null
    where r.fk_object is null
) r
cross join lateral (
    select 'p_' || left(md5(format('%s %s %s %s', r.ref_oid, r.columns, r.ref_columns, r.direct)), 12) as alias
) a
join pg_class pc on pc.oid = r.ref_oid
join pg_namespace pn on pn.oid = pc.relnamespace
