-- The statements pg_stat_statements tracks for this database (all roles; nested
-- ones too when pg_stat_statements.track = all), one row per queryid, summed over
-- roles; no rows unless tracked_statements_state.usable. The view is read through
-- query_to_xml in the extension's own schema, so a check using this fragment
-- parses where the extension is not installed, does not run the view where it is
-- not loaded, and finds it whatever the search_path. Statements of other roles are
-- hidden from a role without pg_read_all_stats: they come as one row with a null
-- queryid and visible = false. Left out: statements that read pg_stat_statements
-- (monitoring, this tool's own queries) and DDL (CREATE, ALTER, DROP, COMMENT,
-- GRANT, REVOKE), whose text is a definition, not a statement the application runs,
-- and statements marked /* pg-integrity probe */ or /* pg-integrity audit */: what
-- the isolation probes and a deep audit's table reads ran.
-- Columns: queryid (bigint), query (text, '' when hidden), visible, calls, n_rows.
-- requires: tracked_statements_state
select nullif(m[1], '')::bigint as queryid,
       replace(replace(replace(replace(m[5], '&lt;', '<'), '&gt;', '>'), '&#x0d;', E'\r'),
               '&amp;', '&') as query,
       m[4] = 'true' as visible,
       m[2]::bigint as calls,
       m[3]::bigint as n_rows
from tracked_statements_state s
cross join lateral regexp_matches(
    case when s.usable then query_to_xml(format($pgi$
        select coalesce(queryid::text, '') as qid,
               sum(calls)::bigint as calls,
               sum(rows)::bigint as nrows,
               coalesce(bool_or(query is not null and query <> '<insufficient privilege>'), false) as vis,
               coalesce(min(query) filter (where query <> '<insufficient privilege>'), '') as q
        from %I.pg_stat_statements
        where dbid = (select oid from pg_database where datname = current_database())
          and (query is null
               or strpos(query, 'pg_stat_statements') = 0
                  and strpos(query, '/* pg-integrity ') = 0
                  and query !~* '^\s*(create|alter|drop|comment|grant|revoke)\M')
        group by queryid
        $pgi$, s.schema_name), false, true, '')::text else '' end,
    '<row[^>]*>\s*<qid>([^<]*)</qid>\s*<calls>([^<]*)</calls>\s*<nrows>([^<]*)</nrows>\s*<vis>([^<]*)</vis>\s*<q>([^<]*)</q>\s*</row>',
    'g') as m
where s.usable
