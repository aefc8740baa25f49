//! The tracker page's trend chart: one share (0–100 %) per model over the newest batches, as
//! inline SVG lines with axes and a legend. Each model has its own colour, dash pattern and
//! marker shape, so that several models stay apart, also without colour.

use maud::{Markup, html};

use super::html::truncate;

const WIDTH: f64 = 500.0;
const PLOT_X: f64 = 48.0;
const PLOT_W: f64 = 432.0;
const PLOT_Y: f64 = 28.0;
const PLOT_H: f64 = 160.0;
/// Height of a legend row, and how many entries a row holds.
const LEGEND_ROW: f64 = 20.0;
const LEGEND_COLUMNS: usize = 3;
const LEGEND_CHARS: usize = 18;
/// The most batch labels on the x axis (more would overlap).
const X_LABELS: usize = 5;

const COLOURS: [&str; 8] = [
    "#2150a8", "#d64545", "#3aa55d", "#b7791f", "#7b3fa0", "#0f8a8a", "#555555", "#c0487a",
];
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

/// One line of the chart: a name and a value (0 to 1) per batch, `None` where it has none.
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

/// A batch key as the axis shows it: a daily key without its year.
fn short(key: &str) -> &str {
    if key.len() >= 10 && key.as_bytes().get(4) == Some(&b'-') {
        &key[5..]
    } else {
        key
    }
}

fn marker(shape: usize, x: f64, y: f64, colour: &str) -> Markup {
    match shape % 3 {
        0 => html! { circle cx=(x) cy=(y) r="3" fill=(colour) {} },
        1 => html! { rect x=(x - 3.0) y=(y - 3.0) width="6" height="6" fill=(colour) {} },
        _ => html! {
            path d=(format!("M{:.1} {:.1}L{:.1} {:.1}L{:.1} {:.1}Z", x, y - 4.0, x + 4.0, y + 3.0, x - 4.0, y + 3.0))
                fill=(colour) {}
        },
    }
}

/// The chart titled `title` over `batches` (oldest first).
pub fn trend_chart(title: &str, batches: &[String], series: &[Series]) -> Markup {
    let legend_rows = series.len().div_ceil(LEGEND_COLUMNS).max(1);
    let axis_y = PLOT_Y + PLOT_H;
    let height = axis_y + 34.0 + LEGEND_ROW * legend_rows as f64;
    let n = batches.len();
    let x_of = |i: usize| {
        if n <= 1 {
            PLOT_X + PLOT_W / 2.0
        } else {
            PLOT_X + PLOT_W * i as f64 / (n - 1) as f64
        }
    };
    let y_of = |v: f64| axis_y - PLOT_H * v.clamp(0.0, 1.0);
    let step = n.div_ceil(X_LABELS).max(1);
    let labelled: Vec<usize> = (0..n)
        .filter(|i| i % step == 0 || *i == n - 1)
        .filter(|i| *i == n - 1 || n - 1 - i >= step.div_ceil(2).max(1))
        .collect();
    html! {
        svg.chart.trend xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(height)
            viewBox={ "0 0 " (WIDTH) " " (height) } role="img" aria-label=(title) {
            text x="0" y="14" font-weight="600" { (title) }
            @for pct in [0u32, 25, 50, 75, 100] {
                @let y = y_of(f64::from(pct) / 100.0);
                line x1=(PLOT_X) x2=(PLOT_X + PLOT_W) y1=(y) y2=(y)
                    stroke=(if pct == 0 { "#888" } else { "#e1e4ea" }) {}
                text x=(PLOT_X - 4.0) y=(y + 4.0) text-anchor="end" { (pct) "%" }
            }
            @for i in &labelled {
                @let anchor = if n > 1 && *i == 0 { "start" } else if n > 1 && *i == n - 1 { "end" } else { "middle" };
                text.x x=(x_of(*i)) y=(axis_y + 16.0) text-anchor=(anchor) { (short(&batches[*i])) }
            }
            @for (k, s) in series.iter().enumerate() {
                @let colour = COLOURS[k % COLOURS.len()];
                @let points: Vec<(f64, f64)> = s.values.iter().take(n).enumerate()
                    .filter_map(|(i, v)| v.map(|v| (x_of(i), y_of(v)))).collect();
                @if points.len() > 1 {
                    polyline fill="none" stroke=(colour) stroke-width="2"
                        stroke-dasharray=(DASHES[k % DASHES.len()])
                        points=(points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect::<Vec<_>>().join(" ")) {}
                }
                @for (i, (v, batch)) in s.values.iter().zip(batches).enumerate() {
                    @if let Some(v) = v {
                        g {
                            title { (s.name) ", " (batch) ": " (format!("{:.0}%", v * 100.0)) }
                            (marker(k, x_of(i), y_of(*v), colour))
                        }
                    }
                }
            }
            @for (k, s) in series.iter().enumerate() {
                @let colour = COLOURS[k % COLOURS.len()];
                @let x = (k % LEGEND_COLUMNS) as f64 * (WIDTH / LEGEND_COLUMNS as f64);
                @let y = axis_y + 34.0 + LEGEND_ROW * (k / LEGEND_COLUMNS) as f64;
                g.legend {
                    line x1=(x) x2=(x + 18.0) y1=(y - 4.0) y2=(y - 4.0) stroke=(colour) stroke-width="2" {}
                    (marker(k, x + 9.0, y - 4.0, colour))
                    text x=(x + 24.0) y=(y) { (truncate(&s.name, LEGEND_CHARS)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_axes_and_an_escaped_legend() {
        let batches: Vec<String> = (1..=14).map(|d| format!("2025-10-{d:02}")).collect();
        let series = vec![
            Series {
                name: "<b>gpt</b>".into(),
                values: (0..14).map(|i| Some(i as f64 / 13.0)).collect(),
            },
            Series {
                name: "claude".into(),
                values: (0..14).map(|i| (i > 10).then_some(0.5)).collect(),
            },
        ];
        let svg = trend_chart("Mention rate of HubSpot", &batches, &series).into_string();
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(
            svg.contains("&lt;b&gt;gpt&lt;/b&gt;") && !svg.contains("<b>"),
            "{svg}"
        );
        assert!(svg.contains(">100%<") && svg.contains(">0%<"), "{svg}");
        // The first and the last batch are labelled, without their year; not all fourteen.
        assert!(svg.contains(">10-01<") && svg.contains(">10-14<"), "{svg}");
        assert!(svg.matches("class=\"x\"").count() <= X_LABELS + 1, "{svg}");
        // A model with one batch is a marker without a line.
        let single = trend_chart("t", &batches[..1], &series[..1]).into_string();
        assert!(!single.contains("<polyline") && single.contains("<circle"));
    }
}
