//! The due and running lists rebuilt from the job rows after PostgreSQL emptied them.
//!
//! `job_queue` (the due jobs) and `job_claims` (the running ones) are unlogged tables, kept in
//! line with the job rows by a trigger (migration 0017), so that claims and finishes write no
//! index entry and no WAL for them. PostgreSQL empties unlogged tables when it recovers from a
//! crash, and a promoted replica starts with them empty; `job_lists_intact` goes with them. The
//! job rows, which are logged, stay the truth: a process that finds the marker gone lists every
//! `queued` and `processing` job again (one pass over the job table, once per crash), under a
//! lock so that one process does it. A running job listed again keeps its lease but not its
//! worker (which the claims list alone records): its worker may still finish it, and if that
//! worker died with the server the sweep rescues the job when its lease runs out.

use super::Db;
use crate::store::StoreResult;

/// Key of the advisory lock under which the lists are rebuilt (mixed with the database's name:
/// other databases on the server rebuild their own lists).
const LISTS_LOCK: i64 = 0x7072_6f6d_7074_7103;

/// Whether the lists are whole; if not, rebuilds them. Answers whether a rebuild was done.
pub(super) async fn ensure_intact(pool: &Db) -> StoreResult<bool> {
    let intact: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_lists_intact)")
        .fetch_one(pool)
        .await?;
    if intact {
        return Ok(false);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1 # (hashtext(current_database())::bigint << 32))")
        .bind(LISTS_LOCK)
        .execute(&mut *tx)
        .await?;
    // Listed from the job rows as this transaction sees them; a job that changes meanwhile is
    // listed (or unlisted) by the trigger of the statement that changes it, and an entry that
    // outlives its job's state is skipped by every reader, which checks the job row.
    let rebuilt = sqlx::query_scalar(
        "WITH marked AS (
            INSERT INTO job_lists_intact VALUES (TRUE) ON CONFLICT DO NOTHING RETURNING intact
        ), due AS (
            INSERT INTO job_queue (job_id, model_id, next_attempt_at)
            SELECT id, model_id, next_attempt_at FROM prompt_jobs
            WHERE status = 'queued' AND EXISTS (SELECT 1 FROM marked)
            ON CONFLICT (job_id) DO NOTHING
        ), running AS (
            INSERT INTO job_claims (job_id, worker_id)
            SELECT id, NULL FROM prompt_jobs
            WHERE status = 'processing' AND EXISTS (SELECT 1 FROM marked)
            ON CONFLICT (job_id) DO NOTHING
        )
        SELECT EXISTS (SELECT 1 FROM marked)",
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    if rebuilt {
        tracing::warn!(
            "the database had emptied its lists of due and running jobs (a crash or a failover); listed them again from the jobs"
        );
    }
    Ok(rebuilt)
}
