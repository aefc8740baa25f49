//! `promptq prune`: counts, and with `--yes` removes, what is older than an age.

use std::process::ExitCode;

use crate::app::{App, PruneReport, PruneRequest};

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Age of what to remove: a number and a unit, `d` (days), `h` or `m`, e.g. `90d`
    #[arg(long, value_parser = parse_age)]
    pub older_than: chrono::Duration,
    /// Also delete finished jobs (succeeded, failed, skipped) with their answers; never a job
    /// that is queued or processing
    #[arg(long)]
    pub jobs: bool,
    /// Remove for real; without it prune only prints what it would remove
    #[arg(long, alias = "apply")]
    pub yes: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// `90d`, `12h`, `30m` → a duration.
pub fn parse_age(text: &str) -> Result<chrono::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not an age like 90d, 12h or 30m"))?;
    if n <= 0 {
        return Err("the age must be positive".into());
    }
    let age = match unit {
        "d" => chrono::Duration::try_days(n),
        "h" => chrono::Duration::try_hours(n),
        "m" => chrono::Duration::try_minutes(n),
        _ => return Err(format!("unknown unit '{unit}' in '{text}': use d, h or m")),
    };
    age.filter(|age| *age <= chrono::Duration::days(36_500))
        .ok_or_else(|| format!("'{text}' is too long: at most 36500 days"))
}

pub async fn prune(app: &App, args: PruneArgs) -> anyhow::Result<ExitCode> {
    let report = app
        .prune(
            PruneRequest {
                older_than: args.older_than,
                jobs: args.jobs,
                apply: args.yes,
            },
            chrono::Utc::now(),
        )
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        print_report(&report, args.jobs)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &PruneReport, jobs: bool) -> std::io::Result<()> {
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let cutoff = report.cutoff.format("%Y-%m-%d %H:%M UTC");
    let counts = report.counts;
    outln!("prune {verb} what is older than {cutoff}:")?;
    outln!("  attempt records      {}", counts.attempts)?;
    outln!("  raw provider bodies  {}", counts.raw_bodies)?;
    if jobs {
        outln!("  finished jobs        {}", counts.jobs)?;
        outln!("  their answers        {}", counts.responses)?;
    }
    if report.dry_run {
        outln!("dry run: nothing was changed; add --yes to remove these")?;
    } else {
        outln!("in {} transactions", report.batches)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages_parse_with_their_unit_and_bad_ones_say_why() {
        assert_eq!(parse_age("90d"), Ok(chrono::Duration::days(90)));
        assert_eq!(parse_age("12h"), Ok(chrono::Duration::hours(12)));
        assert_eq!(parse_age("30m"), Ok(chrono::Duration::minutes(30)));
        for bad in [
            "",
            "d",
            "90",
            "90y",
            "-1d",
            "0d",
            "99999999999999999999d",
            "40000d",
        ] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }
}
