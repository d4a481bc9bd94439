-- Row locks taken by the statements of statement_texts on the tables in scope
-- (partitions excluded): a statement locks a table when it names the table after
-- FROM or JOIN (optionally schema-qualified, optionally quoted, matched without
-- regard to case) and the first locking clause after that mention is FOR UPDATE or
-- FOR NO KEY UPDATE, without OF or with OF naming the table or its alias. FOR SHARE
-- and FOR KEY SHARE are not listed. Only the first mention of a table in a
-- statement is read.
-- Columns: table_oid, table_object, source_kind, source, label, function_oid,
-- queryid, ordinal (of the statement in its source), mode ('UPDATE' or
-- 'NO KEY UPDATE'), wait ('skip locked', 'nowait' or '').
-- requires: scope_tables, statement_texts
select x.table_oid, x.table_object, x.source_kind, x.source, x.label, x.function_oid,
       x.queryid, x.ordinal,
       upper(regexp_replace(x.lk[1], '\s+', ' ', 'g')) as mode,
       coalesce(btrim(lower(regexp_replace(x.lk[3], '\s+', ' ', 'g'))), '') as wait
from (
    select m.*,
           regexp_match(m.tail, '\mfor\s+(no\s+key\s+update|update)\M((?:\s+of\s+[[:alnum:]_$".]+(?:\s*,\s*[[:alnum:]_$".]+)*)?)(\s+skip\s+locked|\s+nowait)?', 'i') as lk
    from (
        select t.oid as table_oid, t.object as table_object, t.table_name,
               s.source_kind, s.source, s.label, s.function_oid, s.queryid, s.ordinal,
               mm[1] as tail,
               case when lower(btrim(mm[2], '"')) in ('where', 'for', 'order', 'limit', 'join', 'inner',
                        'left', 'right', 'full', 'cross', 'natural', 'on', 'using', 'group', 'having',
                        'window', 'union', 'intersect', 'except', 'offset', 'fetch', 'returning',
                        'tablesample', 'set', 'into', 'values', 'lateral', 'select', 'and', 'or',
                        'loop', 'then')
                    then null else lower(btrim(mm[2], '"')) end as alias
        from statement_texts s
        join scope_tables t
          on not t.is_partition
         and strpos(lower(s.text), lower(t.table_name)) > 0
        cross join lateral regexp_match(s.text,
            '\m(?:from|join)\s+(?:only\s+)?(?:(?:"?'
            || regexp_replace(t.schema_name, '([^[:alnum:]_ ])', '\\\1', 'g')
            || '"?)\s*\.\s*)?"?' || regexp_replace(t.table_name, '([^[:alnum:]_ ])', '\\\1', 'g')
            || '"?(?=[\s,)]|$)((?:\s+(?:as\s+)?([[:alnum:]_$"]+))?.*)$', 'i') as mm
        where s.text ~* '\mfor\s+(no\s+key\s+)?update\M'
    ) m
) x
where x.lk is not null
  and (x.lk[2] = ''
       or exists (select 1
                  from regexp_split_to_table(lower(regexp_replace(regexp_replace(x.lk[2], '^\s+of\s+', '', 'i'), '"', '', 'g')), '\s*,\s*') as o(name)
                  where o.name in (lower(x.table_name), x.alias)))
