//! Retention's SQL that both dialects share: what is prunable, how it is counted, and how one
//! batch's candidates are picked. Each backend only writes its batch's transaction.
//!
//! A batch is keyset-paged (ids above the last batch's) and picked outside any transaction,
//! so the write transaction that follows touches only those rows, for milliseconds; its
//! statements re-check [`ATTEMPT_PRUNABLE`] or [`JOB_PRUNABLE`], so a row that became live
//! meanwhile (a job retried while the prune runs) is kept.

use super::{PruneStep, PruneTarget};

/// An attempt (`a`) is prunable once it finished before `$1` and its job is not live (or gone).
pub(crate) const ATTEMPT_PRUNABLE: &str = "a.finished_at < $1 AND NOT EXISTS (SELECT 1 FROM \
     prompt_jobs j WHERE j.id = a.job_id AND j.status IN ('queued', 'processing', 'submitted'))";

/// A job (`j`) is prunable once it ended (never `queued`, `processing` or `submitted`) before `$1`.
pub(crate) const JOB_PRUNABLE: &str = "j.status IN ('succeeded', 'failed', 'skipped') \
     AND COALESCE(j.finished_at, j.created_at) < $1";

/// What a prune with cutoff `$1` would remove, in one statement (one snapshot): attempts, raw
/// bodies, jobs, and the responses of those jobs.
pub(crate) fn count_sql() -> String {
    format!(
        "SELECT
            (SELECT count(*) FROM job_attempts a WHERE {ATTEMPT_PRUNABLE}),
            (SELECT count(*) FROM responses WHERE created_at < $1 AND raw IS NOT NULL),
            (SELECT count(*) FROM prompt_jobs j WHERE {JOB_PRUNABLE}),
            (SELECT count(*) FROM responses r WHERE r.job_id IN
                (SELECT j.id FROM prompt_jobs j WHERE {JOB_PRUNABLE}))"
    )
}

/// The ids of the next batch of `target`: cutoff `$1`, after id `$2`, at most `$3`, by id.
pub(crate) fn candidates_sql(target: PruneTarget) -> String {
    match target {
        PruneTarget::Attempts => format!(
            "SELECT a.id FROM job_attempts a WHERE a.id > $2 AND {ATTEMPT_PRUNABLE} \
             ORDER BY a.id LIMIT $3"
        ),
        PruneTarget::RawBodies => "SELECT id FROM responses WHERE id > $2 AND created_at < $1 \
             AND raw IS NOT NULL ORDER BY id LIMIT $3"
            .to_owned(),
        PruneTarget::Jobs => format!(
            "SELECT j.id FROM prompt_jobs j WHERE j.id > $2 AND {JOB_PRUNABLE} \
             ORDER BY j.id LIMIT $3"
        ),
    }
}

/// The step a batch of candidates starts as: `None` (nothing left) without candidates.
pub(crate) fn step_of(ids: &[i64]) -> Option<PruneStep> {
    ids.last().map(|&last_id| PruneStep {
        last_id: Some(last_id),
        ..PruneStep::default()
    })
}

/// Counts as the count statement returns them; a negative count (never) is zero.
pub(crate) fn counts_of(row: (i64, i64, i64, i64)) -> super::PruneCounts {
    let n = |v: i64| v.max(0) as u64;
    super::PruneCounts {
        attempts: n(row.0),
        raw_bodies: n(row.1),
        jobs: n(row.2),
        responses: n(row.3),
    }
}
