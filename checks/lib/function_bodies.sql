-- SQL and PL/pgSQL functions and procedures outside the system schemas, with the
-- text of their body: prosrc, or, for a SQL-standard body (BEGIN ATOMIC, server
-- >= 14, whose prosrc is empty), the definition pg_get_functiondef prints without
-- its SET clauses (` SET name TO value` lines: a value for the call only, not a
-- statement of the body).
-- Functions of every schema are listed (a claim or a setter may live outside the
-- scope); in_scope says whether the function itself is judged: its schema is in
-- scope (scope.schemas, else any schema not owned by an extension) and it is not
-- part of an extension.
-- Columns: oid, schema_name, function_name, object (schema.name(argtypes)),
-- language, body, in_scope.
-- params: schemas
select p.oid,
       n.nspname::text as schema_name,
       p.proname::text as function_name,
       n.nspname || '.' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' as object,
       l.lanname::text as language,
       case when coalesce(p.prosrc, '') ~ '\S' then p.prosrc
            else regexp_replace(pg_get_functiondef(p.oid), '^ SET [^\n]*\n', '', 'gn') end as body,
       ((cardinality((select schemas from params)) = 0
         and not exists (select 1 from pg_depend d
                         where d.classid = 'pg_namespace'::regclass and d.objid = n.oid
                           and d.deptype = 'e')
         or n.nspname = any((select schemas from params)::text[]))
        and not exists (select 1 from pg_depend d
                        where d.classid = 'pg_proc'::regclass and d.objid = p.oid
                          and d.deptype = 'e')) as in_scope
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
join pg_language l on l.oid = p.prolang
where l.lanname in ('sql', 'plpgsql')
  and p.prokind in ('f', 'p')
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
