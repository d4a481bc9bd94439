-- What the --deep data checks need to scan a table in scope (partitions included,
-- since a foreign key may be declared on a partition) and to name rows in their
-- evidence without showing them.
-- Columns: oid, object, schema_name, table_name, relkind, key_label (the primary
-- key's column, '(a, b)' for a composite key, 'ctid' without one), key_expr (SQL
-- over the alias c rendering a row's key as text), est_rows (reltuples, summed
-- over the leaf partitions; when never analyzed, from the statistics' live rows
-- or the pages, never the size on disk, which takes a lock), sampled (--sample
-- is set and est_rows > 100000: scan the table TABLESAMPLE SYSTEM), sample_percent
-- (the percentage as text, '' when not sampling), scan (the FROM item over the alias
-- c that a shared scan reads: the table, TABLESAMPLE SYSTEM ($1) when sampled, $1
-- being the percentage the engine binds), unseen_reason (NULL when the auditing role
-- reads every row of the table; else why it cannot and the grant that fixes it: a
-- data check passes it on as its plan's unknown_reason, so the table's objects are
-- unknown, never a pass). The role reads every row when it has SELECT and is a
-- superuser, has BYPASSRLS, the table has no row level security, or it has the
-- owner's privileges and RLS is not forced (as PostgreSQL decides, check_enable_rls).
-- params: sample_percent
-- requires: scope_tables
select t.oid,
       t.object,
       t.schema_name,
       t.table_name,
       t.relkind,
       case when cardinality(pk.names) = 1 then pk.names[1]
            when cardinality(pk.names) > 1 then '(' || array_to_string(pk.names, ', ') || ')'
            else 'ctid' end as key_label,
       case when cardinality(pk.names) = 1 then format('c.%I::text', pk.names[1])
            when cardinality(pk.names) > 1
            then format('row(%s)::text', (select string_agg(format('c.%I', n), ', ' order by o)
                                          from unnest(pk.names) with ordinality u(n, o)))
            when t.relkind = 'p' then 'c.tableoid::regclass::text || '':'' || c.ctid::text'
            else 'c.ctid::text' end as key_expr,
       est.n as est_rows,
       smp.sampled,
       smp.sample_percent,
       format('%I.%I c', t.schema_name, t.table_name)
       || case when smp.sampled then ' tablesample system ($1::text::real)' else '' end as scan,
       case when not has_table_privilege(t.oid, 'SELECT')
            then format('the auditing role %s has no SELECT on %s, so its rows were not read: '
                        'GRANT SELECT ON %I.%I TO %I (or GRANT pg_read_all_data TO %I)',
                        current_user, t.object, t.schema_name, t.table_name, current_user, current_user)
            when t.rls_enabled and not me.rolsuper and not me.rolbypassrls
                 and (t.rls_forced or not pg_has_role(current_user, t.owner, 'USAGE'))
            then format('row level security on %s hides rows from the auditing role %s (not superuser, '
                        'no BYPASSRLS, %s), so what it cannot see was not judged: audit as a role with '
                        'BYPASSRLS (ALTER ROLE %I BYPASSRLS) or as a superuser',
                        t.object, current_user,
                        case when t.rls_forced then 'RLS forced' else 'not the owner' end, current_user)
       end as unseen_reason
from scope_tables t
cross join (select r.rolsuper, r.rolbypassrls from pg_roles r where r.rolname = current_user) me
-- Each lookup goes through the catalog index of this one table (conrelid, attrelid,
-- oid): at 5,000 tables a join here that the planner hashes reads the whole catalog
-- once per table (20 s).
left join lateral (
    -- the primary key's column names, in key order
    select (select array_agg(a.attname::text order by k.ord)
            from unnest(con.conkey) with ordinality k(attnum, ord)
            cross join lateral (select a.attname from pg_attribute a
                                where a.attrelid = t.oid and a.attnum = k.attnum) a) as names
    from pg_constraint con
    where con.conrelid = t.oid and con.contype = 'p'
) pk on true
cross join lateral (
    -- never analyzed: the live rows the statistics counted, or the pages the last
    -- index build saw at ~100 bytes a row; never pg_relation_size, which locks the
    -- table (and waits behind a lock someone else holds)
    select coalesce(sum(case when x.reltuples >= 0 then x.reltuples::float8
                             else greatest(pg_stat_get_live_tuples(x.oid)::float8,
                                           x.relpages * current_setting('block_size')::float8 / 100.0)
                        end), 0) as n
    from (select pc.oid, pc.reltuples, pc.relpages from pg_class pc where pc.oid = t.oid and pc.relkind = 'r'
          union all
          -- the leaf partitions, through pg_inherits: pg_partition_tree() locks them all
          select pc.oid, pc.reltuples, pc.relpages
          from (with recursive tree(relid) as (
                    select t.oid where t.relkind = 'p'
                    union all
                    select i.inhrelid from pg_inherits i join tree on i.inhparent = tree.relid)
                select relid from tree) pt
          cross join lateral (select pc.oid, pc.reltuples, pc.relpages from pg_class pc
                              where pc.oid = pt.relid and pc.relkind = 'r') pc) x
) est
cross join lateral (
    select p.sample_percent, p.sample_percent <> '' and est.n > 100000 as sampled
    from (select coalesce((select sample_percent from params), '') as sample_percent) p
) smp
