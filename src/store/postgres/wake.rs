//! Wake-ups on PostgreSQL: a write that makes work announces it with `NOTIFY` in its own
//! transaction, and every process's listener wakes its sleeping workers.

use std::time::Duration;

use super::{PgTx, PostgresStore};

/// The channel on which enqueues and retries announce new work to sleeping workers.
pub const JOBS_CHANNEL: &str = "promptq_jobs";

/// Announces new work; delivered when (and only if) the transaction commits.
pub(super) async fn notify_jobs(tx: &mut PgTx) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(JOBS_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl PostgresStore {
    /// Listens on [`JOBS_CHANNEL`] and wakes `notify` on every announcement; reconnects after
    /// losing the server. `None` behind a transaction-mode pooler without a direct URL: a
    /// LISTEN needs a session of its own, so the workers poll instead.
    pub fn spawn_job_listener(
        &self,
        notify: std::sync::Arc<tokio::sync::Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let pool = match (&self.direct, self.pooled()) {
            (Some(direct), _) => sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(sqlx::postgres::PgConnectOptions::clone(direct)),
            (None, true) => return None,
            (None, false) => self.pool.inner().clone(),
        };
        Some(tokio::spawn(async move {
            loop {
                let listening = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(JOBS_CHANNEL).await?;
                    loop {
                        listener.recv().await?;
                        notify.notify_waiters();
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                tokio::select! {
                    result = listening => {
                        if let Err(err) = result {
                            tracing::debug!(error = %err, "job listener lost; reconnecting");
                        }
                        // Work may have been announced while we were deaf.
                        notify.notify_waiters();
                    }
                    () = stop.cancelled() => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }))
    }
}
