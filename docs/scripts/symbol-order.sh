#!/usr/bin/env bash
# Writes build/symbol-order.txt: the functions a `worker`, a `cron`, a `serve` and the bench's
# model-bound workload run, as recorded by valgrind's callgrind on a release build, on SQLite
# and on a throwaway PostgreSQL. build.rs hands the file to the linker (rust-lld), which lays
# those functions out side by side at the start of the code: a process then maps the few
# megabytes of code it runs instead of 64 KB around each of them scattered over 10 MB.
#
# The names carry rustc's hashes, which stay the same from build to build of one toolchain
# version and one Cargo.lock; a function renamed or added since the file was written is laid
# out as before, and a build with another toolchain matches few names and gets the default
# layout. A change of dependencies changes the hashes of promptq's own functions (and of the
# generic code it instantiates), and so does a change of the async runtime's scheduler: the
# code a process runs is then spread out again. Run it again after a toolchain upgrade, a
# dependency change or a large change (needs valgrind, python3 and PostgreSQL 15):
#
#   cargo build --release && docs/scripts/symbol-order.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PROMPTQ=$(realpath "${PROMPTQ:-target/release/promptq}")
PG=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
WORK=$(mktemp -d /tmp/promptq-order.XXXXXX)
trap 'runuser -u postgres -- "$PG/pg_ctl" stop -D "$WORK/pg" -m immediate >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
export RUST_LOG=error CRON_SECRET=order-secret-0123456789
# Each traced process writes its profile to $WORK/NAME.PID: "${TRACE[@]}=$WORK/NAME.%p" promptq …
TRACE=(valgrind --tool=callgrind --demangle=no --trace-children=yes --callgrind-out-file)
left() { "$PROMPTQ" status --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["summary"]; print(s["queued"]+s["processing"])'; }

# The bench's W3 batch: 400 prompts × 5 runs on a mock model answering in 200 ms.
python3 - "$WORK/batch.json" <<'EOF'
import json, sys
json.dump({"models": [{"name": "m", "provider": "mock", "model": "mock-1",
                       "params": {"latencyMs": 200}}],
           "prompts": [{"text": f"Which brands lead category {p}?", "runs": 5}
                       for p in range(400)]}, open(sys.argv[1], "w"))
EOF

run_batch() { # run_batch TAG: cron and a worker of 100 slots drain the batch, both traced
    local tag=$1
    "$PROMPTQ" migrate >/dev/null
    "$PROMPTQ" prompts import "$WORK/batch.json" >/dev/null
    WORKER_CONCURRENCY=100 "${TRACE[@]}=$WORK/worker-$tag.%p" "$PROMPTQ" worker 2>/dev/null &
    local worker=$!
    sleep 5
    "${TRACE[@]}=$WORK/cron-$tag.%p" "$PROMPTQ" cron >/dev/null 2>&1
    for _ in $(seq 300); do [ "$(left)" = 0 ] && break; sleep 1; done
    kill -TERM "$worker"; wait "$worker" || true
}

echo "== PostgreSQL"
chown postgres:postgres "$WORK"
runuser -u postgres -- "$PG/initdb" --no-sync -A trust -U postgres -D "$WORK/pg" >/dev/null
runuser -u postgres -- "$PG/pg_ctl" start -w -D "$WORK/pg" -l "$WORK/pg.log" \
    -o "-c listen_addresses='' -c unix_socket_directories='$WORK'" >/dev/null
DATABASE_URL="postgres://postgres@localhost/postgres?host=$WORK" run_batch pg
"${TRACE[@]}=$WORK/bench-pg.%p" "$PROMPTQ" bench --db "postgres://postgres@localhost/postgres?host=$WORK" \
    --workload w3 --repeat 1 >/dev/null 2>&1

echo "== SQLite"
DATABASE_URL="sqlite:$WORK/order.db" run_batch sqlite
(cd "$WORK" && "${TRACE[@]}=$WORK/bench-sqlite.%p" "$PROMPTQ" bench --workload w3 --repeat 1 >/dev/null 2>&1)

echo "== serve"
DATABASE_URL="sqlite:$WORK/order.db" BIND=127.0.0.1:3917 "${TRACE[@]}=$WORK/serve.%p" "$PROMPTQ" serve \
    >/dev/null 2>&1 &
serve=$!
for _ in $(seq 120); do curl -sf -o /dev/null http://127.0.0.1:3917/healthz && break; sleep 1; done
for path in /api/jobs/status /api/models /api/prompts /api/responses /metrics \
    /api/openapi.json /; do
    curl -s -o /dev/null -H "Authorization: Bearer $CRON_SECRET" "http://127.0.0.1:3917$path"
done
curl -s -o /dev/null -X POST -H "Authorization: Bearer $CRON_SECRET" http://127.0.0.1:3917/api/cron
sleep 3
kill -TERM "$serve"; wait "$serve" || true

# Functions of promptq's own executable, workers first, each once.
mkdir -p build
nm --defined-only "$PROMPTQ" | awk '$2 ~ /^[tTwW]$/ { print $3 }' > "$WORK/defined"
python3 - "$WORK" > build/symbol-order.txt <<'EOF'
import glob, os, re, sys
work = sys.argv[1]
defined = set(open(os.path.join(work, "defined")).read().split())

def functions(tag):
    """The functions of the executable that the profiles named TAG.* ran, in profile order."""
    found = []
    for path in sorted(glob.glob(os.path.join(work, tag + ".*"))):
        names = {}
        for line in open(path, errors="replace"):
            m = re.match(r"^c?fn=\((\d+)\)(?: (.+))?$", line.rstrip("\n"))
            if m:
                number, name = m.groups()
                name = names.setdefault(number, name)
                if name in defined:
                    found.append(name)
    return found

# A worker maps what both databases run, then its own database's code: what only the
# PostgreSQL worker runs is laid out after what only the SQLite worker runs, so that neither
# worker maps the other's code between its own.
pg, sqlite = functions("worker-pg"), functions("worker-sqlite")
both = set(pg) & set(sqlite)
groups = [[f for f in pg if f in both], [f for f in sqlite if f not in both],
          [f for f in pg if f not in both]]
groups += [functions(tag) for tag in ["bench-pg", "bench-sqlite", "cron-pg", "cron-sqlite",
                                      "serve"]]
order, seen = [], set()
for group in groups:
    for name in group:
        if name not in seen:
            seen.add(name)
            order.append(name)
print("\n".join(order))
EOF
echo "build/symbol-order.txt: $(wc -l < build/symbol-order.txt) functions"
