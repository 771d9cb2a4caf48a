//! Lowering: the generic [`Document`] becomes a typed [`Runbook`], with a diagnostic for every
//! attribute or block that has no meaning where it is written.

use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::document::{
    Attribute, Block, Document, Item, ItemKind, ParamDecl, TypeExpr, Value, ValueKind,
};
use crate::duration::parse_duration;
use crate::parse::{PIECE_BYTES, Pieces, parse_whole};
use crate::runbook::{
    Compensate, Estimate, Group, GroupUse, Header, Import, Lint, Milestone, Mode, ModeSet,
    OnFailure, Param, ParamType, Policy, Production, Retry, Runbook, ScheduleBlock, Step, Waiver,
};
use crate::source_map::SourceFile;
use crate::span::{FileId, Span, Spanned};
use crate::suggest::did_you_mean;
use crate::vocabulary;
use std::collections::HashMap;

/// Lowers a parsed file. Diagnostics are appended to `diags`.
pub fn lower(file: FileId, doc: &Document, diags: &mut Vec<Diagnostic>) -> Runbook {
    // A step is several hundred bytes: growing by doubling would hold up to twice that.
    let steps = doc
        .items
        .iter()
        .filter(|i| i.as_block().is_some_and(|b| b.kind.value == "step"))
        .count();
    let mut lowering = Lowering::new(file, steps);
    lowering.rb.recovered = doc
        .recovered
        .iter()
        .filter_map(|r| r.name.clone())
        .collect();
    lowering.items(&doc.items, diags);
    lowering.finish()
}

/// Parses and lowers one file. A file without syntax errors is lowered a piece at a time as it is
/// parsed, so its whole syntax tree is never held (at 50,000 steps it was the largest thing in
/// memory, next to the lowered runbook); the runbook and diagnostics are the same as
/// [`crate::parse()`] followed by [`lower`].
pub(crate) fn parse_and_lower(
    file: FileId,
    source: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Runbook {
    parse_and_lower_in(file, source, PIECE_BYTES, diags)
}

fn parse_and_lower_in(
    file: FileId,
    source: &SourceFile,
    piece_bytes: usize,
    diags: &mut Vec<Diagnostic>,
) -> Runbook {
    if let Some(pieces) = Pieces::cut(file, &source.text, piece_bytes) {
        let before = diags.len();
        let mut lowering = Lowering::new(file, pieces.steps);
        if pieces.for_each(|items| lowering.items(items, diags)) {
            return lowering.finish();
        }
        // A piece has a syntax error: start again on the whole file, which reports it.
        diags.truncate(before);
    }
    let (doc, mut syntax) = parse_whole(file, source);
    diags.append(&mut syntax);
    lower(file, &doc, diags)
}

/// A file lowered a run of top-level items at a time, so that the compiler can drop each piece of
/// the syntax tree as soon as it is lowered (see [`parse_and_lower`]).
pub(crate) struct Lowering {
    rb: Runbook,
}

impl Lowering {
    /// An empty runbook of `file`, with room for `steps` steps.
    pub(crate) fn new(file: FileId, steps: usize) -> Self {
        Self {
            rb: Runbook {
                file,
                header: None,
                extra_headers: Vec::new(),
                imports: Vec::new(),
                params: Vec::new(),
                production: Production::default(),
                steps: Vec::with_capacity(steps),
                uses: Vec::new(),
                groups: Vec::new(),
                milestones: Vec::new(),
                schedules: Vec::new(),
                policy: None,
                recovered: Vec::new(),
            },
        }
    }

    /// The runbook lowered so far.
    pub(crate) fn finish(self) -> Runbook {
        self.rb
    }

    /// Lowers the next top-level items of the file.
    pub(crate) fn items(&mut self, items: &[Item], diags: &mut Vec<Diagnostic>) {
        let mut l = Lowerer { diags };
        let rb = &mut self.rb;
        for item in items {
            l.top_level(rb, item);
        }
    }
}

impl Lowerer<'_> {
    fn top_level(&mut self, rb: &mut Runbook, item: &Item) {
        let l = self;
        match &item.kind {
            ItemKind::Import(i) => rb.imports.push(Import {
                path: i.path.clone(),
            }),
            ItemKind::Param(p) => rb.params.push(l.param(p)),
            ItemKind::Attribute(a) => {
                l.diags.push(
                    Diagnostic::error(
                        Code::UnknownAttribute,
                        a.key.span,
                        format!(
                            "`{}` cannot stand at the top level of a runbook",
                            a.key.value
                        ),
                    )
                    .label("not inside a block")
                    .help("header attributes go inside `runbook \"name\" { ... }`"),
                );
            }
            ItemKind::Block(b) => match b.kind.value.as_str() {
                "runbook" => {
                    let h = l.header(b, item.span);
                    if rb.header.is_some() {
                        rb.extra_headers.push(b.kind.span);
                    } else {
                        rb.header = Some(h);
                    }
                }
                "production" => l.production(b, &mut rb.production),
                "step" => rb.steps.push(Box::new(l.step(b, item.span))),
                "milestone" => rb.milestones.push(l.milestone(b, item.span)),
                "group" => rb.groups.push(l.group(b, item.span)),
                "use" => rb.uses.push(l.group_use(b, item.span)),
                "schedule" => rb.schedules.push(l.schedule(b)),
                "policy" => {
                    let p = l.policy(b);
                    match &rb.policy {
                        Some(first) => l.diags.push(
                            Diagnostic::error(
                                Code::DuplicateAttribute,
                                b.kind.span,
                                "a runbook has one `policy` block",
                            )
                            .label("second policy")
                            .with(first.span, "first policy here")
                            .help("merge the two blocks"),
                        ),
                        None => rb.policy = Some(p),
                    }
                }
                other => l.unknown(
                    b.kind.span,
                    other,
                    "block",
                    "a runbook",
                    vocabulary::TOP_LEVEL,
                ),
            },
        }
    }
}

struct Lowerer<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

/// One item of a block, classified.
enum Entry<'a> {
    Attr(&'a Attribute),
    Block(&'a Block, Span),
}

impl Lowerer<'_> {
    fn unknown(&mut self, span: Span, name: &str, what: &str, context: &str, known: &[&str]) {
        let mut d = Diagnostic::error(
            Code::UnknownAttribute,
            span,
            format!("`{name}` is not {} {what} of {context}", article(what)),
        )
        .label(format!("unknown {what}"));
        d = match did_you_mean(name, known.iter().copied()) {
            Some(s) => d.did_you_mean(name, s),
            None => d.help(format!("expected one of: {}", known.join(", "))),
        };
        self.diags.push(d);
    }

    /// Walks a block's items, reporting unknown and repeated names; returns the known ones.
    fn entries<'a>(
        &mut self,
        b: &'a Block,
        context: &str,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Vec<(&'a str, Entry<'a>)> {
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut out = Vec::new();
        let known: Vec<&str> = attrs.iter().chain(blocks).copied().collect();
        for item in &b.items {
            let (name, span, entry) = match &item.kind {
                ItemKind::Attribute(a) => (a.key.value.as_str(), a.key.span, Entry::Attr(a)),
                ItemKind::Block(inner) => (
                    inner.kind.value.as_str(),
                    inner.kind.span,
                    Entry::Block(inner, item.span),
                ),
                ItemKind::Param(p) => {
                    self.unknown(p.name.span, "param", "block", context, &known);
                    continue;
                }
                ItemKind::Import(i) => {
                    self.unknown(i.path.span, "import", "block", context, &known);
                    continue;
                }
            };
            let is_attr = matches!(entry, Entry::Attr(_));
            let known_here = if is_attr { attrs } else { blocks };
            if !known_here.contains(&name) {
                // An attribute written as a block or the other way round gets a precise hint.
                let other = if is_attr { blocks } else { attrs };
                if other.contains(&name) {
                    let how = if is_attr {
                        format!("`{name} {{ ... }}`")
                    } else {
                        format!("`{name} = ...`")
                    };
                    self.diags.push(
                        Diagnostic::error(
                            Code::WrongValueKind,
                            span,
                            format!("`{name}` is written as {how} in {context}"),
                        )
                        .label("wrong form")
                        .help(format!("write it as {how}")),
                    );
                } else {
                    self.unknown(
                        span,
                        name,
                        if is_attr { "attribute" } else { "block" },
                        context,
                        &known,
                    );
                }
                continue;
            }
            if let Some(first) = seen.get(name) {
                self.diags.push(
                    Diagnostic::error(
                        Code::DuplicateAttribute,
                        span,
                        format!("`{name}` is set twice"),
                    )
                    .label("set again here")
                    .with(*first, "first set here")
                    .help("remove one of them"),
                );
                continue;
            }
            seen.insert(name.to_owned(), span);
            out.push((name, entry));
        }
        out
    }

    fn wrong(&mut self, v: &Value, expected: &str, context: &str) {
        self.diags.push(
            Diagnostic::error(
                Code::WrongValueKind,
                v.span,
                format!("{context} must be {expected}, found {}", v.kind_name()),
            )
            .label(format!("expected {expected}")),
        );
    }

    fn string(&mut self, v: &Value, context: &str) -> Option<String> {
        match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                self.wrong(v, "a string", context);
                None
            }
        }
    }

    fn int(&mut self, v: &Value, context: &str) -> Option<i64> {
        match &v.kind {
            ValueKind::Number(n) if n.parse::<i64>().is_ok() => n.parse().ok(),
            _ => {
                self.wrong(v, "a whole number", context);
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value, context: &str) -> Option<bool> {
        match &v.kind {
            ValueKind::Bool(b) => Some(*b),
            _ => {
                self.wrong(v, "`true` or `false`", context);
                None
            }
        }
    }

    fn duration(&mut self, v: &Value, context: &str) -> Option<Spanned<u64>> {
        match &v.kind {
            ValueKind::Duration(d) => match parse_duration(d) {
                Some(ms) => Some(Spanned::new(ms, v.span)),
                None => {
                    self.diags.push(
                        Diagnostic::error(
                            Code::InvalidDuration,
                            v.span,
                            format!("`{d}` is too long a duration"),
                        )
                        .label("overflows")
                        .help("durations must fit in 584 million years; use a smaller number"),
                    );
                    None
                }
            },
            ValueKind::Str { text, .. } => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidDuration,
                        v.span,
                        format!("{context} must be a duration, found the string \"{text}\""),
                    )
                    .label("not a duration")
                    .help("write durations without quotes: `30s`, `15m`, `4h`, `1h30m`"),
                );
                None
            }
            ValueKind::Number(n) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidDuration,
                        v.span,
                        format!("{context} needs a unit"),
                    )
                    .label("no unit")
                    .help(format!("write `{n}s`, `{n}m` or `{n}h`")),
                );
                None
            }
            _ => {
                self.wrong(v, "a duration", context);
                None
            }
        }
    }

    fn names(&mut self, v: &Value, context: &str) -> Vec<Spanned<String>> {
        let one = |v: &Value| match &v.kind {
            ValueKind::Path(p) => Some(Spanned::new(p.clone(), v.span)),
            _ => None,
        };
        match &v.kind {
            ValueKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    match one(i) {
                        Some(s) => out.push(s),
                        None => self.wrong(i, "a step id (unquoted)", context),
                    }
                }
                out
            }
            ValueKind::Path(_) => one(v).into_iter().collect(),
            _ => {
                self.wrong(v, "a list of step ids", context);
                Vec::new()
            }
        }
    }

    /// `tags = [break_glass, "db"]`: words, quoted or not.
    fn tags(&mut self, v: &Value) -> Vec<Spanned<String>> {
        let one = |v: &Value| match &v.kind {
            ValueKind::Path(p) | ValueKind::Str { text: p, .. } => {
                Some(Spanned::new(p.clone(), v.span))
            }
            _ => None,
        };
        match &v.kind {
            ValueKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    match one(i) {
                        Some(s) => out.push(s),
                        None => self.wrong(i, "a tag (a word)", "`tags`"),
                    }
                }
                out
            }
            _ => {
                self.wrong(v, "a list of tags `[break_glass]`", "`tags`");
                Vec::new()
            }
        }
    }

    fn modes(&mut self, v: &Value) -> Option<Spanned<ModeSet>> {
        let words = self.names(v, "`modes`");
        let mut set = ModeSet::default();
        for w in &words {
            match Mode::parse(&w.value) {
                Some(m) => set.0 |= m.bit(),
                None => {
                    let mut d = Diagnostic::error(
                        Code::InvalidMode,
                        w.span,
                        format!("`{}` is not a mode", w.value),
                    )
                    .label("unknown mode");
                    d = match did_you_mean(&w.value, Mode::ALL.iter().map(|m| m.as_str())) {
                        Some(s) => d.did_you_mean(&w.value, s).help(format!(
                            "did you mean `{s}`? modes are drill, failover and failback"
                        )),
                        None => d.help("modes are drill, failover and failback"),
                    };
                    self.diags.push(d);
                }
            }
        }
        Some(Spanned::new(set, v.span))
    }

    fn label(&mut self, b: &Block, what: &str) -> Spanned<String> {
        match b.labels.first() {
            Some(l) => {
                if b.labels.len() > 1 {
                    self.diags.push(
                        Diagnostic::error(
                            Code::SyntaxError,
                            b.labels[1].span,
                            format!("a {what} takes one name"),
                        )
                        .label("extra name"),
                    );
                }
                Spanned::new(l.text.clone(), l.span)
            }
            None => {
                self.diags.push(
                    Diagnostic::error(
                        Code::MissingAttribute,
                        b.kind.span,
                        format!("this {what} has no name"),
                    )
                    .label("name missing")
                    .help(format!("write `{what} NAME {{ ... }}`")),
                );
                Spanned::new(String::new(), b.kind.span)
            }
        }
    }

    fn header(&mut self, b: &Block, span: Span) -> Header {
        let name = self.label(b, "runbook");
        let mut h = Header {
            name,
            description: None,
            owner: None,
            tier: None,
            rto: None,
            rpo: None,
            modes: None,
            max_parallel: None,
            operators: None,
            span,
        };

        for (name, e) in self.entries(b, "the runbook header", vocabulary::HEADER, &[]) {
            let Entry::Attr(a) = e else { continue };
            let v = &a.value;
            match name {
                "description" => h.description = self.string(v, "`description`"),
                "owner" => h.owner = self.string(v, "`owner`"),
                "tier" => h.tier = self.int(v, "`tier`"),
                "rto" => h.rto = self.duration(v, "`rto`"),
                "rpo" => h.rpo = self.duration(v, "`rpo`"),
                "modes" => h.modes = self.modes(v),
                "max_parallel" => h.max_parallel = self.int(v, "`max_parallel`"),
                "operators" => {
                    h.operators = self
                        .string(v, "`operators`")
                        .map(|s| Spanned::new(s, v.span));
                }
                _ => {}
            }
        }
        for (field, missing) in [("rto", h.rto.is_none()), ("rpo", h.rpo.is_none())] {
            if missing
                && !self.diags.iter().any(|d| {
                    d.primary.span.start >= span.start
                        && d.primary.span.end <= span.end
                        && d.code == Code::InvalidDuration
                })
            {
                self.diags.push(
                    Diagnostic::error(
                        Code::MissingAttribute,
                        b.kind.span,
                        format!("the runbook sets no `{field}` target"),
                    )
                    .label(format!("`{field}` missing"))
                    .help(format!(
                        "add `{field} = 4h` (or whatever the service's objective is) to the header"
                    )),
                );
            }
        }
        h
    }

    fn param(&mut self, p: &ParamDecl) -> Param {
        let before = self.diags.len();
        let ty = self.param_type(&p.ty);
        Param {
            name: p.name.clone(),
            ty: Spanned::new(ty, p.ty.span),
            default: p.default.clone(),
            bad_type: self.diags.len() > before,
        }
    }

    fn param_type(&mut self, t: &TypeExpr) -> ParamType {
        let arg = t.arg.as_ref().map(|a| self.param_type(a));
        match (t.name.value.as_str(), arg) {
            ("string", None) => ParamType::String,
            ("int", None) => ParamType::Int,
            ("bool", None) => ParamType::Bool,
            ("duration", None) => ParamType::Duration,
            ("secret", None) => ParamType::Secret,
            ("list", Some(inner)) => ParamType::List(Box::new(inner)),
            ("list", None) => ParamType::List(Box::new(ParamType::String)),
            (name, _) => {
                let mut d = Diagnostic::error(
                    Code::UnknownType,
                    t.name.span,
                    format!("`{name}` is not a parameter type"),
                )
                .label("unknown type");
                d = match did_you_mean(name, vocabulary::TYPES.iter().copied()) {
                    Some(s) => d.did_you_mean(name, s),
                    None => d.help("types are string, int, bool, duration, list<T> and secret"),
                };
                self.diags.push(d);
                ParamType::String
            }
        }
    }

    fn production(&mut self, b: &Block, prod: &mut Production) {
        for (name, e) in self.entries(b, "`production`", vocabulary::PRODUCTION, &[]) {
            let Entry::Attr(a) = e else { continue };
            match (name, &a.value.kind) {
                ("resources", ValueKind::List(items)) => {
                    for i in items {
                        if let Some(s) = self.string(i, "a production resource") {
                            prod.resources.push(Spanned::new(s, i.span));
                        }
                    }
                }
                ("tags", ValueKind::Map(entries)) => {
                    for e in entries {
                        if let Some(s) = self.string(&e.value, "a tag value") {
                            prod.tags.push((e.key.value.clone(), s));
                        }
                    }
                }
                ("resources", _) => self.wrong(&a.value, "a list of strings", "`resources`"),
                _ => self.wrong(&a.value, "a map `{ key = \"value\" }`", "`tags`"),
            }
        }
    }

    fn estimate(&mut self, v: &Value) -> Option<Spanned<Estimate>> {
        let bad = |l: &mut Self, why: &str| {
            l.diags.push(
                Diagnostic::error(Code::InvalidEstimate, v.span, format!("this estimate cannot be used: {why}"))
                    .label("invalid estimate")
                    .help("write `5m`, `5m..10m`, `{ p50 = 5m, p95 = 20m }` or `{ min = 2m, mode = 5m, max = 10m }`"),
            );
            None
        };
        let dur = |v: &Value| match &v.kind {
            ValueKind::Duration(d) => parse_duration(d),
            _ => None,
        };
        let e = match &v.kind {
            ValueKind::Duration(_) => Estimate::Fixed { ms: dur(v)? },
            ValueKind::Range(lo, hi) => match (dur(lo), dur(hi)) {
                (Some(min_ms), Some(max_ms)) if min_ms <= max_ms => {
                    Estimate::Range { min_ms, max_ms }
                }
                (Some(_), Some(_)) => return bad(self, "the lower bound is above the upper bound"),
                _ => return bad(self, "a bound is not a duration"),
            },
            ValueKind::Map(entries) => {
                let mut fields: HashMap<&str, Option<u64>> = HashMap::new();
                for e in entries {
                    fields.insert(e.key.value.as_str(), dur(&e.value));
                }
                let keys = {
                    let mut k: Vec<&str> = fields.keys().copied().collect();
                    k.sort_unstable();
                    k
                };
                if fields.values().any(Option::is_none) {
                    return bad(self, "every field must be a duration");
                }
                let get = |k: &str| fields.get(k).copied().flatten().unwrap_or(0);
                match keys.as_slice() {
                    ["p50", "p95"] if get("p50") <= get("p95") => Estimate::Percentiles {
                        p50_ms: get("p50"),
                        p95_ms: get("p95"),
                    },
                    ["p50", "p95"] => return bad(self, "p50 is above p95"),
                    ["max", "min", "mode"]
                        if get("min") <= get("mode") && get("mode") <= get("max") =>
                    {
                        Estimate::Triangular {
                            min_ms: get("min"),
                            mode_ms: get("mode"),
                            max_ms: get("max"),
                        }
                    }
                    ["max", "min", "mode"] => return bad(self, "min ≤ mode ≤ max does not hold"),
                    _ => {
                        return bad(
                            self,
                            "a map estimate has either p50 and p95, or min, mode and max",
                        );
                    }
                }
            }
            ValueKind::Str { .. } => {
                return bad(self, "it is a string; durations are written without quotes");
            }
            _ => return bad(self, &format!("it is {}", v.kind_name())),
        };
        Some(Spanned::new(e, v.span))
    }

    fn retry(&mut self, b: &Block, span: Span) -> Option<Retry> {
        let mut attempts = None;
        let mut backoff = None;
        let mut max_backoff = None;
        for (name, e) in self.entries(b, "`retry`", vocabulary::RETRY, &[]) {
            let Entry::Attr(a) = e else { continue };
            match name {
                "attempts" => {
                    attempts = self.int(&a.value, "`attempts`").map(|n| (n, a.value.span))
                }
                "backoff" => backoff = self.duration(&a.value, "`backoff`"),
                _ => max_backoff = self.duration(&a.value, "`max_backoff`"),
            }
        }
        let (n, nspan) = match attempts {
            Some(a) => a,
            None => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidRetry,
                        b.kind.span,
                        "`retry` does not say how many attempts",
                    )
                    .label("`attempts` missing")
                    .help("write `retry { attempts = 3  backoff = 10s }`"),
                );
                return None;
            }
        };
        let attempts = match u32::try_from(n) {
            Ok(a) if (1..=100).contains(&a) => a,
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidRetry,
                        nspan,
                        format!("{n} attempts is out of range"),
                    )
                    .label("between 1 and 100")
                    .help("attempts counts the first try too: 3 means two retries"),
                );
                return None;
            }
        };
        let backoff_ms = backoff.map_or(1_000, |b| b.value);
        let max_backoff_ms =
            max_backoff.map_or(backoff_ms.saturating_mul(32).max(backoff_ms), |m| m.value);
        if max_backoff_ms < backoff_ms {
            self.diags.push(
                Diagnostic::error(
                    Code::InvalidRetry,
                    span,
                    "`max_backoff` is shorter than `backoff`",
                )
                .label("inconsistent retry policy"),
            );
            return None;
        }
        Some(Retry {
            attempts,
            backoff_ms,
            max_backoff_ms,
            span,
        })
    }

    fn with_inputs(&mut self, b: &Block) -> Vec<Attribute> {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        // Sized to the block (every lowered step holds its list until the plan is built).
        let mut out = Vec::with_capacity(b.items.len());
        for item in &b.items {
            match &item.kind {
                ItemKind::Attribute(a) => {
                    if let Some(first) = seen.get(a.key.value.as_str()) {
                        self.diags.push(
                            Diagnostic::error(
                                Code::DuplicateAttribute,
                                a.key.span,
                                format!("input `{}` is set twice", a.key.value),
                            )
                            .label("set again here")
                            .with(*first, "first set here"),
                        );
                        continue;
                    }
                    seen.insert(&a.key.value, a.key.span);
                    out.push(a.clone());
                }
                other => {
                    let span = item_name_span(item, other);
                    self.diags.push(
                        Diagnostic::error(
                            Code::WrongValueKind,
                            span,
                            "`with` holds only `input = value` lines",
                        )
                        .label("not an input")
                        .help("a map value is written `name = { key = value }`"),
                    );
                }
            }
        }
        out
    }

    fn action(&mut self, v: &Value) -> Option<Spanned<String>> {
        match &v.kind {
            ValueKind::Path(p) => Some(Spanned::new(p.clone(), v.span)),
            ValueKind::Str { text, .. } => {
                self.diags.push(
                    Diagnostic::error(
                        Code::WrongValueKind,
                        v.span,
                        "action names are written without quotes",
                    )
                    .label("quoted")
                    .help(format!("write `action = {text}`")),
                );
                None
            }
            _ => {
                self.wrong(v, "an action name such as `backup.verify`", "`action`");
                None
            }
        }
    }

    fn step(&mut self, b: &Block, span: Span) -> Step {
        let id = self.label(b, "step");
        let mut s = Step {
            id,
            description: None,
            action: None,
            inputs: Vec::new(),
            after: Vec::new(),
            retry: None,
            timeout: None,
            on_failure: OnFailure::Abort,
            compensate: None,
            when: None,
            for_each: None,
            estimate: None,
            modes: None,
            waivers: Vec::new(),
            tags: Vec::new(),
            span,
        };

        for (name, e) in self.entries(b, "a step", vocabulary::STEP, vocabulary::STEP_BLOCKS) {
            match (name, e) {
                ("description", Entry::Attr(a)) => {
                    s.description = self.string(&a.value, "`description`")
                }
                ("action", Entry::Attr(a)) => s.action = self.action(&a.value),
                ("after", Entry::Attr(a)) => s.after = self.names(&a.value, "`after`"),
                ("timeout", Entry::Attr(a)) => s.timeout = self.duration(&a.value, "`timeout`"),
                ("on_failure", Entry::Attr(a)) => {
                    s.on_failure = match a.value.as_path() {
                        Some("abort") => OnFailure::Abort,
                        Some("continue") => OnFailure::Continue,
                        Some("rollback") => OnFailure::Rollback,
                        _ => {
                            self.diags.push(
                                Diagnostic::error(
                                    Code::WrongValueKind,
                                    a.value.span,
                                    "`on_failure` must be abort, continue or rollback",
                                )
                                .label("unknown policy")
                                .help("write `on_failure = rollback` (no quotes)"),
                            );
                            OnFailure::Abort
                        }
                    }
                }
                ("when", Entry::Attr(a)) => {
                    s.when = self
                        .string(&a.value, "`when`")
                        .map(|w| Spanned::new(w, a.value.span));
                }
                ("for_each", Entry::Attr(a)) => s.for_each = Some(Box::new(a.value.clone())),
                ("estimate", Entry::Attr(a)) => s.estimate = self.estimate(&a.value),
                ("modes", Entry::Attr(a)) => s.modes = self.modes(&a.value),
                ("tags", Entry::Attr(a)) => s.tags = self.tags(&a.value),
                ("with", Entry::Block(w, _)) => s.inputs = self.with_inputs(w),
                ("retry", Entry::Block(r, rspan)) => s.retry = self.retry(r, rspan),
                ("compensate", Entry::Block(c, cspan)) => {
                    s.compensate = self.compensate(c, cspan).map(Box::new)
                }
                ("allow", Entry::Block(w, _)) => s.waivers = self.waivers(w),
                _ => {}
            }
        }
        if s.action.is_none()
            && !self.diags.iter().any(|d| {
                d.primary.span.start >= span.start
                    && d.primary.span.end <= span.end
                    && d.message.contains("action")
            })
        {
            self.diags.push(
                Diagnostic::error(
                    Code::MissingAttribute,
                    s.id.span,
                    format!("step `{}` has no action", s.id.value),
                )
                .label("`action` missing")
                .help("add `action = ...`, for example `action = backup.verify`"),
            );
        }
        s
    }

    fn compensate(&mut self, b: &Block, span: Span) -> Option<Compensate> {
        let mut action = None;
        let mut inputs = Vec::new();
        for (name, e) in self.entries(b, "`compensate`", vocabulary::COMPENSATE, &["with"]) {
            match (name, e) {
                ("action", Entry::Attr(a)) => action = self.action(&a.value),
                ("with", Entry::Block(w, _)) => inputs = self.with_inputs(w),
                _ => {}
            }
        }
        match action {
            Some(action) => Some(Compensate {
                action,
                inputs,
                span,
            }),
            None => {
                self.diags.push(
                    Diagnostic::error(
                        Code::MissingAttribute,
                        b.kind.span,
                        "`compensate` has no action",
                    )
                    .label("`action` missing")
                    .help("write `compensate { action = ...  with { ... } }`"),
                );
                None
            }
        }
    }

    fn waivers(&mut self, b: &Block) -> Vec<Waiver> {
        let names: Vec<&str> = Lint::ALL.iter().map(|l| l.as_str()).collect();
        let mut out = Vec::new();
        for (name, e) in self.entries(b, "`allow`", &names, &[]) {
            let Entry::Attr(a) = e else { continue };
            let Some(lint) = Lint::ALL.into_iter().find(|l| l.as_str() == name) else {
                continue;
            };
            match a.value.as_str() {
                Some(reason) if !reason.trim().is_empty() => out.push(Waiver {
                    lint,
                    reason: Spanned::new(reason.to_owned(), a.value.span),
                }),
                _ => self.diags.push(
                    Diagnostic::error(Code::WaiverWithoutReason, a.value.span, format!("waiving `{name}` needs a reason"))
                        .label("no reason given")
                        .help(format!("write `{name} = \"why this is safe here\"`; the reason is kept in the plan and the audit log")),
                ),
            }
        }
        out
    }

    fn schedule(&mut self, b: &Block) -> ScheduleBlock {
        let name = self.label(b, "schedule");
        let mut s = ScheduleBlock {
            name,
            mode: None,
            cron: None,
            every: None,
            timezone: None,
            blackout: Vec::new(),
            overlap: None,
            catch_up: None,
            jitter: None,
            vars: Vec::new(),
            span: b.kind.span,
        };

        for (name, e) in self.entries(b, "a schedule", vocabulary::SCHEDULE, &[]) {
            let Entry::Attr(a) = e else { continue };
            let v = &a.value;
            let spanned = |t: Option<String>| t.map(|t| Spanned::new(t, v.span));
            match name {
                "mode" => s.mode = self.one_mode(v),
                "cron" => s.cron = spanned(self.string(v, "`cron`")),
                "every" => s.every = self.duration(v, "`every`"),
                "timezone" => s.timezone = spanned(self.string(v, "`timezone`")),
                "blackout" => match &v.kind {
                    ValueKind::List(items) => {
                        for i in items {
                            if let Some(t) = self.string(i, "a blackout") {
                                s.blackout.push(Spanned::new(t, i.span));
                            }
                        }
                    }
                    _ => self.wrong(v, "a list of strings", "`blackout`"),
                },
                "overlap" => match &v.kind {
                    ValueKind::Path(p) => s.overlap = Some(Spanned::new(p.clone(), v.span)),
                    _ => self.wrong(v, "`skip`, `queue` or `cancel_running`", "`overlap`"),
                },
                "catch_up" => s.catch_up = self.duration(v, "`catch_up`"),
                "jitter" => s.jitter = self.duration(v, "`jitter`"),
                "vars" => match &v.kind {
                    ValueKind::Map(entries) => s.vars = entries.clone(),
                    _ => self.wrong(v, "a map `{ name = value }`", "`vars`"),
                },
                _ => {}
            }
        }
        s
    }

    fn one_mode(&mut self, v: &Value) -> Option<Spanned<Mode>> {
        let ValueKind::Path(word) = &v.kind else {
            self.wrong(v, "a mode (drill, failover or failback)", "`mode`");
            return None;
        };
        let m = Mode::parse(word);
        if m.is_none() {
            let mut d =
                Diagnostic::error(Code::InvalidMode, v.span, format!("`{word}` is not a mode"))
                    .label("unknown mode");
            d = match did_you_mean(word, Mode::ALL.iter().map(|m| m.as_str())) {
                Some(s) => d.did_you_mean(word, s).help(format!(
                    "did you mean `{s}`? modes are drill, failover and failback"
                )),
                None => d.help("modes are drill, failover and failback"),
            };
            self.diags.push(d);
        }
        m.map(|m| Spanned::new(m, v.span))
    }

    fn policy(&mut self, b: &Block) -> Policy {
        let mut p = Policy {
            drill_every: None,
            verify_every: None,
            span: b.kind.span,
        };
        if let Some(l) = b.labels.first() {
            self.diags.push(
                Diagnostic::error(Code::SyntaxError, l.span, "`policy` takes no name")
                    .label("name here")
                    .help("write `policy { drill_every = 90d }`"),
            );
        }
        for (name, e) in self.entries(b, "`policy`", vocabulary::POLICY, &[]) {
            let Entry::Attr(a) = e else { continue };
            match name {
                "drill_every" => p.drill_every = self.duration(&a.value, "`drill_every`"),
                _ => p.verify_every = self.duration(&a.value, "`verify_every`"),
            }
        }
        p
    }

    fn milestone(&mut self, b: &Block, span: Span) -> Milestone {
        let id = self.label(b, "milestone");
        let mut m = Milestone {
            id,
            title: None,
            after: Vec::new(),
            stops_rto: false,
            rpo_from: Vec::new(),
            span,
        };
        for (name, e) in self.entries(b, "a milestone", vocabulary::MILESTONE, &[]) {
            let Entry::Attr(a) = e else { continue };
            match name {
                "title" => m.title = self.string(&a.value, "`title`"),
                "after" => m.after = self.names(&a.value, "`after`"),
                "stops_rto" => m.stops_rto = self.boolean(&a.value, "`stops_rto`").unwrap_or(false),
                _ => m.rpo_from = self.names(&a.value, "`rpo_from`"),
            }
        }
        if m.after.is_empty() {
            self.diags.push(
                Diagnostic::error(Code::InvalidMilestone, m.id.span, format!("milestone `{}` waits for no step", m.id.value))
                    .label("`after` missing")
                    .help("add `after = [step_id, ...]`: the steps whose completion reaches the milestone"),
            );
        }
        m
    }

    fn group(&mut self, b: &Block, span: Span) -> Group {
        let name = self.label(b, "group");
        let mut g = Group {
            name,
            params: Vec::new(),
            steps: Vec::new(),
            span,
        };
        for item in &b.items {
            match &item.kind {
                ItemKind::Param(p) => g.params.push(self.param(p)),
                ItemKind::Block(s) if s.kind.value == "step" => {
                    g.steps.push(self.step(s, item.span))
                }
                other => {
                    let span = item_name_span(item, other);
                    self.diags.push(
                        Diagnostic::error(
                            Code::UnknownAttribute,
                            span,
                            "a group holds only `param` and `step` items",
                        )
                        .label("not allowed in a group"),
                    );
                }
            }
        }
        g
    }

    fn group_use(&mut self, b: &Block, span: Span) -> GroupUse {
        let id = self.label(b, "use");
        let mut u = GroupUse {
            id,
            group: None,
            after: Vec::new(),
            args: Vec::new(),
            modes: None,
            span,
        };
        for (name, e) in self.entries(b, "`use`", vocabulary::USE, &["with"]) {
            match (name, e) {
                ("group", Entry::Attr(a)) => {
                    u.group = a
                        .value
                        .as_path()
                        .map(|p| Spanned::new(p.to_owned(), a.value.span));
                    if u.group.is_none() {
                        self.wrong(&a.value, "a group name (unquoted)", "`group`");
                    }
                }
                ("after", Entry::Attr(a)) => u.after = self.names(&a.value, "`after`"),
                ("modes", Entry::Attr(a)) => u.modes = self.modes(&a.value),
                ("with", Entry::Block(w, _)) => u.args = self.with_inputs(w),
                _ => {}
            }
        }
        if u.group.is_none()
            && !self
                .diags
                .iter()
                .any(|d| d.primary.span.start >= span.start && d.primary.span.end <= span.end)
        {
            self.diags.push(
                Diagnostic::error(
                    Code::MissingAttribute,
                    u.id.span,
                    "`use` does not name a group",
                )
                .label("`group` missing")
                .help("write `group = NAME`"),
            );
        }
        u
    }
}

fn item_name_span(item: &Item, kind: &ItemKind) -> Span {
    match kind {
        ItemKind::Attribute(a) => a.key.span,
        ItemKind::Block(b) => b.kind.span,
        ItemKind::Param(p) => p.name.span,
        ItemKind::Import(_) => item.span,
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lowered a piece at a time as it is parsed, every file of the corpus gives the runbook and
    /// the diagnostics (same order, none twice) of parsing it whole and lowering the document.
    #[test]
    fn lowering_piece_by_piece_gives_the_whole_file_runbook() {
        let mut with_lowering_errors = 0;
        for text in crate::parse::tests::corpus() {
            let source = SourceFile::new("t.drover", text.clone());
            let (doc, mut want_diags) = crate::parse::parse(FileId(0), &source);
            let syntax = want_diags.len();
            let want = lower(FileId(0), &doc, &mut want_diags);
            if want_diags.len() > syntax {
                with_lowering_errors += 1;
            }
            for piece_bytes in [1, 100, PIECE_BYTES] {
                let mut diags = Vec::new();
                let got = parse_and_lower_in(FileId(0), &source, piece_bytes, &mut diags);
                assert_eq!(format!("{got:?}"), format!("{want:?}"), "{text}");
                assert_eq!(format!("{diags:?}"), format!("{want_diags:?}"), "{text}");
            }
        }
        assert!(with_lowering_errors > 5, "{with_lowering_errors}");
    }

    /// Both threads take pieces as they go, so which one parses a broken piece changes from run
    /// to run: a syntax error near the start, in the middle or at the end of a long file is
    /// reported as the whole-file parse reports it, every time.
    #[test]
    fn a_broken_piece_is_reported_whichever_thread_parses_it() {
        let text = crate::synthetic_runbook(300);
        let lines: Vec<&str> = text.lines().collect();
        for at in [lines.len() / 50, lines.len() / 2, lines.len() - 3] {
            let mut broken = lines.clone();
            broken.insert(at, "step broken { action = }");
            let source = SourceFile::new("t.drover", broken.join("\n"));
            let (doc, mut want_diags) = crate::parse::parse(FileId(0), &source);
            assert!(!want_diags.is_empty());
            let want = lower(FileId(0), &doc, &mut want_diags);
            for _ in 0..20 {
                let mut diags = Vec::new();
                let got = parse_and_lower_in(FileId(0), &source, 100, &mut diags);
                assert_eq!(format!("{got:?}"), format!("{want:?}"), "line {at}");
                assert_eq!(format!("{diags:?}"), format!("{want_diags:?}"), "line {at}");
            }
        }
    }
}
