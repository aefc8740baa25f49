#!/usr/bin/env bash
# What insights cost at a year of daily batches of 1,000 answers, on SQLite and on a throwaway
# PostgreSQL: the analysis pass per 1,000 answers, the report of one batch against the one
# before, and the background pass's look for work when there is none. Seeds answers with SQL:
# 365 batches × 1,000 answers (10 prompts × 2 models × 50 runs) of about 60 words, naming 2 to
# 4 of a 5-term tracker's brands in a numbered list, in an order that varies by run, with a
# markdown link and a bare URL.
#
#   PROMPTQ=target/release/promptq docs/scripts/insights-cost.sh [sqlite|postgres|both]
set -euo pipefail
PROMPTQ=${PROMPTQ:-target/release/promptq}
WHICH=${1:-both}
PG=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d /dev/shm/promptq-insights.XXXXXX)
trap 'runuser -u postgres -- "$PG/pg_ctl" stop -D "$WORK/pg" -m immediate >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
pq() { env -i DATABASE_URL="$DATABASE_URL" "$PROMPTQ" "$@"; }
seconds() { local s; s=$(date +%s.%N); "$@" >/dev/null; awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

# The answers, as one INSERT … SELECT over a series `n(i)`, in SQL both databases read.
answers_sql() {
    local day=$1 nl=$2
    cat <<SQL
INSERT INTO responses (id, job_id, prompt_id, model_id, batch_key, run_index, text, latency_ms, created_at)
SELECT i + 1, i + 1, 1 + (i / 2) % 10, 1 + i % 2, $day, (i % 1000) / 20,
       'For a small team I would compare a few options. ' || $nl || $nl ||
       '1. ' || (CASE i % 3 WHEN 0 THEN 'HubSpot' WHEN 1 THEN 'Salesforce' ELSE 'Pipedrive' END) ||
       ' is easy to start with and has a free tier.' || $nl ||
       '2. ' || (CASE (i / 3) % 3 WHEN 0 THEN 'Zoho CRM' WHEN 1 THEN 'HubSpot''s suite' ELSE 'Monday' END) ||
       ' scales well as the team grows.' || $nl ||
       (CASE WHEN i % 7 = 0 THEN '3. Salesforce, for the enterprise.' || $nl ELSE '' END) ||
       $nl || 'Reviews: [G2](https://www.g2.com/categories/crm) and https://capterra.com/crm-software/ ' ||
       'compare prices, integrations and support in detail.',
       1000, CREATED
FROM n
SQL
}

# Each answer's job, succeeded (reports find the latest batches from the jobs).
jobs_sql() {
    cat <<SQL
INSERT INTO prompt_jobs (id, prompt_id, model_id, run_index, batch_key, status, attempt_count,
    max_attempts, scheduled_for, next_attempt_at, finished_at, created_at)
SELECT job_id, prompt_id, model_id, run_index, batch_key, 'succeeded', 1, 3,
    created_at, created_at, created_at, created_at FROM responses;
SQL
}

setup_catalog() {
    pq migrate >/dev/null
    pq models add --name a --provider mock --model m1 >/dev/null
    pq models add --name b --provider mock --model m2 >/dev/null
    for p in $(seq 1 10); do pq prompts add "Which CRM is best for team type $p?" >/dev/null; done
}

measure() {
    pq trackers add CRMs --term HubSpot --term Salesforce --term Pipedrive --term 'Zoho=Zoho,Zoho CRM' --term Monday >/dev/null
    local first
    first=$(seconds pq report --format csv)
    echo "first report (analyses all 365,000 answers, then reports): ${first} s"
    awk -v s="$first" 'BEGIN { printf "  analysis per 1,000 answers: %.1f ms\n", s * 1000 / 365 }'
    echo "report of the latest batch, nothing to analyse (3 runs): $(seconds pq report --format csv) s, $(seconds pq report --format csv) s, $(seconds pq report --format csv) s"
    echo "report of a batch in the middle of the year: $(seconds pq report --format csv --batch-key 2025-07-01) s"
    echo "tracker list (the idle pass's two counts, in a whole process): $(seconds pq trackers list) s"
    pq trackers edit CRMs --term HubSpot --term Salesforce >/dev/null
    echo "after an edit, re-analysis of 365,000 answers + report: $(seconds pq report --format csv) s"
}

if [ "$WHICH" != postgres ]; then
    echo "== SQLite"
    DB="$WORK/year.db"
    export DATABASE_URL="sqlite:$DB"
    setup_catalog
    { echo "PRAGMA journal_mode=WAL;"
      echo "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 364999)"
      answers_sql "date('2025-01-01', '+' || (i / 1000) || ' days')" "char(10)" \
          | sed 's/CREATED/1735689600000 + (i \/ 1000) * 86400000/'
      echo ";"
      jobs_sql; } | sqlite3 "$DB" >/dev/null
    measure
    echo "database: $(du -sh "$DB" | cut -f1)"
fi

if [ "$WHICH" != sqlite ]; then
    echo "== PostgreSQL (defaults)"
    chown postgres:postgres "$WORK"
    runuser -u postgres -- "$PG/initdb" --no-sync -A trust -U postgres -D "$WORK/pg" >/dev/null
    runuser -u postgres -- "$PG/pg_ctl" start -w -D "$WORK/pg" -l "$WORK/pg.log" \
        -o "-c listen_addresses='' -c unix_socket_directories='$WORK'" >/dev/null
    psql -q -h "$WORK" -U postgres -c "CREATE DATABASE year"
    export DATABASE_URL="postgres://postgres@localhost/year?host=$WORK"
    setup_catalog
    { echo "WITH n(i) AS (SELECT generate_series(0, 364999))"
      answers_sql "to_char(date '2025-01-01' + (i / 1000), 'YYYY-MM-DD')" "chr(10)" \
          | sed "s/CREATED/timestamptz '2025-01-01' + (i \/ 1000) * interval '1 day'/"
      echo ";"
      jobs_sql
      echo "SELECT setval('prompt_jobs_id_seq', 365000);"
      echo "SELECT setval('responses_id_seq', 365000);"
      echo "ANALYZE;"; } | psql -q -h "$WORK" -U postgres year >/dev/null
    measure
    echo "database: $(psql -h "$WORK" -U postgres -Atc "SELECT pg_size_pretty(pg_database_size('year'))" year)"
fi
