-- The roles granted privileges on tables in scope in THIS database (owners and
-- PUBLIC aside), with their attributes: what `pg-integrity init` proposes as app roles
-- (subject to row level security) and service roles (BYPASSRLS).
-- Columns: role_name, tables (tables in scope it may read or write), writes (tables it
-- may INSERT, UPDATE or DELETE), superuser, bypassrls, can_login.
-- requires: scope_tables
select r.rolname::text as role_name,
       count(distinct t.oid) as tables,
       count(distinct t.oid) filter (where g.privilege_type in ('INSERT', 'UPDATE', 'DELETE')) as writes,
       r.rolsuper as superuser,
       r.rolbypassrls as bypassrls,
       r.rolcanlogin as can_login
from scope_tables t
join pg_class c on c.oid = t.oid
cross join lateral aclexplode(c.relacl) g
join pg_roles r on r.oid = g.grantee
where not t.is_partition
  and g.grantee <> c.relowner
  and g.privilege_type in ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
  and r.rolname !~ '^pg_'
group by r.rolname, r.rolsuper, r.rolbypassrls, r.rolcanlogin
