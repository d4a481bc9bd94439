#!/usr/bin/env python3
"""Draw findings at random from corpus audits, for a reviewer to judge by hand.

    scripts/precision-sample.py JSON_DIR [--n 30] [--seed S] [--all-checks]

JSON_DIR holds one audit per schema (scripts/corpus.py --json-dir). By default only the
checks that splinter (Supabase's linter) lacks are sampled: where the two overlap,
pg-integrity was already compared with it. Prints the seed (random when not given, so a
review says which draw it judged), then one block per finding: schema, check, object,
evidence and related objects. Each finding is drawn with equal weight, so a check with
many findings is sampled more often, as a user would meet them.
"""
import argparse, json, os, random

# The checks whose subject splinter's lints also cover (no primary key, unindexed and
# duplicate indexes, RLS disabled / policies without RLS, initplan, security definer
# views and functions' search_path).
SPLINTER_OVERLAP = {
    "schema.primary_keys", "schema.foreign_key_indexes", "schema.duplicate_indexes",
    "rls.enabled", "rls.policies_present", "rls.policy_initplan",
    "rls.views_security_invoker", "rls.security_definer_search_path",
}

ap = argparse.ArgumentParser()
ap.add_argument("json_dir")
ap.add_argument("--n", type=int, default=30)
ap.add_argument("--seed", type=int, default=None)
ap.add_argument("--all-checks", action="store_true")
args = ap.parse_args()
seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
pool = []
for name in sorted(os.listdir(args.json_dir)):
    if not name.endswith(".json"):
        continue
    doc = json.load(open(os.path.join(args.json_dir, name)))
    for c in doc["checks"]:
        if not args.all_checks and c["id"] in SPLINTER_OVERLAP:
            continue
        for f in c["findings"]:
            pool.append((name[:-5], c["id"], c["severity"], f))
rng = random.Random(seed)
sample = rng.sample(pool, min(args.n, len(pool)))
print(f"seed {seed}: {len(sample)} of {len(pool)} findings "
      f"({'all checks' if args.all_checks else 'checks splinter lacks'}) in {args.json_dir}\n")
for i, (schema, check, sev, f) in enumerate(sample, 1):
    print(f"{i}. [{schema}] {check} ({sev}) {f['object']}")
    print(f"   evidence: {f['evidence']}")
    if f.get("related"):
        print(f"   related: {', '.join(f['related'])}")
    print()
