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
-- of the column, for casts), tenant_a, tenant_b (text), problem, and for the
-- membership model (tenancy_model), where the probe acts as a user who is a member:
-- model ('setting' | 'membership'), identity (the expression policies name the user
-- by, e.g. 'auth.uid()'), identity_settings (JSON object text: the settings that
-- make that identity a member's, e.g. request.jwt.claim.sub and request.jwt.claims
-- for Supabase's auth.uid(), the user-id setting, or '{}' when the identity is the
-- role), identity_names (the same settings, each ''), member (the user: of the
-- membership table's users, one with the fewest memberships who is a member of a
-- tenant with rows in the table), member_role (the role to become: role_name, or the
-- member itself when policies name the user by current_user), member_tenants (JSON
-- array text of the member's tenants), member_problem (why the probe cannot act as
-- a member on this table: the object is then unknown). Under the membership model
-- tenant_a is a tenant of the member with rows in the table and tenant_b the lowest
-- tenant with rows there that the member does not belong to.
-- params: app_roles
-- requires: tenant_tables, column_types, tenancy_model
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
),
-- Membership model: the table of members, its user column (tenancy_model's user key,
-- else a column named like a user), and how the identity is set.
pt_model as (
    select m.model, m.identity, m.membership_table, m.user_key from tenancy_model m
),
pt_mt as (
    select t.oid, t.object, t.schema_name, t.table_name, t.tenant_column, c.type_name as tenant_type,
           coalesce(uk.col, fb.col) as user_column
    from pt_model m
    join tenant_tables t on m.membership_table in (t.object, t.table_name) and t.tenant_column is not null
    join column_types c on c.table_oid = t.oid and c.column_name = t.tenant_column
    left join lateral (
        select substr(m.user_key, length(t.object) + 2) as col
        where m.user_key like t.object || '.%' and substr(m.user_key, length(t.object) + 2) !~ ','
    ) uk on true
    left join lateral (
        select a.attname::text as col
        from pg_attribute a
        where a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
          and a.attname <> t.tenant_column and a.attname ~* '(user|member|profile|person)'
        order by a.attname ~* '^(user|member|profile)_?id$' desc, a.attnum
        limit 1
    ) fb on true
    where m.model = 'membership'
    order by t.object = m.membership_table desc
    limit 1
),
pt_identity as (
    -- jwt: Supabase's auth.uid() / auth.jwt() (request.jwt.claim.sub, request.jwt.claims);
    -- setting: a user-id setting the identity (or the helper it calls) reads;
    -- role: current_user; else the probe cannot set it
    select m.identity,
           case when m.identity ~* '(auth\s*\.\s*(uid|jwt)\s*\(|current_setting\s*\(\s*''request\.jwt\.claims?'')'
                  or f.src ~* '(auth\s*\.\s*(uid|jwt)\s*\(|current_setting\s*\(\s*''request\.jwt\.claims?'')'
                then 'jwt'
                when m.identity ~* 'current_setting\s*\(\s*''[^'']+''' or f.setting_name is not null then 'setting'
                when m.identity ~* '^[\s(]*(select\s+)?(current_user|current_role|user)[\s)]*$' then 'role'
                when m.identity ~* 'session_user' then 'session'
                else 'unknown' end as kind,
           coalesce(substring(m.identity from 'current_setting\s*\(\s*''([^'']+)'''), f.setting_name) as setting_name
    from pt_model m
    left join lateral (
        -- a helper named as the identity (current_app_user_id()): the setting its body reads
        select p.prosrc as src, substring(p.prosrc from 'current_setting\s*\(\s*''([^'']+)''') as setting_name
        from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        where p.pronargs = 0
          and lower(p.proname) = lower(substring(m.identity from '([\w$]+)"?\s*\(\s*\)'))
          and m.identity !~* 'current_setting'
        order by n.nspname = 'pg_catalog', n.nspname
        limit 1
    ) f on true
    where m.model = 'membership'
),
pt_members as materialized (
    -- per table: a member of one of its tenants (the fewest memberships first), that
    -- member's tenants (JSON), one of them with rows here (a), and the lowest tenant
    -- with rows here the member does not belong to (b); read by the auditing role
    select v.oid,
           replace(replace(replace(replace((regexp_match(x.doc, '<u>([^<]*)</u>'))[1],
                  '&lt;', '<'), '&gt;', '>'), '&#x0d;', E'\r'), '&amp;', '&') as member,
           replace(replace(replace(replace((regexp_match(x.doc, '<a>([^<]*)</a>'))[1],
                  '&lt;', '<'), '&gt;', '>'), '&#x0d;', E'\r'), '&amp;', '&') as tenant_a,
           replace(replace(replace(replace((regexp_match(x.doc, '<b>([^<]*)</b>'))[1],
                  '&lt;', '<'), '&gt;', '>'), '&#x0d;', E'\r'), '&amp;', '&') as tenant_b,
           replace(replace(replace(replace((regexp_match(x.doc, '<s>([^<]*)</s>'))[1],
                  '&lt;', '<'), '&gt;', '>'), '&#x0d;', E'\r'), '&amp;', '&') as tenants
    from pt_values v
    cross join pt_mt mt
    cross join lateral (
        select query_to_xml(format(
            '/* pg-integrity probe */ select m.u::text as u, m.a::text as a, m.s::text as s,'
            || ' (select %1$s from %2$I.%3$I c where c.%4$I is not null and c.%4$I::text <> all(array(select jsonb_array_elements_text(m.s))) order by 1 limit 1)::text as b'
            || ' from (select mm.u, mm.a, (select jsonb_agg(distinct m2.%8$I::text) from %5$I.%6$I m2 where m2.%7$I = mm.u) as s'
            || '       from (select m1.%7$I as u, m1.%8$I as a, count(*) over (partition by m1.%7$I) as n from %5$I.%6$I m1'
            || '             where m1.%7$I is not null and m1.%8$I is not null'
            || '               and exists (select 1 from %2$I.%3$I c1 where c1.%4$I %9$s)) mm'
            || '       order by mm.n, mm.u::text, mm.a::text limit 1) m',
            case when v.ordered then format('c.%I', v.tenant_column) else format('c.%I::text', v.tenant_column) end,
            v.schema_name, v.table_name, v.tenant_column,
            mt.schema_name, mt.table_name, mt.user_column, mt.tenant_column,
            case when v.tenant_type = mt.tenant_type then format('= m1.%I', mt.tenant_column)
                 else format('::text = m1.%I::text', mt.tenant_column) end), false, true, '')::text as doc
    ) x
    where mt.user_column is not null
      and v.tenant_a is not null and v.tenant_b is not null
),
pt_out as (
    select r.role_name || ' on ' || v.object as object,
           r.role_name,
           v.oid as table_oid,
           v.object as table_object,
           v.schema_name,
           v.table_name,
           v.tenant_column,
           v.tenant_type,
           coalesce(pm.tenant_a, v.tenant_a) as tenant_a,
           coalesce(pm.tenant_b, v.tenant_b) as tenant_b,
           null::text as problem,
           coalesce((select model from pt_model), 'setting') as model,
           i.identity,
           i.kind,
           pm.member,
           pm.tenants as member_tenants,
           r.role_exists,
           case when i.kind = 'role' then pm.member else r.role_name end as member_role,
           case when i.kind = 'jwt'
                then jsonb_build_object('request.jwt.claim.sub', pm.member,
                                        'request.jwt.claims', jsonb_build_object('sub', pm.member, 'role', r.role_name)::text,
                                        'request.jwt.claim.role', r.role_name)::text
                when i.kind = 'setting' then jsonb_build_object(i.setting_name, pm.member)::text
                else '{}' end as identity_settings,
           case when i.kind = 'jwt'
                then '{"request.jwt.claim.sub": "", "request.jwt.claims": "", "request.jwt.claim": ""}'
                when i.kind = 'setting' then jsonb_build_object(i.setting_name, '')::text
                else '{}' end as identity_names,
           case when i.kind is null then null
                when i.kind = 'session'
                then 'the policies name the user by session_user (the login role), which a probe cannot change: probe as a member by hand'
                when i.kind = 'unknown'
                then 'the probe cannot tell how to set ' || i.identity || ', the identity the policies read (it reads no current_setting the probe could set): set tenancy.user_identity to the current_setting(...) it reads'
                when not exists (select 1 from pt_mt)
                then 'the table of memberships is not known (tenancy.membership_table, and none was read from the policies), so the probe cannot find a member to act as: set tenancy.membership_table'
                when (select user_column from pt_mt) is null
                then 'the probe cannot tell which column of ' || (select object from pt_mt) || ' names the user, so it cannot act as a member'
                when pm.member is null
                then 'no user in ' || (select object from pt_mt) || ' is a member of a tenant with rows in ' || v.object || ', so the probe has no member to act as'
                when pm.tenant_b is null
                then 'the member ' || pm.member || ' belongs to every tenant with rows in ' || v.object || ', so there is no other tenant''s row to look for'
                when i.kind = 'role' and not exists (select 1 from pg_roles ro where ro.rolname = pm.member)
                then 'the policies name the user by current_user, but the member ' || pm.member || ' of ' || (select object from pt_mt) || ' is not a role'
                when i.kind = 'role' and not pg_has_role(current_user, (select ro.oid from pg_roles ro where ro.rolname = pm.member), 'MEMBER')
                then 'the policies name the user by current_user, and the auditing role ' || quote_ident(current_user) || ' cannot SET ROLE to the member ' || quote_ident(pm.member)
           end as member_problem
    from pt_values v
    cross join pt_roles r
    left join pt_identity i on true
    left join pt_members pm on pm.oid = v.oid
    where v.tenant_b is not null
      and v.tenant_a is not null
)
select o.object, o.role_name, o.table_oid, o.table_object, o.schema_name, o.table_name,
       o.tenant_column, o.tenant_type, o.tenant_a, o.tenant_b, o.problem, o.model, o.identity,
       o.identity_settings, o.identity_names, o.member, o.member_role, o.member_tenants,
       o.member_problem
from pt_out o
union all
select null, null, null, null, null, null, null, null, null, null, p.problem,
       null, null, null, null, null, null, null, null
from pt_problem p
where p.problem is not null
