#!/usr/bin/env bash
# What insights cost at a year of daily batches of 1,000 answers, on SQLite: the analysis pass
# per 1,000 answers, the report of one batch against the one before, and the background pass's
# look for work when there is none. Seeds answers with SQL: 365 batches × 1,000 answers
# (10 prompts × 2 models × 50 runs) of about 60 words, naming 2 to 4 of a 5-term tracker's
# brands in a numbered list, in an order that varies by run, with a markdown link and a bare URL.
#
#   PROMPTQ=target/release/promptq docs/scripts/insights-cost.sh
set -euo pipefail
PROMPTQ=${PROMPTQ:-target/release/promptq}
WORK=$(mktemp -d /dev/shm/promptq-insights.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
DB="$WORK/year.db"
export DATABASE_URL="sqlite:$DB"
pq() { env -i DATABASE_URL="$DATABASE_URL" "$PROMPTQ" "$@"; }
seconds() { local s=$(date +%s.%N); "$@" >/dev/null; awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

pq migrate >/dev/null
pq models add --name a --provider mock --model m1 >/dev/null
pq models add --name b --provider mock --model m2 >/dev/null
for p in $(seq 1 10); do pq prompts add "Which CRM is best for team type $p?" >/dev/null; done
sqlite3 "$DB" <<'SQL'
PRAGMA journal_mode=WAL;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 364999)
INSERT INTO responses (id, job_id, prompt_id, model_id, batch_key, run_index, text, latency_ms, created_at)
SELECT i + 1, i + 1, 1 + (i / 2) % 10, 1 + i % 2, date('2025-01-01', '+' || (i / 1000) || ' days'),
       (i % 1000) / 20,
       'For a small team I would compare a few options. ' || char(10) || char(10) ||
       '1. ' || (CASE i % 3 WHEN 0 THEN 'HubSpot' WHEN 1 THEN 'Salesforce' ELSE 'Pipedrive' END) ||
       ' is easy to start with and has a free tier.' || char(10) ||
       '2. ' || (CASE (i / 3) % 3 WHEN 0 THEN 'Zoho CRM' WHEN 1 THEN 'HubSpot''s suite' ELSE 'Monday' END) ||
       ' scales well as the team grows.' || char(10) ||
       (CASE WHEN i % 7 = 0 THEN '3. Salesforce, for the enterprise.' || char(10) ELSE '' END) ||
       char(10) || 'Reviews: [G2](https://www.g2.com/categories/crm) and https://capterra.com/crm-software/ ' ||
       'compare prices, integrations and support in detail.',
       1000, 1735689600000 + (i / 1000) * 86400000
FROM n;
SQL
pq trackers add CRMs --term HubSpot --term Salesforce --term Pipedrive --term 'Zoho=Zoho,Zoho CRM' --term Monday >/dev/null

echo "answers: $(sqlite3 "$DB" 'SELECT count(*) FROM responses')"
first=$(seconds pq report --format csv)
echo "first report (analyses all 365,000 answers, then reports): ${first} s"
awk -v s="$first" 'BEGIN { printf "  analysis per 1,000 answers: %.1f ms\n", s * 1000 / 365 }'
echo "report of the latest batch, nothing to analyse (3 runs):"
for _ in 1 2 3; do echo "  $(seconds pq report --format csv) s"; done
echo "report of a batch in the middle of the year: $(seconds pq report --format csv --batch-key 2025-07-01) s"
echo "tracker list (progress counts over every answer): $(seconds pq trackers list) s"
pq trackers edit CRMs --term HubSpot --term Salesforce >/dev/null
echo "after an edit, re-analysis of 365,000 answers + report: $(seconds pq report --format csv) s"
echo "database: $(du -sh "$WORK" | cut -f1)"
