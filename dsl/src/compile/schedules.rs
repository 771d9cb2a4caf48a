//! `schedule` and `policy` blocks: checked with the schedule crate's own rules, every fault at
//! its span.

use super::Compiler;
use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::document::ValueKind;
use crate::duration::format_duration;
use crate::plan::PlanPolicy;
use crate::runbook::{Mode, ModeSet, ParamType, Runbook, ScheduleBlock};
use crate::span::Span;
use crate::suggest::did_you_mean;
use drover_schedule::{
    Blackout, Overlap, Schedule, ScheduleError, ScheduleSpec, Trigger, parse_cron, time_zone,
};
use std::collections::{BTreeMap, HashMap};

const CRON_HELP: &str = "five fields: minute hour day-of-month month day-of-week, such as \"0 9 1 1,4,7,10 *\" (09:00 on the first day of each quarter)";

impl Compiler<'_> {
    /// The runbook's schedules, each checked; a faulty one is reported and left out.
    pub(super) fn schedules(&mut self, rb: &Runbook, modes: ModeSet) -> Vec<ScheduleSpec> {
        let mut out = Vec::new();
        let mut names: HashMap<&str, Span> = HashMap::new();
        for b in &rb.schedules {
            if b.name.value.is_empty() {
                continue;
            }
            if let Some(first) = names.get(b.name.value.as_str()) {
                self.err(
                    Diagnostic::error(
                        Code::InvalidSchedule,
                        b.name.span,
                        format!("two schedules are called `{}`", b.name.value),
                    )
                    .label("second one")
                    .with(*first, "first one")
                    .help("give each schedule its own name: fires are journaled by it"),
                );
                continue;
            }
            names.insert(&b.name.value, b.name.span);
            if let Some(spec) = self.schedule(rb, b, modes) {
                out.push(spec);
            }
        }
        out
    }

    fn schedule(
        &mut self,
        rb: &Runbook,
        b: &ScheduleBlock,
        modes: ModeSet,
    ) -> Option<ScheduleSpec> {
        let before = self.diags.len();
        let trigger = match (&b.cron, &b.every) {
            (Some(c), None) => match parse_cron(&c.value) {
                Ok(_) => Some(Trigger::Cron {
                    expr: c.value.trim().to_owned(),
                }),
                Err(e) => {
                    let why = match e {
                        ScheduleError::Cron { why, .. } => why,
                        other => other.to_string(),
                    };
                    self.err(
                        Diagnostic::error(
                            Code::InvalidCron,
                            c.span,
                            format!("`{}` is not a cron expression: {why}", c.value),
                        )
                        .label("invalid cron")
                        .help(CRON_HELP),
                    );
                    None
                }
            },
            (None, Some(e)) => Some(Trigger::Every { ms: e.value }),
            (Some(_), Some(e)) => {
                self.err(
                    Diagnostic::error(
                        Code::InvalidSchedule,
                        e.span,
                        format!("schedule `{}` sets both `cron` and `every`", b.name.value),
                    )
                    .label("second trigger")
                    .help("keep one: `cron` for wall-clock times, `every` for a fixed interval"),
                );
                None
            }
            (None, None) => {
                self.err(
                    Diagnostic::error(
                        Code::MissingAttribute,
                        b.name.span,
                        format!("schedule `{}` never fires", b.name.value),
                    )
                    .label("no `cron` or `every`")
                    .help(format!("add `cron = \"0 9 1 1,4,7,10 *\"` ({CRON_HELP})")),
                );
                None
            }
        };
        if matches!(trigger, Some(Trigger::Every { ms: 0 }))
            && let Some(e) = &b.every
        {
            self.err(
                Diagnostic::error(
                    Code::InvalidSchedule,
                    e.span,
                    "`every` must be longer than zero",
                )
                .label("zero")
                .help("write an interval such as `every = 6h`"),
            );
        }
        let timezone = match &b.timezone {
            None => "UTC".to_owned(),
            Some(tz) => {
                if time_zone(&tz.value).is_err() {
                    let names: Vec<String> =
                        jiff::tz::db().available().map(|n| n.to_string()).collect();
                    let mut d = Diagnostic::error(
                        Code::UnknownTimeZone,
                        tz.span,
                        format!("`{}` is not a time zone", tz.value),
                    )
                    .label("unknown time zone");
                    d = match did_you_mean(&tz.value, names.iter().map(String::as_str)) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help("write an IANA name such as `America/Chicago`, `Europe/Berlin` or `UTC`"),
                    };
                    self.err(d);
                }
                tz.value.clone()
            }
        };
        let mut blackout: Vec<(Blackout, Span)> = Vec::new();
        for entry in &b.blackout {
            match Blackout::parse(&entry.value) {
                Ok(bo) => {
                    if let Some((_, first)) = blackout.iter().find(|(other, _)| other.overlaps(&bo)) {
                        self.err(
                            Diagnostic::error(
                                Code::InvalidBlackout,
                                entry.span,
                                format!("the blackout `{}` overlaps another", entry.value),
                            )
                            .label("overlaps")
                            .with(*first, "this one")
                            .help("merge the two ranges into one"),
                        );
                    }
                    blackout.push((bo, entry.span));
                }
                Err(e) => self.err(
                    Diagnostic::error(Code::InvalidBlackout, entry.span, e.to_string())
                        .label("invalid blackout")
                        .help("write \"2026-12-20..2027-01-04\" (both days included), \"2026-12-25\" or \"weekends\""),
                ),
            }
        }
        let overlap = match &b.overlap {
            None => Overlap::Skip,
            Some(o) => match Overlap::parse(&o.value) {
                Some(o) => o,
                None => {
                    let mut d = Diagnostic::error(
                        Code::InvalidSchedule,
                        o.span,
                        format!("`{}` is not an overlap policy", o.value),
                    )
                    .label("unknown policy");
                    d = match did_you_mean(&o.value, Overlap::NAMES.iter().copied()) {
                        Some(s) => d.help(format!(
                            "did you mean `{s}`? policies are skip, queue and cancel_running"
                        )),
                        None => d.help("policies are skip, queue and cancel_running"),
                    };
                    self.err(d);
                    Overlap::Skip
                }
            },
        };
        let mode = match &b.mode {
            Some(m) => {
                if !modes.contains(m.value) {
                    self.err(
                        Diagnostic::error(
                            Code::InvalidSchedule,
                            m.span,
                            format!("the runbook does not run in {} mode", m.value.as_str()),
                        )
                        .label("mode not supported")
                        .help(format!(
                            "the runbook's modes are {}",
                            modes
                                .modes()
                                .iter()
                                .map(|m| m.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
                m.value
            }
            None if modes.contains(Mode::Drill) => Mode::Drill,
            None => {
                self.err(
                    Diagnostic::error(
                        Code::MissingAttribute,
                        b.name.span,
                        format!("schedule `{}` needs a `mode`", b.name.value),
                    )
                    .label("no mode")
                    .help("the runbook has no drill mode, the default: write `mode = failover` or the like"),
                );
                Mode::Drill
            }
        };
        let vars = self.schedule_vars(rb, b);
        let trigger = trigger?;
        if self.diags.len() > before {
            return None;
        }
        let spec = ScheduleSpec {
            name: b.name.value.clone(),
            mode,
            trigger,
            timezone,
            blackout: blackout.into_iter().map(|(b, _)| b).collect(),
            overlap,
            catch_up_ms: b.catch_up.as_ref().map_or(0, |c| c.value),
            jitter_ms: b.jitter.as_ref().map_or(0, |j| j.value),
            vars,
        };
        let schedule = match Schedule::new(spec.clone()) {
            Ok(s) => s,
            Err(e) => {
                let at = b.cron.as_ref().map_or(b.name.span, |c| c.span);
                self.err(
                    Diagnostic::error(Code::InvalidCron, at, e.to_string())
                        .label("never fires")
                        .help(CRON_HELP),
                );
                return None;
            }
        };
        if let (Some(j), Some(interval)) = (&b.jitter, schedule.shortest_interval_ms())
            && j.value >= interval
        {
            self.err(
                Diagnostic::error(
                    Code::JitterTooLarge,
                    j.span,
                    format!(
                        "jitter {} is not shorter than the schedule's shortest interval, {}",
                        format_duration(j.value),
                        format_duration(interval)
                    ),
                )
                .label("too large")
                .help("a jittered fire must land before the next one: make the jitter smaller than the interval"),
            );
            return None;
        }
        Some(spec)
    }

    /// `vars = { name = value }`: declared parameters, values of their types (as `--var`).
    fn schedule_vars(&mut self, rb: &Runbook, b: &ScheduleBlock) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for a in &b.vars {
            let Some(p) = rb.params.iter().find(|p| p.name.value == a.key.value) else {
                let mut d = Diagnostic::error(
                    Code::UnknownParameter,
                    a.key.span,
                    format!("the runbook has no parameter `{}`", a.key.value),
                )
                .label("unknown parameter");
                d = match did_you_mean(
                    &a.key.value,
                    rb.params.iter().map(|p| p.name.value.as_str()),
                ) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help("a schedule's vars set the runbook's own `param`s"),
                };
                self.err(d);
                continue;
            };
            if p.ty.value == ParamType::Secret {
                self.err(
                    Diagnostic::error(
                        Code::InvalidSchedule,
                        a.key.span,
                        format!("`{}` is a secret: a schedule cannot set it", a.key.value),
                    )
                    .label("secret")
                    .with(p.ty.span, "declared secret here")
                    .help("secrets are read from the server's environment when the run starts"),
                );
                continue;
            }
            let text = match &a.value.kind {
                ValueKind::Str { text, .. } => Some(text.clone()),
                ValueKind::Number(n) | ValueKind::Duration(n) => Some(n.clone()),
                ValueKind::Bool(v) => Some(v.to_string()),
                ValueKind::List(items) => items
                    .iter()
                    .map(|i| match &i.kind {
                        ValueKind::Str { text, .. } => Some(text.clone()),
                        ValueKind::Number(n) | ValueKind::Duration(n) => Some(n.clone()),
                        ValueKind::Bool(v) => Some(v.to_string()),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(|v| v.join(",")),
                _ => None,
            };
            let Some(text) = text else {
                self.err(
                    Diagnostic::error(
                        Code::WrongValueKind,
                        a.value.span,
                        format!("`{}` must be a plain value", a.key.value),
                    )
                    .label("not a string, number, boolean, duration or list of them"),
                );
                continue;
            };
            if self.var_value(p, &text, a.value.span).is_some() {
                out.insert(a.key.value.clone(), text);
            }
        }
        out
    }

    /// The `policy` block.
    pub(super) fn policy(rb: &Runbook) -> Option<PlanPolicy> {
        rb.policy.as_ref().map(|p| PlanPolicy {
            drill_every_ms: p.drill_every.as_ref().map(|d| d.value),
            verify_every_ms: p.verify_every.as_ref().map(|d| d.value),
        })
    }
}
