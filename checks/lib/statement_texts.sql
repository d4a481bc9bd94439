-- Every SQL statement the database can show: the bodies of function_bodies and the
-- texts of tracked_statements, with comments removed and cut at each ';' (a ';' in
-- a string literal cuts too: a heuristic, as is all reading of SQL text here).
-- Columns: source_kind ('function' or 'statement'), source (the function's object,
-- or 'statement <queryid>'), label (source, for a statement followed by the start
-- of its text: what evidence names), function_oid, queryid, in_scope (the function is in
-- scope; true for statements), calls (statements only), ordinal (the statement's
-- position in its source, from 1), text.
-- requires: function_bodies, tracked_statements
select src.source_kind,
       src.source,
       case when src.source_kind = 'statement'
            then src.source || ' (' || left(regexp_replace(btrim(src.body), '\s+', ' ', 'g'), 50)
                 || case when length(regexp_replace(btrim(src.body), '\s+', ' ', 'g')) > 50 then '…' else '' end || ')'
            else src.source end as label,
       src.function_oid,
       src.queryid,
       src.in_scope,
       src.calls,
       st.ordinal,
       st.text
from (
    select 'function'::text as source_kind, f.object as source, f.oid as function_oid,
           null::bigint as queryid, f.in_scope, null::bigint as calls, f.body
    from function_bodies f
    union all
    select 'statement', 'statement ' || t.queryid, null::oid, t.queryid, true, t.calls, t.query
    from tracked_statements t
    where t.visible and t.queryid is not null
) src
cross join lateral unnest(string_to_array(
    regexp_replace(regexp_replace(src.body, '/\*.*?\*/', ' ', 'g'), '--[^\n]*', ' ', 'g'),
    ';')) with ordinality as st(text, ordinal)
where st.text ~ '\S'
