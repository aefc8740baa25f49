#!/usr/bin/env bash
# What a year of daily batches of 1,000 jobs weighs, before and after `promptq prune
# --older-than 90d`, on SQLite and on a throwaway PostgreSQL. Seeds with SQL (not the test
# suite): 365 batches × 1,000 succeeded jobs, each with one attempt record and one answer of
# 2,000 characters whose raw provider body is 4,000 characters (random hex, so compression
# does not flatter the figures).
#
#   PROMPTQ=target/debug/promptq docs/scripts/retention-weight.sh
#
# Measured on a shared 2-core machine (debug build, load ~20), 2026-11:
#   SQLite      2,341 MB; prune 90d (276,000 attempts + raw bodies, 552 transactions, 109 s):
#               1,762 MB in use; with --jobs 573 MB in use, 570 MB after VACUUM.
#   PostgreSQL  3,308 MB; prune 90d (same rows, 123 s): files keep their size, the space is
#               reused by new rows; with --jobs and VACUUM FULL 806 MB.
#   /metrics' counts by status at 365,000 jobs: read from the table (no index carries the
#   status, which every claim and finish changes); at most once per 5 s per process.
set -euo pipefail
PROMPTQ=${PROMPTQ:-target/release/promptq}
WORK=$(mktemp -d /dev/shm/promptq-weight.XXXXXX)
trap 'runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl stop -D "$WORK/pg" -m immediate >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
NOW_MS=$(($(date +%s) * 1000))
DAY_MS=86400000
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

# ---- SQLite
DB="$WORK/year.db"
env -i DATABASE_URL="sqlite:$DB" "$PROMPTQ" migrate >/dev/null
sqlite3 "$DB" <<SQL
PRAGMA journal_mode=WAL;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 364999)
INSERT INTO prompt_jobs (id, prompt_id, model_id, run_index, batch_key, status, attempt_count,
    max_attempts, scheduled_for, next_attempt_at, started_at, finished_at, created_at)
SELECT i + 1, (i / 100) % 10 + 1, (i / 10) % 10 + 1, i % 10,
    date(($NOW_MS - (365 - i / 1000) * $DAY_MS) / 1000, 'unixepoch'), 'succeeded', 1, 3,
    $NOW_MS - (365 - i / 1000) * $DAY_MS, $NOW_MS - (365 - i / 1000) * $DAY_MS,
    $NOW_MS - (365 - i / 1000) * $DAY_MS + 1000, $NOW_MS - (365 - i / 1000) * $DAY_MS + 5000,
    $NOW_MS - (365 - i / 1000) * $DAY_MS
FROM n;
INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, http_status)
SELECT id, 1, started_at, finished_at, 'succeeded', 200 FROM prompt_jobs;
INSERT INTO responses (job_id, prompt_id, model_id, batch_key, run_index, text, prompt_tokens,
    completion_tokens, total_tokens, latency_ms, raw, created_at)
SELECT id, prompt_id, model_id, batch_key, run_index, hex(randomblob(1000)), 20, 500, 520, 4000,
    hex(randomblob(2000)), finished_at FROM prompt_jobs;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
size() { stat -c %s "$DB"; }
used() { sqlite3 "$DB" "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size"; }
echo "SQLite, 365 × 1,000 jobs: file $(mb "$(size)")"
sqlite3 "$DB" ".timer on" "SELECT status, COUNT(*) FROM prompt_jobs GROUP BY status" | sed 's/^/  /'
start=$(date +%s.%N)
env -i DATABASE_URL="sqlite:$DB" "$PROMPTQ" prune --older-than 90d --yes | tail -n +2
echo "  prune --older-than 90d --yes took $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }')"
echo "  in use after: $(mb "$(used)") (file $(mb "$(size)"); free pages are reused)"
env -i DATABASE_URL="sqlite:$DB" "$PROMPTQ" prune --older-than 90d --jobs --yes | tail -n +2
echo "  in use after --jobs: $(mb "$(used)")"
sqlite3 "$DB" "VACUUM"
echo "  file after VACUUM: $(mb "$(size)")"

# ---- PostgreSQL (defaults, as for benchmarks)
PG=/usr/lib/postgresql/15/bin
chown postgres:postgres "$WORK"
runuser -u postgres -- "$PG/initdb" --no-sync -A trust -U postgres -D "$WORK/pg" >/dev/null
runuser -u postgres -- "$PG/pg_ctl" start -w -D "$WORK/pg" -l "$WORK/pg.log" \
    -o "-c listen_addresses='' -c unix_socket_directories='$WORK'" >/dev/null
URL="postgres://postgres@localhost/year?host=$WORK"
psql -q -h "$WORK" -U postgres -c "CREATE DATABASE year"
env -i DATABASE_URL="$URL" "$PROMPTQ" migrate >/dev/null
psql -q -h "$WORK" -U postgres year <<SQL
INSERT INTO prompt_jobs (prompt_id, model_id, run_index, batch_key, status, attempt_count,
    max_attempts, scheduled_for, next_attempt_at, started_at, finished_at, created_at)
SELECT (i / 100) % 10 + 1, (i / 10) % 10 + 1, i % 10, to_char(t, 'YYYY-MM-DD'), 'succeeded', 1, 3,
    t, t, t + interval '1 s', t + interval '5 s', t
FROM generate_series(0, 364999) i,
    LATERAL (SELECT date_trunc('day', now()) - (365 - i / 1000) * interval '1 day' AS t) d;
INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome, http_status)
SELECT id, 1, started_at, finished_at, 'succeeded', 200 FROM prompt_jobs;
CREATE TEMP TABLE blobs AS SELECT g,
    (SELECT string_agg(md5(g::text || '-' || k), '') FROM generate_series(1, 63) k) AS text,
    (SELECT string_agg(md5(g::text || '+' || k), '') FROM generate_series(1, 125) k) AS raw
FROM generate_series(0, 999) g;
INSERT INTO responses (job_id, prompt_id, model_id, batch_key, run_index, text, prompt_tokens,
    completion_tokens, total_tokens, latency_ms, raw, created_at)
SELECT j.id, j.prompt_id, j.model_id, j.batch_key, j.run_index, b.text, 20, 500, 520, 4000,
    b.raw, j.finished_at
FROM prompt_jobs j JOIN blobs b ON b.g = j.id % 1000;
VACUUM ANALYZE;
SQL
dbsize() { psql -h "$WORK" -U postgres -Atc "SELECT pg_database_size('year')" year; }
echo "PostgreSQL, 365 × 1,000 jobs: database $(mb "$(dbsize)")"
psql -h "$WORK" -U postgres -Atc "EXPLAIN (ANALYZE, COSTS OFF) SELECT status, count(*) FROM prompt_jobs GROUP BY status" year | sed 's/^/  /'
start=$(date +%s.%N)
env -i DATABASE_URL="$URL" "$PROMPTQ" prune --older-than 90d --yes | tail -n +2
echo "  prune --older-than 90d --yes took $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f s", e - s }')"
psql -q -h "$WORK" -U postgres -c "VACUUM" year
echo "  after VACUUM: $(mb "$(dbsize)") (freed space is reused, the files keep their size)"
env -i DATABASE_URL="$URL" "$PROMPTQ" prune --older-than 90d --jobs --yes | tail -n +2
psql -q -h "$WORK" -U postgres -c "VACUUM FULL" year
echo "  after --jobs and VACUUM FULL: $(mb "$(dbsize)")"
