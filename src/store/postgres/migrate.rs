//! Migrating through a transaction-mode pooler when no direct URL is given.
//!
//! sqlx's migrator takes a session-level advisory lock and runs each migration in a
//! transaction of its own: behind a pooler the lock stays with whichever server connection
//! took it (blocking every later migration, even one on the direct URL), and its named
//! statements collide. Here every pending migration runs in one transaction under a
//! transaction-level lock, which the server drops at commit or rollback, and the bookkeeping
//! is sqlx's own table, so a later run of sqlx's migrator on a direct URL agrees.

use std::time::Instant;

use sqlx::migrate::{MigrateError, Migrator};

use super::Db;
use crate::store::{StoreError, StoreResult};

/// sqlx's key for its migration lock is derived from the database name; this one only has to
/// keep two pooled migrations apart.
const MIGRATE_LOCK: i64 = 0x7072_6f6d_7074_7102;

pub(super) async fn in_one_transaction(db: &Db, migrator: &Migrator) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
            success BOOLEAN NOT NULL,
            checksum BYTEA NOT NULL,
            execution_time BIGINT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *tx)
            .await?;
    if let Some((version, ..)) = applied.iter().find(|(_, success, _)| !success) {
        return Err(StoreError::Migrate(MigrateError::Dirty(*version)));
    }
    for migration in migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        match applied
            .iter()
            .find(|(version, ..)| *version == migration.version)
        {
            Some((_, _, checksum)) if checksum[..] != migration.checksum[..] => {
                return Err(StoreError::Migrate(MigrateError::VersionMismatch(
                    migration.version,
                )));
            }
            Some(_) => continue,
            None => {}
        }
        let started = Instant::now();
        sqlx::raw_sql(migration.sql.clone())
            .execute(&mut *tx)
            .await
            .map_err(|err| MigrateError::ExecuteMigration(err, migration.version))?;
        let elapsed = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, $2, TRUE, $3, $4)",
        )
        .bind(migration.version)
        .bind(migration.description.as_ref())
        .bind(migration.checksum.as_ref())
        .bind(elapsed)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
