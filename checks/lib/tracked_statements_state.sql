-- Whether pg_stat_statements can be read here. One row. It must be installed in
-- this database (CREATE EXTENSION) and loaded at server start
-- (shared_preload_libraries); the view errors otherwise. Loaded is read from the
-- integer setting pg_stat_statements.max, which only the loaded library defines and
-- every role can see (shared_preload_libraries itself is hidden from roles without
-- pg_read_all_settings, and a postgresql.conf line alone makes only a text
-- placeholder, not shown in pg_settings).
-- It must also be readable by the auditing role (SELECT on the view: granted to
-- PUBLIC by default).
-- Columns: installed, loaded, usable (installed, loaded, readable and tracking), schema_name
-- (the extension's schema), track ('top', 'all', 'none'; null when not loaded),
-- track_utility (boolean; null when not loaded), reason (why it cannot be read;
-- null when usable).
select x.installed,
       x.loaded,
       x.installed and x.loaded and x.readable and x.track is distinct from 'none' as usable,
       x.schema_name,
       x.track,
       x.track_utility,
       case when not x.installed
            then 'pg_stat_statements is not installed in this database: CREATE EXTENSION pg_stat_statements (and preload it)'
            when not x.loaded
            then 'pg_stat_statements is installed in this database but not loaded: add it to shared_preload_libraries'
                 || coalesce(' (now ' || coalesce(quote_literal(nullif(x.preload, '')), 'empty') || ')', '') || ' and restart the server'
            when not x.readable
            then 'pg_stat_statements cannot be read by ' || current_user
                 || ': GRANT SELECT ON ' || quote_ident(x.schema_name) || '.pg_stat_statements TO ' || quote_ident(current_user)
            when x.track = 'none'
            then 'pg_stat_statements.track = none: no statement is tracked'
       end as reason
from (
    select e.oid is not null as installed,
           n.nspname::text as schema_name,
           exists (select 1 from pg_settings s
                   where s.name = 'pg_stat_statements.max' and s.vartype = 'integer') as loaded,
           (select s.setting from pg_settings s
            where s.name = 'pg_stat_statements.track' and s.vartype = 'enum') as track,
           (select s.setting = 'on' from pg_settings s
            where s.name = 'pg_stat_statements.track_utility' and s.vartype = 'bool') as track_utility,
           (select s.setting from pg_settings s where s.name = 'shared_preload_libraries') as preload,
           coalesce(has_table_privilege(to_regclass(quote_ident(n.nspname) || '.pg_stat_statements'), 'SELECT'), false) as readable
    from (select 1) one
    left join pg_extension e on e.extname = 'pg_stat_statements'
    left join pg_namespace n on n.oid = e.extnamespace
) x
