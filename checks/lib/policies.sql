-- Row level security policies on tables in scope, with their expressions and the
-- bodies of the SQL and PL/pgSQL functions in scope that those expressions call
-- (recorded in pg_depend), so a `check_access(org_id)` helper is judged by what
-- it does. Columns: policy_oid, table_oid, table_object, object
-- (schema.table.policy), policy_name, permissive, cmd (ALL, SELECT, INSERT,
-- UPDATE, DELETE), roles (text[], 'public' for PUBLIC), using_expr, check_expr,
-- called_bodies (text, '' when none).
-- requires: scope_tables, scope_attributes
-- cost: 2
-- opens: tables
with pol as (
    select p.oid, p.polname, p.polpermissive, p.polcmd, p.polroles, p.polrelid, p.polqual,
           p.polwithcheck, t.oid as table_oid, t.object as table_object
    from pg_policy p
    join scope_tables t on t.oid = p.polrelid
),
-- Each USING and WITH CHECK expression is deparsed once per distinct (stored
-- expression, names of the columns it references) — plus the table when the text
-- may name it (see below) — so the same
-- policy on thousands of tables, as a migration template writes it, is deparsed
-- once. Deparsing is what costs: each table's catalog entries are read cold on a
-- new connection (~40 µs a table).
exprs as materialized (
    select p.oid, w.which, w.bin::text as bin_text
    from pol p
    cross join lateral (values ('using', p.polqual), ('check', p.polwithcheck)) w(which, bin)
    where w.bin is not null
),
-- the attribute numbers the stored expression mentions (":varattno N"), split
-- out without a regex
refs as (
    select e.oid, e.which, p.polrelid, split_part(v.piece, ' ', 1)::int2 as attnum, v.ord
    from exprs e
    join pol p on p.oid = e.oid
    cross join unnest((string_to_array(e.bin_text, ':varattno '))[2:]) with ordinality v(piece, ord)
),
keyed as (
    select e.oid, e.which,
           e.bin_text
           || E'\n' || coalesce(n.names, '')
           -- the table's own name shows in the text through a whole-row reference or
           -- a reference from a subquery, and can rename a subquery's table that
           -- has the same name: then the expression is not shared
           || case when strpos(e.bin_text, ':varattno 0 ') > 0
                     or strpos(e.bin_text, '{RANGETBLENTRY') > 0
                     or strpos(replace(e.bin_text, ':varlevelsup 0 ', ''), ':varlevelsup ') > 0
                   then E'\n' || p.polrelid::text else '' end as deparse_key
    from exprs e
    join pol p on p.oid = e.oid
    left join (
        select r.oid, r.which, string_agg(coalesce(a.attname, '?'), E'\n' order by r.ord) as names
        from refs r
        left join scope_attributes a on a.table_oid = r.polrelid and a.attnum = r.attnum
        group by r.oid, r.which
    ) n on n.oid = e.oid and n.which = e.which
),
deparsed as (
    select k.deparse_key,
           pg_get_expr(case k.which when 'using' then p.polqual else p.polwithcheck end, p.polrelid) as expr
    -- any one expression of each group: element 1 of both arrays is the same row
    from (select deparse_key, (array_agg(oid))[1] as oid, (array_agg(which))[1] as which
          from keyed
          group by deparse_key) k
    join pol p on p.oid = k.oid
)
select p.oid as policy_oid,
       p.table_oid,
       p.table_object,
       p.table_object || '.' || p.polname as object,
       p.polname::text as policy_name,
       p.polpermissive as permissive,
       case p.polcmd when '*' then 'ALL' when 'r' then 'SELECT' when 'a' then 'INSERT'
                     when 'w' then 'UPDATE' when 'd' then 'DELETE' end as cmd,
       case when p.polroles = '{0}'::oid[] then array['public']
            else array(select r.rolname::text from pg_roles r where r.oid = any(p.polroles) order by 1)
       end as roles,
       du.expr as using_expr,
       dc.expr as check_expr,
       coalesce((select string_agg(pr.prosrc, E'\n' order by pr.oid)
                 from pg_depend d
                 join pg_proc pr on pr.oid = d.refobjid
                 join pg_namespace pn on pn.oid = pr.pronamespace
                 join pg_language l on l.oid = pr.prolang
                 where d.classid = 'pg_policy'::regclass and d.objid = p.oid
                   and d.refclassid = 'pg_proc'::regclass
                   and l.lanname in ('sql', 'plpgsql')
                   and pn.nspname not in ('pg_catalog', 'information_schema')), '') as called_bodies
from pol p
left join keyed ku on ku.oid = p.oid and ku.which = 'using'
left join deparsed du on du.deparse_key = ku.deparse_key
left join keyed kc on kc.oid = p.oid and kc.which = 'check'
left join deparsed dc on dc.deparse_key = kc.deparse_key
