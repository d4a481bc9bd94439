-- Tenant tables whose schema gives a NULL tenant a meaning: a CHECK constraint or a partial
-- index predicate that tests the tenant column for NULL next to another condition
-- (organization_id IS NULL OR ..., WHERE organization_id IS NULL). Such a table keeps
-- tenant-less rows by design (tenancy.tenant_not_null, tenancy.tenant_scoped_uniques).
-- Columns: table_oid, rule (the first such constraint or index, as the evidence names it).
-- requires: tenant_tables
select t.oid as table_oid, min(r.rule) as rule
from tenant_tables t
cross join lateral (
    select 'CHECK ' || con.conname || ' ' || pg_get_constraintdef(con.oid) as rule,
           pg_get_constraintdef(con.oid) as def
    from pg_constraint con
    where con.conrelid = t.oid and con.contype = 'c'
    union all
    select 'index ' || ic.relname || ' WHERE ' || pg_get_expr(i.indpred, i.indrelid),
           pg_get_expr(i.indpred, i.indrelid)
    from pg_index i
    join pg_class ic on ic.oid = i.indexrelid
    where i.indrelid = t.oid and i.indpred is not null
) r
where t.tenant_column is not null
  and r.def ~* ('(^|[^[:alnum:]_$"])' || regexp_replace(quote_ident(t.tenant_column), '([^[:alnum:]_ ])', '\\\1', 'g')
                || ' IS (NOT )?NULL')
  and (r.rule like 'index %' or r.def ~* '\m(OR|AND)\M')
group by t.oid
