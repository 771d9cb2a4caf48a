//! The simulation as a picture (SVG): the RTO histogram with the percentiles and the target, and
//! the Gantt chart of the median trial with its critical path. Marked simulated.

use crate::monte_carlo::Summary;
use drover_chart::{
    Axis, Bar, BarKind, CRITICAL as TARGET, GanttRow, INK, MARGIN, WIDTH, label, text, vline,
};
use std::collections::BTreeSet;
use svg::node::element::{Group, Rectangle, Title};

const HIST_TOP: f64 = 70.0;
const HIST_HEIGHT: f64 = 200.0;
const BAR: &str = drover_chart::BAR;

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
    let title = if s.median_critical_path.is_empty() {
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
    };
    let critical: BTreeSet<&str> = s.median_critical_path.iter().map(String::as_str).collect();
    let rows: Vec<GanttRow> = rows
        .iter()
        .map(|(id, from, to)| {
            let on_path = critical.contains(id.as_str());
            GanttRow {
                label: id.clone(),
                bars: vec![Bar {
                    from_ms: *from,
                    to_ms: *to,
                    kind: if on_path {
                        BarKind::Critical
                    } else {
                        BarKind::Work
                    },
                    tip: format!(
                        "{id}: {} – {} ({}){}",
                        label(*from),
                        label(*to),
                        label(to - from),
                        if on_path { ", critical" } else { "" }
                    ),
                }],
            }
        })
        .collect();
    drover_chart::gantt(&title, &rows, &[], top)
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
    drover_chart::document(
        height,
        vec![
            Group::new().add(text(MARGIN, 28.0, 16.0, "start", &heading)),
            histogram(s),
            chart,
        ],
    )
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
            operators: None,
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
        assert_eq!(fills.get(drover_chart::CRITICAL), Some(&3), "{fills:?}");
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
