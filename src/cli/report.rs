//! `promptq report`: a batch's tracker figures as a table, CSV, JSON (the body of
//! `GET /api/insights/report`) or Markdown. Analyses every pending answer first, so the
//! figures cover the whole batch.

use std::process::ExitCode;

use crate::app::{App, NamedCell, NamedDrift, TrackerReport};
use crate::insights::figures::TermFigures;

use super::table::{Align, Table, cell};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Md,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The batch to report (default: the latest with answers)
    #[arg(long)]
    batch_key: Option<String>,
    /// One tracker, by id or name (default: every tracker)
    #[arg(long)]
    tracker: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub async fn report(app: &App, args: ReportArgs) -> anyhow::Result<ExitCode> {
    let analysed = app.analyse_all().await?;
    if analysed > 0 {
        eprintln!("analysed {analysed} answers");
    }
    let reports = app
        .insights_report(args.tracker.as_deref(), args.batch_key.as_deref())
        .await?;
    if reports.is_empty() && args.format == Format::Table {
        outln!("no trackers yet: add one with `promptq trackers add NAME --term TERM …`")?;
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        Format::Json => {
            let body = serde_json::json!({"success": true, "reports": reports});
            outln!("{}", serde_json::to_string_pretty(&body)?)?;
        }
        Format::Csv => write_csv(&reports)?,
        Format::Table => {
            for r in &reports {
                outln!("{}", heading(r))?;
                table(&r.models, false).print()?;
                outln!()?;
                table(&r.prompts, true).print()?;
                outln!()?;
                outln!("Drift against {}:", previous(r))?;
                drift_table(&r.drift).print()?;
                outln!()?;
            }
        }
        Format::Md => {
            for r in &reports {
                outln!("## {}\n", heading(r))?;
                markdown(&r.models, false)?;
                outln!()?;
                markdown(&r.prompts, true)?;
                outln!()?;
                outln!("### Drift against {}\n", previous(r))?;
                drift_markdown(&r.drift)?;
                outln!()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Movers the demo's brief report lists.
const BRIEF_MOVERS: usize = 5;

/// The demo's short report of one tracker: the prompts whose answers name its terms (now or
/// in the previous batch), per model, and the biggest movers.
pub async fn brief(app: &App, tracker: &str) -> anyhow::Result<()> {
    app.analyse_all().await?;
    for r in app.insights_report(Some(tracker), None).await? {
        outln!("{}", heading(&r))?;
        let named: Vec<NamedCell> = r
            .prompts
            .iter()
            .filter(|c| {
                c.cell.terms.iter().any(|t| {
                    t.mentioned > 0 || t.change.as_ref().is_some_and(|c| c.previous_mentioned > 0)
                })
            })
            .cloned()
            .collect();
        table(&named, true).print()?;
        outln!()?;
        outln!(
            "Biggest movers against {} (drift 0 = same answers, 1 = nothing in common):",
            previous(&r)
        )?;
        drift_table(&r.drift[..r.drift.len().min(BRIEF_MOVERS)]).print()?;
    }
    Ok(())
}

fn previous(r: &TrackerReport) -> &str {
    r.previous_batch_key
        .as_deref()
        .unwrap_or("no earlier batch")
}

fn heading(r: &TrackerReport) -> String {
    format!(
        "Tracker '{}' (version {}), batch {} against {}: {}",
        r.tracker,
        r.version,
        r.batch_key.as_deref().unwrap_or("none yet"),
        r.previous_batch_key
            .as_deref()
            .unwrap_or("no earlier batch"),
        r.progress_text
    )
}

const COLUMNS: [&str; 9] = [
    "term",
    "runs",
    "rate",
    "share",
    "avg rank",
    "best rank",
    "list pos",
    "change",
    "p",
];

fn figures(runs: u64, t: &TermFigures) -> Vec<String> {
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    let (change, p) = match &t.change {
        Some(c) => (
            format!(
                "{:+.0} pts{}",
                c.delta * 100.0,
                if c.significant { " *" } else { "" }
            ),
            format!("{:.3}", c.p_value),
        ),
        None => ("-".to_owned(), "-".to_owned()),
    };
    vec![
        t.term.clone(),
        format!("{} of {runs}", t.mentioned),
        format!("{:.0}%", t.mention_rate * 100.0),
        format!("{:.0}%", t.share_of_voice * 100.0),
        opt(t.avg_rank),
        t.best_rank.map_or("-".to_owned(), |r| r.to_string()),
        t.best_list_position
            .map_or("-".to_owned(), |r| r.to_string()),
        change,
        p,
    ]
}

fn lead(c: &NamedCell, by_prompt: bool) -> Vec<String> {
    let model = c
        .model_name
        .clone()
        .unwrap_or_else(|| c.cell.model_id.to_string());
    let mut out = Vec::new();
    if by_prompt {
        let prompt = c.prompt_text.as_deref().unwrap_or("");
        out.push(format!(
            "{} {}",
            c.cell.prompt_id.unwrap_or_default(),
            cell(prompt, 40)
        ));
    }
    out.push(model);
    out
}

fn domains(c: &NamedCell) -> String {
    c.cell
        .top_domains
        .iter()
        .map(|d| format!("{} ({})", d.domain, d.answers))
        .collect::<Vec<_>>()
        .join(", ")
}

fn table(cells: &[NamedCell], by_prompt: bool) -> Table {
    let mut columns: Vec<(&'static str, Align)> = Vec::new();
    if by_prompt {
        columns.push(("prompt", Align::Left));
    }
    columns.push(("model", Align::Left));
    columns.extend(
        COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, if i == 0 { Align::Left } else { Align::Right })),
    );
    columns.push(("top domains", Align::Left));
    let mut table = Table::new(&columns);
    for c in cells {
        for (i, t) in c.cell.terms.iter().enumerate() {
            let mut row = lead(c, by_prompt);
            row.extend(figures(c.cell.runs, t));
            row.push(if i == 0 { domains(c) } else { String::new() });
            table.push(row);
        }
    }
    table
}

fn markdown(cells: &[NamedCell], by_prompt: bool) -> std::io::Result<()> {
    let mut header: Vec<&str> = Vec::new();
    if by_prompt {
        header.push("prompt");
    }
    header.push("model");
    header.extend(COLUMNS);
    header.push("top domains");
    outln!("| {} |", header.join(" | "))?;
    outln!("|{}", "---|".repeat(header.len()))?;
    for c in cells {
        for (i, t) in c.cell.terms.iter().enumerate() {
            let mut row = lead(c, by_prompt);
            row.extend(figures(c.cell.runs, t));
            row.push(if i == 0 { domains(c) } else { String::new() });
            let row: Vec<String> = row.iter().map(|v| v.replace('|', "\\|")).collect();
            outln!("| {} |", row.join(" | "))?;
        }
    }
    Ok(())
}

const DRIFT_COLUMNS: [&str; 6] = ["prompt", "model", "runs", "drift", "added", "dropped"];

fn drift_row(d: &NamedDrift) -> Vec<String> {
    let terms = |t: &[String]| {
        if t.is_empty() {
            "-".to_owned()
        } else {
            t.join(", ")
        }
    };
    vec![
        format!(
            "{} {}",
            d.drift.prompt_id,
            cell(d.prompt_text.as_deref().unwrap_or(""), 40)
        ),
        d.model_name
            .clone()
            .unwrap_or_else(|| d.drift.model_id.to_string()),
        format!("{} vs {}", d.drift.runs, d.drift.previous_runs),
        format!("{:.2}", d.drift.drift),
        terms(&d.drift.added),
        terms(&d.drift.dropped),
    ]
}

fn drift_table(rows: &[NamedDrift]) -> Table {
    let columns: Vec<(&'static str, Align)> = DRIFT_COLUMNS
        .iter()
        .map(|c| {
            let align = if matches!(*c, "runs" | "drift") {
                Align::Right
            } else {
                Align::Left
            };
            (*c, align)
        })
        .collect();
    let mut table = Table::new(&columns);
    for d in rows {
        table.push(drift_row(d));
    }
    table
}

fn drift_markdown(rows: &[NamedDrift]) -> std::io::Result<()> {
    outln!("| {} |", DRIFT_COLUMNS.join(" | "))?;
    outln!("|{}", "---|".repeat(DRIFT_COLUMNS.len()))?;
    for d in rows {
        let row: Vec<String> = drift_row(d).iter().map(|v| v.replace('|', "\\|")).collect();
        outln!("| {} |", row.join(" | "))?;
    }
    Ok(())
}

fn write_csv(reports: &[TrackerReport]) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
    out.write_record([
        "tracker",
        "version",
        "batch_key",
        "previous_batch_key",
        "scope",
        "prompt_id",
        "prompt_text",
        "model_id",
        "model_name",
        "term",
        "runs",
        "mentioned",
        "mention_rate",
        "mentions",
        "share_of_voice",
        "avg_rank",
        "best_rank",
        "avg_list_position",
        "best_list_position",
        "previous_runs",
        "previous_mentioned",
        "previous_rate",
        "delta",
        "p_value",
        "test",
        "significant",
        "top_domains",
        "similarity",
        "drift",
        "added_terms",
        "dropped_terms",
    ])?;
    let opt = |v: Option<String>| v.unwrap_or_default();
    for r in reports {
        for (scope, cells) in [("model", &r.models), ("prompt", &r.prompts)] {
            for c in cells {
                for t in &c.cell.terms {
                    let ch = t.change.as_ref();
                    out.write_record([
                        r.tracker.clone(),
                        r.version.to_string(),
                        opt(r.batch_key.clone()),
                        opt(r.previous_batch_key.clone()),
                        scope.to_owned(),
                        opt(c.cell.prompt_id.map(|v| v.to_string())),
                        opt(c.prompt_text.clone()),
                        c.cell.model_id.to_string(),
                        opt(c.model_name.clone()),
                        t.term.clone(),
                        c.cell.runs.to_string(),
                        t.mentioned.to_string(),
                        t.mention_rate.to_string(),
                        t.mentions.to_string(),
                        t.share_of_voice.to_string(),
                        opt(t.avg_rank.map(|v| v.to_string())),
                        opt(t.best_rank.map(|v| v.to_string())),
                        opt(t.avg_list_position.map(|v| v.to_string())),
                        opt(t.best_list_position.map(|v| v.to_string())),
                        opt(ch.map(|c| c.previous_runs.to_string())),
                        opt(ch.map(|c| c.previous_mentioned.to_string())),
                        opt(ch.map(|c| c.previous_rate.to_string())),
                        opt(ch.map(|c| c.delta.to_string())),
                        opt(ch.map(|c| c.p_value.to_string())),
                        opt(ch.map(|c| {
                            serde_json::to_value(c.test)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default()
                        })),
                        opt(ch.map(|c| c.significant.to_string())),
                        c.cell
                            .top_domains
                            .iter()
                            .map(|d| format!("{}:{}", d.domain, d.answers))
                            .collect::<Vec<_>>()
                            .join(";"),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    ])?;
                }
            }
        }
        // Drift rows: scope `drift`, one per prompt × model, biggest movers first; the term
        // columns stay empty and `runs` / `previous_runs` hold the two batches' runs.
        for d in &r.drift {
            let mut row = vec![String::new(); 27];
            row[0] = r.tracker.clone();
            row[1] = r.version.to_string();
            row[2] = opt(r.batch_key.clone());
            row[3] = opt(r.previous_batch_key.clone());
            row[4] = "drift".to_owned();
            row[5] = d.drift.prompt_id.to_string();
            row[6] = opt(d.prompt_text.clone());
            row[7] = d.drift.model_id.to_string();
            row[8] = opt(d.model_name.clone());
            row[10] = d.drift.runs.to_string();
            row[19] = d.drift.previous_runs.to_string();
            row.extend([
                d.drift.similarity.to_string(),
                d.drift.drift.to_string(),
                d.drift.added.join(";"),
                d.drift.dropped.join(";"),
            ]);
            out.write_record(&row)?;
        }
    }
    out.flush()?;
    Ok(())
}
