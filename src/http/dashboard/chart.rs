//! The per-model chart of the overview: success rate and p50/p95 latency over the newest
//! batches, as inline SVG (no script, no image request, readable without colour thanks to the
//! numbers beside each bar).

use maud::{Markup, html};

use super::html::{millis, truncate};
use crate::app::ModelWindow;

/// The drawing is narrow enough to stay readable when a phone shrinks it to its width: each
/// model takes two lines (its name, then its bars), so no column of names eats the width.
const WIDTH: u32 = 500;
const ROW: u32 = 40;
const TOP: u32 = 24;
/// Where the success bars and the latency bars start, and how long a full bar is; the figures
/// follow each bar, with room for "100% (9999/9999)" and "999 ms / 999 ms".
const RATE_X: u32 = 0;
const RATE_W: u32 = 120;
const LATENCY_X: u32 = 250;
const LATENCY_W: u32 = 120;
/// Characters of a model's name shown (it has the whole width).
const NAME_CHARS: usize = 70;

/// The share of a model's finished jobs that succeeded; `None` before any finished.
pub fn success_rate(model: &ModelWindow) -> Option<f64> {
    let finished = model.summary.succeeded + model.summary.failed;
    (finished > 0).then(|| model.summary.succeeded as f64 / finished as f64)
}

/// The model's name as shown (its id when the row has none).
pub fn model_label(model: &ModelWindow) -> String {
    model
        .model_name
        .clone()
        .unwrap_or_else(|| format!("model #{}", model.model_id))
}

/// One entry per model: its name, then a success-rate bar and latency bars (p95 pale, p50
/// dark inside it), each followed by its figures. SVG elements are closed explicitly (`{}`):
/// in HTML, `<rect>` is not self-closing.
pub fn model_chart(models: &[ModelWindow]) -> Markup {
    let height = TOP + ROW * models.len() as u32 + 4;
    let slowest = models
        .iter()
        .filter_map(|m| m.latency_ms.p95)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |ms: i64| (ms as f64 / slowest as f64 * f64::from(LATENCY_W)).round();
    html! {
        svg.chart xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height)
            viewBox={ "0 0 " (WIDTH) " " (height) } role="img"
            aria-label="Success rate and latency per model" {
            text x=(RATE_X) y="14" font-weight="600" { "success rate" }
            text x=(LATENCY_X) y="14" font-weight="600" { "latency p50 / p95" }
            @for (i, model) in models.iter().enumerate() {
                @let y = TOP + ROW * i as u32;
                @let bars = y + 18;
                @let figures = bars + 11;
                @let name = model_label(model);
                text x="0" y=(y + 12) font-weight="600" { title { (name) } (truncate(&name, NAME_CHARS)) }
                rect x=(RATE_X) y=(bars) width=(RATE_W) height="14" fill="#eef0f4" {}
                @match success_rate(model) {
                    Some(rate) => {
                        rect x=(RATE_X) y=(bars) width=((rate * f64::from(RATE_W)).round()) height="14"
                            fill=(if rate >= 0.9 { "#3aa55d" } else { "#d64545" }) {}
                        text x=(RATE_X + RATE_W + 6) y=(figures) {
                            (format!("{:.0}%", rate * 100.0)) " (" (model.summary.succeeded) "/"
                            (model.summary.succeeded + model.summary.failed) ")"
                        }
                    },
                    None => text x=(RATE_X + RATE_W + 6) y=(figures) { "none finished" },
                }
                @match (model.latency_ms.p50, model.latency_ms.p95) {
                    (Some(p50), Some(p95)) => {
                        rect x=(LATENCY_X) y=(bars) width=(scale(p95)) height="14" fill="#c9d8f6" {}
                        rect x=(LATENCY_X) y=(bars + 4) width=(scale(p50)) height="6" fill="#2150a8" {}
                        text x=(LATENCY_X + LATENCY_W + 6) y=(figures) {
                            (millis(p50)) " / " (millis(p95))
                        }
                    },
                    _ => text x=(LATENCY_X + LATENCY_W + 6) y=(figures) { "no responses" },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::LatencyStats;
    use crate::domain::{JobStatus, Summary};

    fn model(name: &str, succeeded: i64, failed: i64, p50: Option<i64>) -> ModelWindow {
        let mut summary = Summary::default();
        summary.add(JobStatus::Succeeded, succeeded);
        summary.add(JobStatus::Failed, failed);
        ModelWindow {
            model_id: 1,
            model_name: Some(name.to_owned()),
            summary,
            latency_ms: LatencyStats {
                count: succeeded,
                p50,
                p95: p50.map(|ms| ms * 2),
            },
        }
    }

    #[test]
    fn names_are_escaped_and_figures_shown() {
        let svg = model_chart(&[
            model("<b>x</b>", 3, 1, Some(100)),
            model("quiet", 0, 0, None),
        ])
        .into_string();
        assert!(svg.contains("&lt;b&gt;x&lt;/b&gt;"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(svg.contains("75% (3/4)"), "{svg}");
        assert!(svg.contains("100 ms / 200 ms"), "{svg}");
        assert!(svg.contains("none finished"), "{svg}");
        assert!(svg.contains("no responses"), "{svg}");
    }
}
