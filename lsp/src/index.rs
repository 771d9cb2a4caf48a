//! What a file defines and where it refers to it: steps, milestones, `use`s, parameters, groups,
//! imports, and every name that points at one of them (in `after`, `rpo_from`, `group`, values
//! and templates). Built from the parser's concrete tree alone, so it exists for files with
//! errors too.

use drover_dsl::{
    Attribute, Block, Document, FileId, Item, ItemKind, SourceFile, Span, Value, ValueKind,
};

/// The kinds of thing a name can define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymbolKind {
    /// `step ID { ... }`.
    Step,
    /// `milestone ID { ... }`.
    Milestone,
    /// `use ID { ... }` (a group's steps, waited for as a whole).
    Use,
    /// `param NAME: TYPE`.
    Param,
    /// `group NAME { ... }`.
    Group,
}

impl SymbolKind {
    /// Whether `after = [NAME]` may name it.
    #[must_use]
    pub fn is_step_like(self) -> bool {
        matches!(
            self,
            SymbolKind::Step | SymbolKind::Milestone | SymbolKind::Use
        )
    }

    /// The word the language uses for it.
    #[must_use]
    pub fn word(self) -> &'static str {
        match self {
            SymbolKind::Step => "step",
            SymbolKind::Milestone => "milestone",
            SymbolKind::Use => "use",
            SymbolKind::Param => "param",
            SymbolKind::Group => "group",
        }
    }
}

/// One definition.
#[derive(Debug, Clone)]
pub struct Symbol {
    /// What it is.
    pub kind: SymbolKind,
    /// Its name.
    pub name: String,
    /// The group it is defined in, if any.
    pub scope: Option<String>,
    /// Where the name is written.
    pub name_span: Span,
    /// The whole item.
    pub span: Span,
    /// A step's action (and a `use`'s group), as written.
    pub action: Option<String>,
    /// A step's or milestone's description or title.
    pub description: Option<String>,
    /// A parameter's type and default, as written.
    pub ty: Option<String>,
    /// A parameter's default, as written.
    pub default: Option<String>,
    /// A step's estimate, as written.
    pub estimate: Option<String>,
    /// Whether a step sets `timeout`.
    pub has_timeout: bool,
    /// Where a step's `action = ...` line ends (to add attributes after it).
    pub action_end: Option<Span>,
    /// The names in `after`, as written.
    pub after: Vec<String>,
}

/// The kinds of name a reference may point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A step, milestone or `use`.
    Step,
    /// A parameter (or, for a bare word that is no parameter, a word of a fixed set).
    Param,
    /// A group.
    Group,
}

/// A name that refers to a definition.
#[derive(Debug, Clone)]
pub struct Reference {
    /// What it may point at.
    pub kind: RefKind,
    /// The name.
    pub name: String,
    /// The group it is written in.
    pub scope: Option<String>,
    /// Exactly the name's text.
    pub span: Span,
}

/// `import "path"`.
#[derive(Debug, Clone)]
pub struct ImportRef {
    /// The path as written.
    pub path: String,
    /// The string's span (quotes included).
    pub span: Span,
}

/// An input key in a `with` block.
#[derive(Debug, Clone)]
pub struct InputKey {
    /// The action of the step (or compensate) the block belongs to.
    pub action: Option<String>,
    /// The input's name.
    pub name: String,
    /// Where the key is written.
    pub span: Span,
}

/// Everything a file defines and refers to.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Definitions, in source order.
    pub symbols: Vec<Symbol>,
    /// References, in source order.
    pub refs: Vec<Reference>,
    /// Imports.
    pub imports: Vec<ImportRef>,
    /// Action names written as values: span and name.
    pub actions: Vec<(Span, String)>,
    /// Durations written as values: span and text.
    pub durations: Vec<(Span, String)>,
    /// Input keys in `with` blocks.
    pub inputs: Vec<InputKey>,
    /// The header's `operators` roster path, as written.
    pub operators: Option<String>,
    /// The header's span, if the file has one.
    pub header: Option<Span>,
}

impl Index {
    /// Indexes a parsed file.
    #[must_use]
    pub fn build(doc: &Document, source: &SourceFile) -> Index {
        let mut ix = Index::default();
        let mut b = Builder {
            ix: &mut ix,
            source,
        };
        for item in &doc.items {
            b.top(item, None);
        }
        ix
    }

    /// The definition a reference points at, in this file.
    #[must_use]
    pub fn resolve(&self, r: &Reference) -> Option<&Symbol> {
        let fits = |s: &&Symbol| {
            s.name == r.name
                && match r.kind {
                    RefKind::Step => s.kind.is_step_like(),
                    RefKind::Param => s.kind == SymbolKind::Param,
                    RefKind::Group => s.kind == SymbolKind::Group,
                }
        };
        let in_scope = self
            .symbols
            .iter()
            .filter(fits)
            .find(|s| s.scope.is_some() && s.scope == r.scope);
        in_scope.or_else(|| self.symbols.iter().filter(fits).find(|s| s.scope.is_none()))
    }

    /// The steps a name can see: a group's own first, then the file's.
    pub fn steps_in_scope<'a>(
        &'a self,
        scope: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Symbol> + 'a {
        self.symbols.iter().filter(move |s| {
            s.kind.is_step_like() && (s.scope.is_none() || s.scope.as_deref() == scope)
        })
    }

    /// The parameters a name can see: a group's own, then the file's.
    pub fn params_in_scope<'a>(
        &'a self,
        scope: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Symbol> + 'a {
        self.symbols.iter().filter(move |s| {
            s.kind == SymbolKind::Param && (s.scope.is_none() || s.scope.as_deref() == scope)
        })
    }

    /// The step (or milestone, `use`) with this id, seen from `scope`.
    #[must_use]
    pub fn step(&self, name: &str, scope: Option<&str>) -> Option<&Symbol> {
        self.resolve(&Reference {
            kind: RefKind::Step,
            name: name.to_owned(),
            scope: scope.map(str::to_owned),
            span: Span::new(FileId(0), 0, 0),
        })
    }

    /// The reference written at a byte offset.
    #[must_use]
    pub fn ref_at(&self, offset: usize) -> Option<&Reference> {
        self.refs.iter().find(|r| contains(r.span, offset))
    }

    /// The definition whose name is written at a byte offset.
    #[must_use]
    pub fn symbol_at(&self, offset: usize) -> Option<&Symbol> {
        self.symbols.iter().find(|s| contains(s.name_span, offset))
    }

    /// The innermost step-like item whose text holds a byte offset.
    #[must_use]
    pub fn enclosing(&self, offset: usize) -> Option<&Symbol> {
        self.symbols
            .iter()
            .filter(|s| s.kind.is_step_like() && contains(s.span, offset))
            .min_by_key(|s| s.span.len())
    }

    /// Every reference that points at `target`.
    pub fn references_to<'a>(&'a self, target: &'a Symbol) -> impl Iterator<Item = &'a Reference> {
        self.refs.iter().filter(move |r| {
            self.resolve(r)
                .is_some_and(|s| s.name_span == target.name_span)
        })
    }
}

/// Whether a span holds an offset (its end included, where a cursor after a name sits).
#[must_use]
pub fn contains(span: Span, offset: usize) -> bool {
    (span.start as usize) <= offset && offset <= span.end as usize
}

struct Builder<'a> {
    ix: &'a mut Index,
    source: &'a SourceFile,
}

impl Builder<'_> {
    fn text(&self, span: Span) -> String {
        self.source.slice(span).to_owned()
    }

    fn top(&mut self, item: &Item, scope: Option<&str>) {
        match &item.kind {
            ItemKind::Import(i) => self.ix.imports.push(ImportRef {
                path: i.path.value.clone(),
                span: i.path.span,
            }),
            ItemKind::Param(p) => {
                let default = p.default.as_ref().map(|d| self.text(d.span));
                if let Some(d) = &p.default {
                    self.value(d, scope);
                }
                self.ix.symbols.push(Symbol {
                    kind: SymbolKind::Param,
                    name: p.name.value.clone(),
                    scope: scope.map(str::to_owned),
                    name_span: p.name.span,
                    span: item.span,
                    action: None,
                    description: None,
                    ty: Some(self.text(p.ty.span)),
                    default,
                    estimate: None,
                    has_timeout: false,
                    action_end: None,
                    after: Vec::new(),
                });
            }
            ItemKind::Attribute(a) => self.value(&a.value, scope),
            ItemKind::Block(b) => self.block(item, b, scope),
        }
    }

    fn block(&mut self, item: &Item, b: &Block, scope: Option<&str>) {
        let label = b.labels.first();
        let kind = match b.kind.value.as_str() {
            "step" => Some(SymbolKind::Step),
            "milestone" => Some(SymbolKind::Milestone),
            "use" => Some(SymbolKind::Use),
            "group" => Some(SymbolKind::Group),
            _ => None,
        };
        if b.kind.value == "runbook" && scope.is_none() {
            self.ix.header = Some(item.span);
        }
        match (kind, label) {
            (Some(SymbolKind::Group), Some(l)) => {
                self.ix.symbols.push(symbol(
                    SymbolKind::Group,
                    l.text.clone(),
                    None,
                    l.span,
                    item.span,
                ));
                for inner in &b.items {
                    self.top(inner, Some(&l.text));
                }
            }
            (Some(kind), Some(l)) => {
                let mut s = symbol(kind, l.text.clone(), scope, l.span, item.span);
                for inner in &b.items {
                    self.step_item(inner, &mut s, scope);
                }
                self.ix.symbols.push(s);
            }
            _ => {
                for inner in &b.items {
                    match &inner.kind {
                        ItemKind::Attribute(a) => {
                            if b.kind.value == "runbook" && a.key.value == "operators" {
                                self.ix.operators = a.value.as_str().map(str::to_owned);
                            }
                            self.value(&a.value, scope);
                        }
                        ItemKind::Block(nb) => self.block(inner, nb, scope),
                        _ => self.top(inner, scope),
                    }
                }
            }
        }
    }

    /// An item inside a step, milestone or `use`.
    fn step_item(&mut self, item: &Item, s: &mut Symbol, scope: Option<&str>) {
        match &item.kind {
            ItemKind::Attribute(a) => self.step_attribute(a, s, scope),
            ItemKind::Block(b) if b.kind.value == "with" => {
                let action = s.action.clone();
                self.with_block(b, action, scope);
            }
            ItemKind::Block(b) if b.kind.value == "compensate" => {
                let mut action = None;
                for inner in &b.items {
                    if let ItemKind::Attribute(a) = &inner.kind
                        && a.key.value == "action"
                    {
                        action = a.value.as_path().map(str::to_owned);
                        if let Some(name) = &action {
                            self.ix.actions.push((a.value.span, name.clone()));
                        }
                    }
                }
                for inner in &b.items {
                    if let ItemKind::Block(w) = &inner.kind
                        && w.kind.value == "with"
                    {
                        self.with_block(w, action.clone(), scope);
                    }
                }
            }
            ItemKind::Block(b) => {
                for inner in &b.items {
                    if let ItemKind::Attribute(a) = &inner.kind {
                        self.value(&a.value, scope);
                    }
                }
            }
            _ => {}
        }
    }

    fn step_attribute(&mut self, a: &Attribute, s: &mut Symbol, scope: Option<&str>) {
        match a.key.value.as_str() {
            "action" if s.kind == SymbolKind::Step => {
                if let Some(name) = a.value.as_path() {
                    s.action = Some(name.to_owned());
                    self.ix.actions.push((a.value.span, name.to_owned()));
                }
                s.action_end = Some(a.value.span);
            }
            "group" if s.kind == SymbolKind::Use => {
                if let Some(name) = a.value.as_path() {
                    s.action = Some(name.to_owned());
                    self.ix.refs.push(Reference {
                        kind: RefKind::Group,
                        name: name.to_owned(),
                        scope: None,
                        span: a.value.span,
                    });
                }
            }
            "after" | "rpo_from" => {
                let items: Vec<&Value> = match &a.value.kind {
                    ValueKind::List(vs) => vs.iter().collect(),
                    _ => vec![&a.value],
                };
                for v in items {
                    if let Some(p) = v.as_path() {
                        let root = p.split('.').next().unwrap_or(p);
                        if a.key.value == "after" {
                            s.after.push(p.to_owned());
                        }
                        self.ix.refs.push(Reference {
                            kind: RefKind::Step,
                            name: root.to_owned(),
                            scope: scope.map(str::to_owned),
                            span: Span::new(
                                v.span.file,
                                v.span.start as usize,
                                v.span.start as usize + root.len(),
                            ),
                        });
                    }
                }
            }
            "description" | "title" => s.description = a.value.as_str().map(str::to_owned),
            "estimate" => {
                s.estimate = Some(self.text(a.value.span));
                self.value(&a.value, scope);
            }
            "timeout" => {
                s.has_timeout = true;
                self.value(&a.value, scope);
            }
            _ => self.value(&a.value, scope),
        }
    }

    fn with_block(&mut self, b: &Block, action: Option<String>, scope: Option<&str>) {
        for inner in &b.items {
            if let ItemKind::Attribute(a) = &inner.kind {
                self.ix.inputs.push(InputKey {
                    action: action.clone(),
                    name: a.key.value.clone(),
                    span: a.key.span,
                });
                self.value(&a.value, scope);
            }
        }
    }

    /// References inside a value: parameters, `steps.ID.OUTPUT`, templates in strings.
    fn value(&mut self, v: &Value, scope: Option<&str>) {
        match &v.kind {
            ValueKind::Path(p) => self.path(p, v.span.start as usize, v.span.file, scope),
            ValueKind::Str { raw, .. } => {
                let base = v.span.start as usize + 1;
                for (off, name) in template_names(raw) {
                    self.path(&name, base + off, v.span.file, scope);
                }
            }
            ValueKind::Duration(d) => self.ix.durations.push((v.span, d.clone())),
            ValueKind::Range(a, b) => {
                self.value(a, scope);
                self.value(b, scope);
            }
            ValueKind::List(vs) => {
                for x in vs {
                    self.value(x, scope);
                }
            }
            ValueKind::Map(attrs) => {
                for a in attrs {
                    self.value(&a.value, scope);
                }
            }
            ValueKind::Call { name, args } if name.value != "env" => {
                for x in args {
                    self.value(x, scope);
                }
            }
            _ => {}
        }
    }

    /// A dotted name starting at `start`: `steps.ID…` refers to a step, anything else to a
    /// parameter by its first part.
    fn path(&mut self, p: &str, start: usize, file: FileId, scope: Option<&str>) {
        let mut parts = p.split('.');
        let root = parts.next().unwrap_or("");
        if root == "steps" {
            if let Some(id) = parts.next().filter(|s| !s.is_empty()) {
                let at = start + "steps.".len();
                self.ix.refs.push(Reference {
                    kind: RefKind::Step,
                    name: id.to_owned(),
                    scope: scope.map(str::to_owned),
                    span: Span::new(file, at, at + id.len()),
                });
            }
        } else if !root.is_empty() {
            self.ix.refs.push(Reference {
                kind: RefKind::Param,
                name: root.to_owned(),
                scope: scope.map(str::to_owned),
                span: Span::new(file, start, start + root.len()),
            });
        }
    }
}

fn symbol(
    kind: SymbolKind,
    name: String,
    scope: Option<&str>,
    name_span: Span,
    span: Span,
) -> Symbol {
    Symbol {
        kind,
        name,
        scope: scope.map(str::to_owned),
        name_span,
        span,
        action: None,
        description: None,
        ty: None,
        default: None,
        estimate: None,
        has_timeout: false,
        action_end: None,
        after: Vec::new(),
    }
}

/// Words a template expression may hold that are never variables.
const TEMPLATE_WORDS: &[&str] = &[
    "if", "else", "elif", "endif", "for", "endfor", "in", "is", "not", "and", "or", "true",
    "false", "none", "True", "False", "None", "set", "endset", "loop",
];

/// The dotted names a template reads, with their byte offsets in the raw string: the roots of
/// expressions inside `{{ }}` and `{% %}`, not attribute names after a `.`, filters after a `|`,
/// or string literals.
#[must_use]
pub fn template_names(raw: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(open) = find_open(raw, i) {
        let body_start = open + 2;
        let close = ["}}", "%}"]
            .iter()
            .filter_map(|c| raw[body_start..].find(c))
            .min()
            .map_or(raw.len(), |c| body_start + c);
        let mut j = body_start;
        let mut prev = b' ';
        while j < close {
            let c = bytes[j];
            if c == b'"' || c == b'\'' {
                let end = raw[j + 1..close]
                    .find(char::from(c))
                    .map_or(close, |k| j + 1 + k + 1);
                j = end;
                prev = b'"';
                continue;
            }
            if c.is_ascii_alphabetic() || c == b'_' {
                let start = j;
                while j < close
                    && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'.')
                {
                    j += 1;
                }
                let word = raw[start..j].trim_end_matches('.');
                let root = word.split('.').next().unwrap_or(word);
                if prev != b'.' && prev != b'|' && !TEMPLATE_WORDS.contains(&root) {
                    out.push((start, word.to_owned()));
                }
                prev = b'a';
                continue;
            }
            if !c.is_ascii_whitespace() {
                prev = c;
            }
            j += 1;
        }
        i = close.min(raw.len());
        if i >= raw.len() {
            break;
        }
    }
    out
}

fn find_open(raw: &str, from: usize) -> Option<usize> {
    let a = raw.get(from..)?.find("{{").map(|k| from + k);
    let b = raw.get(from..)?.find("{%").map(|k| from + k);
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_skip_filters_attributes_and_strings() {
        let names = template_names(
            "{{ region | lower }}/{{ steps.restore.path }} {% if dry %}'x'{% endif %} {{ \"a b\" ~ zone }}",
        );
        let words: Vec<&str> = names.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(words, ["region", "steps.restore.path", "dry", "zone"]);
        assert_eq!(names[0].0, 3);
    }

    #[test]
    fn references_resolve_to_group_steps_first() {
        let src = SourceFile::new(
            "x",
            "step a { action = wait }\ngroup g {\n  param url: string\n  step a { action = wait }\n  step b { action = wait\n after = [a]\n with { u = \"{{ url }}\" } }\n}\nstep c { action = wait\n after = [a] }\n",
        );
        let (doc, diags) = drover_dsl::parse(FileId(0), &src);
        assert!(diags.is_empty(), "{diags:?}");
        let ix = Index::build(&doc, &src);
        let afters: Vec<&Reference> = ix.refs.iter().filter(|r| r.kind == RefKind::Step).collect();
        assert_eq!(afters.len(), 2);
        let in_group = ix.resolve(afters[0]).expect("resolves");
        assert_eq!(in_group.scope.as_deref(), Some("g"));
        let top = ix.resolve(afters[1]).expect("resolves");
        assert_eq!(top.scope, None);
        let url = ix.refs.iter().find(|r| r.name == "url").expect("url ref");
        assert_eq!(src.slice(url.span), "url");
        assert_eq!(ix.resolve(url).map(|s| s.kind), Some(SymbolKind::Param));
    }
}
