//! Insights on PostgreSQL: trackers and the analysis pass's derived rows. A write of analyses
//! holds a share lock on its tracker's row, so an edit of the tracker waits for it and then
//! bumps the version (the answers are then analysed again), never the other way round.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::PostgresStore;
use crate::insights::{
    AnalysedAnswer, Analysis, AnswerText, NewTracker, Progress, Tracker, TrackerId,
};
use crate::store::StoreResult;
use crate::store::driver_insights::Insights;
use crate::store::insights_sql::*;
use crate::store::sql::Time;

/// Base of the transaction-level advisory lock keys of the analysis writes (one per tracker).
const ANALYSIS_LOCK: i64 = 0x7472_6163_6b00_0000;

impl Insights for PostgresStore {
    async fn tracker_insert(&self, new: &NewTracker, now: DateTime<Utc>) -> StoreResult<Tracker> {
        let row: TrackerRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO trackers (name, terms, version, created_at, updated_at) \
             VALUES ($1, $2, 1, $3, $3) RETURNING {TRACKER_COLUMNS}"
        )))
        .bind(&new.name)
        .bind(terms_json(&new.terms))
        .bind(Time(now))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_into()?)
    }

    async fn tracker_get(&self, id: TrackerId) -> StoreResult<Option<Tracker>> {
        let row: Option<TrackerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TRACKER_COLUMNS} FROM trackers WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Tracker::try_from).transpose()?)
    }

    async fn tracker_list(&self) -> StoreResult<Vec<Tracker>> {
        let rows: Vec<TrackerRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TRACKER_COLUMNS} FROM trackers ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        Ok(trackers(rows)?)
    }

    async fn tracker_update(
        &self,
        id: TrackerId,
        new: &NewTracker,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Tracker>> {
        let row: Option<TrackerRow> = sqlx::query_as(sqlx::AssertSqlSafe(update_sql()))
            .bind(id)
            .bind(&new.name)
            .bind(terms_json(&new.terms))
            .bind(Time(now))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Tracker::try_from).transpose()?)
    }

    async fn tracker_delete(&self, id: TrackerId) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM trackers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in DERIVED_TABLES {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE tracker_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn answers_unanalysed(
        &self,
        tracker: TrackerId,
        version: i64,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<AnswerText>> {
        let rows: Vec<(i64, String, Option<String>)> = sqlx::query_as(UNANALYSED)
            .bind(tracker)
            .bind(version)
            .bind(after)
            .bind(limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(response_id, text, citations)| AnswerText {
                response_id,
                text,
                citations,
            })
            .collect())
    }

    async fn analyses_write(
        &self,
        tracker: TrackerId,
        version: i64,
        analyses: &[Analysis],
    ) -> StoreResult<u64> {
        if analyses.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        // One process writes a tracker's analyses at a time: the others would only repeat
        // the work, and their overlapping deletes could deadlock. Advisory locks are the
        // server's, not the database's: the key's upper half is mixed with a hash of the
        // database's name, or tracker 1 of one database would hold off tracker 1 of every
        // other on the server.
        let ours: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock($1 # (hashtext(current_database())::bigint << 32))",
        )
        .bind(ANALYSIS_LOCK ^ tracker)
        .fetch_one(&mut *tx)
        .await?;
        // Every early return rolls back before it answers: a dropped transaction is rolled
        // back only when its connection is next used, and until then it holds the lock, so
        // the caller's next write (on another connection) would find it taken.
        if !ours {
            tx.rollback().await?;
            return Ok(0);
        }
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM trackers WHERE id = $1 FOR SHARE")
                .bind(tracker)
                .fetch_optional(&mut *tx)
                .await?;
        if current != Some(version) {
            tx.rollback().await?;
            return Ok(0);
        }
        let asked: Vec<i64> = analyses.iter().map(|a| a.response_id).collect();
        // Locked, so that a prune cannot delete an answer between this check and the commit
        // (its derived rows would outlive it, and count as analysed).
        let live: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM responses WHERE id = ANY($1) FOR SHARE")
                .bind(&asked)
                .fetch_all(&mut *tx)
                .await?;
        let live: std::collections::HashSet<i64> = live.into_iter().collect();
        let analyses: Vec<&Analysis> = analyses
            .iter()
            .filter(|a| live.contains(&a.response_id))
            .collect();
        let ids: Vec<i64> = analyses.iter().map(|a| a.response_id).collect();
        for table in DERIVED_TABLES {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE tracker_id = $1 AND response_id = ANY($2)"
            )))
            .bind(tracker)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        }
        for chunk in analyses.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::new(
                "INSERT INTO insight_answers (tracker_id, response_id, version) ",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(tracker)
                    .push_bind(a.response_id)
                    .push_bind(version);
            });
            q.build().execute(&mut *tx).await?;
        }
        let mentions: Vec<_> = analyses
            .iter()
            .flat_map(|a| a.mentions.iter().map(move |m| (a.response_id, m)))
            .collect();
        for chunk in mentions.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::new(
                "INSERT INTO insight_mentions (tracker_id, response_id, term, count, rank, list_position) ",
            );
            q.push_values(chunk, |mut b, (id, m)| {
                b.push_bind(tracker)
                    .push_bind(*id)
                    .push_bind(m.term.as_str())
                    .push_bind(m.count)
                    .push_bind(m.rank)
                    .push_bind(m.list_position);
            });
            q.build().execute(&mut *tx).await?;
        }
        let citations: Vec<_> = analyses
            .iter()
            .flat_map(|a| a.citations.iter().map(move |c| (a.response_id, c)))
            .collect();
        for chunk in citations.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::new(
                "INSERT INTO insight_citations (tracker_id, response_id, url, domain, structured) ",
            );
            q.push_values(chunk, |mut b, (id, c)| {
                b.push_bind(tracker)
                    .push_bind(*id)
                    .push_bind(c.url.as_str())
                    .push_bind(c.domain.as_str())
                    .push_bind(c.structured);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(analyses.len() as u64)
    }

    async fn analysis_progress(&self, tracker: TrackerId, version: i64) -> StoreResult<Progress> {
        let (analysed, total): (i64, i64) = sqlx::query_as(PROGRESS)
            .bind(tracker)
            .bind(version)
            .fetch_one(&self.pool)
            .await?;
        Ok(Progress { analysed, total })
    }

    async fn analysis_watermark(
        &self,
        tracker: TrackerId,
        version: i64,
    ) -> StoreResult<Option<i64>> {
        Ok(sqlx::query_scalar(WATERMARK)
            .bind(tracker)
            .bind(version)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn batch_answered_latest(&self, before: Option<&str>) -> StoreResult<Option<String>> {
        let latest = match before {
            None => sqlx::query_scalar(LATEST).fetch_one(&self.pool).await?,
            Some(before) => {
                sqlx::query_scalar(LATEST_BEFORE)
                    .bind(before)
                    .fetch_one(&self.pool)
                    .await?
            }
        };
        Ok(latest)
    }

    async fn batch_analysed(
        &self,
        tracker: TrackerId,
        version: i64,
        batch_key: &str,
    ) -> StoreResult<Vec<AnalysedAnswer>> {
        let answers = sqlx::query_as(BATCH_ANSWERS)
            .bind(tracker)
            .bind(version)
            .bind(batch_key)
            .fetch_all(&self.pool)
            .await?;
        let mentions: Vec<MentionRow> = sqlx::query_as(BATCH_MENTIONS)
            .bind(tracker)
            .bind(batch_key)
            .fetch_all(&self.pool)
            .await?;
        let domains = sqlx::query_as(BATCH_DOMAINS)
            .bind(tracker)
            .bind(batch_key)
            .fetch_all(&self.pool)
            .await?;
        Ok(assemble(answers, mentions, domains))
    }
}
