//! `promptq run --dry-run`: what the next run would enqueue, per model, and what it would
//! cost, estimated before anything is spent. Reads only: no job is created and no prompt is
//! marked as run.
//!
//! A job's answer is estimated from the mean token counts of its model's recent answers
//! ([`RECENT_DAYS`]) to the same prompt; without those, from the model's answers to any prompt;
//! without those, it is unknown. It is priced at the model's `params.price`, at the batch
//! discount when `params.batch` is true (the model's answers then come through a Batch API).

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use serde::Serialize;

use crate::domain::price::tokens_cost;
use crate::domain::{BatchKey, Model, ModelId, PromptId};
use crate::schedule::{self, Trigger};
use crate::store::TokenAverage;

use super::{App, AppError, AppResult};

/// How far back answers count for an estimate.
pub const RECENT_DAYS: i64 = 30;

/// The estimate of one model's share of the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEstimate {
    pub model_id: ModelId,
    pub model_name: String,
    /// Jobs the run would create on this model.
    pub jobs: i64,
    /// Of those, jobs estimated from answers to the same prompt, and from the model's answers
    /// to other prompts; the rest are unknown.
    pub from_same_prompt: i64,
    pub from_model_average: i64,
    pub unknown: i64,
    /// Mean tokens per estimated answer (prompt, completion).
    pub prompt_tokens: Option<f64>,
    pub completion_tokens: Option<f64>,
    /// Priced through a Batch API (`params.batch`).
    pub batch: bool,
    /// The estimated cost of the known jobs; `None` without a price or without any estimate.
    pub cost_usd: Option<f64>,
}

/// The answer of a dry run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    pub batch_key: String,
    /// Prompts the run would schedule.
    pub prompt_count: i64,
    pub jobs: i64,
    pub models: Vec<ModelEstimate>,
    /// The sum of the models' estimates; a lower bound when `unknownJobs` is not 0.
    pub cost_usd: f64,
    /// Jobs whose cost cannot be estimated (no price, or no earlier answer of their model).
    pub unknown_jobs: i64,
}

/// Mean tokens of a set of answers.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    answers: i64,
    prompt: f64,
    cached: f64,
    completion: f64,
}

impl Mean {
    fn of(average: &TokenAverage) -> Mean {
        Mean {
            answers: average.answers,
            prompt: average.prompt,
            cached: average.cached,
            completion: average.completion,
        }
    }

    /// Both means, weighted by their answers.
    fn merge(self, other: Mean) -> Mean {
        let n = self.answers + other.answers;
        if n == 0 {
            return self;
        }
        let w = |a: f64, b: f64| (a * self.answers as f64 + b * other.answers as f64) / n as f64;
        Mean {
            answers: n,
            prompt: w(self.prompt, other.prompt),
            cached: w(self.cached, other.cached),
            completion: w(self.completion, other.completion),
        }
    }
}

impl App {
    /// What `run` (or `cron`) would enqueue now, or for `batch_key`, and what it would cost.
    pub async fn dry_run(&self, batch_key: Option<BatchKey>) -> AppResult<DryRun> {
        let store = self.store();
        let trigger = match batch_key {
            Some(batch_key) => Trigger::Backfill { batch_key },
            None => Trigger::External {
                now: store.clock_now().await?,
            },
        };
        let (scheduled, prompts, models) = tokio::try_join!(
            store.prompts_schedulable(),
            store.prompt_list(),
            store.model_list()
        )?;
        let plan = schedule::plan(&scheduled, self.default_schedule(), trigger)
            .map_err(|err| AppError::BadInput(err.to_string()))?;
        let models: BTreeMap<ModelId, &Model> = models
            .iter()
            .filter(|m| m.active)
            .map(|m| (m.id, m))
            .collect();
        let prompts: HashMap<PromptId, _> = prompts.iter().map(|p| (p.id, p)).collect();
        // Runs per (model, prompt) the plan creates.
        let mut planned: BTreeMap<ModelId, Vec<(PromptId, i64)>> = BTreeMap::new();
        let mut prompt_count = 0;
        for batch in &plan.batches {
            let Some(prompt) = prompts.get(&batch.prompt_id).filter(|p| p.active) else {
                continue;
            };
            let mut any = false;
            for model in prompt.model_ids.iter().filter(|m| models.contains_key(m)) {
                planned
                    .entry(*model)
                    .or_default()
                    .push((prompt.id, i64::from(prompt.runs)));
                any = true;
            }
            prompt_count += i64::from(any);
        }
        let ids: Vec<ModelId> = planned.keys().copied().collect();
        let since = Utc::now() - chrono::Duration::days(RECENT_DAYS);
        let averages = store.token_averages(&ids, since).await?;
        let mut by_pair: HashMap<(ModelId, PromptId), Mean> = HashMap::new();
        let mut by_model: HashMap<ModelId, Mean> = HashMap::new();
        for average in &averages {
            let mean = Mean::of(average);
            by_pair.insert((average.model_id, average.prompt_id), mean);
            let entry = by_model.entry(average.model_id).or_default();
            *entry = entry.merge(mean);
        }
        let estimates: Vec<ModelEstimate> = planned
            .iter()
            .filter_map(|(id, runs)| {
                let model = models.get(id)?;
                Some(estimate(model, runs, &by_pair, by_model.get(id).copied()))
            })
            .collect();
        Ok(DryRun {
            batch_key: plan.batch_key.to_string(),
            prompt_count,
            jobs: estimates.iter().map(|m| m.jobs).sum(),
            cost_usd: estimates.iter().filter_map(|m| m.cost_usd).sum(),
            unknown_jobs: estimates
                .iter()
                .map(|m| {
                    if m.cost_usd.is_some() {
                        m.unknown
                    } else {
                        m.jobs
                    }
                })
                .sum(),
            models: estimates,
        })
    }
}

/// One model's estimate for its planned `(prompt, runs)`.
fn estimate(
    model: &Model,
    runs: &[(PromptId, i64)],
    by_pair: &HashMap<(ModelId, PromptId), Mean>,
    model_mean: Option<Mean>,
) -> ModelEstimate {
    let batch = model
        .params
        .get("batch")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let price = model.spec.spend().price;
    let (mut same, mut fallback, mut unknown) = (0, 0, 0);
    let mut total = Mean::default();
    for (prompt, n) in runs {
        let mean = match (by_pair.get(&(model.id, *prompt)), model_mean) {
            (Some(mean), _) => {
                same += n;
                *mean
            }
            (None, Some(mean)) => {
                fallback += n;
                mean
            }
            (None, None) => {
                unknown += n;
                continue;
            }
        };
        // Weighted by the jobs it stands for, not by the answers behind it.
        total = total.merge(Mean {
            answers: *n,
            ..mean
        });
    }
    let known = same + fallback;
    let cost_usd = price.filter(|_| known > 0).map(|price| {
        known as f64 * tokens_cost(&price, total.prompt, total.cached, total.completion, batch)
    });
    ModelEstimate {
        model_id: model.id,
        model_name: model.name.clone(),
        jobs: runs.iter().map(|(_, n)| n).sum(),
        from_same_prompt: same,
        from_model_average: fallback,
        unknown,
        prompt_tokens: (known > 0).then_some(total.prompt),
        completion_tokens: (known > 0).then_some(total.completion),
        batch,
        cost_usd,
    }
}
