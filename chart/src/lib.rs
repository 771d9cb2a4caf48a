//! Drover's pictures, as SVG: the Gantt chart (simulated trials and real runs alike, the critical
//! path in red), and the trend of a measure over successive runs against its target. The
//! simulator's histogram and the reports draw with the same pieces, so a Gantt chart looks the
//! same wherever it appears.

use drover_dsl::format_duration;
use std::fmt::Write;
use svg::Document;
use svg::node::element::{Circle, Group, Line, Polyline, Rectangle, Text, Title};

/// Width of every picture (SVG units).
pub const WIDTH: f64 = 960.0;
/// Space around the pictures.
pub const MARGIN: f64 = 20.0;
/// Left column of the Gantt chart, for row names.
const LABELS: f64 = 200.0;
/// The Gantt chart's rows share at most this height; rows are 2 to 16 units tall.
const GANTT_MAX: f64 = 720.0;

/// Bar colour for ordinary work.
pub const BAR: &str = "#4a78b5";
/// Colour of the critical path and of targets.
pub const CRITICAL: &str = "#c8412f";
/// Colour of failed attempts.
pub const FAILED: &str = "#7a1f14";
/// Colour of waiting (for approvers).
pub const WAITING: &str = "#e3a13b";
/// Colour of compensations (undo).
pub const UNDO: &str = "#8a6fb0";
/// Grid lines.
pub const GRID: &str = "#d0d0d0";
/// Text.
pub const INK: &str = "#222222";

/// A duration for an axis label, to the second.
#[must_use]
pub fn label(ms: u64) -> String {
    format_duration((ms + 500) / 1000 * 1000)
}

/// A duration for the label of an axis spanning `span` ms, as precise as the span needs:
/// milliseconds under a second (`250ms`), tenths of a second under ten seconds (`2.5s`), whole
/// seconds (and minutes, hours) above — so a sub-second run's axis never reads `0s 0s 0s`.
#[must_use]
pub fn label_in(ms: u64, span: u64) -> String {
    if span < 1_000 {
        format!("{ms}ms")
    } else if span < 10_000 {
        let tenths = (ms + 50) / 100;
        if tenths.is_multiple_of(10) {
            format!("{}s", tenths / 10)
        } else {
            format!("{}.{}s", tenths / 10, tenths % 10)
        }
    } else {
        label(ms)
    }
}

/// A line of text.
#[must_use]
pub fn text(x: f64, y: f64, size: f64, anchor: &str, s: &str) -> Text {
    Text::new(s)
        .set("x", x)
        .set("y", y)
        .set("font-size", size)
        .set("font-family", "sans-serif")
        .set("text-anchor", anchor)
        .set("fill", INK)
}

/// A vertical line, solid or dashed.
#[must_use]
pub fn vline(x: f64, y1: f64, y2: f64, colour: &str, dashed: bool) -> Line {
    let l = Line::new()
        .set("x1", x)
        .set("x2", x)
        .set("y1", y1)
        .set("y2", y2)
        .set("stroke", colour)
        .set("stroke-width", 1.5);
    if dashed {
        l.set("stroke-dasharray", "5 3")
    } else {
        l
    }
}

/// Maps `[lo, hi]` ms onto `[x0, x1]`.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    /// Lowest value.
    pub lo: u64,
    /// Highest value.
    pub hi: u64,
    /// Where `lo` is drawn.
    pub x0: f64,
    /// Where `hi` is drawn.
    pub x1: f64,
}

impl Axis {
    /// The position of `ms`.
    #[allow(clippy::cast_precision_loss, reason = "pixel positions")]
    #[must_use]
    pub fn x(self, ms: u64) -> f64 {
        let span = self.hi.saturating_sub(self.lo).max(1) as f64;
        self.x0 + (ms.saturating_sub(self.lo) as f64) / span * (self.x1 - self.x0)
    }

    /// Five labelled ticks under `y`, with grid lines up to `top`.
    #[must_use]
    pub fn ticks(self, top: f64, y: f64) -> Group {
        let mut g = Group::new();
        for k in 0..=4u64 {
            let ms = self.lo + (self.hi.saturating_sub(self.lo)) * k / 4;
            let x = self.x(ms);
            g = g
                .add(
                    Line::new()
                        .set("x1", x)
                        .set("x2", x)
                        .set("y1", top)
                        .set("y2", y)
                        .set("stroke", GRID)
                        .set("stroke-width", 1),
                )
                .add(text(
                    x,
                    y + 14.0,
                    11.0,
                    "middle",
                    &label_in(ms, self.hi.saturating_sub(self.lo)),
                ));
        }
        g
    }
}

/// What a Gantt bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// Work off the critical path.
    Work,
    /// Work on the critical path.
    Critical,
    /// A failed or timed-out attempt.
    Failed,
    /// Waiting for approvers.
    Waiting,
    /// A compensation (undo).
    Undo,
}

impl BarKind {
    /// Its fill colour.
    #[must_use]
    pub fn colour(self) -> &'static str {
        match self {
            Self::Work => BAR,
            Self::Critical => CRITICAL,
            Self::Failed => FAILED,
            Self::Waiting => WAITING,
            Self::Undo => UNDO,
        }
    }
}

/// One bar: a span of time on a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// Start (ms from the chart's origin).
    pub from_ms: u64,
    /// End.
    pub to_ms: u64,
    /// What it shows.
    pub kind: BarKind,
    /// Its tooltip.
    pub tip: String,
}

/// One row of a Gantt chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GanttRow {
    /// The row's name (a step id).
    pub label: String,
    /// Its bars.
    pub bars: Vec<Bar>,
}

/// A vertical marker across a chart (a target, a milestone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Where (ms from the chart's origin).
    pub at_ms: u64,
    /// Its label.
    pub label: String,
    /// Its colour.
    pub colour: &'static str,
}

/// A Gantt chart starting at `top`: a title line, one row per entry, labelled when rows are tall
/// enough, and markers drawn across it (those beyond the last bar widen the axis up to twice).
/// Returns the group and its height.
#[must_use]
pub fn gantt(title: &str, rows: &[GanttRow], markers: &[Marker], top: f64) -> (Group, f64) {
    let mut g = Group::new().add(text(MARGIN, top, 14.0, "start", title));
    if rows.is_empty() {
        return (g, 30.0);
    }
    #[allow(clippy::cast_precision_loss, reason = "row count")]
    let row = (GANTT_MAX / rows.len() as f64).clamp(2.0, 16.0);
    let labelled = row >= 10.0;
    let end = rows
        .iter()
        .flat_map(|r| r.bars.iter().map(|b| b.to_ms))
        .max()
        .unwrap_or(0)
        .max(1);
    let hi = markers
        .iter()
        .map(|m| m.at_ms)
        .filter(|&m| m > end && m <= end.saturating_mul(2))
        .max()
        .unwrap_or(end);
    let axis = Axis {
        lo: 0,
        hi,
        x0: if labelled {
            MARGIN + LABELS
        } else {
            MARGIN + 40.0
        },
        x1: WIDTH - MARGIN - 30.0,
    };
    let y0 = top + 14.0;
    #[allow(clippy::cast_precision_loss, reason = "row count")]
    let bottom = y0 + row * rows.len() as f64;
    g = g.add(axis.ticks(y0, bottom));
    for (k, r) in rows.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "row index")]
        let y = y0 + row * k as f64;
        for b in &r.bars {
            let (x0, x1) = (axis.x(b.from_ms), axis.x(b.to_ms));
            g = g.add(
                Rectangle::new()
                    .set("x", x0)
                    .set("y", y + row * 0.15)
                    .set("width", (x1 - x0).max(1.5))
                    .set("height", row * 0.7)
                    .set("fill", b.kind.colour())
                    .add(Title::new(b.tip.clone())),
            );
        }
        if labelled {
            g = g.add(text(
                axis.x0 - 6.0,
                y + row * 0.75,
                row * 0.7,
                "end",
                &r.label,
            ));
        }
    }
    for m in markers.iter().filter(|m| m.at_ms <= hi) {
        let x = axis.x(m.at_ms);
        g = g.add(vline(x, y0, bottom, m.colour, true)).add(text(
            x + 3.0,
            y0 - 2.0,
            11.0,
            "start",
            &m.label,
        ));
    }
    (g, bottom - top + 24.0)
}

/// One measurement in a trend: a label for the x axis (a run) and the value, if measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// The run it belongs to, shown under the axis and in the tooltip.
    pub label: String,
    /// The value (ms), absent when it could not be measured.
    pub value_ms: Option<u64>,
}

/// A trend of one measure over successive runs against its target, starting at `top`: a line
/// through the measured values, a dot per run (red when the target was missed, a cross when not
/// measured), the target dashed in red. Returns the group and its height.
#[must_use]
pub fn trend(title: &str, points: &[Point], target_ms: u64, top: f64) -> (Group, f64) {
    const HEIGHT: f64 = 200.0;
    let mut g = Group::new().add(text(MARGIN, top, 14.0, "start", title));
    let plot_top = top + 20.0;
    let bottom = plot_top + HEIGHT;
    let (x0, x1) = (MARGIN + 70.0, WIDTH - MARGIN - 20.0);
    let peak = points
        .iter()
        .filter_map(|p| p.value_ms)
        .max()
        .unwrap_or(0)
        .max(target_ms)
        .max(1);
    let hi = peak + peak / 10;
    #[allow(clippy::cast_precision_loss, reason = "pixel positions")]
    let y = |ms: u64| bottom - (ms as f64 / hi as f64) * HEIGHT;
    for k in 0..=4u64 {
        let ms = hi * k / 4;
        g = g
            .add(
                Line::new()
                    .set("x1", x0)
                    .set("x2", x1)
                    .set("y1", y(ms))
                    .set("y2", y(ms))
                    .set("stroke", GRID)
                    .set("stroke-width", 1),
            )
            .add(text(x0 - 6.0, y(ms) + 4.0, 11.0, "end", &label_in(ms, hi)));
    }
    let ty = y(target_ms);
    g = g
        .add(
            Line::new()
                .set("x1", x0)
                .set("x2", x1)
                .set("y1", ty)
                .set("y2", ty)
                .set("stroke", CRITICAL)
                .set("stroke-width", 1.5)
                .set("stroke-dasharray", "5 3"),
        )
        .add(text(
            x1,
            ty - 4.0,
            11.0,
            "end",
            &format!("target {}", label_in(target_ms, target_ms)),
        ));
    if points.is_empty() {
        return (
            g.add(text(
                WIDTH / 2.0,
                plot_top + HEIGHT / 2.0,
                13.0,
                "middle",
                "no runs yet",
            )),
            HEIGHT + 50.0,
        );
    }
    #[allow(clippy::cast_precision_loss, reason = "run index")]
    let x = |k: usize| {
        if points.len() == 1 {
            (x0 + x1) / 2.0
        } else {
            x0 + (x1 - x0) * k as f64 / (points.len() - 1) as f64
        }
    };
    let mut line = String::new();
    for (k, p) in points.iter().enumerate() {
        if let Some(v) = p.value_ms {
            let _ = write!(line, "{:.1},{:.1} ", x(k), y(v));
        }
    }
    g = g.add(
        Polyline::new()
            .set("points", line.trim_end())
            .set("fill", "none")
            .set("stroke", BAR)
            .set("stroke-width", 1.5),
    );
    let every = points.len().div_ceil(12).max(1);
    let last = points.len() - 1;
    // Every `every`-th run is labelled, and always the latest (the one a reader looks for),
    // which takes the place of a labelled run that would crowd it.
    let labelled = |k: usize| k == last || (k.is_multiple_of(every) && last - k >= every);
    for (k, p) in points.iter().enumerate() {
        let tip = Title::new(format!(
            "{}: {}",
            p.label,
            p.value_ms
                .map_or_else(|| "not measured".to_owned(), |v| label_in(v, v))
        ));
        match p.value_ms {
            Some(v) => {
                g = g.add(
                    Circle::new()
                        .set("cx", x(k))
                        .set("cy", y(v))
                        .set("r", 4)
                        .set("fill", if v > target_ms { CRITICAL } else { BAR })
                        .add(tip),
                );
            }
            None => {
                g = g.add(
                    text(x(k), bottom - 4.0, 14.0, "middle", "×")
                        .set("fill", CRITICAL)
                        .add(tip),
                );
            }
        }
        if labelled(k) {
            // The first and last labels are anchored inside the picture, never cut at its edge.
            let anchor = match k {
                _ if points.len() == 1 => "middle",
                0 => "start",
                k if k == last => "end",
                _ => "middle",
            };
            g = g.add(text(x(k), bottom + 14.0, 10.0, anchor, &p.label));
        }
    }
    (g, HEIGHT + 56.0)
}

/// A white SVG document of the picture's full width holding `parts`, `height` tall.
#[must_use]
pub fn document(height: f64, parts: Vec<Group>) -> String {
    let mut doc = Document::new()
        .set("viewBox", (0, 0, WIDTH, height))
        .set("width", WIDTH)
        .set("height", height)
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        );
    for p in parts {
        doc = doc.add(p);
    }
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fills(doc: &str) -> Vec<String> {
        doc.split("fill=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn gantt_bars_take_their_kind_colour_and_markers_widen_the_axis() {
        let rows = vec![
            GanttRow {
                label: "a".into(),
                bars: vec![
                    Bar {
                        from_ms: 0,
                        to_ms: 1000,
                        kind: BarKind::Failed,
                        tip: "a#1".into(),
                    },
                    Bar {
                        from_ms: 1000,
                        to_ms: 3000,
                        kind: BarKind::Critical,
                        tip: "a#2".into(),
                    },
                ],
            },
            GanttRow {
                label: "b".into(),
                bars: vec![Bar {
                    from_ms: 0,
                    to_ms: 2000,
                    kind: BarKind::Work,
                    tip: "b".into(),
                }],
            },
        ];
        let marker = Marker {
            at_ms: 5000,
            label: "target".into(),
            colour: CRITICAL,
        };
        let (g, h) = gantt("t", &rows, &[marker], 0.0);
        let doc = document(h, vec![g]);
        let f = fills(&doc);
        assert_eq!(f.iter().filter(|c| *c == FAILED).count(), 1);
        assert_eq!(f.iter().filter(|c| *c == BAR).count(), 1);
        assert!(doc.contains("a#2"));
        // The target at 5 s is within twice the end (3 s): the axis reaches it.
        assert!(doc.split_whitespace().any(|w| w == "5s"), "{doc}");
    }

    #[test]
    fn a_trend_marks_missed_targets_in_red_and_unmeasured_runs_with_a_cross() {
        let points = vec![
            Point {
                label: "r1".into(),
                value_ms: Some(60_000),
            },
            Point {
                label: "r2".into(),
                value_ms: Some(600_000),
            },
            Point {
                label: "r3".into(),
                value_ms: None,
            },
        ];
        let (g, h) = trend("RTO", &points, 300_000, 0.0);
        let doc = document(h, vec![g]);
        assert_eq!(doc.matches("<circle").count(), 2);
        assert!(doc.contains("r3: not measured"));
        assert!(doc.contains("r2: 10m"), "{doc}");
        let red_dots = doc
            .split("<circle")
            .skip(1)
            .filter(|c| c.contains(CRITICAL))
            .count();
        assert_eq!(red_dots, 1);
    }

    #[test]
    fn sub_second_axes_label_milliseconds_and_tenths() {
        assert_eq!(label_in(250, 800), "250ms");
        assert_eq!(label_in(2_500, 5_000), "2.5s");
        assert_eq!(label_in(2_000, 5_000), "2s");
        assert_eq!(label_in(90_000, 120_000), "1m30s");
        let axis = Axis {
            lo: 0,
            hi: 800,
            x0: 0.0,
            x1: 100.0,
        };
        let doc = document(40.0, vec![axis.ticks(0.0, 10.0)]);
        for t in ["0ms", "200ms", "400ms", "600ms", "800ms"] {
            assert!(doc.contains(&format!(">\n{t}\n<")), "{t} in {doc}");
        }
    }

    #[test]
    fn the_latest_run_is_always_labelled_inside_the_picture() {
        for n in [1usize, 2, 13, 14, 25] {
            let points: Vec<Point> = (0..n)
                .map(|i| Point {
                    label: format!("r20261202T2256{i:02}-8b71"),
                    value_ms: Some(400 + i as u64),
                })
                .collect();
            let (g, h) = trend("RTO", &points, 1_000, 0.0);
            let doc = document(h, vec![g]);
            let last = format!(">\nr20261202T2256{:02}-8b71\n<", n - 1);
            let at = doc
                .find(&last)
                .unwrap_or_else(|| panic!("{n}: last label drawn"));
            let tag = &doc[doc[..at].rfind("<text").expect("its text element")..at];
            if n > 1 {
                assert!(tag.contains("text-anchor=\"end\""), "{n}: {tag}");
            }
            // A one-second axis is labelled in tenths, not `0s 0s 1s 1s 1s`.
            assert!(doc.contains(">\n0.3s\n<"), "{n}: {doc}");
        }
    }
}
