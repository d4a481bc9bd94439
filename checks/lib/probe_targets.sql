-- What the isolation probes examine: each role of roles.app on each tenant table
-- (with the tenant column) whose rows belong to two or more tenants, with two of
-- those tenants: the lowest two tenant values, read in the plan phase by the
-- auditing role through query_to_xml (two ORDER BY … LIMIT 1 lookups an index
-- leading with the tenant column serves; compared as text for a type without <).
-- Tables with rows of a single tenant are not examined.
-- problem says why the probes cannot run here (then it is the only row): a role
-- of roles.app that does not exist, or that the auditing role cannot SET ROLE to
-- (membership; the SET option on PostgreSQL 16+), or a tenant table the auditing
-- role cannot read in full (no SELECT, or row level security applies to it), so
-- its tenants cannot be found.
-- Columns: object ('<role> on <schema.table>'), role_name, table_oid,
-- table_object, schema_name, table_name, tenant_column, tenant_type (format_type
-- of the column, for casts), tenant_a, tenant_b (text), problem.
-- params: app_roles
-- requires: tenant_tables, column_types
with pt_roles as (
    select r.name as role_name,
           ro.oid is not null as role_exists,
           ro.oid is not null
           and case when current_setting('server_version_num')::int >= 160000
                    then pg_has_role(current_user, ro.oid, 'SET')
                    else pg_has_role(current_user, ro.oid, 'MEMBER') end as can_set
    from unnest((select app_roles from params)::text[]) with ordinality r(name, ord)
    left join pg_roles ro on ro.rolname = r.name
),
pt_tables as (
    select t.oid, t.object, t.schema_name, t.table_name, t.tenant_column,
           c.type_name as tenant_type,
           exists (select 1 from pg_operator o
                   where o.oprname = '<' and o.oprleft = c.base_type_oid
                     and o.oprright = c.base_type_oid) as ordered,
           has_table_privilege(t.oid, 'SELECT') and not coalesce(row_security_active(t.oid), false) as readable
    from tenant_tables t
    join column_types c on c.table_oid = t.oid and c.column_name = t.tenant_column
    where t.is_tenant
),
pt_problem as (
    select nullif(concat_ws('; ',
        (select 'roles.app names ' || string_agg(quote_ident(role_name), ', ') || ', which does not exist'
         from pt_roles where not role_exists having count(*) > 0),
        (select 'the auditing role ' || quote_ident(current_user) || ' cannot SET ROLE to '
                || string_agg(quote_ident(role_name), ', ') || ': GRANT '
                || string_agg(quote_ident(role_name), ', ') || ' TO ' || quote_ident(current_user)
                || ' (with the SET option on PostgreSQL 16+), or audit as a superuser'
         from pt_roles where role_exists and not can_set having count(*) > 0),
        (select 'the auditing role ' || quote_ident(current_user) || ' cannot read every row of '
                || string_agg(object, ', ' order by object)
                || ' (no SELECT privilege, or row level security applies to it), so the tenants there cannot be found:'
                || ' audit as a superuser, the owner or a BYPASSRLS role'
         from pt_tables where not readable having count(*) > 0)), '') as problem
),
pt_values as materialized (
    select t.*,
           replace(replace(replace(replace((regexp_match(x.doc, '<a>([^<]*)</a>'))[1],
                  '&lt;', '<'), '&gt;', '>'), '&#x0d;', E'\r'), '&amp;', '&') as tenant_a,
           replace(replace(replace(replace((regexp_match(x.doc, '<b>([^<]*)</b>'))[1],
                  '&lt;', '<'), '&gt;', '>'), '&#x0d;', E'\r'), '&amp;', '&') as tenant_b
    from pt_tables t
    cross join lateral (
        -- marked as a probe statement: with pg_stat_statements.track = all this nested
        -- read is tracked, and must not pass for the application's (a read without a lock)
        select query_to_xml(format(
            '/* pg-integrity probe */ select s.a::text as a, (select %1$s from %2$I.%3$I c2 where %1$s > s.a order by 1 limit 1)::text as b'
            || ' from (select %4$s as a from %2$I.%3$I c1 where c1.%5$I is not null order by 1 limit 1) s',
            case when t.ordered then format('c2.%I', t.tenant_column) else format('c2.%I::text', t.tenant_column) end,
            t.schema_name, t.table_name,
            case when t.ordered then format('c1.%I', t.tenant_column) else format('c1.%I::text', t.tenant_column) end,
            t.tenant_column), false, true, '')::text as doc
    ) x
    where t.readable
      and (select problem from pt_problem) is null
)
select r.role_name || ' on ' || v.object as object,
       r.role_name,
       v.oid as table_oid,
       v.object as table_object,
       v.schema_name,
       v.table_name,
       v.tenant_column,
       v.tenant_type,
       v.tenant_a,
       v.tenant_b,
       null::text as problem
from pt_values v
cross join pt_roles r
where v.tenant_b is not null
  and v.tenant_a is not null
union all
select null, null, null, null, null, null, null, null, null, null, p.problem
from pt_problem p
where p.problem is not null
