#!/usr/bin/env python3
"""Audit every schema of the shared corpus (../shared/corpus) and summarise.

    scripts/corpus.py [--corpus DIR] [--server "host=127.0.0.1 user=postgres"] [--bin target/release/pg-integrity] [ENTRY...]

For each entry: create a fresh database on the server, load it with the psql
command its SOURCE.md gives (ON_ERROR_STOP=0, as documented there), run
`pg-integrity audit --format json`, and print per-check finding counts. Exits 1
when any check errored or the tool failed. Skips (exit 0, with a message) when
the corpus is absent. Not part of `cargo test`: loading takes ~10 s in all.
"""
import argparse, json, os, re, shlex, subprocess, sys, time, collections

ap = argparse.ArgumentParser()
ap.add_argument("--corpus", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus"))
ap.add_argument("--server", default="host=127.0.0.1 user=postgres")
ap.add_argument("--bin", default="target/release/pg-integrity")
ap.add_argument("--json-dir", default=None, help="keep each audit's JSON here")
ap.add_argument("--config-dir", default=None,
                help="audit ENTRY with DIR/ENTRY.toml when it exists (e.g. the schema's tenant column, "
                     "as the corpus README gives it); the defaults otherwise")
ap.add_argument("--db-prefix", default="corpus_",
                help="prefix of the databases made (several runs at once on one server need different ones)")
ap.add_argument("--compare-batch", action="store_true",
                help="also audit with --no-batch and fail if any check says something else")
ap.add_argument("entries", nargs="*")
args = ap.parse_args()

corpus = os.path.abspath(args.corpus)
if not os.path.isdir(corpus):
    print(f"corpus not found at {corpus}: skipping")
    sys.exit(0)

def load_command(entry):
    text = open(os.path.join(corpus, entry, "SOURCE.md")).read()
    section = text.split("## Loading", 1)[1]
    lines, cmd = section.splitlines(), ""
    for i, line in enumerate(lines):
        if line.startswith("    psql"):
            cmd = line.strip()
            j = i
            while cmd.endswith("\\"):
                j += 1
                cmd = cmd[:-1] + " " + lines[j].strip()
            break
    cmd = cmd.split("#")[0]
    argv = shlex.split(cmd)
    db = argv[argv.index("-d") + 1]
    files = [argv[k + 1] for k, a in enumerate(argv) if a == "-f"]
    return db, files

def psql(db, *extra, check=True):
    return subprocess.run(["psql", "-X", "-q", "-d", f"{args.server} dbname={db}", *extra],
                          capture_output=True, text=True, check=check)

failed = False
entries = args.entries or sorted(e for e in os.listdir(corpus) if os.path.isdir(os.path.join(corpus, e)))
summary = []
for entry in entries:
    _, files = load_command(entry)
    # Every entry loads into a database of its own name under --db-prefix. A file that
    # manages its own database (chinook: DROP DATABASE …; CREATE DATABASE …; \c …) is
    # loaded without those statements, so that runs with different prefixes do not share
    # (and drop) one database, and the audit reads the database the file filled.
    db = f"{args.db_prefix}{entry.replace('-', '_')}"
    maintenance = "postgres"
    psql(maintenance, "-c", f'drop database if exists "{db}" with (force)', check=False)
    psql(maintenance, "-c", f'create database "{db}"')
    own_db = re.compile(r"(?im)^\s*(drop\s+database\s+if\s+exists\s+\w+\s*;|create\s+database\s+\w+\s*;|\\c(onnect)?\s+\w+\s*;?)\s*$")
    script = "".join(own_db.sub("", open(os.path.join(corpus, entry, f)).read()) + "\n" for f in files)
    t = time.time()
    load = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", f"{args.server} dbname={db}"],
                          input=script, cwd=os.path.join(corpus, entry), capture_output=True, text=True)
    load_s = time.time() - t
    errors = load.stderr.count("ERROR:")
    t = time.time()
    config = []
    if args.config_dir and os.path.exists(os.path.join(args.config_dir, f"{entry}.toml")):
        config = ["--config", os.path.abspath(os.path.join(args.config_dir, f"{entry}.toml"))]
    out = subprocess.run([args.bin, "audit", "--format", "json", "--fail-on", "never", "--deep", *config,
                          "--database-url", f"{args.server} dbname={db}"], capture_output=True, text=True,
                         cwd="/")
    audit_s = time.time() - t
    if out.returncode not in (0, 1):
        print(f"{entry}: pg-integrity exited {out.returncode}: {out.stderr.strip()[:500]}")
        failed = True
        continue
    doc = json.loads(out.stdout)
    if args.json_dir:
        os.makedirs(args.json_dir, exist_ok=True)
        open(os.path.join(args.json_dir, f"{entry}.json"), "w").write(out.stdout)
    statuses = collections.Counter(c["status"] for c in doc["checks"])
    errored = [f'{c["id"]}: {c["reason"]}' for c in doc["checks"] if c["status"] == "error"]
    failed |= bool(errored)
    print(f"\n== {entry}: load {load_s:.1f}s ({errors} load errors), audit --deep {audit_s:.2f}s, "
          f"score {doc['summary']['score']}%, statuses {dict(statuses)}")
    for c in doc["checks"]:
        if c["findings"]:
            print(f"   {c['id']:<42} {c['status']:<8} {len(c['findings']):>5} of {c['objects_checked']:>5}   e.g. {c['findings'][0]['evidence'][:110]}")
    for e in errored:
        print(f"   ERROR {e}")
    if args.compare_batch:
        t = time.time()
        alone = subprocess.run([args.bin, "audit", "--format", "json", "--fail-on", "never", "--deep", "--no-batch",
                                "--database-url", f"{args.server} dbname={db}"], capture_output=True, text=True)
        verdict = lambda c: (c["id"], c["status"], c["reason"], c["objects_checked"], json.dumps(c["findings"]))
        differ = [a[0] for a, b in zip(map(verdict, doc["checks"]), map(verdict, json.loads(alone.stdout)["checks"])) if a != b]
        print(f"   --no-batch {time.time() - t:.2f}s: " + (f"DIFFERS in {differ}" if differ else "same verdicts"))
        failed |= bool(differ)
    psql(maintenance, "-c", f'drop database if exists "{db}" with (force)', check=False)
print("\nerrors: " + ("yes" if failed else "none"))
sys.exit(1 if failed else 0)
