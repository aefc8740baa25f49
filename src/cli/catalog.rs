//! Reading an import file (`models import FILE`, `prompts import FILE`) into an
//! [`app::Catalog`](crate::app::Catalog), and printing what the import did.
//!
//! The file is YAML (`.yaml`, `.yml`) or JSON (`.json`); any other name is sniffed: a file
//! whose first character is `{` is JSON, anything else YAML. Parse errors name the line and
//! column and stay on one line. What the items mean, and the import itself, belong to
//! [`App::import_catalog`].
//!
//! ```yaml
//! models:
//!   - name: gpt-mini
//!     provider: openai
//!     model: gpt-4o-mini
//!     params: { temperature: 0.2 }
//!   - name: local
//!     provider: mock
//!     model: mock-1
//!     active: false
//! prompts:
//!   - text: What is the best CRM for a small business?
//!     models: [gpt-mini]
//!     runs: 3
//!     schedule: "0 6 * * 1"
//!   - text: Recommend a password manager.   # every active model, once a day
//! ```

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::app::{App, Catalog, ImportCounts, ImportReport, ImportScope};

/// Larger import files are refused: a catalog is hand-written, this guards against a wrong file.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Yaml,
    Json,
}

/// Imports `file` and prints the counts.
pub async fn import(app: &App, file: &Path, scope: ImportScope) -> anyhow::Result<ExitCode> {
    let catalog = read_catalog(file)?;
    let skipped_prompts = catalog.prompts.len();
    let report = app
        .import_catalog(catalog, scope)
        .await
        .with_context(|| format!("{}", file.display()))?;
    print_report(&report, scope)?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if scope == ImportScope::Models && skipped_prompts > 0 {
        outln!(
            "the file's {skipped_prompts} prompts were checked, not imported (`promptq prompts import` does that)"
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &ImportReport, scope: ImportScope) -> std::io::Result<()> {
    let line = |what: &str, counts: &ImportCounts| {
        outln!(
            "{what}: {} created, {} updated, {} unchanged",
            counts.created,
            counts.updated,
            counts.unchanged
        )
    };
    line("models", &report.models)?;
    if scope == ImportScope::Everything {
        line("prompts", &report.prompts)?;
    }
    Ok(())
}

/// Reads and parses an import file; errors name the file and, for syntax, the line.
pub fn read_catalog(file: &Path) -> anyhow::Result<Catalog> {
    read_document(file)
}

/// Reads and parses any import file (catalogs, trackers) the same way.
pub fn read_document<T: serde::de::DeserializeOwned + Default>(file: &Path) -> anyhow::Result<T> {
    let shown = file.display();
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {shown}"))?
        .len();
    if size > MAX_FILE_BYTES {
        anyhow::bail!("{shown} is larger than {} MiB", MAX_FILE_BYTES >> 20);
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {shown}"))?;
    parse_document(&text, format_of(file, &text)).map_err(|err| anyhow::anyhow!("{shown}: {err}"))
}

fn format_of(file: &Path, text: &str) -> Format {
    match file
        .extension()
        .and_then(|ext| ext.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("json") => Format::Json,
        Some("yaml" | "yml") => Format::Yaml,
        _ if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{') =>
        {
            Format::Json
        }
        _ => Format::Yaml,
    }
}

#[cfg(test)]
fn parse_catalog(text: &str, format: Format) -> Result<Catalog, String> {
    parse_document(text, format)
}

fn parse_document<T: serde::de::DeserializeOwned + Default>(
    text: &str,
    format: Format,
) -> Result<T, String> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|err| err.to_string()),
        // An empty YAML file is an empty catalog, not an error.
        Format::Yaml if text.trim().is_empty() => Ok(T::default()),
        Format::Yaml => serde_saphyr::from_str(text).map_err(|err| yaml_error(&err)),
    }
}

/// serde-saphyr renders errors with a source snippet over several lines; the CLI prints one
/// line, so keep its message and say where.
fn yaml_error(err: &serde_saphyr::Error) -> String {
    let message = err
        .without_snippet()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    match err.location() {
        Some(at) if at.line() > 0 && !message.contains("line") => {
            format!("{message} (line {}, column {})", at.line(), at.column())
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "
models:
  - name: fast
    provider: mock
    model: mock-1
    params:
      latencyMs: 5
      failRate: 0.25
      extra: { top_p: 0.9 }
prompts:
  - text: |
      Two
      lines
    models: [fast]
    runs: 2
  - text: Plain
";

    #[test]
    fn yaml_reads_params_as_json() {
        let catalog = parse_catalog(YAML, Format::Yaml).expect("valid YAML");
        assert_eq!(
            catalog.models[0].params,
            serde_json::json!({"latencyMs": 5, "failRate": 0.25, "extra": {"top_p": 0.9}})
        );
        assert_eq!(catalog.prompts[0].text, "Two\nlines\n");
        assert_eq!(catalog.prompts[0].models, Some(vec!["fast".to_owned()]));
        assert_eq!(catalog.prompts[1].runs, 1);
        assert!(catalog.prompts[1].active);
        assert_eq!(catalog.prompts[1].models, None);
    }

    #[test]
    fn json_and_yaml_give_the_same_catalog() {
        let json = r#"{"models": [{"name": "fast", "provider": "mock", "model": "mock-1",
            "params": {"latencyMs": 5, "failRate": 0.25, "extra": {"top_p": 0.9}}}],
            "prompts": [{"text": "Two\nlines\n", "models": ["fast"], "runs": 2},
                        {"text": "Plain"}]}"#;
        assert_eq!(format_of(Path::new("catalog"), json), Format::Json);
        assert_eq!(
            parse_catalog(json, Format::Json),
            parse_catalog(YAML, Format::Yaml)
        );
    }

    #[test]
    fn syntax_errors_are_one_line_with_a_place() {
        let err =
            parse_catalog("models:\n  - name: [unclosed\n", Format::Yaml).expect_err("broken YAML");
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("line"), "{err}");
        let err =
            parse_catalog("prompts:\n  - txt: typo\n", Format::Yaml).expect_err("unknown field");
        assert!(err.contains("txt"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn empty_files_are_empty_catalogs() {
        assert_eq!(parse_catalog("\n", Format::Yaml), Ok(Catalog::default()));
    }
}
