//! `trackers add | list | show | edit | delete | import`: the groups of terms that reports look
//! for in answers, through the tracker use cases of [`App`].
//!
//! A term is given on the command line as `NAME` or `NAME=PATTERN,PATTERN,…`, a pattern being a
//! literal alias or a `/regular expression/`: `--term HubSpot --term 'Salesforce=Salesforce,SFDC'`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::{App, TrackerPatch, TrackerView, TrackersFile};
use crate::insights::Term;

use super::table::{Align, Table, cell};

#[derive(Debug, clap::Subcommand)]
pub enum TrackersCommand {
    /// Add a tracker: a named group of terms
    Add {
        name: String,
        /// A term: `NAME`, or `NAME=PATTERN,PATTERN` (a pattern is an alias or a /regex/);
        /// repeatable, in the order the reports list them
        #[arg(long = "term", value_name = "TERM", required = true)]
        terms: Vec<String>,
    },
    /// List the trackers with how far their analysis got
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one tracker (by id or name) as JSON
    Show { tracker: String },
    /// Change a tracker; new terms replace the old ones and its answers are analysed again
    Edit {
        tracker: String,
        #[arg(long)]
        name: Option<String>,
        /// The new terms (repeatable), as for `add`
        #[arg(long = "term", value_name = "TERM")]
        terms: Vec<String>,
    },
    /// Delete a tracker and what was derived for it (the answers stay)
    Delete { tracker: String },
    /// Create or update the trackers of a YAML or JSON file
    ///
    /// The file has a list `trackers:`, each with a name and terms (each a name and optional
    /// patterns). Trackers are matched by name: missing ones are created, changed ones updated
    /// (and their answers analysed again), none deleted. The whole file is checked first.
    Import { file: PathBuf },
}

/// `NAME` or `NAME=PATTERN,PATTERN`. A regex containing a comma is best given in a file.
fn parse_term(arg: &str) -> Term {
    match arg.split_once('=') {
        Some((name, patterns)) => Term {
            name: name.trim().to_owned(),
            patterns: patterns
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
        },
        None => Term {
            name: arg.trim().to_owned(),
            patterns: Vec::new(),
        },
    }
}

pub async fn run(app: &App, command: TrackersCommand) -> anyhow::Result<ExitCode> {
    match command {
        TrackersCommand::Add { name, terms } => {
            let terms: Vec<Term> = terms.iter().map(|t| parse_term(t)).collect();
            let tracker = app.create_tracker(&name, &terms).await?;
            outln!(
                "added tracker {} '{}' with {} terms; its answers are analysed in the background \
                 (or by `promptq report`)",
                tracker.id,
                tracker.name,
                tracker.terms.len()
            )?;
        }
        TrackersCommand::List { json } => {
            let trackers = app.trackers().await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&trackers)?)?;
            } else {
                print_table(&trackers)?;
            }
        }
        TrackersCommand::Show { tracker } => {
            let tracker = app.tracker(&tracker).await?;
            outln!("{}", serde_json::to_string_pretty(&tracker)?)?;
        }
        TrackersCommand::Edit {
            tracker,
            name,
            terms,
        } => {
            let id = app.tracker(&tracker).await?.tracker.id;
            let patch = TrackerPatch {
                name,
                terms: (!terms.is_empty()).then(|| terms.iter().map(|t| parse_term(t)).collect()),
            };
            if patch == TrackerPatch::default() {
                anyhow::bail!("nothing to change: give --name or --term");
            }
            let tracker = app.update_tracker(id, patch).await?;
            outln!(
                "updated tracker {} '{}' (version {})",
                tracker.id,
                tracker.name,
                tracker.version
            )?;
        }
        TrackersCommand::Delete { tracker } => {
            let found = app.tracker(&tracker).await?.tracker;
            app.delete_tracker(found.id).await?;
            outln!(
                "deleted tracker {} '{}'; the answers stay",
                found.id,
                found.name
            )?;
        }
        TrackersCommand::Import { file } => {
            let parsed: TrackersFile = super::catalog::read_document(&file)?;
            let (created, updated, unchanged) = app
                .import_trackers(parsed)
                .await
                .map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
            outln!("trackers: {created} created, {updated} updated, {unchanged} unchanged")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(trackers: &[TrackerView]) -> anyhow::Result<()> {
    if trackers.is_empty() {
        outln!("no trackers yet: add one with `promptq trackers add NAME --term TERM …`")?;
        return Ok(());
    }
    let mut table = Table::new(&[
        ("id", Align::Right),
        ("name", Align::Left),
        ("version", Align::Right),
        ("analysed", Align::Left),
        ("terms", Align::Left),
    ]);
    for view in trackers {
        let t = &view.tracker;
        let terms: Vec<&str> = t.terms.iter().map(|t| t.name.as_str()).collect();
        table.push(vec![
            t.id.to_string(),
            cell(&t.name, 30),
            t.version.to_string(),
            format!("{} of {}", view.progress.analysed, view.progress.total),
            cell(&terms.join(", "), 60),
        ]);
    }
    table.print()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn terms_from_the_command_line() {
        let t = super::parse_term("Salesforce= Salesforce, SFDC ,");
        assert_eq!(t.name, "Salesforce");
        assert_eq!(t.patterns, vec!["Salesforce", "SFDC"]);
        assert!(super::parse_term("HubSpot").patterns.is_empty());
    }
}
