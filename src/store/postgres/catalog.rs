//! Models and prompts on PostgreSQL: their rows, the links between them, and the queued jobs
//! a deactivation or deletion skips in the same transaction.

use super::*;
use crate::store::{Catalog, SKIPPED_INACTIVE};

impl Catalog for PostgresStore {
    // ---- models

    async fn model_insert(&self, new: &NewModel, now: DateTime<Utc>) -> StoreResult<Model> {
        let row = sqlx::query(
            "INSERT INTO models (name, provider, model, params, active, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             RETURNING id, name, provider, model, params, active, created_at",
        )
        .bind(&new.name)
        .bind(new.provider.as_str())
        .bind(&new.model)
        .bind(&new.params)
        .bind(new.active)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(model_from_row(&row, "")?)
    }

    async fn model_get(&self, id: ModelId) -> StoreResult<Option<Model>> {
        let sql =
            format!("SELECT {MODEL_COLUMNS} FROM models WHERE id = $1 AND deleted_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| model_from_row(&row, "")).transpose()?)
    }

    async fn model_list(&self) -> StoreResult<Vec<Model>> {
        let sql =
            format!("SELECT {MODEL_COLUMNS} FROM models WHERE deleted_at IS NULL ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|row| model_from_row(row, ""))
            .collect::<Result<_, _>>()?)
    }

    async fn model_update(
        &self,
        id: ModelId,
        patch: &ModelPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Model>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE models SET
                name = COALESCE($2, name), provider = COALESCE($3, provider),
                model = COALESCE($4, model), params = COALESCE($5, params),
                active = COALESCE($6, active), updated_at = $7
             WHERE id = $1 AND deleted_at IS NULL
             RETURNING id, name, provider, model, params, active, created_at",
        )
        .bind(id)
        .bind(&patch.name)
        .bind(patch.provider.map(|p| p.as_str()))
        .bind(&patch.model)
        .bind(&patch.params)
        .bind(patch.active)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let model = model_from_row(&row, "")?;
        if !model.active {
            skip_queued(&mut tx, "model_id", model.id, now).await?;
        }
        tx.commit().await?;
        Ok(Some(model))
    }

    async fn model_delete(&self, id: ModelId, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "UPDATE models SET deleted_at = $2, active = FALSE, updated_at = $2
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if deleted {
            skip_queued(&mut tx, "model_id", id, now).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    // ---- prompts

    async fn prompt_insert(&self, new: &NewPrompt, now: DateTime<Utc>) -> StoreResult<Prompt> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO prompts (text, runs, active, schedule, created_at, updated_at, all_models)
             VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
        )
        .bind(&new.text)
        .bind(new.runs)
        .bind(new.active)
        .bind(&new.schedule)
        .bind(now)
        .bind(new.model_ids.is_none())
        .fetch_one(&mut *tx)
        .await?;
        if let Some(model_ids) = &new.model_ids {
            set_prompt_models(&mut tx, id, model_ids).await?;
        }
        set_prompt_version(&mut tx, id, &new.text, now).await?;
        let prompt = fetch_prompt(&mut tx, id).await?;
        tx.commit().await?;
        prompt.ok_or_else(|| StoreError::NotFound(format!("prompt {id} vanished")))
    }

    async fn prompt_get(&self, id: PromptId) -> StoreResult<Option<Prompt>> {
        let mut conn = self.pool.acquire().await?;
        fetch_prompt(&mut conn, id).await
    }

    async fn prompt_list(&self) -> StoreResult<Vec<Prompt>> {
        let sql = format!(
            "SELECT {PROMPT_COLUMNS} FROM prompts p WHERE p.deleted_at IS NULL ORDER BY p.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(prompt_from_row).collect::<Result<_, _>>()?)
    }

    async fn prompt_update(
        &self,
        id: PromptId,
        patch: &PromptPatch,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Prompt>> {
        let mut tx = self.pool.begin().await?;
        let (schedule_set, schedule) = match &patch.schedule {
            Some(value) => (true, value.clone()),
            None => (false, None),
        };
        let updated = sqlx::query(
            "UPDATE prompts SET
                text = COALESCE($2, text), runs = COALESCE($3, runs),
                active = COALESCE($4, active),
                schedule = CASE WHEN $5 THEN $6 ELSE schedule END, updated_at = $7,
                all_models = CASE WHEN $8 THEN TRUE WHEN $9 THEN FALSE ELSE all_models END
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(&patch.text)
        .bind(patch.runs)
        .bind(patch.active)
        .bind(schedule_set)
        .bind(schedule)
        .bind(now)
        .bind(patch.all_models)
        .bind(patch.model_ids.is_some())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        if patch.all_models || patch.model_ids.is_some() {
            sqlx::query("DELETE FROM prompt_models WHERE prompt_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(model_ids) = &patch.model_ids {
            set_prompt_models(&mut tx, id, model_ids).await?;
            // An unlinked model's queued jobs are skipped, as a deleted model's are.
            sqlx::query(
                "UPDATE prompt_jobs SET status = 'skipped', finished_at = $3, error_message = $2
                 WHERE id IN (SELECT job_id FROM job_queue) AND prompt_id = $1
                   AND status = 'queued' AND model_id NOT IN (SELECT model_id FROM prompt_models WHERE prompt_id = $1)",
            )
            .bind(id)
            .bind(SKIPPED_INACTIVE)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(text) = &patch.text {
            set_prompt_version(&mut tx, id, text, now).await?;
        }
        if patch.active == Some(false) {
            skip_queued(&mut tx, "prompt_id", id, now).await?;
        }
        let prompt = fetch_prompt(&mut tx, id).await?;
        tx.commit().await?;
        Ok(prompt)
    }

    async fn prompt_delete(&self, id: PromptId, now: DateTime<Utc>) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query(
            "UPDATE prompts SET deleted_at = $2, active = FALSE, updated_at = $2
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if deleted {
            skip_queued(&mut tx, "prompt_id", id, now).await?;
        }
        tx.commit().await?;
        Ok(deleted)
    }

    async fn prompts_schedulable(&self) -> StoreResult<Vec<ScheduledPrompt>> {
        let rows = sqlx::query(
            "SELECT id, schedule, last_batch_key FROM prompts
             WHERE active AND deleted_at IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ScheduledPrompt {
                    prompt_id: row.try_get("id")?,
                    schedule: row.try_get("schedule")?,
                    last_batch_key: row.try_get("last_batch_key")?,
                })
            })
            .collect()
    }
}

/// `queued → skipped` for the jobs of a prompt or model that just went away.
async fn skip_queued(
    tx: &mut PgTx,
    column: &'static str,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE prompt_jobs SET status = 'skipped', finished_at = $2, error_message = $3
         WHERE id IN (SELECT job_id FROM job_queue) AND {column} = $1 AND status = 'queued'"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(now)
        .bind(SKIPPED_INACTIVE)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Makes `text` the prompt's current version, reusing the version of an identical text.
async fn set_prompt_version(
    tx: &mut PgTx,
    prompt_id: PromptId,
    text: &str,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH version AS (
            INSERT INTO prompt_versions (prompt_id, hash, text, created_at)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT ON CONSTRAINT prompt_versions_key DO UPDATE SET hash = EXCLUDED.hash
            RETURNING id
        )
        UPDATE prompts SET version_id = (SELECT id FROM version) WHERE id = $1",
    )
    .bind(prompt_id)
    .bind(crate::store::prompt_version_hash(text))
    .bind(text)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl PostgresStore {
    /// Gives every prompt without a version (written before versions existed) its first one.
    pub(super) async fn version_unversioned_prompts(&self) -> StoreResult<()> {
        let rows = sqlx::query("SELECT id, text, created_at FROM prompts WHERE version_id IS NULL")
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for row in &rows {
            let text: String = row.try_get("text")?;
            set_prompt_version(
                &mut tx,
                row.try_get("id")?,
                &text,
                row.try_get("created_at")?,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Links a prompt to the given live models (its explicit list).
async fn set_prompt_models(tx: &mut PgTx, prompt_id: PromptId, ids: &[ModelId]) -> StoreResult<()> {
    let known: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM models WHERE id = ANY($1) AND deleted_at IS NULL")
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?;
    if let Some(unknown) = ids.iter().find(|id| !known.contains(id)) {
        return Err(StoreError::NotFound(format!("unknown model id {unknown}")));
    }
    sqlx::query(
        "INSERT INTO prompt_models (prompt_id, model_id)
         SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING",
    )
    .bind(prompt_id)
    .bind(ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn fetch_prompt(conn: &mut super::Conn, id: PromptId) -> StoreResult<Option<Prompt>> {
    let sql =
        format!("SELECT {PROMPT_COLUMNS} FROM prompts p WHERE p.id = $1 AND p.deleted_at IS NULL");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(prompt_from_row).transpose()?)
}
