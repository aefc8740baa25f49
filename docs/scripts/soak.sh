#!/usr/bin/env bash
# Soak runs with real parts around promptq: a fleet of `worker` processes and a `serve` on one
# PostgreSQL through PgBouncer in transaction mode, a LiteLLM proxy as the models' gateway (two
# `mock_response` models limited to 300 requests a minute), a worker killed with -9 and started
# again under faketime with its clock 90 s ahead; the same on SQLite; the serverless dispatch;
# and a PostgreSQL restart under a fleet's calls. Each run prints the jobs by model and status
# (attempts, 429s, first enqueue to last finish), duplicate or missing answers, the attempt
# records by outcome and the warnings the processes logged. BENCHMARKS.md ("Soak runs") has
# the figures.
#
#   docs/scripts/soak.sh setup      # PgBouncer on $SOAK/pgb (port 6433), LiteLLM on :4111
#   docs/scripts/soak.sh fleet      # PostgreSQL: 3 workers + serve through PgBouncer
#   docs/scripts/soak.sh sqlite     # SQLite: 2 workers + serve on one file
#   docs/scripts/soak.sh http       # PostgreSQL: serve with DISPATCH=http, ?pgbouncer=true
#   docs/scripts/soak.sh restart    # PostgreSQL: 2 workers + serve, the server restarted
#   docs/scripts/soak.sh outage     # PostgreSQL: calls of 60 s, the server down 35 s
#
# Needs a PostgreSQL server of your own reached on a unix socket ($PGDIR: its socket
# directory; $PGDATA: its data directory and $PGOPTS its options, for the restart and the
# outage; run as root, the server and
# PgBouncer run as `postgres`), pgbouncer, faketime, curl, psql, sqlite3, bc, and a LiteLLM
# proxy ($LITELLM: its `litellm` executable; `pip install 'litellm[proxy]==1.80.0'`, never
# 1.107.0). Each run lasts about 90 s, and takes a fresh database named soak_<run>.
set -uo pipefail
PROMPTQ=$(realpath "${PROMPTQ:-target/release/promptq}")
SOAK=${SOAK:-/tmp/promptq-soak}
PGDIR=${PGDIR:-/tmp/pgbench}
PGDATA=${PGDATA:-$PGDIR/data}
# The server's options, for `outage`, which stops it and starts it again.
PGOPTS=${PGOPTS:--c listen_addresses= -c unix_socket_directories=$PGDIR}
LITELLM=${LITELLM:-$HOME/.cache/promptq/venv-litellm/bin/litellm}
ADMIN="postgres://postgres@localhost/postgres?host=$PGDIR"
export GW_BASE_URL=http://127.0.0.1:4111/v1 GW_API_KEY=x CRON_SECRET=soaksecret
export WORKER_CONCURRENCY=50 NO_COLOR=1

setup() {
  mkdir -p "$SOAK/pgb" "$SOAK/llm"
  cat > "$SOAK/pgb/pgbouncer.ini" <<INI
[databases]
* = host=$PGDIR port=5432 user=postgres
[pgbouncer]
listen_addr =
listen_port = 6433
unix_socket_dir = $SOAK/pgb
auth_type = trust
auth_file = $SOAK/pgb/userlist.txt
pool_mode = transaction
default_pool_size = 4
max_client_conn = 1000
logfile = $SOAK/pgb/pgbouncer.log
pidfile = $SOAK/pgb/pgbouncer.pid
INI
  echo '"postgres" ""' > "$SOAK/pgb/userlist.txt"
  chown -R postgres "$SOAK/pgb"
  runuser -u postgres -- pgbouncer -d "$SOAK/pgb/pgbouncer.ini" > /dev/null
  model() {
    printf '  - model_name: %s\n    litellm_params:\n      model: openai/%s\n      api_key: x\n      mock_response: "%s"\n      rpm: 300\n' "$1" "$1" "$2"
  }
  {
    echo "model_list:"
    model adaptive "The best CRM for a small business is HubSpot, then Pipedrive and Zoho."
    model configured "Salesforce and HubSpot lead; see https://example.com/crm for a list."
    printf 'router_settings:\n  routing_strategy: usage-based-routing-v2\n  num_retries: 0\n'
  } > "$SOAK/llm/config.yaml"
  (cd "$SOAK/llm" && LITELLM_LOCAL_MODEL_COST_MAP=True nohup "$LITELLM" --config config.yaml \
    --host 127.0.0.1 --port 4111 > "$SOAK/llm/log" 2>&1 &)
  for _ in $(seq 1 240); do
    curl -sf http://127.0.0.1:4111/health/liveliness > /dev/null && { echo ready; return; }
    sleep 1
  done
  echo "the LiteLLM proxy did not start: $SOAK/llm/log" >&2
  return 1
}

# A fresh database: prints its direct URL.
fresh_database() {
  psql "$ADMIN" -qc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'soak_$1'" \
    -c "DROP DATABASE IF EXISTS soak_$1" -c "CREATE DATABASE soak_$1" > /dev/null
  echo "postgres://postgres@localhost/soak_$1?host=$PGDIR"
}

# The gateway's two models and a mock one that fails 20 % of its calls; 40 prompts × 10 runs.
catalog() {
  "$PROMPTQ" migrate > /dev/null || exit 1
  "$PROMPTQ" models add --name adaptive --provider openai-compatible --model adaptive \
    --params '{"endpoint":"GW"}' > /dev/null
  "$PROMPTQ" models add --name configured --provider openai-compatible --model configured \
    --params '{"endpoint":"GW","rpm":299}' > /dev/null
  "$PROMPTQ" models add --name flaky --provider mock --model m1 \
    --params '{"latencyMs":1500,"failRate":0.2}' > /dev/null
  for i in $(seq 1 40); do
    "$PROMPTQ" prompts add "What is the best CRM number $i for a small business?" --runs 10 > /dev/null
  done
}

# Waits until no job is queued or running (at most 10 minutes), by `query`.
wait_done() {
  for _ in $(seq 1 120); do
    [ "$($1 "SELECT count(*) FROM prompt_jobs WHERE status IN ('queued', 'processing')")" = 0 ] && return
    sleep 5
  done
}

pg_count() { psql "$DIRECT" -Atc "$1"; }
lite_count() { sqlite3 "$FILE" "$1"; }

report_pg() {
  psql "$DIRECT" -c "SELECT m.name, j.status, count(*), sum(j.attempt_count) AS attempts,
      sum(j.rate_limited_count) AS rate_limited, max(j.finished_at) - min(j.created_at) AS span
    FROM prompt_jobs j JOIN models m ON m.id = j.model_id GROUP BY 1, 2 ORDER BY 1, 2" \
    -c "SELECT (SELECT count(*) FROM responses) AS answers,
      (SELECT count(*) FROM (SELECT job_id FROM responses GROUP BY 1 HAVING count(*) > 1) d) AS doubled,
      (SELECT count(*) FROM prompt_jobs j WHERE status = 'succeeded'
        AND NOT EXISTS (SELECT 1 FROM responses r WHERE r.job_id = j.id)) AS missing" \
    -c "SELECT outcome, error_class, count(*) FROM job_attempts GROUP BY 1, 2 ORDER BY 1, 2"
}

warnings() {
  grep -hE ' (ERROR|WARN) ' "$1"/*.log | grep -v 'mock simulated' | cut -c29-180 \
    | sed -E 's/until=[^ ]+ [^ ]+//; s/(job_id|jobs_moved)=[^ ]+//g' | sort | uniq -c | sort -rn | head -12
}

elapsed() { echo "elapsed $(echo "$(date +%s.%N) - $1" | bc) s"; }

fleet() {
  local dir=$SOAK/fleet; rm -rf "$dir"; mkdir -p "$dir"; cd "$dir" || exit 1
  DIRECT=$(fresh_database fleet)
  export DATABASE_DIRECT_URL=$DIRECT
  export DATABASE_URL="postgres://postgres@localhost:6433/soak_fleet?host=$SOAK/pgb"
  catalog
  local start; start=$(date +%s.%N)
  BIND=127.0.0.1:3111 "$PROMPTQ" serve > serve.log 2>&1 & local serve=$!
  "$PROMPTQ" worker > w1.log 2>&1 & local w1=$!
  "$PROMPTQ" worker > w2.log 2>&1 & local w2=$!
  "$PROMPTQ" worker > w3.log 2>&1 & local w3=$!
  sleep 2
  curl -s http://127.0.0.1:3111/api/cron -H "Authorization: $CRON_SECRET" > cron1.json &
  curl -s http://127.0.0.1:3111/api/cron -H "Authorization: $CRON_SECRET" > cron2.json
  sleep 26; kill -9 $w2; echo "killed worker 2 (-9)"
  sleep 20
  faketime -f '+90s' "$PROMPTQ" worker > w2b.log 2>&1 & local skewed=$!
  wait_done pg_count; elapsed "$start"
  # faketime does not pass SIGTERM on: the worker is its child.
  kill $serve $w1 $w3 "$(cat /proc/$skewed/task/$skewed/children)" 2> /dev/null; wait
  report_pg; warnings "$dir"
}

sqlite() {
  local dir=$SOAK/sqlite; rm -rf "$dir"; mkdir -p "$dir"; cd "$dir" || exit 1
  FILE=$dir/promptq.db
  export DATABASE_URL=sqlite:$FILE
  catalog
  local start; start=$(date +%s.%N)
  BIND=127.0.0.1:3112 "$PROMPTQ" serve > serve.log 2>&1 & local serve=$!
  "$PROMPTQ" worker > w1.log 2>&1 & local w1=$!
  "$PROMPTQ" worker > w2.log 2>&1 & local w2=$!
  sleep 2
  curl -s http://127.0.0.1:3112/api/cron -H "Authorization: $CRON_SECRET" > cron1.json &
  curl -s http://127.0.0.1:3112/api/cron -H "Authorization: $CRON_SECRET" > cron2.json
  sleep 21; kill -9 $w2; echo "killed worker 2 (-9)"
  sleep 20; "$PROMPTQ" worker > w2b.log 2>&1 & w2=$!
  wait_done lite_count; elapsed "$start"
  kill $serve $w1 $w2; wait
  sqlite3 -header -column "$FILE" "SELECT m.name, j.status, count(*) AS n,
      sum(j.attempt_count) AS attempts, sum(j.rate_limited_count) AS rate_limited,
      (max(j.finished_at) - min(j.created_at)) / 1000.0 AS span_s
    FROM prompt_jobs j JOIN models m ON m.id = j.model_id GROUP BY 1, 2 ORDER BY 1, 2" \
    "SELECT (SELECT count(*) FROM responses) AS answers,
      (SELECT count(*) FROM (SELECT job_id FROM responses GROUP BY 1 HAVING count(*) > 1)) AS doubled" \
    "SELECT outcome, error_class, count(*) AS n FROM job_attempts GROUP BY 1, 2 ORDER BY 1, 2"
  warnings "$dir"
}

http() {
  local dir=$SOAK/http; rm -rf "$dir"; mkdir -p "$dir"; cd "$dir" || exit 1
  DIRECT=$(fresh_database http)
  export DATABASE_URL="postgres://postgres@localhost:6433/soak_http?host=$SOAK/pgb&pgbouncer=true"
  export DISPATCH=http APP_URL=http://127.0.0.1:3113 DISPATCH_BUDGET_SECS=30 CRON_SCHEDULE=off
  catalog
  local start; start=$(date +%s.%N)
  BIND=127.0.0.1:3113 "$PROMPTQ" serve > serve.log 2>&1 & local serve=$!
  sleep 1
  curl -s -m 600 http://127.0.0.1:3113/api/cron -H "Authorization: Bearer $CRON_SECRET" > cron1.json &
  curl -s -m 600 http://127.0.0.1:3113/api/cron -H "Authorization: Bearer $CRON_SECRET" > cron2.json
  wait_done pg_count; elapsed "$start"
  kill $serve; wait
  cat cron1.json cron2.json; echo
  report_pg; warnings "$dir"
}

restart() {
  local dir=$SOAK/restart; rm -rf "$dir"; mkdir -p "$dir"; cd "$dir" || exit 1
  DIRECT=$(fresh_database restart)
  export DATABASE_URL=$DIRECT
  "$PROMPTQ" migrate > /dev/null || exit 1
  "$PROMPTQ" models add --name slow --provider mock --model m1 --params '{"latencyMs":2000}' > /dev/null
  "$PROMPTQ" models add --name flaky --provider mock --model m2 \
    --params '{"latencyMs":1000,"failRate":0.1}' > /dev/null
  for i in $(seq 1 50); do
    "$PROMPTQ" prompts add "What is the best CRM number $i for a small business?" --runs 30 > /dev/null
  done
  local start; start=$(date +%s.%N)
  BIND=127.0.0.1:3114 "$PROMPTQ" serve > serve.log 2>&1 & local serve=$!
  "$PROMPTQ" worker > w1.log 2>&1 & local w1=$!
  "$PROMPTQ" worker > w2.log 2>&1 & local w2=$!
  sleep 15
  runuser -u postgres -- "$(dirname "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")/pg_ctl" \
    restart -m fast -w -D "$PGDATA" -l "$PGDATA/../log" > /dev/null
  echo "restarted the server"
  wait_done pg_count; elapsed "$start"
  kill $serve $w1 $w2; wait
  report_pg; warnings "$dir"
}

# Calls of 60 s, longer than a lease (30 s by default), across an outage longer than one.
outage() {
  local dir=$SOAK/outage; rm -rf "$dir"; mkdir -p "$dir"; cd "$dir" || exit 1
  DIRECT=$(fresh_database outage)
  export DATABASE_URL=$DIRECT
  "$PROMPTQ" migrate > /dev/null || exit 1
  "$PROMPTQ" models add --name long --provider mock --model m1 --params '{"latencyMs":60000}' > /dev/null
  for i in $(seq 1 15); do
    "$PROMPTQ" prompts add "What is the best CRM number $i for a small business?" --runs 10 > /dev/null
  done
  local start; start=$(date +%s.%N)
  BIND=127.0.0.1:3115 "$PROMPTQ" serve > serve.log 2>&1 & local serve=$!
  "$PROMPTQ" worker > w1.log 2>&1 & local w1=$!
  "$PROMPTQ" worker > w2.log 2>&1 & local w2=$!
  sleep 10
  local pg_ctl; pg_ctl="$(dirname "$(command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl | tail -1)")/pg_ctl"
  runuser -u postgres -- "$pg_ctl" stop -m fast -w -D "$PGDATA" > /dev/null
  echo "stopped the server"; sleep 35
  runuser -u postgres -- "$pg_ctl" start -w -D "$PGDATA" -l "$PGDATA/../log" -o "$PGOPTS" > /dev/null
  echo "started it again"
  wait_done pg_count; elapsed "$start"
  kill $serve $w1 $w2; wait
  report_pg; warnings "$dir"
}

case "${1:-}" in
  setup | fleet | sqlite | http | restart | outage) "$1" ;;
  *) echo "usage: $0 setup|fleet|sqlite|http|restart|outage" >&2; exit 2 ;;
esac
