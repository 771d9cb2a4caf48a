//! The simulation as a picture (SVG): the RTO histogram with the percentiles and the target, and
//! the Gantt chart of the median trial with its critical path. Marked simulated.

use crate::monte_carlo::Summary;
use std::collections::BTreeSet;
use svg::Document;
use svg::node::element::{Group, Line, Rectangle, Text, Title};

const WIDTH: f64 = 960.0;
const MARGIN: f64 = 20.0;
/// Left column of the Gantt chart, for step names.
const LABELS: f64 = 200.0;
const HIST_TOP: f64 = 70.0;
const HIST_HEIGHT: f64 = 200.0;
/// The Gantt chart's rows share at most this height; rows are 2 to 16 units tall.
const GANTT_MAX: f64 = 720.0;

const BAR: &str = "#4a78b5";
const CRITICAL: &str = "#c8412f";
const TARGET: &str = "#c8412f";
const GRID: &str = "#d0d0d0";
const INK: &str = "#222222";

/// A duration for an axis label, to the second.
fn label(ms: u64) -> String {
    crate::secs(ms)
}

fn text(x: f64, y: f64, size: f64, anchor: &str, s: &str) -> Text {
    Text::new(s)
        .set("x", x)
        .set("y", y)
        .set("font-size", size)
        .set("font-family", "sans-serif")
        .set("text-anchor", anchor)
        .set("fill", INK)
}

fn vline(x: f64, y1: f64, y2: f64, colour: &str, dashed: bool) -> Line {
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
#[derive(Clone, Copy)]
struct Axis {
    lo: u64,
    hi: u64,
    x0: f64,
    x1: f64,
}

impl Axis {
    #[allow(clippy::cast_precision_loss, reason = "pixel positions")]
    fn x(self, ms: u64) -> f64 {
        let span = self.hi.saturating_sub(self.lo).max(1) as f64;
        self.x0 + (ms.saturating_sub(self.lo) as f64) / span * (self.x1 - self.x0)
    }

    /// Five labelled ticks under `y`, with grid lines up to `top`.
    fn ticks(self, top: f64, y: f64) -> Group {
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
                .add(text(x, y + 14.0, 11.0, "middle", &label(ms)));
        }
        g
    }
}

/// The histogram of RTOs: bars, p50 and p95 (dashed) and the target (red).
fn histogram(s: &Summary) -> Group {
    let h = &s.rto_histogram;
    let mut g = Group::new().add(text(
        MARGIN,
        HIST_TOP - 12.0,
        14.0,
        "start",
        &format!(
            "RTO over {} trials — p50 {}, p95 {}{}{}",
            s.trials,
            crate::dur(s.rto.p50_ms),
            crate::dur(s.rto.p95_ms),
            s.rto.target_ms.map_or_else(String::new, |t| format!(
                ", target {} met in {:.1}%",
                label(t),
                s.rto.p_meet_target.unwrap_or(0.0) * 100.0
            )),
            if h.never > 0 {
                format!(", {} never recovered", h.never)
            } else {
                String::new()
            }
        ),
    ));
    if h.counts.is_empty() {
        return g.add(text(
            WIDTH / 2.0,
            HIST_TOP + HIST_HEIGHT / 2.0,
            13.0,
            "middle",
            "no trial reached the RTO milestone",
        ));
    }
    let end = h.from_ms + h.bin_ms * h.counts.len() as u64;
    // Show the target when it is near the distribution; far away it would squash the bars.
    let hi = match s.rto.target_ms {
        Some(t) if t > end && t <= end.saturating_mul(2) => t,
        _ => end,
    };
    let axis = Axis {
        lo: h.from_ms,
        hi,
        x0: MARGIN + 40.0,
        x1: WIDTH - MARGIN - 30.0,
    };
    let bottom = HIST_TOP + HIST_HEIGHT;
    g = g.add(axis.ticks(HIST_TOP, bottom));
    let peak = h.counts.iter().copied().max().unwrap_or(1).max(1);
    for (i, &c) in h.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
        let from = h.from_ms + h.bin_ms * i as u64;
        let (x0, x1) = (axis.x(from), axis.x(from + h.bin_ms));
        #[allow(clippy::cast_precision_loss, reason = "pixel heights")]
        let height = c as f64 / peak as f64 * (HIST_HEIGHT - 10.0);
        g = g.add(
            Rectangle::new()
                .set("x", x0)
                .set("y", bottom - height)
                .set("width", (x1 - x0 - 1.0).max(0.5))
                .set("height", height)
                .set("fill", BAR)
                .add(Title::new(format!(
                    "{} – {}: {c} trials",
                    label(from),
                    label(from + h.bin_ms)
                ))),
        );
    }
    for (name, v) in [("p50", s.rto.p50_ms), ("p95", s.rto.p95_ms)] {
        if let Some(v) = v {
            let x = axis.x(v);
            g = g.add(vline(x, HIST_TOP, bottom, INK, true)).add(text(
                x + 3.0,
                HIST_TOP + 10.0,
                11.0,
                "start",
                name,
            ));
        }
    }
    match s.rto.target_ms {
        Some(t) if t <= hi => {
            let x = axis.x(t);
            g = g.add(vline(x, HIST_TOP, bottom, TARGET, false)).add(text(
                x - 3.0,
                HIST_TOP + 10.0,
                11.0,
                "end",
                "target",
            ));
        }
        Some(t) => {
            g = g.add(text(
                WIDTH - MARGIN,
                HIST_TOP + 10.0,
                11.0,
                "end",
                &format!("target {} →", label(t)),
            ));
        }
        None => {}
    }
    g
}

/// The Gantt chart of the median trial, critical path in red. Returns the group and its height.
fn gantt(s: &Summary, top: f64) -> (Group, f64) {
    let rows = &s.median_timeline;
    let mut g = Group::new().add(text(
        MARGIN,
        top,
        14.0,
        "start",
        &if s.median_critical_path.is_empty() {
            format!(
                "Median trial — {} nodes, {}: no critical path (the RTO milestone was not reached)",
                rows.len(),
                s.median_outcome.replace('_', " ")
            )
        } else {
            format!(
                "Median trial — {} nodes, {}; critical path in red ({} nodes)",
                rows.len(),
                s.median_outcome.replace('_', " "),
                s.median_critical_path.len()
            )
        },
    ));
    if rows.is_empty() {
        return (g, 30.0);
    }
    let critical: BTreeSet<&str> = s.median_critical_path.iter().map(String::as_str).collect();
    #[allow(clippy::cast_precision_loss, reason = "row count")]
    let row = (GANTT_MAX / rows.len() as f64).clamp(2.0, 16.0);
    let labelled = row >= 10.0;
    let end = rows.iter().map(|r| r.2).max().unwrap_or(0).max(1);
    let axis = Axis {
        lo: 0,
        hi: end,
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
    for (k, (id, from, to)) in rows.iter().enumerate() {
        #[allow(clippy::cast_precision_loss, reason = "row index")]
        let y = y0 + row * k as f64;
        let on_path = critical.contains(id.as_str());
        let (x0, x1) = (axis.x(*from), axis.x(*to));
        let tip = Title::new(format!(
            "{id}: {} – {} ({}){}",
            label(*from),
            label(*to),
            label(to - from),
            if on_path { ", critical" } else { "" }
        ));
        g = g.add(
            Rectangle::new()
                .set("x", x0)
                .set("y", y + row * 0.15)
                .set("width", (x1 - x0).max(1.5))
                .set("height", row * 0.7)
                .set("fill", if on_path { CRITICAL } else { BAR })
                .add(tip),
        );
        if labelled {
            g = g.add(text(axis.x0 - 6.0, y + row * 0.75, row * 0.7, "end", id));
        }
    }
    (g, bottom - top + 24.0)
}

/// The summary as an SVG document: histogram on top, Gantt of the median trial below.
#[must_use]
pub fn render_svg(s: &Summary) -> String {
    let heading = format!(
        "SIMULATED — not a verified recovery · {} · mode {}{} · {} trials, seed {}",
        s.runbook,
        s.mode,
        if s.scenario.is_empty() {
            String::new()
        } else {
            format!(" · scenario {}", s.scenario)
        },
        s.trials,
        s.seed
    );
    let gantt_top = HIST_TOP + HIST_HEIGHT + 50.0;
    let (chart, chart_height) = gantt(s, gantt_top);
    let height = gantt_top + chart_height + MARGIN;
    let doc = Document::new()
        .set("viewBox", (0, 0, WIDTH, height))
        .set("width", WIDTH)
        .set("height", height)
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(text(MARGIN, 28.0, 16.0, "start", &heading))
        .add(histogram(s))
        .add(chart);
    doc.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Prepared, Scenario, Settings};
    use drover_dsl::{CompileOptions, Mode, compile_str};
    use svg::node::element::tag::Type;
    use svg::parser::Event;

    const SRC: &str = r#"runbook "pic" {
  rto   = 1h
  rpo   = 1h
  modes = [drill]
}

step a {
  action   = wait
  estimate = { p50 = 10m, p95 = 20m }
  with {
    duration = 1s
  }
}

step b {
  action   = wait
  after    = [a]
  estimate = 5m..30m
  with {
    duration = 1s
  }
}

step side {
  action   = wait
  estimate = 1m
  with {
    duration = 1s
  }
}

milestone up {
  after     = [b, side]
  stops_rto = true
}
"#;

    /// (bars by fill colour, text of the document) after checking that every tag closes.
    fn parse(doc: &str) -> (std::collections::BTreeMap<String, usize>, String) {
        let mut depth = 0i32;
        let mut fills = std::collections::BTreeMap::new();
        let mut texts = String::new();
        for ev in svg::read(doc).expect("reads") {
            match ev {
                Event::Error(e) => panic!("malformed SVG: {e:?}"),
                Event::Tag(name, t, attrs) => {
                    match t {
                        Type::Start => depth += 1,
                        Type::End => depth -= 1,
                        Type::Empty => {}
                    }
                    if name == "rect"
                        && t != Type::End
                        && let Some(f) = attrs.get("fill")
                    {
                        *fills.entry(f.to_string()).or_default() += 1;
                    }
                }
                Event::Text(t) => {
                    texts.push_str(t);
                    texts.push('\n');
                }
                _ => {}
            }
        }
        assert_eq!(depth, 0, "every element closes");
        (fills, texts)
    }

    #[test]
    fn the_picture_has_the_histogram_the_target_and_the_critical_path() {
        let cat = drover_adapters::builtin_catalogue();
        let opts = CompileOptions {
            catalogue: &cat,
            vars: Vec::new(),
        };
        let plan = compile_str("pic.drover", SRC, &opts)
            .plan
            .expect("compiles");
        let prep = Prepared::new(&plan, Mode::Drill, &Scenario::default());
        let s = crate::run(
            &prep,
            &plan,
            "",
            "drill",
            Settings {
                trials: 500,
                seed: 3,
                threads: 1,
            },
        );
        let total: u64 = s.rto_histogram.counts.iter().sum();
        assert_eq!(
            total + s.rto_histogram.never,
            500,
            "every trial is in a bin"
        );
        let (fills, texts) = parse(&render_svg(&s));
        // One bar per non-empty histogram bin; the median trial's critical path (a, b, up) in red, the
        // step off it (side) in blue next to the bins.
        assert_eq!(fills.get(CRITICAL), Some(&3), "{fills:?}");
        let bins = s.rto_histogram.counts.iter().filter(|c| **c > 0).count();
        assert_eq!(
            fills.get(BAR),
            Some(&(bins + 1)),
            "non-empty bins and `side`"
        );
        assert!(texts.contains("SIMULATED"), "{texts}");
        assert!(texts.contains("target 1h"), "{texts}");
        assert!(texts.contains("side: "), "tooltips name the steps: {texts}");
    }
}
