//! Wake-ups on SQLite: another process's commits to the file, seen through `PRAGMA data_version`.
//!
//! SQLite has no NOTIFY. A connection's `data_version` changes whenever another connection
//! commits to the file, and reading it touches no table: one look every [`WATCH_EVERY`] on a
//! connection of the watch's own tells a sleeping worker that a `promptq cron` or `serve`
//! beside it may have enqueued, instead of the pool's next poll (a second later). This
//! process's own writes count as another connection's too; a wake with nothing to claim costs
//! one read (a claim looks for due jobs on a reader before it takes the write lock).

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnection;
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::SqliteStore;

/// How often the watch looks at the file's version.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

impl SqliteStore {
    /// Wakes `notify` whenever another connection committed to the file, until `stop`.
    pub fn spawn_change_watch(
        &self,
        notify: Arc<Notify>,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let options = self.readers.connect_options();
        tokio::spawn(async move {
            let mut watch: Option<SqliteConnection> = None;
            let mut seen: Option<i64> = None;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                    () = stop.cancelled() => break,
                }
                if watch.is_none() {
                    match options.connect().await {
                        Ok(connection) => watch = Some(connection),
                        Err(err) => {
                            tracing::debug!(error = %err, "could not open the change watch");
                            continue;
                        }
                    }
                }
                let Some(connection) = watch.as_mut() else {
                    continue;
                };
                match sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                    .fetch_one(&mut *connection)
                    .await
                {
                    // The first look (at start, or after reopening) wakes too: commits made
                    // before it are not known to have been seen.
                    Ok(version) => {
                        if seen != Some(version) {
                            notify.notify_waiters();
                        }
                        seen = Some(version);
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "change watch lost; reopening");
                        watch = None;
                        seen = None;
                    }
                }
            }
            if let Some(connection) = watch {
                let _ = connection.close().await;
            }
        })
    }
}
