//! `jobs show | retry | cancel`: one job whole, or put failed or skipped jobs back in the
//! queue, or skip queued ones, one job or a whole batch at a time, through [`App::retry`] and
//! [`App::cancel`].

use std::process::ExitCode;

use crate::app::App;
use crate::app::{JobSelector, counted};
use crate::domain::{BatchKey, JobId, JobStatus};

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// One job whole: its state, each attempt (outcome, error class), tokens, cost, the answer
    Show {
        /// The job's id (an unknown id is an error, exit code 1)
        id: JobId,
        /// Print the JSON of GET /api/jobs/{id} instead
        #[arg(long)]
        json: bool,
    },
    /// Queue failed or skipped jobs again, with a fresh budget of attempts
    Retry {
        #[command(flatten)]
        target: Target,
        /// With --batch-key: only jobs in this state (default: failed and skipped)
        #[arg(long, requires = "batch_key", value_parser = ["failed", "skipped"])]
        status: Option<String>,
    },
    /// Skip queued jobs so that no worker runs them (only a queued job can be cancelled)
    Cancel {
        #[command(flatten)]
        target: Target,
    },
}

/// One job or one batch.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// This job (an unknown id, or a job in the wrong state, is an error)
    #[arg(long)]
    job_id: Option<JobId>,
    /// Every job of this batch (YYYY-MM-DD or YYYY-MM-DDTHH:MM)
    #[arg(long)]
    batch_key: Option<BatchKey>,
}

impl Target {
    fn selector(self, status: Option<JobStatus>) -> JobSelector {
        match (self.job_id, self.batch_key) {
            (Some(id), _) => JobSelector::One(id),
            // clap's group guarantees one of the two.
            (None, batch_key) => JobSelector::Batch {
                batch_key: batch_key.map(String::from).unwrap_or_default(),
                status,
            },
        }
    }
}

pub async fn run(app: &App, command: JobsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::Show { id, json } => return super::show::show(app, id, json).await,
        JobsCommand::Retry { target, status } => {
            let status = status.map(|s| s.parse::<JobStatus>()).transpose()?;
            let retried = app.retry(&target.selector(status)).await?;
            outln!("{} queued again", counted(retried, "job", "jobs"))?;
        }
        JobsCommand::Cancel { target } => {
            let cancelled = app.cancel(&target.selector(None)).await?;
            outln!("{} cancelled (skipped)", counted(cancelled, "job", "jobs"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
