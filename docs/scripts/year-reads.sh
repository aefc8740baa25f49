#!/usr/bin/env bash
# A year of daily batches, then every read of the API and the dashboard timed against it.
#
#   docs/scripts/year-reads.sh build DATABASE_URL   # 200 prompts x 5 mock models x 3 runs a day
#                                                   # for 365 days: 1,095,000 jobs and answers
#   docs/scripts/year-reads.sh reads                # against a serve on $BASE (CRON_SECRET=$SECRET)
#
# `build` makes the batches with `promptq cron --batch-key`, drains them with one worker, then
# dates each batch's rows on its own day and fails one job in 97 (as a year of real runs would
# have them; `serve` migrates and reads it as it is). Start the serve yourself, e.g.
#   CRON_SECRET=$SECRET CRON_SCHEDULE=off BIND=127.0.0.1:8799 promptq serve
# `reads` prints each path's best time of three, its status and its size.
set -euo pipefail
PROMPTQ=${PROMPTQ:-promptq}
BASE=${BASE:-http://127.0.0.1:8799}
SECRET=${SECRET:-s3cret-s3cret-s3cret}
KEY=${KEY:-2026-11-30}
work=${WORK:-$(mktemp -d)}

build() {
  export DATABASE_URL=$1 CRON_SCHEDULE=off RUST_LOG=error
  {
    echo "models:"
    for m in 0 1 2 3 4; do
      printf '  - name: mock-%s\n    provider: mock\n    model: mock-%s\n    params: {}\n' "$m" "$m"
    done
    echo "prompts:"
    for p in $(seq 0 199); do
      printf '  - text: "Which tool would you recommend for a team of %s people?"\n    runs: 3\n' "$((p + 2))"
    done
  } > "$work/year.yaml"
  "$PROMPTQ" migrate >/dev/null
  "$PROMPTQ" prompts import "$work/year.yaml" >/dev/null
  local first
  first=$(date -u -d 2025-12-01 +%s)
  for i in $(seq 0 364); do
    "$PROMPTQ" cron --batch-key "$(date -u -d "@$((first + i * 86400))" +%F)" >/dev/null
  done
  WORKER_CONCURRENCY=64 "$PROMPTQ" worker &
  local worker=$! left
  while :; do
    sleep 5
    left=$("$PROMPTQ" status --json | jq '.summary.queued + .summary.processing')
    echo "left $left"
    [ "$left" = 0 ] && break
  done
  kill "$worker"; wait "$worker" || true
  local sql
  case "$DATABASE_URL" in
    postgres*)
      sql="UPDATE prompt_jobs SET created_at = batch_key::date + interval '1 minute',
             scheduled_for = batch_key::date, next_attempt_at = batch_key::date + interval '1 minute',
             started_at = batch_key::date + interval '2 minutes',
             finished_at = batch_key::date + interval '3 minutes';
           UPDATE responses SET created_at = batch_key::date + interval '3 minutes';
           UPDATE prompt_jobs SET status = 'failed', error_message = 'HTTP 500: upstream error'
             WHERE id % 97 = 0;
           DELETE FROM responses WHERE job_id % 97 = 0;"
      psql "$DATABASE_URL" -qc "$sql"
      # VACUUM may not run inside the transaction a multi-statement -c makes.
      psql "$DATABASE_URL" -qc "VACUUM ANALYZE"
      ;;
    sqlite:*)
      sqlite3 "${DATABASE_URL#sqlite:}" "
        UPDATE prompt_jobs SET created_at = (unixepoch(batch_key) + 60) * 1000,
          scheduled_for = unixepoch(batch_key) * 1000,
          next_attempt_at = (unixepoch(batch_key) + 60) * 1000,
          started_at = (unixepoch(batch_key) + 120) * 1000,
          finished_at = (unixepoch(batch_key) + 180) * 1000;
        UPDATE responses SET created_at = (unixepoch(batch_key) + 180) * 1000;
        UPDATE prompt_jobs SET status = 'failed', error_message = 'HTTP 500: upstream error'
          WHERE id % 97 = 0;
        DELETE FROM responses WHERE job_id % 97 = 0;
        ANALYZE;"
      ;;
  esac
}

reads() {
  curl -s -c "$work/cookies" -o /dev/null -H "Origin: $BASE" -d "secret=$SECRET" "$BASE/login"
  local paths=(
    "/healthz" "/metrics" "/" "/batches" "/batches/$KEY" "/batches/$KEY/prompts/7" "/failed"
    "/jobs/123456" "/api/jobs/status" "/api/jobs/status?batchKey=$KEY"
    "/api/jobs/status?status=failed" "/api/jobs/status?promptId=7"
    "/api/jobs/status?offset=500000&limit=50" "/api/jobs/123456" "/api/responses"
    "/api/responses?promptId=7" "/api/responses?batchKey=$KEY" "/api/responses?modelId=3"
    "/api/responses?offset=500000" "/api/prompts" "/api/insights/report?batchKey=$KEY"
  )
  local path best took
  for path in "${paths[@]}"; do
    best=
    for _ in 1 2 3; do
      took=$(curl -s -o "$work/body" -w '%{http_code} %{time_total}' -b "$work/cookies" \
        -H "Authorization: Bearer $SECRET" "$BASE$path")
      if [ -z "$best" ] || awk "BEGIN{exit !(${took#* } < ${best#* })}"; then best=$took; fi
    done
    printf '%-45s %s %6.0f ms\n' "$path" "${best% *}" "$(awk "BEGIN{print ${best#* } * 1000}")"
  done
}

case "${1:-}" in
  build) build "$2" ;;
  reads) reads ;;
  *) echo "usage: $0 build DATABASE_URL | reads" >&2; exit 2 ;;
esac
