#!/usr/bin/env python3
"""Mutation testing of the check catalog (issue 18): do a check's [[test]] cases catch a
plausibly broken check?

For each check (checks/<id>.toml) and each building block it uses (checks/lib/<name>.sql)
this makes mutants of the SQL, runs the check's own cases against each mutant with the
released binary's `pg-integrity checks test DIR --only ID`, and counts a mutant killed when
some case fails. Per check it prints mutants made, killed, survived and equivalent, with
each survivor's diff; `--write-doc` writes the table to docs/test-strength.md.

Why a script and not `pg-integrity checks mutate`:
- It needs no engine change. `checks test DIR` already loads only the checks in DIR, and
  DIR/lib/*.sql overrides a building block by name (src/catalog.rs collect_dir), so a
  mutant is just a check file or a block written to a temporary directory, and the cases
  run through exactly the harness `checks test` and `cargo test` use (fresh database per
  case, batched and single runs compared, roles dropped after).
- It parses SQL with libpg_query, the PostgreSQL server's own parser, through the PyPI
  package pglast (pinned below and in .ci/run); the `fix` work uses the same libpg_query
  for Rust (pg_query), so the grammar is the server's, not a tokenizer's guess. Adding a
  C-library parser to the binary only for a developer tool would cost every user build.
- It is a developer/CI tool that drives the binary from outside while src/ is being
  restructured; nothing in it depends on the engine's module layout.

How mutants are made: the SQL is parsed, one node is changed, and the whole statement is
deparsed by pglast (comments are lost; a block keeps its `-- params/requires/cost/opens`
header). The deparsed, unmutated SQL is first checked to parse back to the same tree and
its cases must pass (the "baseline"); a check whose baseline fails is reported, not
mutated. Operators:
  flip_cmp       a comparison negated: = <>, < >=, > <=, LIKE/NOT LIKE, ~ !~, IN/NOT IN,
                 IS NULL/IS NOT NULL, IS DISTINCT FROM/IS NOT DISTINCT FROM
  drop_conjunct  one operand of an AND removed (WHERE, ON, HAVING, CASE WHEN, anywhere),
                 or a WHERE/HAVING that is a single condition removed
  swap_case      the results of two neighbouring CASE branches (ELSE included) swapped
  flip_order     ASC/DESC of an ORDER BY in a query with LIMIT or DISTINCT ON (a pick)
  negate_ok      `not (...)` around a check's `ok` (a data/probe check: around the ok
                 its query returns)
  const_evidence a check's `evidence` replaced by a constant (data/probe: in its query)
Nothing is mutated inside a `fix_*` output column (the input of `pg-integrity fix`,
judged by tests/fix.rs; a check's cases cannot see it), nor inside a sub-select in FROM
that only feeds such columns and always returns one row (aggregates, no GROUP BY).
Building-block mutants (flip_cmp, drop_conjunct, swap_case, flip_order on checks/lib/X.sql,
"drop a uses block's filter") are made once per block and run against the cases of each
check that uses the block (naming it in `uses` or through another block), in turn, until
one kills it; they are counted in the block's own row, not in each check's. A block
mutant inside one of the block's output columns runs only against the checks that read
that column (directly, or through a column of another block they read: class Reads, from
the parsed SQL; any reference that might be to it counts); one in a column no check reads
at all cannot change a verdict or an evidence and is counted equivalent with that reason,
not run (printed as "equivalent").

Equivalent mutants (cannot change behaviour) are listed in scripts/mutants-equivalent.toml
with their stable id and a reason, and are not counted. They are not kept in the check's
TOML: the loader rejects unknown keys (serde deny_unknown_fields in src/catalog.rs), and a
sidecar under checks/ would be compiled in and read as a check (every checks/**/*.toml is).
A mutant's id is `<operator>:<8 hex>`, a hash of the target, operator and the changed
node's text before and after, so it survives unrelated edits.

Cases run on throwaway clusters this script starts (one per worker, as the OS user
postgres when run as root; plus one with pg_stat_statements preloaded for checks with
`preloaded` cases, which runs only those cases), never on the machine's shared server.
--jobs (default 2) workers. A case's database is set up once per share of a target's
mutants (and per check, for a block), so a target is split into up to --jobs shares only
when it is a large part of the run (--chunk N: at most N mutants a share instead).

Usage:
  scripts/mutate.py [ID ...]                  mutate these checks (default: every automated check)
  scripts/mutate.py --all                     the whole catalog: every automated check and every block
                                              a check uses (directly or through another block)
  scripts/mutate.py --changed-since REF       only checks whose file (or a used block) changed
  scripts/mutate.py --write-doc [ID ...]      also update their rows in docs/test-strength.md
                    [--snapshot]              (in its "Snapshot" section, not kept fresh)
  scripts/mutate.py --check-doc               fail if docs/test-strength.md is stale (no mutation)
  scripts/mutate.py --ratchet ...             fail if a target falls below min(its row's rate, 90%)
  scripts/mutate.py --budget SECONDS ...      stop after SECONDS: targets not finished are listed as
                                              not run, not judged (CI)
  scripts/mutate.py --from-json A.json ... --write-doc   the doc from earlier runs' --json
  scripts/mutate.py --list ID                 print the mutants of ID (ids and diffs), run nothing
  scripts/mutate.py --mutant ID ...           only the mutants whose id starts with ID (repeatable)
  scripts/mutate.py --also-pg BIN ...         survivors run the cases again on that server (bin dir of
                                              another PostgreSQL version); killed there counts as killed

Needs: pip install pglast==8.7 (only for mutating; --check-doc needs nothing) and a built
binary (--bin, default target/release/pg-integrity).
"""

import argparse
import concurrent.futures as cf
import copy
import difflib
import functools
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = ROOT / "checks"
DOC = ROOT / "docs" / "test-strength.md"
EQUIV = ROOT / "scripts" / "mutants-equivalent.toml"
KILLS = ROOT / "target" / "mutate-case-kills.json"
PGLAST_VERSION = "8.7"
TARGET = 0.90
# what the second cluster preloads (for cases with `preloaded`)
PRELOAD = ("pg_stat_statements",)


# ---------------------------------------------------------------- catalog


class Snap:
    """A file as it was when the run started (others may edit the tree meanwhile):
    what is measured and what its row's hash says are the same bytes."""

    def __init__(self, path):
        self.path = Path(path)
        self.stem = self.path.stem
        self.bytes = self.path.read_bytes()

    def read_bytes(self):
        return self.bytes

    def read_text(self):
        return self.bytes.decode()


def load_checks():
    checks = {}
    for p in sorted(CHECKS.glob("*.toml")):
        snap = Snap(p)
        data = tomllib.loads(snap.read_text())
        data["_path"] = snap
        checks[data["id"]] = data
    return checks


def load_libs():
    return {p.stem: Snap(p) for p in sorted((CHECKS / "lib").glob("*.sql"))}


def automated(c):
    return c.get("kind") != "manual" and c.get("sql")


def sha(*parts):
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def check_hash(checks, cid):
    """What a row was measured on: the check file (SQL and cases)."""
    return sha(checks[cid]["_path"].read_bytes())


def block_closure(libs, uses):
    """The blocks `uses` names and every block they require, in turn."""
    seen, todo = [], list(uses)
    while todo:
        n = todo.pop()
        if n in seen or n not in libs:
            continue
        seen.append(n)
        for line in libs[n].read_text().splitlines():
            m = re.match(r"^\s*--\s*requires:(.*)", line)
            if m:
                todo += [x.strip() for x in m.group(1).split(",") if x.strip()]
    return seen


def block_users(checks, libs, name):
    """The checks whose cases judge a block's mutants: every check that uses it, naming
    it in `uses` or reaching it through another block it names (a mutant in one of the
    block's columns then runs only against those of them that read the column: Reads).
    Until session 12 only the checks naming it ran a block's mutants when there were
    any: a mutant in a column read only through another block (lib:column_types'
    not_null_domain, read by schema.not_null through column_nullability) was counted a
    survivor that no case could kill."""
    auto = [cid for cid in sorted(checks) if automated(checks[cid])]
    direct = [cid for cid in auto if name in checks[cid].get("uses", [])]
    return direct + [cid for cid in auto if cid not in direct
                     and name in block_closure(libs, checks[cid].get("uses", []))]


def lib_hash(checks, libs, name):
    """A block row: the block and every check file that judges it (block_users)."""
    users = block_users(checks, libs, name)
    return sha(libs[name].read_bytes(), *[checks[c]["_path"].read_bytes() for c in users])


def load_equivalent():
    if not EQUIV.exists():
        return {}
    out = {}
    for e in tomllib.loads(EQUIV.read_text()).get("equivalent", []):
        out[(e.get("check") or "lib:" + e["lib"], e["id"])] = e["reason"]
    return out


# ---------------------------------------------------------------- TOML out


def toml_value(v):
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def toml_check(c, sql):
    lines = []
    tables = []
    for k, v in c.items():
        if k.startswith("_"):
            continue
        if k == "sql":
            v = sql
        if k == "test":
            tables = v
            continue
        lines.append(f"{k} = {toml_value(v)}")
    for t in tables:
        lines.append("\n[[test]]")
        for k, v in t.items():
            lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- mutants


def pg():
    try:
        import pglast  # noqa: F401
    except ImportError:
        sys.exit(f"mutate.py needs pglast: pip install pglast=={PGLAST_VERSION}")
    import pglast

    return pglast


def children(node):
    """(attr, index or None, child) for every child node, in a fixed order."""
    from pglast import ast

    for attr in node:
        v = getattr(node, attr)
        if isinstance(v, ast.Node):
            yield attr, None, v
        elif isinstance(v, tuple):
            for i, x in enumerate(v):
                if isinstance(x, ast.Node):
                    yield attr, i, x


def walk(node, path=()):
    yield path, node
    for attr, i, ch in children(node):
        yield from walk(ch, path + ((attr, i),))


def get(root, path):
    n = root
    for attr, i in path:
        v = getattr(n, attr)
        n = v if i is None else v[i]
    return n


def put(root, path, new):
    parent = get(root, path[:-1])
    attr, i = path[-1]
    if i is None:
        setattr(parent, attr, new)
    else:
        v = list(getattr(parent, attr))
        v[i] = new
        setattr(parent, attr, tuple(v))


def text(node):
    from pglast.stream import RawStream

    return RawStream()(node)


def pretty(root):
    from pglast.stream import IndentedStream

    return IndentedStream()(root)


FLIP_OP = {"=": "<>", "<>": "=", "!=": "=", "<": ">=", ">=": "<", ">": "<=", "<=": ">",
           "~": "!~", "!~": "~", "~*": "!~*", "!~*": "~*", "~~": "!~~", "!~~": "~~",
           "~~*": "!~~*", "!~~*": "~~*"}


def op_name(e):
    return e.name[-1].sval if e.name else None


def set_op(e, new):
    from pglast import ast

    e.name = tuple(e.name[:-1]) + (ast.String(sval=new),)


def site_edits(root, kind, is_check):
    """Every mutation of the tree: (operator, path, edit function, description)."""
    from pglast import ast, enums

    K = enums.A_Expr_Kind
    edits = []
    for path, n in walk(root):
        if isinstance(n, ast.A_Expr):
            if n.kind in (K.AEXPR_OP, K.AEXPR_OP_ANY, K.AEXPR_OP_ALL, K.AEXPR_LIKE, K.AEXPR_ILIKE, K.AEXPR_IN) \
                    and op_name(n) in FLIP_OP:
                edits.append(("flip_cmp", path, lambda m: set_op(m, FLIP_OP[op_name(m)])))
            elif n.kind in (K.AEXPR_DISTINCT, K.AEXPR_NOT_DISTINCT):
                edits.append(("flip_cmp", path, lambda m: setattr(
                    m, "kind", K.AEXPR_NOT_DISTINCT if m.kind == K.AEXPR_DISTINCT else K.AEXPR_DISTINCT)))
            elif n.kind in (K.AEXPR_BETWEEN, K.AEXPR_NOT_BETWEEN):
                edits.append(("flip_cmp", path, lambda m: setattr(
                    m, "kind", K.AEXPR_NOT_BETWEEN if m.kind == K.AEXPR_BETWEEN else K.AEXPR_BETWEEN)))
        elif isinstance(n, ast.NullTest):
            edits.append(("flip_cmp", path, lambda m: setattr(
                m, "nulltesttype",
                enums.NullTestType.IS_NOT_NULL if m.nulltesttype == enums.NullTestType.IS_NULL
                else enums.NullTestType.IS_NULL)))
        elif isinstance(n, ast.BoolExpr) and n.boolop == enums.BoolExprType.AND_EXPR:
            for i in range(len(n.args)):
                def drop(m, i=i):
                    args = m.args[:i] + m.args[i + 1:]
                    return args[0] if len(args) == 1 else ast.BoolExpr(boolop=m.boolop, args=args)
                edits.append(("drop_conjunct", path, ("replace", drop)))
        elif isinstance(n, ast.CaseExpr):
            n_res = len(n.args) + (1 if n.defresult is not None else 0)
            for i in range(n_res - 1):
                def swap(m, i=i):
                    res = [w.result for w in m.args] + ([m.defresult] if m.defresult is not None else [])
                    res[i], res[i + 1] = res[i + 1], res[i]
                    for w, r in zip(m.args, res):
                        w.result = r
                    if m.defresult is not None:
                        m.defresult = res[-1]
                edits.append(("swap_case", path, swap))
        if isinstance(n, ast.SelectStmt):
            for clause in ("whereClause", "havingClause"):
                w = getattr(n, clause)
                if w is not None and not (isinstance(w, ast.BoolExpr) and w.boolop == enums.BoolExprType.AND_EXPR):
                    edits.append(("drop_conjunct", path + ((clause, None),), ("replace", lambda m: None)))
            if n.sortClause and (n.limitCount is not None or (n.distinctClause and n.distinctClause[0] is not None)):
                for i in range(len(n.sortClause)):
                    def flip(m):
                        D = enums.SortByDir
                        m.sortby_dir = D.SORTBY_ASC if m.sortby_dir == D.SORTBY_DESC else D.SORTBY_DESC
                    edits.append(("flip_order", path + (("sortClause", i),), flip))
        if is_check and isinstance(n, ast.ResTarget):
            name = n.name or (n.val.fields[-1].sval if isinstance(n.val, ast.ColumnRef)
                              and isinstance(n.val.fields[-1], ast.String) else None)
            if kind in ("data", "probe"):
                if name == "query" and len(path) <= 2:
                    edits.append(("negate_ok", path, lambda m: wrap_query(
                        m, "select not q.ok as ok, q.evidence from (", ") q")))
                    edits.append(("const_evidence", path, lambda m: wrap_query(
                        m, "select q.ok, 'mutant evidence'::text as evidence from (", ") q")))
            elif name == "ok":
                def neg(m, name=name):
                    m.val = ast.BoolExpr(boolop=enums.BoolExprType.NOT_EXPR, args=(m.val,))
                    m.name = name
                edits.append(("negate_ok", path, neg))
            elif name == "evidence":
                def const(m, name=name):
                    m.val = ast.TypeCast(arg=ast.A_Const(val=ast.String(sval="mutant evidence")),
                                         typeName=ast.TypeName(names=(ast.String(sval="text"),)))
                    m.name = name
                edits.append(("const_evidence", path, const))
    # Nothing inside a fix_* column: those are the input of `pg-integrity fix`, which
    # its own tests judge (tests/fix.rs); a check's cases judge the verdicts, evidence
    # and related objects, and cannot see them. The same for a sub-select in FROM that
    # only feeds fix_* columns and always returns one row (see fix_only_subselects).
    feeds_fix = fix_paths(root) if is_check else ()
    return [e for e in edits if not in_fix_column(root, e[1])
            and not any(e[1][:len(f)] == f for f in feeds_fix)]


AGGREGATES = {"array_agg", "string_agg", "count", "sum", "min", "max", "bool_and", "bool_or",
              "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "every"}


def fix_only_subselects(root):
    """Paths of the sub-selects in FROM whose columns are read only inside fix_* output
    columns and that return exactly one row whatever their WHERE says (aggregates only,
    no GROUP BY or HAVING): a mutant inside one changes only what `fix` is given, never a
    row, a verdict or an evidence, so it is not made (as nothing inside a fix_* column)."""
    from pglast import ast, enums

    nodes = list(walk(root))
    out = []
    for path, n in nodes:
        if not (isinstance(n, ast.RangeSubselect) and n.alias and isinstance(n.subquery, ast.SelectStmt)):
            continue
        sq = n.subquery
        if sq.op != enums.SetOperation.SETOP_NONE or sq.groupClause or sq.havingClause or not sq.targetList:
            continue
        if not all(isinstance(t.val, ast.FuncCall) and t.val.over is None
                   and t.val.funcname[-1].sval in AGGREGATES for t in sq.targetList):
            continue
        alias = n.alias.aliasname
        cols = {t.name for t in sq.targetList if t.name} | {t.val.funcname[-1].sval for t in sq.targetList if not t.name}
        used_elsewhere = False
        for p2, c in nodes:
            if not isinstance(c, ast.ColumnRef) or p2[:len(path)] == path:
                continue
            names = [f.sval for f in c.fields if isinstance(f, ast.String)]
            refers = (len(c.fields) >= 2 and names[:1] == [alias]) or (len(c.fields) == 1 and names and names[0] in cols)
            if refers and not in_fix_column(root, p2):
                used_elsewhere = True
                break
        if not used_elsewhere:
            out.append(path)
    return out


def fix_paths(root):
    """The paths of a check's fix_* output columns and of the sub-selects in FROM that
    only feed them (fix_only_subselects)."""
    from pglast import ast

    nodes = list(walk(root))
    out = {p for p, n in nodes if isinstance(n, ast.ResTarget) and (n.name or "").startswith("fix_")}
    out |= set(fix_only_subselects(root))
    # a WITH query every reference to which lies in those (a CTE is computed only for
    # its references), until nothing changes: one read only by such a CTE counts too
    ctes = [(p, n.ctename) for p, n in nodes if isinstance(n, ast.CommonTableExpr)]
    inside = lambda q: any(q[:len(f)] == f for f in out)  # noqa: E731
    changed = True
    while changed:
        changed = False
        for p, name in ctes:
            if p in out:
                continue
            refs = [q for q, n in nodes if isinstance(n, ast.RangeVar) and n.relname == name
                    and not n.schemaname and q[:len(p)] != p]
            if refs and all(inside(q) for q in refs):
                out.add(p)
                changed = True
    return frozenset(out)


def in_fix_column(root, path):
    from pglast import ast

    for k in range(len(path) + 1):
        n = get(root, path[:k])
        if isinstance(n, ast.ResTarget) and (n.name or "").startswith("fix_"):
            return True
    return False


def wrap_query(m, before, after):
    from pglast import ast

    lit = lambda s: ast.A_Const(val=ast.String(sval=s))  # noqa: E731
    op = lambda a, b: ast.A_Expr(kind=0, name=(ast.String(sval="||"),), lexpr=a, rexpr=b)  # noqa: E731
    m.val = op(op(lit(before), m.val), lit(after))
    m.name = "query"


def strip_locations(j):
    if isinstance(j, dict):
        # positions in the text (location, stmt_len, list_start/_end...) are not the tree
        return {k: strip_locations(v) for k, v in j.items()
                if not (k.endswith(("location", "_start", "_end")) or k in ("stmt_len", "funcformat"))}
    if isinstance(j, list):
        return [strip_locations(x) for x in j]
    return j


def roundtrips(sql, deparsed):
    from pglast.parser import parse_sql_json

    return strip_locations(json.loads(parse_sql_json(sql))) == strip_locations(json.loads(parse_sql_json(deparsed)))


LIB_HEADER = re.compile(r"^\s*--\s*(params|requires|cost|opens):")


def lib_header(sql):
    return "".join(line + "\n" for line in sql.splitlines() if LIB_HEADER.match(line))


def make_mutants(target, sql, kind, is_check):
    """(baseline SQL, [mutant]) where mutant = dict(id, op, sql, diff)."""
    pglast = pg()
    trees = pglast.parse_sql(sql)
    if len(trees) != 1:
        raise ValueError(f"{len(trees)} statements")
    base = pretty(trees[0].stmt)
    if not roundtrips(sql, base):
        raise ValueError("pglast does not deparse it back to the same tree")
    header = "" if is_check else lib_header(sql)
    edits = site_edits(trees[0].stmt, kind, is_check)
    mutants, seen, made_sql = [], {}, set()
    for op, path, edit in edits:
        # making a large block's mutants (pglast deparsing) takes minutes under load
        within_budget()
        root = pglast.parse_sql(sql)[0].stmt
        node = get(root, path) if path else root
        before = text(node) if node is not None else ""
        if isinstance(edit, tuple):
            new = edit[1](node)
            if not path:
                continue
            put(root, path, new)
            after = text(new) if new is not None else ""
        else:
            edit(node)
            after = text(node)
        try:
            msql = pretty(root)
        except Exception as e:  # a mutant the deparser cannot print is not made
            print(f"  ({target}: {op} not deparsable: {e})", file=sys.stderr)
            continue
        if msql == base or msql in made_sql:
            # the same statement as the check's, or as a mutant made already (two edits
            # that deparse alike): nothing new to run
            continue
        made_sql.add(msql)
        key = f"{target}|{op}|{before}|{after}"
        n = seen[key] = seen.get(key, 0) + 1
        mid = f"{op}:{hashlib.sha1(key.encode()).hexdigest()[:8]}" + (f".{n}" if n > 1 else "")
        diff = "".join(difflib.unified_diff(base.splitlines(True), msql.splitlines(True), "check", "mutant", n=1))
        diff = "\n".join(line for line in diff.splitlines() if not line.startswith(("---", "+++")))
        mutants.append({"id": mid, "op": op, "sql": header + msql, "diff": diff, "path": path})
    return header + base, mutants


# ---------------------------------------------------------------- columns no check reads
#
# A block's mutant inside the expression of one of its output columns changes that
# column's values only. When no check reads the column (directly, or through a column of
# another block that a check reads), no case can see the change: the mutant is counted
# equivalent, with the reason, and is not run. A block mutant in a column some checks
# read runs only against those checks' cases. Sound by over-approximation: any reference
# that might be to the column counts as reading it (an unqualified name, a whole-row or
# `*` reference, an alias with column names, NATURAL JOIN), and a column whose value can
# change the number or order of the block's rows is never unread (plain DISTINCT, UNION
# without ALL, DISTINCT ON / ORDER BY / GROUP BY naming it, a set-returning function, an
# aggregate in a query without GROUP BY). A column the engine's own SQL (src/) may read
# is reported as such: no check case can see a mutant there either.

# PostgreSQL 15's set-returning functions (pg_proc.proretset) and pg_stat_statements'
SRF_NAMES = frozenset("""aclexplode generate_series generate_subscripts json_array_elements
json_array_elements_text json_each json_each_text json_object_keys json_populate_recordset
json_to_recordset jsonb_array_elements jsonb_array_elements_text jsonb_each jsonb_each_text
jsonb_object_keys jsonb_path_query jsonb_path_query_tz jsonb_populate_recordset
jsonb_to_recordset pg_available_extension_versions pg_available_extensions pg_config pg_cursor
pg_event_trigger_ddl_commands pg_event_trigger_dropped_objects pg_extension_update_paths
pg_get_backend_memory_contexts pg_get_catalog_foreign_keys pg_get_keywords
pg_get_multixact_members pg_get_publication_tables pg_get_replication_slots
pg_get_shmem_allocations pg_get_wal_resource_managers pg_hba_file_rules pg_ident_file_mappings
pg_listening_channels pg_lock_status pg_logical_slot_get_binary_changes
pg_logical_slot_get_changes pg_logical_slot_peek_binary_changes pg_logical_slot_peek_changes
pg_ls_archive_statusdir pg_ls_dir pg_ls_logdir pg_ls_logicalmapdir pg_ls_logicalsnapdir
pg_ls_replslotdir pg_ls_tmpdir pg_ls_waldir pg_mcv_list_items pg_options_to_table
pg_partition_ancestors pg_partition_tree pg_prepared_statement pg_prepared_xact
pg_show_all_file_settings pg_show_all_settings pg_show_replication_origin_status
pg_snapshot_xip pg_stat_get_activity pg_stat_get_backend_idset pg_stat_get_progress_info
pg_stat_get_recovery_prefetch pg_stat_get_slru pg_stat_get_subscription
pg_stat_get_wal_senders pg_tablespace_databases pg_timezone_abbrevs pg_timezone_names
regexp_matches regexp_split_to_table string_to_table ts_debug ts_parse ts_stat ts_token_type
txid_snapshot_xip unnest pg_stat_statements pg_stat_statements_info""".split())
# PostgreSQL 15's aggregates (pg_proc.prokind = 'a')
AGG_NAMES = frozenset("""array_agg avg bit_and bit_or bit_xor bool_and bool_or corr count
covar_pop covar_samp cume_dist dense_rank every json_agg json_object_agg jsonb_agg
jsonb_object_agg max min mode percent_rank percentile_cont percentile_disc range_agg
range_intersect_agg rank regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope
regr_sxx regr_sxy regr_syy stddev stddev_pop stddev_samp string_agg sum var_pop var_samp
variance xmlagg""".split())
ALL = "*"


def walk_skip(node, skip, path=()):
    """walk(), leaving out the subtrees at the paths in skip."""
    if path in skip:
        return
    yield path, node
    for attr, i, ch in children(node):
        yield from walk_skip(ch, skip, path + ((attr, i),))


def out_name(rt):
    """The name PostgreSQL gives a target list entry (FigureColname), or None when it
    is not certain (such a column is never taken as unread)."""
    from pglast import ast

    if rt.name:
        return rt.name
    v = rt.val
    while isinstance(v, ast.TypeCast) and isinstance(v.arg, ast.ColumnRef):
        v = v.arg
    if isinstance(v, ast.ColumnRef):
        f = v.fields[-1]
        return f.sval if isinstance(f, ast.String) else None
    if isinstance(v, ast.FuncCall):
        return v.funcname[-1].sval
    if isinstance(v, ast.CoalesceExpr):
        return "coalesce"
    return None


def select_arms(stmt):
    """The SELECTs whose target lists make a statement's rows: one, or the arms of a
    UNION ALL tree; None when the columns' values decide the rows (UNION, INTERSECT,
    EXCEPT)."""
    from pglast import enums

    if stmt.op == enums.SetOperation.SETOP_NONE:
        return [((), stmt)]
    if stmt.op != enums.SetOperation.SETOP_UNION or not stmt.all:
        return None
    out = []
    for side in ("larg", "rarg"):
        sub = select_arms(getattr(stmt, side))
        if sub is None:
            return None
        out += [(((side, None),) + p, s) for p, s in sub]
    return out


def contains(node, pred):
    return any(pred(n) for _, n in walk(node))


def block_columns(root):
    """{column name: [path of each arm's target entry]} for the columns of a block's
    statement whose values alone can change (see above); the others are left out."""
    from pglast import ast

    arms = select_arms(root)
    if not arms:
        return {}
    first = arms[0][1]
    star = lambda s: any(isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.A_Star)  # noqa: E731
                         for t in s.targetList)
    if not first.targetList or any(not s.targetList for _, s in arms):
        return {}
    if len(arms) > 1 and any(len(s.targetList) != len(first.targetList) or star(s) for _, s in arms):
        return {}  # the arms' columns match by position: not followed through a `*`
    names = [out_name(t) for t in first.targetList]
    live = set()
    for p, s in arms + ([((), root)] if len(arms) > 1 else []):
        if s.distinctClause and s.distinctClause[0] is None:
            return {}  # plain DISTINCT: every column decides which rows are kept
        for item in [x for c in (s.distinctClause, s.sortClause, s.groupClause) for x in c or () if x is not None]:
            for _, n in walk(item):
                if isinstance(n, ast.ColumnRef) and isinstance(n.fields[-1], ast.String):
                    live.add(n.fields[-1].sval)
                elif isinstance(n, ast.A_Const) and isinstance(n.val, ast.Integer):
                    if 1 <= n.val.ival <= len(names):
                        live.add(names[n.val.ival - 1])
    out = {}
    for p, s in arms:
        grouped = bool(s.groupClause)
        for i, t in enumerate(s.targetList):
            name = names[i]
            if name is None or name in live:
                continue
            if contains(t.val, lambda n: isinstance(n, ast.FuncCall) and (
                    n.funcname[-1].sval in SRF_NAMES
                    or (not grouped and n.over is None and (n.agg_star or n.funcname[-1].sval in AGG_NAMES)))):
                live.add(name)
                continue
            out.setdefault(name, []).append(p + (("targetList", i), ))
    return {n: ps for n, ps in out.items() if n not in live}


def relation_reads(root, names, skip=frozenset()):
    """{relation: set of its columns read, or ALL} for every relation of `names` the
    statement refers to (by an unqualified name: a CTE), leaving out the subtrees at
    the paths in `skip`. Over-approximates (see above)."""
    from pglast import ast

    nodes = list(walk_skip(root, skip))
    alias, out = {}, {}

    def read(rel, col):
        if out.get(rel) is not ALL:
            if col is ALL:
                out[rel] = ALL
            else:
                out.setdefault(rel, set()).add(col)

    def direct(item):
        """The relations of `names` a FROM item scans itself (not in sub-selects)."""
        if isinstance(item, ast.RangeVar):
            return [item.relname] if item.relname in names and not item.schemaname else []
        if isinstance(item, ast.JoinExpr):
            return direct(item.larg) + direct(item.rarg)
        return []

    for _, n in nodes:
        if isinstance(n, ast.RangeVar) and n.relname in names and not n.schemaname:
            out.setdefault(n.relname, set())
            alias.setdefault(n.alias.aliasname if n.alias else n.relname, set()).add(n.relname)
            if n.alias and n.alias.colnames:
                read(n.relname, ALL)
        elif isinstance(n, ast.JoinExpr):
            for rel in direct(n):
                if n.isNatural:
                    read(rel, ALL)
                for u in n.usingClause or ():
                    read(rel, u.sval)
        elif isinstance(n, ast.SelectStmt):
            if any(isinstance(t.val, ast.ColumnRef) and len(t.val.fields) == 1
                   and isinstance(t.val.fields[0], ast.A_Star) for t in n.targetList or ()):
                for item in n.fromClause or ():
                    for rel in direct(item):
                        read(rel, ALL)
    for _, n in nodes:
        if not isinstance(n, ast.ColumnRef):
            continue
        f = n.fields
        if len(f) == 1:
            if isinstance(f[0], ast.A_Star):
                continue  # select *: above
            for rel in alias.get(f[0].sval, ()):
                read(rel, ALL)  # a whole-row reference
            for rel in list(out):
                read(rel, f[0].sval)  # maybe a column of any relation in reach
        elif isinstance(f[0], ast.String):
            for rel in alias.get(f[0].sval, ()):
                read(rel, ALL if isinstance(f[1], ast.A_Star) else f[1].sval)
    return out


class Reads:
    """Which columns of which blocks each check reads, directly or through the columns
    of other blocks it reads, and which block columns the engine's SQL may read."""

    def __init__(self, checks, libs):
        pglast = pg()
        self.names = set(libs)
        self.trees, self.cols = {}, {}
        self.texts = {n: snap.read_text() for n, snap in libs.items()}
        for n, snap in libs.items():
            try:
                self.trees[n] = pglast.parse_sql(snap.read_text())[0].stmt
                self.cols[n] = block_columns(self.trees[n])
            except Exception:
                self.trees[n] = None
                self.cols[n] = {}
        self.by_check = {}
        for cid, c in checks.items():
            if not automated(c):
                continue
            try:
                tree = pglast.parse_sql(c["sql"])[0].stmt
            except Exception:
                continue
            # what the check reads only inside its fix_* columns (or the sub-selects
            # that only feed them) no case can see, as for the check's own mutants
            self.by_check[cid] = self.closure(relation_reads(tree, self.names, fix_paths(tree)))
        self.engine = self.engine_reads()

    def dead_paths(self, block, read):
        if read is ALL:
            return frozenset()
        return frozenset(p for name, ps in self.cols.get(block, {}).items() if name not in read for p in ps)

    def closure(self, reads):
        """Add what the blocks read, for the columns read of them, until nothing changes."""
        reads = {k: (v if v is ALL else set(v)) for k, v in reads.items()}
        changed = True
        while changed:
            changed = False
            for b in list(reads):
                if self.trees.get(b) is None:
                    # not parsed: everything it might read
                    more = {x: ALL for x in self.names if x != b and re.search(rf"\b{x}\b", self.texts[b])}
                else:
                    more = relation_reads(self.trees[b], self.names - {b}, self.dead_paths(b, reads[b]))
                for r, cols in more.items():
                    old = reads.get(r)
                    if old is ALL:
                        continue
                    new = ALL if cols is ALL else (old or set()) | cols
                    if old is None or new is ALL or new != old:
                        reads[r] = new
                        changed = True
        return reads

    def engine_reads(self):
        """{block: column names} the engine's SQL may read: every column name of a block
        that appears as a word in a source file naming the block in a string."""
        out = {}
        for f in (ROOT / "src").rglob("*.rs"):
            t = f.read_text()
            for b in self.names:
                if f'"{b}"' in t:
                    words = set(re.findall(r"\w+", t))
                    out.setdefault(b, set()).update(c for c in self.cols.get(b, {}) if c in words)
        return out

    def column_of(self, block, path):
        """The unread-able column a mutation path lies in, or None."""
        for name, ps in self.cols.get(block, {}).items():
            if any(path[:len(p)] == p for p in ps):
                return name
        return None

    def users(self, block, column):
        """The checks that read the block's rows (column None) or that column."""
        out = []
        for cid, reads in sorted(self.by_check.items()):
            r = reads.get(block, None) if block in reads else None
            if block not in reads:
                continue
            if column is None or r is ALL or column in r:
                out.append(cid)
        return out


# ---------------------------------------------------------------- clusters


def bindir():
    d = os.environ.get("PG_INTEGRITY_PG_BIN")
    if d:
        return Path(d)
    for c in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)):
        found = c
    if "found" in locals():
        return found
    w = shutil.which("initdb")
    if w:
        return Path(w).resolve().parent
    sys.exit("no PostgreSQL server binaries (set PG_INTEGRITY_PG_BIN)")


@functools.lru_cache(maxsize=None)
def server_version(bin_dir):
    """'18.1' from `postgres --version` in bin_dir (asked once per directory: every
    mutant --also-pg kills is labelled with it)."""
    r = subprocess.run([str(Path(bin_dir) / "postgres"), "--version"], capture_output=True, text=True)
    m = re.search(r"(\d+(?:\.\d+)?)", r.stdout)
    return m.group(1) if m else str(bin_dir)


class Cluster:
    def __init__(self, settings=(), bin_dir=None):
        self.dir = tempfile.mkdtemp(prefix="pgi-mutate-")
        self.bin = Path(bin_dir) if bin_dir else bindir()
        self.pre = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

            def pre():
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            self.pre = pre
        data = os.path.join(self.dir, "data")
        self.data = data
        self._run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{self.dir}'\nport = 5432\n"
                    "fsync = off\nfull_page_writes = off\nsynchronous_commit = off\nmax_connections = 50\n"
                    # every case makes a database: with wal_level minimal, CREATE DATABASE
                    # (PostgreSQL 15's WAL_LOG strategy) copies template1 without logging it
                    "wal_level = minimal\nmax_wal_senders = 0\nmax_wal_size = 4GB\ncheckpoint_timeout = 1h\n")
            for s in settings:
                f.write(s + "\n")
        self._run("pg_ctl", "-D", data, "-l", os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start")
        self.url = f"postgresql://postgres@localhost/postgres?host={self.dir}&port=5432"

    def _run(self, prog, *args):
        r = subprocess.run([str(self.bin / prog), *args], preexec_fn=self.pre, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"{prog} failed: {r.stdout}{r.stderr}")

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Worker:
    """One worker's clusters: a plain one, and one with pg_stat_statements preloaded,
    per server (the default one, and each --also-pg)."""

    def __init__(self):
        self.clusters = {}

    def get(self, preloaded, bin_dir=None):
        key = (bin_dir, bool(preloaded))
        if key not in self.clusters:
            settings = [f"shared_preload_libraries = '{','.join(PRELOAD)}'"] if preloaded else []
            self.clusters[key] = Cluster(settings, bin_dir)
        return self.clusters[key]

    def stop(self):
        for c in self.clusters.values():
            c.stop()


# ---------------------------------------------------------------- running


class Runner:
    def __init__(self, binary, checks, libs, jobs):
        self.binary = binary
        self.checks = checks
        self.libs = libs
        self.jobs = jobs
        self.local = threading.local()
        self.workers = []
        self.lock = threading.Lock()
        # which case killed how many mutants, per check, from earlier runs: those cases
        # run first (a killed mutant stops at its first failing case)
        try:
            self.kills = json.loads(KILLS.read_text())
        except (OSError, ValueError):
            self.kills = {}
        self.kills_before = json.dumps(self.kills, sort_keys=True)

    def save_kills(self):
        # counts add up over runs; only their order matters
        if json.dumps(self.kills, sort_keys=True) != self.kills_before and KILLS.parent.is_dir():
            KILLS.write_text(json.dumps(self.kills, indent=1, sort_keys=True))

    def worker(self):
        w = getattr(self.local, "w", None)
        if w is None:
            w = self.local.w = Worker()
            with self.lock:
                self.workers.append(w)
        return w

    def stop(self):
        for w in self.workers:
            w.stop()

    def closure(self, uses):
        return block_closure(self.libs, uses)

    def reads(self):
        with self.lock:
            if getattr(self, "_reads", None) is None:
                self._reads = Reads(self.checks, self.libs)
        return self._reads

    def ordered_cases(self, cid):
        """The check's cases, those that killed most mutants last time first."""
        tests = list(self.checks[cid].get("test", []))
        kills = self.kills.get(cid, {})
        return sorted(tests, key=lambda t: -kills.get(t.get("name", ""), 0))

    def write_dir(self, d, cid, check_sql=None, lib=None, preloaded_only=False):
        c = self.checks[cid]
        (Path(d) / "lib").mkdir(parents=True)
        # the blocks this check needs, from the work tree (not the binary's copy)
        for name in self.closure(c.get("uses", [])):
            (Path(d) / "lib" / f"{name}.sql").write_bytes(self.libs[name].read_bytes())
        if lib:
            (Path(d) / "lib" / f"{lib[0]}.sql").write_text(lib[1])
        tests = self.ordered_cases(cid)
        if preloaded_only:
            # on the preloaded server only the cases that need it run (the others ran
            # on the plain server). They are kept in the file, marked not_preloaded, so
            # that `checks test` skips them there (a case's unmet requirement): the
            # loader still sees a passing and a failing case (with only the preloaded
            # cases written, a check whose preloaded cases all pass, or all fail, was
            # rejected: "needs a [[test]] that passes and one that fails")
            tests = [t if t.get("preloaded") else
                     dict(t, not_preloaded=sorted(set(t.get("not_preloaded", [])) | set(PRELOAD)))
                     for t in tests]
        c = dict(c, test=tests)
        (Path(d) / f"{cid}.toml").write_text(toml_check(c, check_sql if check_sql is not None else c["sql"]))

    def run_variants(self, cid, base, variants, bin_dir=None):
        """Check cid's cases against each variant: base = (check_sql, lib) of the
        unmutated (deparsed) check, variants = [(name, check_sql, lib)]. Each case is
        set up once and every variant still alive judged in it (`checks test
        --variants`); a variant stops at its first failing case. Returns
        ({name: verdict dict}, None) or (None, why the unmutated check fails)."""
        c = self.checks[cid]
        out = {}
        with tempfile.TemporaryDirectory(prefix="pgi-mutant-") as d:
            needs = [False] + ([True] if any(t.get("preloaded") for t in c.get("test", [])) else [])
            for pre in needs:
                # on the preloaded server, only the cases that need it: the others ran
                # on the plain one (a variant there is one that passed them all)
                live = [(n, s, lib) for n, s, lib in variants if n not in out]
                shutil.rmtree(Path(d) / "base", ignore_errors=True)
                shutil.rmtree(Path(d) / "variants", ignore_errors=True)
                self.write_dir(Path(d) / "base", cid, *base, preloaded_only=pre)
                for name, check_sql, lib in live:
                    self.write_dir(Path(d) / "variants" / name, cid, check_sql, lib, preloaded_only=pre)
                url = self.worker().get(pre, bin_dir).url
                try:
                    # --budget is a hard limit: a share still running then is stopped
                    # and its target reported as not finished (not a failure)
                    r = subprocess.run([self.binary, "checks", "test", str(Path(d) / "base"), "--only", cid,
                                        "--variants", str(Path(d) / "variants"), "--database-url", url],
                                       capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                       timeout=remaining())
                except subprocess.TimeoutExpired:
                    raise OutOfBudget()
                if r.returncode != 0:
                    return None, (r.stdout + r.stderr).strip()[:2000]
                for line in r.stdout.splitlines():
                    v = json.loads(line)
                    out[v["variant"]] = v
                    if v["verdict"] == "killed":
                        with self.lock:
                            k = self.kills.setdefault(cid, {})
                            k[v["case"]] = k.get(v["case"], 0) + 1
                # the preloaded server runs only the variants that survived
                for name in [n for n, v in out.items() if v["verdict"] == "survived"]:
                    del out[name]
                if all(n in out for n, _, _ in variants):
                    break
        return out, None


DEADLINE = [None]
# --mutant: only the mutants whose id starts with one of these (re-running survivors)
ONLY_MUTANTS = []


class OutOfBudget(Exception):
    pass


def within_budget():
    if DEADLINE[0] is not None and time.time() > DEADLINE[0]:
        raise OutOfBudget()


def remaining():
    """Seconds left of --budget (None: no budget)."""
    if DEADLINE[0] is None:
        return None
    within_budget()
    return max(1.0, DEADLINE[0] - time.time())


def target_mutants(runner, target, equivalent):
    """(base SQL, [mutants to run], [equivalent mutants not run]): those listed in
    scripts/mutants-equivalent.toml, and a block's mutants in a column no check reads
    (see Reads), each with its reason. A block mutant to run carries the checks whose
    cases can see it (`users`: those of block_users reading its rows, or its column)."""
    if target.startswith("lib:"):
        name = target[4:]
        base, mutants = make_mutants(target, runner.libs[name].read_text(), None, False)
    else:
        c = runner.checks[target]
        base, mutants = make_mutants(target, c["sql"], c.get("kind"), True)
    if ONLY_MUTANTS:
        mutants = [m for m in mutants if any(m["id"].startswith(x) for x in ONLY_MUTANTS)]
    kept, eq = [], []
    for m in mutants:
        if (target, m["id"]) in equivalent:
            eq.append(dict(m, why=equivalent[(target, m["id"])]))
            continue
        if target.startswith("lib:"):
            reads = runner.reads()
            col = reads.column_of(name, m["path"])
            seen_by = reads.users(name, col)
            # judged by the checks using the block that read the column (block_users)
            m["users"] = [u for u in seen_by if u in lib_users(runner, name)]
            if not seen_by:
                engine = col in reads.engine.get(name, ()) if col else False
                if col is None:
                    why = "no check reads the block's rows"
                else:
                    why = (f"only in column {col}, which no check reads"
                           + (" (the engine's own SQL in src/ may: no check case can see it)" if engine else ""))
                eq.append(dict(m, why=why, unread=col))
                continue
        kept.append(m)
    return base, kept, eq


def lib_users(runner, name):
    return block_users(runner.checks, runner.libs, name)


def run_chunk(runner, target, base, chunk, verbose, bin_dir=None):
    """One share of a target's mutants: {mutant id: verdict dict}, or raises
    BaselineFails. A block's mutants run against each check using it in turn, the
    next check taking only those still alive."""
    if target.startswith("lib:"):
        name = target[4:]
        # the checks whose cases killed most of this block's mutants in earlier runs first
        # (a mutant stops at the first check that kills it; survivors run them all anyway)
        with runner.lock:
            history = dict(runner.kills.get(target, {}))
        users = sorted(lib_users(runner, name), key=lambda c: -history.get(c, 0))
        verdicts = {}
        alive = list(chunk)
        for cid in users:
            mine = [m for m in alive if cid in m.get("users", users)]
            if not mine:
                continue
            got, err = runner.run_variants(cid, (None, (name, base)), [(m["id"], None, (name, m["sql"])) for m in mine],
                                           bin_dir)
            if err:
                raise BaselineFails(f"baseline (deparsed, unmutated) fails with {cid}{on(bin_dir)}: {err}")
            for mid, v in got.items():
                if v["verdict"] != "survived":
                    verdicts[mid] = dict(v, check=cid)
                if v["verdict"] == "killed":
                    with runner.lock:
                        k = runner.kills.setdefault(target, {})
                        k[cid] = k.get(cid, 0) + 1
            alive = [m for m in alive if m["id"] not in verdicts]
            if not alive:
                break
        for m in alive:
            verdicts[m["id"]] = {"variant": m["id"], "verdict": "survived"}
    else:
        got, err = runner.run_variants(target, (base, None), [(m["id"], m["sql"], None) for m in chunk], bin_dir)
        if err:
            raise BaselineFails(f"baseline (deparsed, unmutated) fails{on(bin_dir)}: {err}")
        verdicts = got
    if verbose:
        for mid, v in sorted(verdicts.items()):
            if v["verdict"] != "survived":
                why = (v.get("why") or "").splitlines()[0][:160]
                print(f"    {target} {mid} {v['verdict']} by {v.get('check', target)} / {v['case']}: {why}",
                      file=sys.stderr)
    return verdicts


class BaselineFails(Exception):
    pass


def on(bin_dir):
    return f" on PostgreSQL {server_version(bin_dir)} ({bin_dir})" if bin_dir else ""


def make_row(target, kept, eq, verdicts, error, seconds, users=None):
    row = {"target": target, "made": len(kept), "killed": 0, "survived": [], "undecided": [],
           "equivalent": len(eq), "error": error, "seconds": round(seconds, 1),
           # equivalent because no check reads the column they are in (not run)
           "unread": [{k: m[k] for k in ("id", "op", "why", "diff")} for m in eq if "unread" in m]}
    if users is not None:
        row["users"] = users
    if error:
        row["made"] = 0
        return row
    for m in kept:
        v = verdicts.get(m["id"], {"verdict": "survived"})
        if v["verdict"] == "killed":
            row["killed"] += 1
            if v.get("server"):
                # killed only by a case on another server version (--also-pg)
                also = row.setdefault("also", {})
                also[v["server"]] = also.get(v["server"], 0) + 1
        elif v["verdict"] == "undecided":
            # neither killed nor survived; not counted as killed
            row["undecided"].append(dict(m, why=v.get("why", "")))
        else:
            row["survived"].append(m)
    return row


def rate(row):
    return row["killed"] / row["made"] if row["made"] else 1.0


def print_row(row):
    if row["error"]:
        print(f"{row['target']}: {row['error']}")
        return
    undecided = row.get("undecided", [])
    print(f"{row['target']}: made {row['made']}, killed {row['killed']}, survived {len(row['survived'])}, "
          + (f"undecided {len(undecided)}, " if undecided else "")
          + f"equivalent {row['equivalent']}, rate {rate(row):.0%} ({row.get('seconds', 0)} s)"
          + "".join(f"; {n} killed only on PostgreSQL {ver}" for ver, n in sorted(row.get("also", {}).items())))
    for m in row.get("unread", []):
        print(f"  equivalent {m['id']}: {m['why']}")
    for m in row["survived"]:
        print(f"  survivor {m['id']}:")
        for line in m["diff"].splitlines():
            print("    " + line)
    for m in undecided:
        # the case failed the unmutated check too, even on a fresh database: a flaky case
        print(f"  undecided {m['id']} (the unmutated check failed the case too: {m['why'][:200]}):")
        for line in m["diff"].splitlines():
            print("    " + line)


# ---------------------------------------------------------------- the doc

DOC_HEAD = """# Test strength: mutation testing of the check catalog

Written by `scripts/mutate.py` (issue 18); do not edit the tables by hand.
Each mutant is the check's SQL (or a building block's) broken one plausible way; it is
*killed* when one of the check's own `[[test]]` cases fails against it. Equivalent
mutants are listed with their reason in `scripts/mutants-equivalent.toml` and not
counted. A block's mutants run against the cases of every check that uses it (naming
it in `uses` or through another block), those checks whose cases killed most of the
block's mutants before first. `scripts/mutate.py --all
--write-doc` measures the whole catalog and writes every row.
Target: every automated check kills >= 90% of its mutants.

Rows under "Checks" and "Building blocks" are kept fresh: `hash` is what a row was
measured on (the check file; for a block, the block and the files of the checks using
it), and `tests/test_strength.rs` fails when it no longer matches. Rerun
`scripts/mutate.py --write-doc ID` (or `lib:NAME`) for that row. CI reruns the whole
catalog (`--all --ratchet`, about 25 minutes) and fails when a target falls below what
its row says (or below 90% for a row at or above it). Rows under "Snapshot" were measured once
(at the commit given) and are not kept fresh: `--write-doc --snapshot ID` writes there.
"""

TABLE_HEAD = "| target | made | killed | survived | equivalent | rate | {} |\n|---|---:|---:|---:|---:|---|---|\n"
SECTIONS = ("Checks", "Building blocks", "Snapshot (not kept fresh)")


def parse_doc():
    """{section: {target: line}} and the notes text."""
    out = {s: {} for s in SECTIONS}
    notes = ""
    if not DOC.exists():
        return out, notes
    text = DOC.read_text()
    if "\n## Notes\n" in text:
        text, notes = text.split("\n## Notes\n", 1)
    section = None
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
        m = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if m and section in out:
            out[section][m.group(1)] = line
    return out, notes


def row_rate(line):
    cells = [c.strip() for c in line.strip("|").split("|")]
    m = re.match(r"(\d+)%", cells[5]) if len(cells) > 5 else None
    return int(m.group(1)) / 100 if m else None


def doc_line(row, last):
    if row["error"]:
        return f"| `{row['target']}` | - | - | - | - | {row['error'][:80]} | {last} |"
    r = rate(row)
    also = "".join(f", {n} killed only on PG {ver.split('.')[0]}" for ver, n in sorted(row.get("also", {}).items()))
    note = ("below 90%" if r < TARGET else "") + also
    return (f"| `{row['target']}` | {row['made']} | {row['killed']} | {len(row['survived'])} | {row['equivalent']} | "
            f"{r * 100:.0f}%{' (' + note.lstrip(', ') + ')' if note else ''} | {last} |")


def write_doc(checks, libs, rows, snapshot):
    doc, notes = parse_doc()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    for row in rows:
        t = row["target"]
        if (row["error"] or "").startswith("not run"):
            continue
        for sec in SECTIONS:
            doc[sec].pop(t, None)
        if snapshot:
            doc[SECTIONS[2]][t] = doc_line(row, f"at {commit}")
        elif t.startswith("lib:"):
            doc[SECTIONS[1]][t] = doc_line(row, row.get("hash") or lib_hash(checks, libs, t[4:]))
        else:
            doc[SECTIONS[0]][t] = doc_line(row, row.get("hash") or check_hash(checks, t))
    out = DOC_HEAD
    for sec, last in zip(SECTIONS, ("hash", "hash", "measured")):
        out += f"\n## {sec}\n\n" + TABLE_HEAD.format(last) + "\n".join(doc[sec][k] for k in sorted(doc[sec])) + "\n"
    measured = set().union(*[set(doc[s]) for s in SECTIONS])
    unmeasured = [cid for cid in sorted(checks) if automated(checks[cid]) and cid not in measured]
    out += "\n## Not measured yet\n\n" + (", ".join(f"`{c}`" for c in unmeasured) or "none") + "\n"
    if notes:
        out += "\n## Notes\n" + notes
    DOC.write_text(out)


def check_doc(checks, libs):
    stale = []
    doc, _ = parse_doc()
    for sec in SECTIONS[:2]:
        for t, line in doc[sec].items():
            recorded = line.rstrip("|").rsplit("|", 1)[1].strip()
            if t.startswith("lib:"):
                if t[4:] not in libs:
                    stale.append(f"{t}: block no longer exists")
                    continue
                now = lib_hash(checks, libs, t[4:])
            else:
                if t not in checks:
                    stale.append(f"{t}: check no longer exists")
                    continue
                now = check_hash(checks, t)
            if now != recorded:
                stale.append(f"{t}: changed since measured (run scripts/mutate.py --write-doc {t})")
    return stale


def recorded_rates():
    doc, _ = parse_doc()
    return {t: row_rate(line) for sec in SECTIONS[:2] for t, line in doc[sec].items()}


# ---------------------------------------------------------------- main


def changed_since(ref, checks):
    r = subprocess.run(["git", "diff", "--name-only", ref, "--", "checks"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        # a shallow or short history: nothing to compare with is not a failure
        print(f"cannot compare with {ref} ({r.stderr.strip()}): no check taken as changed")
        return set(), set()
    out = r.stdout.split()
    ids, libs = set(), set()
    for f in out:
        p = Path(f)
        if p.parent.name == "lib" and p.suffix == ".sql":
            libs.add(p.stem)
        elif p.suffix == ".toml" and p.stem in checks:
            ids.add(p.stem)
    return ids, libs


def estimate(runner, target):
    """How many mutants a target will have, without making them (one parse, no deparse)."""
    pglast = pg()
    if target.startswith("lib:"):
        sql, kind, is_check = runner.libs[target[4:]].read_text(), None, False
    else:
        c = runner.checks[target]
        sql, kind, is_check = c["sql"], c.get("kind"), True
    return len(site_edits(pglast.parse_sql(sql)[0].stmt, kind, is_check))


def run_targets(runner, targets, equivalent, a):
    """Every target's mutants, in shares run by --jobs workers (each with its own
    clusters), the largest shares first; a row per target. A target's mutants are made
    by the first of its shares to start (making them is Python deparsing, which takes
    minutes for the whole catalog): the workers start on the largest targets at once."""
    plans, rows = {}, []
    for t in targets:
        try:
            n = estimate(runner, t)
        except Exception as e:
            rows.append(make_row(t, [], [], {}, f"not parsed: {e}", 0))
            print_row(rows[-1])
            continue
        n_cases = sum(len(runner.checks[c].get("test", [])) for c in
                      (lib_users(runner, t[4:]) if t.startswith("lib:") else [t]))
        plans[t] = {"n": n, "made": None, "lock": threading.Lock(), "cases": n_cases,
                    "verdicts": {}, "error": None, "t0": None, "spent": 0.0}
    # Shares: a case's database is set up once per share (and per check, for a block),
    # so a target is split only as far as keeping --jobs workers busy needs: into up to
    # --jobs shares when it is a large part of the run (mutants x cases), else one.
    # --chunk N takes at most N mutants a share instead.
    total = sum(p["n"] * max(1, p["cases"]) for p in plans.values()) or 1
    for t, p in plans.items():
        if a.chunk:
            k = max(1, -(-p["n"] // a.chunk))
        else:
            k = max(1, min(a.jobs, p["n"], -(-p["n"] * max(1, p["cases"]) * 2 * a.jobs // total)))
        p["chunks"] = list(range(k))
        p["left"] = k
    lock = threading.Lock()

    def made(t):
        """(base, kept, eq) of target t, made once (None, [], [] when it does not parse)."""
        p = plans[t]
        with p["lock"]:
            if p["made"] is None:
                try:
                    p["made"] = target_mutants(runner, t, equivalent)
                except OutOfBudget:
                    raise
                except Exception as e:
                    p["made"] = (None, [], [])
                    p["error"] = f"not parsed: {e}"
        return p["made"]

    def share(t, i):
        base, kept, _ = made(t)
        k = len(plans[t]["chunks"])
        if a.chunk:
            return kept[i * a.chunk:(i + 1) * a.chunk] if i < k - 1 else kept[i * a.chunk:]
        return kept[i::k]

    def run(t, i):
        p = plans[t]
        try:
            within_budget()
        except OutOfBudget:
            with lock:
                p["error"] = p["error"] or f"not run: --budget {a.budget:.0f} s spent"
            return t
        t1 = time.time()
        try:
            chunk = share(t, i)
            if chunk and not p["error"]:
                got = run_chunk(runner, t, p["made"][0], chunk, a.verbose)
                # --also-pg: the survivors against the cases on another server version
                # (version-gated cases run there); a mutant killed there is killed
                for alt in a.also_pg or ():
                    alive = [m for m in chunk if got.get(m["id"], {}).get("verdict", "survived") == "survived"]
                    if not alive:
                        break
                    more = run_chunk(runner, t, p["made"][0], alive, a.verbose, alt)
                    for mid, v in more.items():
                        if v["verdict"] != "survived":
                            got[mid] = dict(v, server=server_version(alt))
                with lock:
                    p["verdicts"].update(got)
        except BaselineFails as e:
            with lock:
                p["error"] = str(e)
        except OutOfBudget:
            with lock:
                p["error"] = p["error"] or f"not run: --budget {a.budget:.0f} s spent before it finished"
        with lock:
            p["spent"] += time.time() - t1
        return t

    tasks = [(t, i) for t, p in plans.items() for i in p["chunks"]]
    # the largest first; a target's next share after the next target's first, so that
    # the workers do not both wait for the same target's mutants to be made. Under
    # --budget the smallest first: as many targets as fit are judged, and the budget
    # cuts the largest (CI: a change to lib:policy_analysis does not fit anyway)
    size = lambda t: plans[t]["n"] / len(plans[t]["chunks"]) * max(1, plans[t]["cases"])  # noqa: E731
    rank = {t: r for r, t in enumerate(sorted(plans, key=lambda t: size(t) if a.budget else -size(t)))}
    tasks.sort(key=lambda ti: rank[ti[0]] + 1.5 * ti[1])
    ex = cf.ThreadPoolExecutor(max_workers=a.jobs)
    try:
        for f in cf.as_completed([ex.submit(run, t, ch) for t, ch in tasks]):
            t = f.result()
            p = plans[t]
            with lock:
                p["left"] -= 1
                done = p["left"] == 0
            if done:
                users = lib_users(runner, t[4:]) if t.startswith("lib:") else None
                _, kept, eq = p["made"] or (None, [], [])
                rows.append(make_row(t, kept, eq, p["verdicts"], p["error"], p["spent"], users))
                rows[-1]["shares"] = len(p["chunks"])
                # what was measured (the files as the run read them), for the doc's row
                rows[-1]["hash"] = (lib_hash(runner.checks, runner.libs, t[4:]) if t.startswith("lib:")
                                    else check_hash(runner.checks, t))
                print_row(rows[-1])
                sys.stdout.flush()
    finally:
        # on an interrupt: start nothing more; the shares running finish, then the
        # clusters stop
        ex.shutdown(wait=True, cancel_futures=True)
        runner.stop()
        runner.save_kills()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*", help="check ids, or lib:NAME for a building block")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "pg-integrity"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=None, metavar="N",
                    help="a worker takes at most N mutants of a target at a time (default: a target "
                         "is split into up to --jobs shares only when it is a large part of the run)")
    ap.add_argument("--libs", action="store_true", help="also the blocks the given checks use")
    ap.add_argument("--all", action="store_true",
                    help="the whole catalog: every automated check and every block a check uses "
                         "(directly or through another block); blocks only the engine reads "
                         "(init, scope) have no check cases and are listed, not run")
    ap.add_argument("--changed-since", metavar="REF")
    ap.add_argument("--write-doc", action="store_true")
    ap.add_argument("--check-doc", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--snapshot", action="store_true", help="with --write-doc: rows not kept fresh")
    ap.add_argument("--ratchet", action="store_true",
                    help="exit 1 if a target falls below min(its row's rate, 90%%) in the doc")
    ap.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                    help="stop after this long: no share starts later, and the shares still running "
                         "are stopped; targets not finished are listed as not run, not judged")
    ap.add_argument("--json", metavar="FILE", help="write the results (rows with survivors' diffs) here")
    ap.add_argument("--from-json", metavar="FILE", nargs="+",
                    help="take the results of earlier runs (--json) instead of running, e.g. to --write-doc")
    ap.add_argument("--also-pg", metavar="BIN", action="append",
                    help="a PostgreSQL bin directory (e.g. /opt/pg-integrity/pg18/native/bin): the "
                         "survivors run the cases again on a server of that version, and a mutant a "
                         "case kills there counts as killed (version-gated cases); repeatable")
    ap.add_argument("--mutant", metavar="ID", action="append",
                    help="only the mutants whose id starts with ID (repeatable; e.g. the survivors of an "
                         "earlier run); the row is then not a measurement of the target: no --write-doc")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    # `timeout` (CI) sends SIGTERM: stop as on ^C, so that the clusters are stopped
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    if a.mutant and (a.write_doc or a.ratchet):
        sys.exit("--mutant runs part of a target: not with --write-doc or --ratchet")
    ONLY_MUTANTS[:] = a.mutant or []
    checks, libs = load_checks(), load_libs()
    if a.check_doc:
        stale = check_doc(checks, libs)
        for s in stale:
            print(s)
        print(f"docs/test-strength.md: {len(stale)} stale row(s)")
        return 1 if stale else 0

    targets = list(a.targets)
    if a.changed_since:
        ids, ls = changed_since(a.changed_since, checks)
        targets = sorted(i for i in ids if automated(checks[i])) + sorted("lib:" + x for x in ls)
        if not targets:
            print(f"no check or block changed since {a.changed_since}")
            return 0
    if a.all:
        auto = [cid for cid in sorted(checks) if automated(checks[cid])]
        used = sorted({b for cid in auto for b in block_closure(libs, checks[cid].get("uses", []))})
        targets = auto + ["lib:" + b for b in used]
        unused = sorted(set(libs) - set(used))
        if unused:
            print("blocks no check uses (read by the engine: init, scope; judged by tests/*.rs, not here): "
                  + ", ".join(unused))
    if not targets:
        targets = [cid for cid in sorted(checks) if automated(checks[cid])]
    if a.libs:
        for cid in [t for t in targets if not t.startswith("lib:")]:
            for u in checks[cid].get("uses", []):
                if "lib:" + u not in targets:
                    targets.append("lib:" + u)
    for t in targets:
        if t.startswith("lib:") and t[4:] not in libs or not t.startswith("lib:") and t not in checks:
            sys.exit(f"unknown check or block {t}")

    if a.list:
        for t in targets:
            if t.startswith("lib:"):
                _, ms = make_mutants(t, libs[t[4:]].read_text(), None, False)
            else:
                _, ms = make_mutants(t, checks[t]["sql"], checks[t].get("kind"), True)
            print(f"{t}: {len(ms)} mutants")
            for m in ms:
                print(f"  {m['id']}\n" + "\n".join("    " + x for x in m["diff"].splitlines()))
        return 0

    if a.from_json:
        rows = [r for f in a.from_json for r in json.loads(Path(f).read_text())]
        for row in rows:
            print_row(row)
        if a.write_doc:
            write_doc(checks, libs, rows, a.snapshot)
        return 0

    if not Path(a.bin).exists():
        sys.exit(f"{a.bin} not found: cargo build --release (or --bin)")
    for alt in a.also_pg or ():
        if not (Path(alt) / "initdb").exists():
            sys.exit(f"--also-pg {alt}: no initdb there (a PostgreSQL bin directory)")
    pg()
    equivalent = load_equivalent()
    runner = Runner(a.bin, checks, libs, a.jobs)
    t0 = time.time()
    if a.budget is not None:
        DEADLINE[0] = t0 + a.budget
    rows = run_targets(runner, targets, equivalent, a)
    total = time.time() - t0
    made = sum(r["made"] for r in rows)
    killed = sum(r["killed"] for r in rows)
    print(f"\n{len(rows)} target(s), {made} mutants, {killed} killed, {made - killed} survived "
          f"({killed / made if made else 1:.0%}), {total:.0f} s with --jobs {a.jobs}")
    cut = [r["target"] for r in rows if (r["error"] or "").startswith("not run")]
    if cut:
        print(f"{len(cut)} target(s) not finished within --budget (not judged): {', '.join(sorted(cut))}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.write_doc:
        write_doc(checks, libs, rows, a.snapshot)
    if a.ratchet:
        before = recorded_rates()
        low = []
        for r in rows:
            if (r["error"] or "").startswith("not run"):
                continue
            was = before.get(r["target"])
            # only rows the doc records are held to it (rates there are rounded to 1%)
            if was is not None and (r["error"] or rate(r) + 0.005 < min(was, TARGET)):
                low.append(f"{r['target']} ({r['error'] or f'{rate(r):.0%}, row says {was:.0%}'})")
        if low:
            print("below what docs/test-strength.md records: " + ", ".join(low))
            return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("mutate.py: interrupted (the shares running finished; clusters stopped)")
