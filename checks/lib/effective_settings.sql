-- Timeout settings as PostgreSQL resolves them at login, for each app role
-- (roles.app), or for the database when no app role is configured: role in this
-- database, then role, then database, then the server (postgresql.conf/default).
-- Settings of roles the login role is a member of do not apply (PostgreSQL does
-- not inherit them), so none are read.
-- Columns: subject (role name or 'database <name>'), role_exists, setting, value
-- (text as set, null if unknown to this server), source, enabled (value > 0).
-- params: app_roles
select s.subject,
       s.role_exists,
       s.setting,
       v.value,
       v.source,
       coalesce(v.value !~ '^\s*[-+]?0*(\.0*)?\s*[a-zA-Z]*\s*$', false) as enabled
from (
    select coalesce(r.name, 'database ' || current_database()) as subject,
           r.name is null or ro.oid is not null as role_exists,
           ro.oid as role_oid,
           g.setting
    from (select unnest(case when cardinality((select app_roles from params)) = 0
                             then array[null]::text[]
                             else (select app_roles from params) end) as name) r
    left join pg_roles ro on ro.rolname = r.name
    cross join (values ('statement_timeout'), ('lock_timeout'),
                       ('idle_in_transaction_session_timeout'),
                       ('idle_session_timeout')) as g(setting)
) s
left join lateral (
    select value, source
    from (
        select substr(cfg, length(s.setting) + 2) as value, 1 as rank,
               'role ' || quote_ident(ro.rolname) || ' in database ' || quote_ident(current_database()) as source
        from pg_db_role_setting d
        join pg_database db on db.oid = d.setdatabase and db.datname = current_database()
        join pg_roles ro on ro.oid = d.setrole
        cross join unnest(d.setconfig) as cfg
        where d.setrole = s.role_oid and cfg like s.setting || '=%'
        union all
        select substr(cfg, length(s.setting) + 2), 2, 'role ' || quote_ident(ro.rolname)
        from pg_db_role_setting d
        join pg_roles ro on ro.oid = d.setrole
        cross join unnest(d.setconfig) as cfg
        where d.setrole = s.role_oid and d.setdatabase = 0 and cfg like s.setting || '=%'
        union all
        select substr(cfg, length(s.setting) + 2), 3, 'database ' || quote_ident(current_database())
        from pg_db_role_setting d
        join pg_database db on db.oid = d.setdatabase and db.datname = current_database()
        cross join unnest(d.setconfig) as cfg
        where d.setrole = 0 and cfg like s.setting || '=%'
        union all
        -- reset_val is this session's value at login: it includes the auditing
        -- role's own role-level settings, so then fall back to the built-in default.
        select case when exists (select 1 from pg_db_role_setting d
                                 cross join unnest(d.setconfig) as cfg
                                 where d.setrole = (select oid from pg_roles where rolname = current_user)
                                   and cfg like s.setting || '=%')
                    then ps.boot_val else ps.reset_val end || coalesce(ps.unit, ''),
               4, 'server (postgresql.conf or default)'
        from pg_settings ps
        where ps.name = s.setting
    ) levels
    order by rank
    limit 1
) v0 on true
cross join lateral (select v0.value, coalesce(v0.source, 'not known to this server') as source) v
