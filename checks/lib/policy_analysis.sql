-- Row level security policies judged on what they do, not on their text alone.
-- Each USING / WITH CHECK expression, as PostgreSQL deparses it (pg_get_expr), is
-- reduced innermost parentheses first to three properties:
--   bind   T tenant-bound: compares the tenant column (=, IN, = ANY, IS NOT
--            DISTINCT FROM) with current_setting(tenancy.setting) or with a value
--            derived only from it (nullif, casts, a scalar sub-select, a helper);
--          S derived only from the tenant setting (a test of the setting itself);
--          C derived only from the tenant column; K constant (`true`);
--          U anything else: other columns, other settings, current_user, sub-selects
--            over other tables, unknown functions (D, internally: `tenant IS
--            DISTINCT FROM setting`, which is T once negated).
--          OR is T when every branch is T or S (at least one T): any other branch
--          widens access; AND is T when one branch is T; CASE when every THEN and
--          ELSE is T or false; NOT is never T.
--   unset  what the expression gives with every setting unset (NULL, or '' once a
--          transaction-local SET ended): 1 true (fails open: COALESCE to the column
--          or to a value that makes the test true, `OR … IS NULL`, `OR … = ''`,
--          `NOT coalesce(…, 'false')`), 0 false, z null, ? unknown. nullif(…, '')
--          keeps NULL and fails closed.
--   wrap   1 when a setting is read outside a scalar sub-select `( SELECT …)`, so it
--          is evaluated per row rather than once per statement (an initplan); inside
--          the tokens a bit set: 1 read per row, 2 refers to the policy's row (a
--          sub-select holding such a reference is correlated and runs per row too).
-- SQL and PL/pgSQL functions the policy calls (pg_depend) are read too, with the
-- functions their bodies call by name, three levels deep (current_user_id() ->
-- current_session_id() -> current_setting): a helper passed the tenant column is
-- tenant-bound when it (or what it calls) reads current_setting(<tenancy.setting>)
-- and its body uses that argument ($n or its name); a helper that reads the
-- setting and is passed no column yields the tenant (S); any other helper is U.
-- The bodies are matched with regexes for fallbacks (COALESCE to a column or
-- true, NOT coalesce(…, 'false'), OR … IS NULL / = '').
-- Columns: those of policies, plus tenant_column, is_tenant, applies_to_app (the
-- policy's roles include PUBLIC or a role some app role is a member of; with no
-- roles.app, every policy except those only for roles.service; never a policy only
-- for superusers or BYPASSRLS roles, which it cannot bind), reads_setting,
-- settings_read (text[]), helpers (text[], schema.name), setting_helpers (text[],
-- helpers whose body calls current_setting), open_helpers (text[], helpers whose
-- body falls back when a setting is unset), using_bind, using_unset,
-- using_wrap, check_bind, check_unset, check_wrap (null when the expression is
-- absent).
-- Membership model (tenancy_model.model = 'membership'): the identity (auth.uid(),
-- auth.jwt(), a JWT-claim or user-id setting, current_user, a helper reading one)
-- is a token I; `col = identity` a user filter J; a sub-select over a table filtered
-- by the identity, or a helper returning the user's tenant ids, the user's tenants
-- M; the tenant column compared with another column L (a correlated sub-select).
-- Tenant-bound (T) then also: tenant IN / = ANY (M), tenant = identity, a helper
-- passed the tenant column whose body reads a table filtered by the identity
-- (has_role_on_account(account_id)), and EXISTS (… WHERE m.tenant = t.tenant AND
-- m.user = identity). Under the setting model these are U. A helper whose body
-- falls back when a setting is unset or carries a switch (open) is never
-- tenant-bound: its switch widens every policy that calls it. A sub-select that
-- refers to the policy's table (correlated) runs per row: it is not an initplan.
-- Also: model, identity, membership_table (from tenancy_model), reads_identity,
-- open_helper_objects and arg_helper_objects (text[], schema.name(argtypes) of the
-- open helpers, and of the setting-reading helpers the policy passes a column).
-- params: tenant_setting, tenant_columns, app_roles, service_roles
-- requires: policies, tenant_tables, function_bodies, tenancy_model
-- cost: 8
with recursive
pa_setting as (
    -- the tenant setting's name as a regex literal; the model in force
    select regexp_replace((select tenant_setting from params), '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') as setting_re,
           (select model = 'membership' from tenancy_model) as membership,
           (select identity_re from tenancy_model) as identity_re,
           coalesce(regexp_replace(nullif(split_part((select membership_table from params), '.', 2), ''),
                                   '([.^$*+?()\[\]{}|\\])', '\\\1', 'g'), '') as member_re
),
pa_policy as (
    select p.*,
           tt.tenant_column,
           coalesce(tt.is_tenant, false) as is_tenant,
           (select setting_re from pa_setting) as setting_re,
           quote_ident(c.relname) as table_ident,
           regexp_replace(quote_ident(c.relname), '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') as table_re,
           regexp_replace(quote_ident(tt.tenant_column), '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') as column_re
    from policies p
    join pg_class c on c.oid = p.table_oid
    left join tenant_tables tt on tt.oid = p.table_oid
),
pa_fn as (
    -- SQL and PL/pgSQL functions with their body (function_bodies), and their arguments
    select f.oid, f.schema_name as fn_schema, f.function_name as fn_name, f.object as fn_object,
           pr.pronargs::int as nargs,
           pr.proargnames, pr.proargmodes, f.body
    from function_bodies f
    join pg_proc pr on pr.oid = f.oid
),
pa_called as (
    -- the functions each policy calls (recorded in pg_depend)
    select distinct d.objid as policy_oid, d.refobjid as fn_oid
    from pg_depend d
    join pa_fn f on f.oid = d.refobjid
    where d.classid = 'pg_policy'::regclass
      and d.refclassid = 'pg_proc'::regclass
      and d.objid in (select policy_oid from pa_policy)
),
pa_reach(root_oid, fn_oid, depth) as (
    -- what a called function calls in turn, by name (bodies are not in pg_depend),
    -- up to three levels: current_user_id() -> current_session_id() -> current_setting
    select distinct fn_oid, fn_oid, 0 from pa_called
    union
    select r.root_oid, f2.oid, r.depth + 1
    from pa_reach r
    join pa_fn f1 on f1.oid = r.fn_oid
    join pa_fn f2 on f2.oid <> f1.oid
                 and strpos(lower(f1.body), lower(f2.fn_name)) > 0
                 and f1.body ~* ('(?<![\w$])' || regexp_replace(f2.fn_name, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g')
                                 || '"?\s*\(')
    where r.depth < 3
),
pa_reach_body as (
    select r.root_oid,
           string_agg(f.body, E'\n' order by r.depth, f.oid) as bodies
    from (select distinct root_oid, fn_oid, min(depth) over (partition by root_oid, fn_oid) as depth from pa_reach) r
    join pa_fn f on f.oid = r.fn_oid
    group by r.root_oid
),
pa_helper as (
    select c.policy_oid,
           f.fn_schema,
           f.fn_name,
           f.fn_object,
           f.nargs,
           rb.bodies as bodies,
           rb.bodies ~* ('current_setting\s*\(\s*''' || pp.setting_re || '''') as reads_s,
           rb.bodies ~* 'current_setting\s*\(' as reads_any,
           -- membership: reads the identity, and a table (tenancy.membership_table when set)
           rb.bodies ~* ps.identity_re as reads_i,
           case when ps.member_re = '' then f.body ~* '\mfrom\M'
                else f.body ~* ('\mfrom\s+("?[\w$]+"?\.)?"?' || ps.member_re || '"?(?![\w$])') end as reads_members,
           -- returns tenant ids (select organization_id from …), not a user id
           f.body ~* ('^\s*(begin\s+)?(return\s+query\s+)?select\s+(distinct\s+)?([\w$]+\.)?"?('
                      || array_to_string(array(select regexp_replace(c, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g')
                                               from unnest((select tenant_columns from params)::text[]) c), '|')
                      || ')"?\s') as returns_tenant,
           array(select k::int
                 from generate_series(1, f.nargs) k
                 where (rb.bodies ~* ('current_setting\s*\(\s*''' || pp.setting_re || '''')
                        or rb.bodies ~* ps.identity_re)
                   and (f.body ~ ('\$' || k || '(?![0-9])')
                        or coalesce(an.names[k], '') <> ''
                           and f.body ~* ('(?<![\w.$])("?' || regexp_replace(f.fn_name, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g')
                                          || '"?\.)?'
                                          || regexp_replace(an.names[k], '([.^$*+?()\[\]{}|\\])', '\\\1', 'g')
                                          || '(?![\w$])'))) as bound_params,
           rb.bodies ~* any (array[
               -- COALESCE(setting, <column, parameter or other identifier>)
               'coalesce\s*\(\s*(nullif\s*\(\s*)?\(?\s*current_setting\s*\([^)]*\)\s*\)?(\s*::\s*\w+)?(\s*,\s*''''\s*\))?(\s*::\s*\w+)?\s*,\s*(?!(true|false|null)\M)(\$[0-9]|[a-z_])',
               -- COALESCE(setting, true) used as the condition
               'coalesce\s*\(\s*(nullif\s*\(\s*)?\(?\s*current_setting\s*\([^)]*\)\s*\)?(\s*::\s*\w+)?(\s*,\s*''''\s*\))?(\s*::\s*\w+)?\s*,\s*(true|''(true|t|on|yes|y|1)'')\s*\)(?!\s*(::\s*\w+\s*)?(=|<>|!=))',
               -- NOT coalesce(setting, 'false'): unset means "not checking"
               'not\s*\(?\s*coalesce\s*\(\s*(nullif\s*\(\s*)?\(?\s*current_setting\s*\([^)]*\)\s*\)?(\s*::\s*\w+)?(\s*,\s*''''\s*\))?(\s*::\s*\w+)?\s*,\s*(false|''(false|f|off|no|n|0)'')\s*\)',
               'coalesce\s*\(\s*\(?\s*current_setting\s*\([^)]*\)\s*\)?\s*,\s*''(false|f|off|no|n|0)''\s*\)\s*(<>|!=)\s*''(true|t|on|yes|y|1)''',
               'coalesce\s*\(\s*\(?\s*current_setting\s*\([^)]*\)\s*\)?\s*,\s*''''\s*\)\s*=\s*''''',
               -- OR current_setting(...) IS NULL / = ''
               '\mor\s+[(\s]*(nullif\s*\(\s*)?current_setting\s*\([^)]*\)[^()]{0,40}?\)?\s*(is\s+null|=\s*'''')',
               'current_setting\s*\([^)]*\)[^()]{0,40}?\)?\s*(is\s+null|=\s*'''')\s*\)?\s*or\M'
           ]) as body_open
    from pa_called c
    cross join pa_setting ps
    join pa_policy pp on pp.policy_oid = c.policy_oid
    join pa_fn f on f.oid = c.fn_oid
    join pa_reach_body rb on rb.root_oid = c.fn_oid
    cross join lateral (
        select array_agg(x.name order by x.ord) as names
        from unnest(f.proargnames, f.proargmodes::text[]) with ordinality x(name, mode, ord)
        where coalesce(x.mode, 'i') in ('i', 'b', 'v')
    ) an
),
pa_src as (
    -- each USING / WITH CHECK expression with what its tokenizing depends on: the
    -- tenant column, and the table name only when the text qualifies a column with it
    select pp.policy_oid, w.which, w.expr,
           coalesce(pp.column_re, '') as ckey,
           -- (strpos, not a regex: one regex per table would be compiled per row)
           case when strpos(w.expr, pp.table_ident || '.') > 0 then pp.table_re else '' end as tkey
    from pa_policy pp
    cross join lateral (values ('using', pp.using_expr), ('check', pp.check_expr)) w(which, expr)
    where w.expr is not null
      -- always true, but estimated at 0.5%: it keeps the estimated cost of the
      -- recursion below jit_above_cost (JIT compilation would cost several times
      -- what the whole query does)
      and left(pp.object, length(pp.table_object)) = pp.table_object
),
pa_expr as (
    -- tokenized once per distinct (text, column, table): a policy repeated on
    -- thousands of tables is read once
    select k.expr, k.ckey, k.tkey,
           -- 1. whitespace; the tenant setting, other settings and the tenant column as tokens
           -- (a column qualified with the policy's table sits in a sub-select that refers to
           -- the row: its token's wrap carries 2, correlated)
           case when k.ckey = '' and k.tkey = '' then s.ts
                when k.tkey = ''
                then regexp_replace(s.ts, '(?<![\w."''$])' || k.ckey || '(?![\w"$(])', '{Cc0}', 'g')
                when k.ckey = ''
                then regexp_replace(s.ts, '(?<![\w."''$])' || k.tkey || '\.("[^"]*"|[A-Za-z_][\w$]*)', '{Ux2}', 'g')
                else regexp_replace(regexp_replace(regexp_replace(s.ts,
                         '(?<![\w."''$])' || k.tkey || '\.' || k.ckey || '(?![\w"$(])', '{Cc2}', 'g'),
                         '(?<![\w."''$])' || k.ckey || '(?![\w"$(])', '{Cc0}', 'g'),
                         '(?<![\w."''$])' || k.tkey || '\.("[^"]*"|[A-Za-z_][\w$]*)', '{Ux2}', 'g') end as t1
    from (select distinct expr, ckey, tkey from pa_src) k
    cross join lateral (
        -- identity reads (JWT-claim and user-id settings, auth.uid()/auth.jwt(), the
        -- session's role) are I tokens, after the tenant setting and before other settings
        select regexp_replace(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
                   regexp_replace(k.expr, '\s+', ' ', 'g'),
                   '(pg_catalog\.)?current_setting\(''' || (select setting_re from pa_setting)
                   || '''::text(, (true|false))?\)', '{Sn1}', 'gi'),
                   '(pg_catalog\.)?current_setting\(''(request\.jwt\.claim[^'']*|[^'']*(user_?id|uid|session_?id|jwt|claims?\.[^'']*|\.sub|\.(current_)?user))''::text(, (true|false))?\)',
                   '{In1}', 'gi'),
                   '(?<![\w."])auth\.(uid|jwt)\(\)', '{In1}', 'g'),
                   '(?<![\w."])(CURRENT_USER|SESSION_USER)(?![\w"(])', '{Ik0}', 'g'),
                   '(pg_catalog\.)?current_setting\(''([^'']|'''')*''::text(, (true|false))?\)', '{Un1}', 'g') as ts
    ) s
),
pa_prep0 as materialized (
    -- 2. string literals become constant tokens (truthy, falsy, empty, other);
    -- quoted identifiers with brackets or quotes are masked; bare true/false are
    -- constants; casts are dropped except ::boolean; the whole is one group.
    select e.expr, e.ckey, e.tkey,
           '(' || regexp_replace(regexp_replace(regexp_replace(regexp_replace(lit.t2,
               '(?<![\w."$])true(?![\w"$(])', '{Kt0}', 'g'),
               '(?<![\w."$])false(?![\w"$(])', '{Kf0}', 'g'),
               '::(?!boolean(?![\w\[]))(?:"[^"]*"|[A-Za-z_][\w$]*)(?:\.(?:"[^"]*"|[A-Za-z_][\w$]*))?(?: varying| precision| with time zone| without time zone)?(?:\(\d+(?:,\d+)?\))?(?: with time zone| without time zone)?(?:\[\])*',
               '', 'g'),
               '(?<![\w$"])\(((?:[A-Za-z_][\w$]*\.)?[A-Za-z_][\w$]*|\{[A-Z].[0-3]\})\)(?!::boolean)', '\1', 'g') || ')' as t0
    from pa_expr e
    cross join lateral (
        select string_agg(
                   case when tok[1] ~ '^''.*''$' then
                            case lower(btrim(replace(substr(tok[1], 2, length(tok[1]) - 2), '''''', '''')))
                                 when '' then '{Ke0}'
                                 when 'true' then '{Kt0}' when 't' then '{Kt0}' when 'on' then '{Kt0}'
                                 when 'yes' then '{Kt0}' when 'y' then '{Kt0}' when '1' then '{Kt0}'
                                 when 'false' then '{Kf0}' when 'f' then '{Kf0}' when 'off' then '{Kf0}'
                                 when 'no' then '{Kf0}' when 'n' then '{Kf0}' when '0' then '{Kf0}'
                                 else '{Kk0}' end
                        when tok[1] ~ '^".*"$' and tok[1] ~ '[(){}'',]' then '"q"'
                        when tok[1] in ('''', '"') then ' '
                        else tok[1] end,
                   '' order by ord) as t2
        from regexp_matches(e.t1, '''(?:[^'']|'''')*''|"(?:[^"]|"")*"|[^''"]+|[''"]', 'g') with ordinality x(tok, ord)
    ) lit
),
pa_prep as (
    -- 3. expressions that read the same once tokenized (the same policy on another
    -- table, as migrations and generators write them) are reduced once: each maps
    -- to a representative. A policy calling helpers represents itself: its helpers
    -- take part in the reduction.
    select x.*,
           case when x.has_helper then x.policy_oid
                else first_value(x.policy_oid) over w end as rep_oid,
           case when x.has_helper then x.which
                else first_value(x.which) over w end as rep_which
    from (
        select p.policy_oid, p.which, t.t0,
               exists (select 1 from pa_helper h where h.policy_oid = p.policy_oid) as has_helper
        from pa_src p
        join pa_prep0 t on t.expr = p.expr and t.ckey = p.ckey and t.tkey = p.tkey
    ) x
    window w as (partition by x.t0, x.has_helper order by x.policy_oid, x.which)
),
pa_reduce as (
    select x.policy_oid, x.which, 0 as step, x.t0 as t, pp.table_ident || '.' as tq,
           (select membership from pa_setting) as membership
    from pa_prep x
    join pa_policy pp on pp.policy_oid = x.policy_oid
    where x.policy_oid = x.rep_oid and x.which = x.rep_which
    union all
    select r.policy_oid, r.which, r.step + 1,
           overlay(g.t placing res.tok from strpos(g.t, g.m[1]) for length(g.m[1])),
           r.tq, r.membership
    from pa_reduce r
    cross join lateral (
        -- a token alone in parentheses (not a call, not cast to boolean) is that token
        select regexp_replace(r.t, '(?<![\w$"])\((\{[A-Z].[0-3]\})\)(?!::boolean)', '\1', 'g') as t
        offset 0  -- not flattened: each regex runs once per row, not once per use
    ) g0
    cross join lateral (
        select g0.t,
               regexp_match(g0.t, '(((?:"[^"]*"|[A-Za-z_][\w$]*)(?:\.(?:"[^"]*"|[A-Za-z_][\w$]*))?)?\(([^()]*)\)(::boolean)?)') as m
        offset 0
    ) g
    cross join lateral (
        select g.m[2] as p,
               regexp_replace(g.m[3], ' AS (?:"[^"]*"|[A-Za-z_][\w$]*)', '', 'g') as x,
               -- ARRAY(SELECT …) is a sub-select like ( SELECT …): `tenant = ANY (ARRAY(SELECT …))`
               case when g.m[2] is not null and not (upper(g.m[2]) = 'ARRAY' and g.m[3] ~ '^\s*SELECT\M') then 'F'
                    when g.m[3] ~ '^\s*SELECT\M' then 'Q'
                    when g.m[3] ~ '^\s*CASE WHEN ' and g.m[3] !~ 'CASE.*CASE' then 'C'
                    when g.m[3] ~ ' OR ' then 'O'
                    when g.m[3] ~ ' AND ' then 'A'
                    else 'X' end as shape
        offset 0
    ) a
    cross join lateral (
        -- a sub-select that refers to the policy's table (or its tenant column) runs per row
        select a.shape = 'Q' and (a.x ~ '\{[A-Z].[23]\}' or strpos(a.x, r.tq) > 0) as correlated
    ) qc
    cross join lateral (
        -- each part (argument, OR/AND branch, or the whole) classified as an atom
        select coalesce(array_agg(pc.bind order by pt.ord), '{}') as binds,
               coalesce(array_agg(pc.kind order by pt.ord), '{}') as kinds,
               coalesce(array_agg(cw.word order by pt.ord), '{}') as words,
               coalesce(bit_or(pc.wrap::int)::text, '0') as wrap,
               bool_or(pt.part ~ ' FROM ') as has_from
        from unnest(case a.shape
                        when 'C' then array(select regexp_replace(cm[1], '^(WHEN|THEN|ELSE) ', '')
                                            from regexp_matches(a.x, '(?:WHEN|THEN|ELSE) (?:(?! WHEN | THEN | ELSE | END\s*$).)*', 'g') cm)
                        when 'F' then case when btrim(a.x) = '' then array[]::text[]
                                           else regexp_split_to_array(a.x, ',\s*') end
                        when 'O' then regexp_split_to_array(a.x, ' OR ')
                        when 'A' then regexp_split_to_array(a.x, ' AND ')
                        when 'Q' then array[regexp_replace(a.x, '^\s*SELECT\s+', '')]
                        else array[a.x] end) with ordinality pt(part, ord)
        left join lateral (
            select (regexp_matches(a.x, '(WHEN|THEN|ELSE) (?:(?! WHEN | THEN | ELSE | END\s*$).)*', 'g'))[1] as word
            where a.shape = 'C'
            offset pt.ord - 1 limit 1
        ) cw on true
        cross join lateral (
            select pt.part ~ '^\s*NOT\s' as neg,
                   regexp_replace(pt.part, '^\s*NOT\s+', '') as y
        ) n
        cross join lateral (
            select regexp_match(n.y, '^(.*?) (IS NOT DISTINCT FROM|IS DISTINCT FROM|IS NOT NULL|IS NULL|IS NOT TRUE|IS TRUE|IS NOT FALSE|IS FALSE|IS NOT UNKNOWN|IS UNKNOWN|NOT IN|IN|[-+*/<>=~!@#%^&|`?]+)(?: (ANY|ALL|SOME))?(?: (.*))?$') as om
        ) o0
        cross join lateral (
            select case when o0.om is null then null
                        else o0.om[2] || coalesce(' ' || o0.om[3], '') end as op,
                   o0.om[1] as lhs,
                   o0.om[4] as rhs
        ) o
        cross join lateral (
            select max(case sd.side when 'l' then sd.bind end) as lb,
                   max(case sd.side when 'l' then sd.kind end) as lk,
                   max(case sd.side when 'r' then sd.bind end) as rb,
                   max(case sd.side when 'r' then sd.kind end) as rk,
                   max(case sd.side when 'w' then sd.bind end) as wb,
                   max(case sd.side when 'w' then sd.kind end) as wk,
                   coalesce(bit_or(sd.wrap::int)::text, '0') as wrap
            from (values ('l', o.lhs), ('r', o.rhs), ('w', n.y)) v(side, z)
            cross join lateral (
                select v.side,
                       case when wc.nwords > 0 or 'U' = any(tks.binds) then 'U'
                            when tks.binds = array['D'] then 'D'
                            when 'D' = any(tks.binds) then 'U'
                            when 'T' = any(tks.binds) then case when tks.binds <@ array['T', 'K'] then 'T' else 'U' end
                            -- identity, user filter, the user's tenants, a column link: alone (with constants)
                            when tks.binds && array['I', 'J', 'M', 'L'] then
                                case when tks.binds <@ array['I', 'K'] then 'I' when tks.binds <@ array['J', 'K'] then 'J'
                                     when tks.binds <@ array['M', 'K'] then 'M' when tks.binds <@ array['L', 'K'] then 'L'
                                     else 'U' end
                            when 'S' = any(tks.binds) and 'C' = any(tks.binds) then 'U'
                            when 'S' = any(tks.binds) then 'S'
                            when 'C' = any(tks.binds) then 'C'
                            else 'K' end as bind,
                       case when wc.nwords = 0 and cardinality(tks.binds) = 1 then tks.kinds[1]
                            when wc.nwords = 0 and cardinality(tks.binds) = 0 then 'k'
                            else 'x' end as kind,
                       tks.wrap
                from (select coalesce(array_agg(tk[1]), '{}') as binds,
                             coalesce(array_agg(tk[2]), '{}') as kinds,
                             bit_or(tk[3]::int)::text as wrap
                      from regexp_matches(v.z, '\{([A-Z])(.)([0-3])\}', 'g') tk) tks
                cross join (
                    select count(*) as nwords
                    from regexp_matches(regexp_replace(v.z, '\{[^}]*\}', ' ', 'g'),
                                        '("[^"]*"|[A-Za-z_][\w$]*(?:\.(?:"[^"]*"|[A-Za-z_][\w$]*))*)', 'g') wd
                    where upper(wd[1]) not in ('SELECT', 'AS', 'AND', 'OR', 'NOT', 'IS', 'NULL', 'TRUE', 'FALSE',
                                               'IN', 'ANY', 'ALL', 'SOME', 'DISTINCT', 'FROM', 'CASE', 'WHEN', 'THEN',
                                               'ELSE', 'END', 'ARRAY', 'EXISTS', 'LIKE', 'ILIKE', 'BETWEEN',
                                               'SYMMETRIC', 'ESCAPE', 'COLLATE', 'UNKNOWN', 'ROW')
                ) wc
                where v.z is not null
            ) sd
        ) si
        cross join lateral (
            -- value kinds (n t f e k c x) and boolean kinds (1 0 z ?) seen from both sides
            select case si.lk when '1' then 't' when '0' then 'f' when 'z' then 'n' when '?' then 'x' else si.lk end as l,
                   case si.rk when '1' then 't' when '0' then 'f' when 'z' then 'n' when '?' then 'x' else si.rk end as r
        ) vk
        cross join lateral (
            select case when o.op is null then si.wb
                        when o.op in ('=', '= ANY', '= SOME', 'IN', 'IS NOT DISTINCT FROM')
                             and (si.lb = 'C' and si.rb = 'S' or si.lb = 'S' and si.rb = 'C') then 'T'
                        -- NOT (tenant_id IS DISTINCT FROM setting) is how IS NOT DISTINCT FROM deparses
                        when o.op = 'IS DISTINCT FROM'
                             and (si.lb = 'C' and si.rb = 'S' or si.lb = 'S' and si.rb = 'C') then 'D'
                        when o.rhs is null then case when o.op = 'IS TRUE' and si.lb <> 'D' then si.lb
                                                     when si.lb in ('T', 'D', 'J', 'M', 'L') then 'U' else si.lb end
                        -- a boolean test compared with true (has_role_on_account(account_id) = true) is the test
                        when o.op in ('=', 'IS NOT DISTINCT FROM') and si.lb in ('T', 'J', 'L') and si.rb = 'K' and si.rk = 't'
                        then si.lb
                        when o.op in ('=', 'IS NOT DISTINCT FROM') and si.rb in ('T', 'J', 'L') and si.lb = 'K' and si.lk = 't'
                        then si.rb
                        -- membership: the tenant column among the user's tenants, or the user as tenant
                        when o.op in ('=', '= ANY', '= SOME', 'IN', 'IS NOT DISTINCT FROM')
                             and (si.lb = 'C' and si.rb in ('M', 'I') or si.lb in ('M', 'I') and si.rb = 'C')
                        then case when r.membership then 'T' else 'U' end
                        -- a column (or anything unknown) compared with the identity: a user filter
                        when o.op in ('=', '= ANY', '= SOME', 'IN', 'IS NOT DISTINCT FROM')
                             and (si.lb = 'U' and si.rb in ('I', 'M') or si.lb in ('I', 'M') and si.rb = 'U') then 'J'
                        -- the tenant column compared with another column (a correlated sub-select's link)
                        when o.op in ('=', 'IS NOT DISTINCT FROM')
                             and (si.lb = 'C' and si.rb = 'U' or si.lb = 'U' and si.rb = 'C') then 'L'
                        when 'U' in (si.lb, si.rb) or 'T' in (si.lb, si.rb) or 'D' in (si.lb, si.rb) then 'U'
                        when si.lb in ('J', 'M', 'L') or si.rb in ('J', 'M', 'L') then 'U'
                        when si.lb = 'K' then si.rb
                        when si.rb = 'K' then si.lb
                        when si.lb = si.rb then si.lb
                        else 'U' end as bind,
                   case when o.op is null then si.wk
                        when o.op in ('=', '= SOME') then
                            case when 'n' in (vk.l, vk.r) then case when 'e' in (vk.l, vk.r) then '1' else 'z' end
                                 when vk.l = 'c' and vk.r = 'c' then '1'
                                 when vk.l = vk.r and vk.l in ('t', 'f', 'e') then '1'
                                 when vk.l in ('t', 'f', 'e') and vk.r in ('t', 'f', 'e') then '0'
                                 else '?' end
                        when o.op in ('= ANY', 'IN') then
                            case when 'n' in (vk.l, vk.r) then 'z' when vk.l = 'c' and vk.r = 'c' then '1' else '?' end
                        when o.op in ('<>', '!=') then
                            case when 'n' in (vk.l, vk.r) then 'z'
                                 when vk.l = 'c' and vk.r = 'c' then '0'
                                 when vk.l in ('t', 'f', 'e') and vk.r in ('t', 'f', 'e') then case when vk.l = vk.r then '0' else '1' end
                                 else '?' end
                        when o.op = 'IS NULL' then
                            case when vk.l = 'n' then '1' when vk.l in ('t', 'f', 'e', 'k') then '0' else '?' end
                        when o.op = 'IS NOT NULL' then
                            case when vk.l = 'n' then '0' when vk.l in ('t', 'f', 'e', 'k') then '1' else '?' end
                        when o.op = 'IS NOT DISTINCT FROM' then
                            case when 'n' in (vk.l, vk.r) and 'e' in (vk.l, vk.r) then '1'
                                 when 'n' in (vk.l, vk.r) and (vk.l in ('c', 't', 'f', 'k') or vk.r in ('c', 't', 'f', 'k')) then '0'
                                 else '?' end
                        when o.op = 'IS DISTINCT FROM' then
                            case when 'n' in (vk.l, vk.r) and (vk.l in ('c', 't', 'f', 'k', 'e') or vk.r in ('c', 't', 'f', 'k', 'e')) then '1'
                                 else '?' end
                        when o.op = 'IS TRUE' then case when vk.l = 't' then '1' when vk.l in ('f', 'n') then '0' else '?' end
                        when o.op = 'IS NOT TRUE' then case when vk.l = 't' then '0' when vk.l in ('f', 'n') then '1' else '?' end
                        when o.op = 'IS FALSE' then case when vk.l = 'f' then '1' when vk.l in ('t', 'n') then '0' else '?' end
                        when o.op = 'IS NOT FALSE' then case when vk.l = 'f' then '0' when vk.l in ('t', 'n') then '1' else '?' end
                        when 'n' in (vk.l, vk.r) then 'z'
                        else '?' end as kind
        ) cmp
        cross join lateral (
            select case when n.neg and cmp.bind = 'D' then 'T'
                        when n.neg and cmp.bind = 'T' then 'U'
                        else cmp.bind end as bind,
                   case when not n.neg then cmp.kind
                        else case cmp.kind when '1' then '0' when 't' then '0' when '0' then '1' when 'f' then '1'
                                           when 'z' then 'z' when 'n' then 'z' when 'e' then 'z' else '?' end
                   end as kind,
                   si.wrap
        ) pc
    ) parts
    left join lateral (
        select h.*
        from pa_helper h
        where a.shape = 'F' and h.policy_oid = r.policy_oid
          and a.p in (quote_ident(h.fn_name), quote_ident(h.fn_schema) || '.' || quote_ident(h.fn_name))
        order by (h.nargs = cardinality(parts.binds)) desc, h.reads_s desc
        limit 1
    ) h on true
    cross join lateral (
        select case
                   when a.shape = 'F' and h.fn_name is not null then
                       case when h.body_open then 'U'  -- a switch or fallback in the helper widens every caller
                            when exists (select 1 from unnest(parts.binds) with ordinality b(bind, k)
                                         where b.bind = 'C' and b.k = any(h.bound_params))
                            then case when h.reads_s then 'T'
                                      when h.reads_i and h.reads_members and r.membership then 'T'
                                      else 'U' end
                            when h.reads_s and not (parts.binds && array['C', 'U', 'T', 'D', 'I', 'J', 'M', 'L']) then 'S'
                            when h.reads_i and not (parts.binds && array['C', 'U', 'T', 'D', 'I', 'J', 'M', 'L'])
                            then case when h.returns_tenant and h.reads_members then 'M' else 'I' end
                            else 'U' end
                   when a.shape = 'F' and upper(a.p) = 'COALESCE' then
                       case when parts.binds && array['U', 'T', 'D', 'J', 'M', 'L'] then 'U'
                            when 'I' = any(parts.binds) then case when parts.binds <@ array['I', 'K'] then 'I' else 'U' end
                            when 'S' = any(parts.binds) then 'S'
                            when 'C' = any(parts.binds) then 'C'
                            else 'K' end
                   when a.shape = 'F' and cardinality(parts.binds) = 0 then 'U'
                   when a.shape = 'F' then
                       case when parts.binds && array['U', 'T', 'D', 'J', 'M', 'L'] then 'U'
                            when 'I' = any(parts.binds) then case when parts.binds <@ array['I', 'K'] then 'I' else 'U' end
                            when 'S' = any(parts.binds) and 'C' = any(parts.binds) then 'U'
                            when 'S' = any(parts.binds) then 'S'
                            when 'C' = any(parts.binds) then 'C'
                            else 'K' end
                   -- a sub-select over a table: the user's tenants when filtered by the identity
                   -- alone; tenant-bound when it also links the row's tenant column (EXISTS)
                   when a.shape = 'Q' then
                       case when not parts.has_from then parts.binds[1]
                            when a.x ~ '\{T' and a.x !~ '\{[UDS]' and qc.correlated then 'T'
                            when a.x ~ '\{J' and not qc.correlated then 'M'
                            when a.x ~ '\{J' then 'J'
                            else 'U' end
                   when a.shape = 'O' then
                       case when parts.binds <@ array['T', 'S'] and 'T' = any(parts.binds) then 'T'
                            when parts.binds <@ array['S'] then 'S'
                            when parts.binds <@ array['K'] then 'K'
                            else 'U' end
                   when a.shape = 'C' then
                       -- every result (THEN/ELSE) tenant-bound or a constant false/null
                       case when exists (select 1 from unnest(parts.binds, parts.kinds, parts.words) q(bd, kd, wd)
                                         where q.wd in ('THEN', 'ELSE') and q.bd = 'T')
                                 and not exists (select 1 from unnest(parts.binds, parts.kinds, parts.words) q(bd, kd, wd)
                                                 where q.wd in ('THEN', 'ELSE') and q.bd <> 'T'
                                                   and not (q.bd = 'K' and q.kd in ('f', '0', 'z')))
                            then 'T' else 'U' end
                   when a.shape = 'A' then
                       case when 'T' = any(parts.binds) then 'T'
                            -- m.tenant = t.tenant AND m.user = identity: the row's tenant among the user's
                            when 'L' = any(parts.binds) and 'J' = any(parts.binds)
                            then case when r.membership then 'T' else 'J' end
                            when 'J' = any(parts.binds) then 'J'
                            when parts.binds <@ array['K'] then 'K'
                            when parts.binds <@ array['S', 'K'] then 'S'
                            else 'U' end
                   else parts.binds[1] end as bind,
               case
                   when a.shape = 'F' and h.fn_name is not null then
                       case when exists (select 1 from unnest(parts.binds) with ordinality b(bind, k)
                                         where b.bind = 'C' and b.k = any(h.bound_params))
                                 then case when h.body_open then '1' else 'z' end
                            when h.reads_s then case when h.body_open then 'x' else 'n' end
                            when h.reads_i then case when h.body_open then 'x' else 'n' end
                            else '?' end
                   when a.shape = 'F' and upper(a.p) = 'COALESCE' then
                       coalesce((select vk from unnest(parts.kinds) with ordinality q(kd, ord)
                                 cross join lateral (select case q.kd when '1' then 't' when '0' then 'f' when 'z' then 'n'
                                                                      when '?' then 'x' else q.kd end as vk) c
                                 where c.vk <> 'n' order by q.ord limit 1), 'n')
                   when a.shape = 'F' and upper(a.p) = 'NULLIF' then
                       case parts.kinds[1] when '1' then 't' when '0' then 'f' when 'z' then 'n' when '?' then 'x'
                                           else parts.kinds[1] end
                   when a.shape = 'F' and cardinality(parts.binds) = 0 then 'x'
                   when a.shape = 'F' then
                       case when parts.kinds && array['n', 'z'] then 'n'
                            when parts.kinds <@ array['t', 'f', 'e', 'k'] then 'k'
                            else 'x' end
                   when a.shape = 'Q' then
                       case when not parts.has_from then parts.kinds[1]
                            when a.x ~ '\{T' and a.x !~ '\{[UDS]' and qc.correlated then '0'
                            when a.x ~ '\{J' then 'n'
                            else 'x' end
                   when a.shape = 'C' then
                       -- the first WHEN not known to be false decides: true → its THEN, unknown → unknown
                       (select case when w.ord is null then coalesce(e.kd, 'z')
                                    when w.bk = '1' then w.then_kd
                                    else '?' end
                        from (select null) one
                        left join lateral (
                            select q.ord, q.kd as then_kd,
                                   case pw.kd when 't' then '1' when 'f' then '0' when 'n' then 'z' when 'e' then 'z'
                                              when '1' then '1' when '0' then '0' when 'z' then 'z' else '?' end as bk
                            from unnest(parts.kinds, parts.words) with ordinality q(kd, wd, ord)
                            join unnest(parts.kinds, parts.words) with ordinality pw(kd, wd, ord)
                              on pw.ord = q.ord - 1 and pw.wd = 'WHEN'
                            where q.wd = 'THEN'
                              and pw.kd not in ('f', '0', 'z', 'n', 'e')
                            order by q.ord limit 1
                        ) w on true
                        left join lateral (
                            select q.kd from unnest(parts.kinds, parts.words) q(kd, wd) where q.wd = 'ELSE' limit 1
                        ) e on true)
                   when a.shape in ('O', 'A') then
                       (select case when a.shape = 'O' then
                                        case when '1' = any(bk) then '1'
                                             when bk <@ array['0'] then '0'
                                             when bk <@ array['0', 'z'] then 'z'
                                             else '?' end
                                    else
                                        case when '0' = any(bk) then '0'
                                             when bk <@ array['1'] then '1'
                                             when 'z' = any(bk) then 'z'
                                             else '?' end
                                    end
                        from (select array_agg(case q.kd when 't' then '1' when 'f' then '0' when 'n' then 'z'
                                                         when 'e' then 'z' when '1' then '1' when '0' then '0'
                                                         when 'z' then 'z' else '?' end) as bk
                              from unnest(parts.kinds) q(kd)) bks)
                   else parts.kinds[1] end as kind,
               case when a.shape = 'Q' and not qc.correlated then '0'
                    when a.shape = 'F' and h.fn_name is not null and h.reads_any then (1 | parts.wrap::int)::text
                    else parts.wrap end as wrap
    ) b
    cross join lateral (
        select '{' || coalesce(b.bind, 'U')
               || case when g.m[4] is null then coalesce(b.kind, '?')
                       else case b.kind when 't' then '1' when 'f' then '0' when 'n' then 'z' when 'e' then 'z'
                                        when '1' then '1' when '0' then '0' when 'z' then 'z' else '?' end
                  end
               || coalesce(b.wrap, '0') || '}' as tok
    ) res
    where g.m is not null and r.step < 2000
),
pa_rep_result as (
    -- the last step leaves one token (possibly still in its outer parentheses)
    select policy_oid, which,
           case when tok is not null and substr(tok, 2, 1) <> 'D' then substr(tok, 2, 1) else 'U' end as bind,
           case when tok is not null
                then case substr(tok, 3, 1) when 't' then '1' when 'f' then '0' when 'n' then 'z' when 'e' then 'z'
                                            when '1' then '1' when '0' then '0' when 'z' then 'z' else '?' end
                else '?' end as unset,
           case when substr(tok, 4, 1) in ('1', '3') then '1' else '0' end as wrap
    from (
        select distinct on (policy_oid, which)
               policy_oid, which,
               case when t ~ '^\s*\(*\{[A-Z].[0-3]\}\)*\s*$' then substring(t from '\{[A-Z].[0-3]\}') end as tok
        from pa_reduce
        order by policy_oid, which, step desc
    ) last
),
pa_result as (
    select p.policy_oid, p.which, r.bind, r.unset, r.wrap
    from pa_prep p
    join pa_rep_result r on r.policy_oid = p.rep_oid and r.which = p.rep_which
)
select pp.policy_oid, pp.table_oid, pp.table_object, pp.object, pp.policy_name, pp.permissive,
       pp.cmd, pp.roles, pp.using_expr, pp.check_expr, pp.called_bodies,
       pp.tenant_column,
       pp.is_tenant,
       case when 'public' = any(pp.roles) then true
            -- a policy only for superusers or BYPASSRLS roles never applies
            when not exists (select 1 from pg_roles br
                             where br.rolname = any(pp.roles) and not br.rolsuper and not br.rolbypassrls) then false
            when cardinality((select app_roles from params)) = 0
                 then not (pp.roles <@ (select service_roles from params)::text[])
            else exists (select 1
                         from pg_roles ar
                         join pg_roles pr on pr.rolname = any(pp.roles)
                         where ar.rolname = any((select app_roles from params)::text[])
                           and pg_has_role(ar.oid, pr.oid, 'MEMBER'))
       end as applies_to_app,
       coalesce(pp.using_expr, '') || coalesce(pp.check_expr, '') ~* 'current_setting\('
           or exists (select 1 from pa_helper h where h.policy_oid = pp.policy_oid and h.reads_any) as reads_setting,
       array(select distinct m[1]
             from regexp_matches(coalesce(pp.using_expr, '') || ' ' || coalesce(pp.check_expr, '') || ' '
                                 || coalesce((select string_agg(h.bodies, E'\n') from pa_helper h
                                              where h.policy_oid = pp.policy_oid), ''),
                                 'current_setting\s*\(\s*''([^'']+)''', 'gi') m
             order by 1) as settings_read,
       array(select h.fn_schema || '.' || h.fn_name from pa_helper h
             where h.policy_oid = pp.policy_oid order by 1) as helpers,
       array(select h.fn_schema || '.' || h.fn_name from pa_helper h
             where h.policy_oid = pp.policy_oid and h.reads_any order by 1) as setting_helpers,
       array(select h.fn_schema || '.' || h.fn_name from pa_helper h
             where h.policy_oid = pp.policy_oid and h.body_open order by 1) as open_helpers,
       array(select h.fn_object from pa_helper h
             where h.policy_oid = pp.policy_oid and h.body_open order by 1) as open_helper_objects,
       -- setting-reading helpers the policy passes an argument: they cannot be wrapped in (select …)
       array(select h.fn_object from pa_helper h
             where h.policy_oid = pp.policy_oid and h.reads_any
               and coalesce(pp.using_expr, '') || ' ' || coalesce(pp.check_expr, '')
                   ~* ('(?<![\w$])' || regexp_replace(h.fn_name, '([.^$*+?()\[\]{}|\\])', '\\\1', 'g') || '"?\(\s*[^)\s]')
             order by 1) as arg_helper_objects,
       coalesce(pp.using_expr, '') || ' ' || coalesce(pp.check_expr, '') ~* (select identity_re from pa_setting)
           or exists (select 1 from pa_helper h where h.policy_oid = pp.policy_oid and h.reads_i) as reads_identity,
       (select model from tenancy_model) as model,
       (select identity from tenancy_model) as identity,
       (select membership_table from tenancy_model) as membership_table,
       u.bind as using_bind, u.unset as using_unset, u.wrap as using_wrap,
       c.bind as check_bind, c.unset as check_unset, c.wrap as check_wrap
from pa_policy pp
left join pa_result u on u.policy_oid = pp.policy_oid and u.which = 'using'
left join pa_result c on c.policy_oid = pp.policy_oid and c.which = 'check'
