-- The tenancy model in force (SPEC §4), one row: tenancy.model, or for `auto` what
-- the policies on tenant tables show.
--   setting     a policy compares the tenant column with current_setting(tenancy.setting)
--               (directly or in a helper the policy calls);
--   membership  a policy restricts the tenant column to the tenants the session's
--               identity belongs to: a sub-select or helper that reads a table with a
--               tenant column filtered by the identity (auth.uid(), auth.jwt(), a JWT
--               claim setting, current_user / session_user, a user-id setting such as
--               app.current_user_id or jwt.claims.user_id, tenancy.user_identity).
-- auto picks membership when more policies read an identity through a table than
-- read the tenant setting, else setting (also when neither is seen).
-- Columns: model ('setting' | 'membership'), reason (one line saying which and why),
-- identity (the identity most policies read, e.g. 'auth.uid()'), membership_table
-- (tenancy.membership_table, else the table with a tenant column most identity
-- sub-selects and helpers read, or ''), identity_re (regex matching an identity read
-- in a deparsed expression or a function body), setting_re (the tenant setting
-- as a regex literal), setting_read (some policy reads the tenant setting), bound_to
-- (what a tenant-bound policy binds the tenant column to, in the model's words: evidence
-- never names a setting the schema does not read), user_table_oid and user_table (membership
-- model: the table of the users, which the membership table references through a foreign key
-- to a table that is not the tenant table and has no tenant column, preferring a key column
-- named like user; null and '' otherwise), user_key (that key's columns, on the membership
-- table: 'app.members.user_id').
-- params: tenancy_model, tenant_setting, membership_table, user_identity, tenant_columns, tenant_table
-- requires: policies, tenant_tables, foreign_keys
-- cost: 1
with tm_re as (
    select regexp_replace((select tenant_setting from params), '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') as setting_re,
           -- identity reads: Supabase auth.uid()/auth.jwt(), JWT claim settings, user-id
           -- settings, the session's role, and tenancy.user_identity as written
           '(?<![\w."])"?auth"?\."?(uid|jwt)"?\s*\(|(?<![\w."])(current_user|session_user)(?![\w"(]|\s*\()'
           || '|(?<![\w$])"?(current_(?:app_)?(?:user|session)_id)"?\s*\(\s*\)'
           || '|current_setting\s*\(\s*''(request\.jwt\.claim[^'']*|[^'']*(user_?id|uid|session_?id|jwt|claims?\.[^'']*|\.sub|\.(current_)?user))'''
           || coalesce('|' || nullif(regexp_replace(btrim((select user_identity from params)),
                                                    '([.^$*+?()\[\]{}|\\])', '\\\1', 'g'), ''), '')
           || coalesce('|current_setting\s*\(\s*''' || regexp_replace(
                  substring((select user_identity from params) from 'current_setting\s*\(\s*''([^'']+)'''),
                  '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') || '''', '') as identity_re
),
tm_policy as (
    select p.policy_oid,
           coalesce(p.using_expr, '') || E'\n' || coalesce(p.check_expr, '') as expr_text,
           array[regexp_replace(coalesce(p.using_expr, ''), '\s+', ' ', 'g'),
                 regexp_replace(coalesce(p.check_expr, ''), '\s+', ' ', 'g')] as exprs,
           p.called_bodies
    from policies p
    join tenant_tables t on t.oid = p.table_oid and t.is_tenant and t.tenant_column is not null
),
tm_count as (
    select exists (select 1 from policies p cross join tm_re r
                   where (coalesce(p.using_expr, '') || coalesce(p.check_expr, '') || p.called_bodies)
                         ~* ('current_setting\s*\(\s*''' || r.setting_re || '''')) as setting_read,
           count(*) filter (where (x.expr_text || E'\n' || x.called_bodies)
                                  ~* ('current_setting\s*\(\s*''' || r.setting_re || '''')) as n_setting,
           -- the identity compared in the WHERE of a sub-select, or a helper that reads a table and the identity
           count(*) filter (where exists (select 1 from unnest(x.exprs) e
                                          where e ~* ('\mFROM [^()]*(\([^()]*\)[^()]*)*\mWHERE\M.{0,200}?(' || r.identity_re || ')'))
                              or x.called_bodies ~* '\mfrom\M' and x.called_bodies ~* r.identity_re) as n_membership
    from tm_policy x cross join tm_re r
),
tm_identity as (
    -- the identity most policies read
    select m.id, count(*) as n
    from tm_policy x
    cross join tm_re r
    cross join lateral regexp_matches(x.expr_text || E'\n' || x.called_bodies, r.identity_re, 'gi') mm
    cross join lateral (
        select case when mm[1] is not null then 'auth.' || lower(mm[1]) || '()'
                    when mm[2] is not null then lower(mm[2])
                    when mm[3] is not null then mm[3] || '()'
                    when mm[4] is not null then 'current_setting(''' || mm[4] || ''')'
                    else btrim((select user_identity from params)) end as id
    ) m
    group by m.id
    order by count(*) desc, m.id
    limit 1
),
tm_table as (
    -- the table with a tenant column that identity-filtered sub-selects and helpers read
    -- most, in the policies of any table (the tenant table's own policies count too)
    select t.object, count(*) as n
    from (select coalesce(p.using_expr, '') || E'\n' || coalesce(p.check_expr, '') as expr_text, p.called_bodies
          from policies p) x
    cross join tm_re r
    cross join lateral regexp_matches(x.expr_text || E'\n' || x.called_bodies,
                                      '\mfrom\s+((?:"[^"]+"|[\w$]+)(?:\.(?:"[^"]+"|[\w$]+))?)', 'gi') f
    join tenant_tables t
      on t.tenant_column is not null
     and (lower(replace(f[1], '"', '')) = lower(t.object) or lower(replace(f[1], '"', '')) = lower(t.table_name))
    where (x.expr_text || E'\n' || x.called_bodies) ~* r.identity_re
    group by t.object
    order by count(*) desc, t.object
    limit 1
)
select m.model,
       case when (select tenancy_model from params) in ('setting', 'membership')
            then 'tenancy.model = ' || m.model
            when m.model = 'membership'
            then 'auto: ' || c.n_membership || ' polic' || case when c.n_membership = 1 then 'y restricts' else 'ies restrict' end
                 || ' the tenant column to the tenants of ' || coalesce((select id from tm_identity), 'the session''s user')
                 || coalesce(' through ' || (select object from tm_table), '')
                 || case when c.n_setting = 0 then ', none reads the tenant setting (tenancy.setting)'
                         else ', ' || c.n_setting || ' read ' || (select tenant_setting from params) end
            when c.n_setting > 0
            then 'auto: ' || c.n_setting || ' polic' || case when c.n_setting = 1 then 'y compares' else 'ies compare' end
                 || ' the tenant column with current_setting(''' || (select tenant_setting from params) || ''')'
                 || case when c.n_membership > 0 then ', ' || c.n_membership || ' read a user''s memberships' else '' end
            else 'auto: no policy on a tenant table reads the tenant setting (tenancy.setting) or a user''s memberships; judged by the setting model'
       end as reason,
       coalesce(nullif(btrim((select user_identity from params)), ''), (select id from tm_identity), 'auth.uid()') as identity,
       coalesce(nullif((select membership_table from params), ''), (select object from tm_table), '') as membership_table,
       r.identity_re,
       r.setting_re,
       c.setting_read,
       -- what a tenant-bound policy binds the tenant column to, in the model's words
       case when m.model = 'membership'
            then 'the tenants ' || coalesce(nullif(btrim((select user_identity from params)), ''), (select id from tm_identity), 'the session''s user')
                 || ' belongs to' || coalesce(' (' || nullif(coalesce(nullif((select membership_table from params), ''),
                                                                        (select object from tm_table)), '') || ')', '')
            when c.setting_read then 'current_setting(''' || (select tenant_setting from params) || ''')'
            else 'the tenant context (no policy reads tenancy.setting)'
       end as bound_to,
       u.ref_oid as user_table_oid,
       coalesce(u.ref_object, '') as user_table,
       coalesce(u.user_key, '') as user_key
from tm_count c
cross join tm_re r
cross join lateral (
    select case when (select tenancy_model from params) in ('setting', 'membership') then (select tenancy_model from params)
                when c.n_membership > c.n_setting then 'membership'
                else 'setting' end as model
) m
-- membership model: the users' table, referenced by the membership table (not the tenant table)
left join lateral (
    select f.ref_oid, f.ref_object, mt.object || '.' || array_to_string(f.columns, ', ') as user_key
    from tenant_tables mt
    join foreign_keys f on f.table_oid = mt.oid and f.ref_oid <> mt.oid
    left join tenant_tables rt on rt.oid = f.ref_oid
    where m.model = 'membership'
      and coalesce(nullif((select membership_table from params), ''), (select object from tm_table)) in (mt.object, mt.table_name)
      and rt.tenant_column is null
      and not coalesce(rt.table_name = (select tenant_table from params) or rt.object = (select tenant_table from params), false)
    order by (array_to_string(f.columns, ',') ~* 'user') desc, f.ref_object, f.object
    limit 1
) u on true
