#!/usr/bin/env python3
"""Diff two directories of corpus audit JSON (scripts/corpus.py --json-dir), finding by finding.

    scripts/corpus-diff.py OLD_DIR NEW_DIR [--check ID]... [--evidence]

For each schema and check, prints the status change and the findings that appeared (+) or
disappeared (-), with their evidence, so each change can be judged against the schema's SQL.
Timings are ignored. Exits 0 always; this is a reading aid, not a gate.
"""
import argparse, json, os

ap = argparse.ArgumentParser()
ap.add_argument("old")
ap.add_argument("new")
ap.add_argument("--check", action="append", default=[], help="only these check ids (prefix match)")
ap.add_argument("--evidence", action="store_true", help="print the evidence of every changed finding")
args = ap.parse_args()

def load(d, name):
    p = os.path.join(d, name)
    return {c["id"]: c for c in json.load(open(p))["checks"]} if os.path.exists(p) else {}

total_plus = total_minus = 0
for name in sorted(set(os.listdir(args.old)) | set(os.listdir(args.new))):
    if not name.endswith(".json"):
        continue
    old, new = load(args.old, name), load(args.new, name)
    lines = []
    for cid in sorted(set(old) | set(new)):
        if args.check and not any(cid.startswith(c) for c in args.check):
            continue
        a, b = old.get(cid, {}), new.get(cid, {})
        fa = {f["object"]: f for f in a.get("findings", [])}
        fb = {f["object"]: f for f in b.get("findings", [])}
        plus, minus = sorted(set(fb) - set(fa)), sorted(set(fa) - set(fb))
        changed_ev = sorted(o for o in set(fa) & set(fb) if fa[o]["evidence"] != fb[o]["evidence"])
        if a.get("status") == b.get("status") and not plus and not minus and not (args.evidence and changed_ev):
            continue
        total_plus += len(plus)
        total_minus += len(minus)
        lines.append(f"  {cid}: {a.get('status', '-')} -> {b.get('status', '-')}  "
                     f"findings {len(fa)} -> {len(fb)} (+{len(plus)} -{len(minus)})")
        for o in plus:
            lines.append(f"    + {o}" + (f"\n        {fb[o]['evidence']}" if args.evidence else ""))
        for o in minus:
            lines.append(f"    - {o}" + (f"\n        {fa[o]['evidence']}" if args.evidence else ""))
        if args.evidence:
            for o in changed_ev:
                lines.append(f"    ~ {o}\n        was: {fa[o]['evidence']}\n        now: {fb[o]['evidence']}")
    if lines:
        print(f"== {name[:-5]}")
        print("\n".join(lines))
print(f"\nfindings added {total_plus}, removed {total_minus}")
