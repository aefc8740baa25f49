//! The store's contract for insights: trackers, and the rows the analysis pass derives from
//! answers for each of them (mentions, citations, and which answers it has analysed under
//! which tracker version). Implemented by both backends (`sqlite/insights.rs`,
//! `postgres/insights.rs`) over the SQL they share (`insights_sql.rs`); the conformance suite
//! runs on both.
//!
//! The derived rows are a cache of what `insights::matcher` and `insights::links` find: every
//! write of an answer's analysis replaces that answer's rows for that tracker, in one
//! transaction, so a pass that runs twice (two processes, a crash between batches) leaves the
//! same rows. Retention deletes them with their answers.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::insights::{
    AnalysedAnswer, Analysis, AnswerText, NewTracker, Progress, Tracker, TrackerId,
};

/// Trackers and the analysis they drive.
pub trait Insights: Send + Sync {
    /// Creates a tracker at version 1; a taken name is [`super::StoreError::Conflict`].
    fn tracker_insert(
        &self,
        new: &NewTracker,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Tracker>> + Send;

    /// A tracker by id.
    fn tracker_get(
        &self,
        id: TrackerId,
    ) -> impl Future<Output = StoreResult<Option<Tracker>>> + Send;

    /// Every tracker, by id.
    fn tracker_list(&self) -> impl Future<Output = StoreResult<Vec<Tracker>>> + Send;

    /// Replaces a tracker's name and terms; a change of the terms bumps its version (its
    /// answers are then analysed again), a rename alone does not. `None` when no such tracker.
    fn tracker_update(
        &self,
        id: TrackerId,
        new: &NewTracker,
        now: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<Tracker>>> + Send;

    /// Deletes a tracker and every row derived for it, atomically; `false` when no such tracker.
    fn tracker_delete(&self, id: TrackerId) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Up to `limit` answers with an id above `after`, by id, not yet analysed for `tracker`
    /// under `version`.
    fn answers_unanalysed(
        &self,
        tracker: TrackerId,
        version: i64,
        after: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<AnswerText>>> + Send;

    /// Replaces, in one transaction, the derived rows of each analysed answer for `tracker`
    /// and marks it analysed under `version`. Fenced by the version: when the tracker was
    /// changed or deleted meanwhile, nothing is written and 0 is returned (the pass starts
    /// over under the new version); otherwise the number of answers written. An answer deleted
    /// meanwhile is skipped. On PostgreSQL one process writes a tracker's analyses at a time:
    /// another process's write meanwhile also returns 0 (that process is doing the work).
    fn analyses_write(
        &self,
        tracker: TrackerId,
        version: i64,
        analyses: &[Analysis],
    ) -> impl Future<Output = StoreResult<u64>> + Send;

    /// How many answers are analysed under `version`, of all stored answers.
    fn analysis_progress(
        &self,
        tracker: TrackerId,
        version: i64,
    ) -> impl Future<Output = StoreResult<Progress>> + Send;

    /// The highest answer id analysed for `tracker` under `version`, if any: where the
    /// analysis pass looks for new answers first.
    fn analysis_watermark(
        &self,
        tracker: TrackerId,
        version: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// The latest batch key with stored answers (batch keys sort by time), or the latest one
    /// before `before`.
    fn batch_answered_latest(
        &self,
        before: Option<&str>,
    ) -> impl Future<Output = StoreResult<Option<String>>> + Send;

    /// The answers of `batch_key` analysed for `tracker` under `version`, with their mentions
    /// and cited domains, by answer id.
    fn batch_analysed(
        &self,
        tracker: TrackerId,
        version: i64,
        batch_key: &str,
    ) -> impl Future<Output = StoreResult<Vec<AnalysedAnswer>>> + Send;
}
