-- Row level security policies on tables in scope, with their expressions and the
-- bodies of the SQL and PL/pgSQL functions in scope that those expressions call
-- (recorded in pg_depend), so a `check_access(org_id)` helper is judged by what
-- it does. Columns: policy_oid, table_oid, table_object, object
-- (schema.table.policy), policy_name, permissive, cmd (ALL, SELECT, INSERT,
-- UPDATE, DELETE), roles (text[], 'public' for PUBLIC), using_expr, check_expr,
-- called_bodies (text, '' when none).
-- requires: scope_tables
-- cost: 2
-- opens: tables
select p.oid as policy_oid,
       t.oid as table_oid,
       t.object as table_object,
       t.object || '.' || p.polname as object,
       p.polname::text as policy_name,
       p.polpermissive as permissive,
       case p.polcmd when '*' then 'ALL' when 'r' then 'SELECT' when 'a' then 'INSERT'
                     when 'w' then 'UPDATE' when 'd' then 'DELETE' end as cmd,
       case when p.polroles = '{0}'::oid[] then array['public']
            else array(select r.rolname::text from pg_roles r where r.oid = any(p.polroles) order by 1)
       end as roles,
       pg_get_expr(p.polqual, p.polrelid) as using_expr,
       pg_get_expr(p.polwithcheck, p.polrelid) as check_expr,
       coalesce((select string_agg(pr.prosrc, E'\n' order by pr.oid)
                 from pg_depend d
                 join pg_proc pr on pr.oid = d.refobjid
                 join pg_namespace pn on pn.oid = pr.pronamespace
                 join pg_language l on l.oid = pr.prolang
                 where d.classid = 'pg_policy'::regclass and d.objid = p.oid
                   and d.refclassid = 'pg_proc'::regclass
                   and l.lanname in ('sql', 'plpgsql')
                   and pn.nspname not in ('pg_catalog', 'information_schema')), '') as called_bodies
from pg_policy p
join scope_tables t on t.oid = p.polrelid
