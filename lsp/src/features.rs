//! What the server answers: completion, hover, navigation, rename, formatting, symbols, code
//! actions and diagnostics, over the open documents.

use crate::context::{self, Context, Frame};
use crate::index::{Index, RefKind, Symbol, SymbolKind, contains};
use crate::server::{code, severity};
use crate::text::{Text, name_to_uri, uri_to_name};
use drover_dsl::vocabulary;
use drover_dsl::{
    Compilation, Dependency, FileId, FsLoader, Mode, Plan, SourceFile, SourceLoader, Span,
    format_duration, parse_duration,
};
use drover_schema::{ActionSchema, Catalogue, ValueType};
use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CodeActionParams, CodeDescription,
    CompletionItem, CompletionItemKind, CompletionList, CompletionTextEdit, Diagnostic,
    DiagnosticRelatedInformation, DocumentSymbol, Documentation, GotoDefinitionResponse, Hover,
    HoverContents, Location, MarkupContent, MarkupKind, Position, PrepareRenameResponse, Range,
    TextDocumentContentChangeEvent, TextEdit, Uri, WorkspaceEdit,
};
use petgraph::Direction;
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;

/// A file as last indexed: its text then, and what it defines and refers to.
#[derive(Debug)]
pub struct Analysis {
    /// The document version indexed.
    pub version: i32,
    /// The text indexed.
    pub source: SourceFile,
    /// Positions in the protocol's units for `source`.
    pub text: Text,
    /// Definitions and references.
    pub index: Index,
}

impl Analysis {
    /// Parses and indexes a file.
    #[must_use]
    pub fn new(version: i32, name: &str, text: &str) -> Analysis {
        let source = SourceFile::new(name, text);
        let (doc, _) = drover_dsl::parse(FileId(0), &source);
        let index = Index::build(&doc, &source);
        Analysis {
            version,
            text: Text::new(text.to_owned()),
            source,
            index,
        }
    }

    fn range(&self, span: Span) -> Range {
        self.text.range(span.start as usize, span.end as usize)
    }
}

struct Doc {
    uri: Uri,
    version: i32,
    text: Text,
    analysis: Option<Arc<Analysis>>,
    compilation: Option<Compilation>,
}

/// The open documents, by file name.
#[derive(Default)]
pub struct Docs {
    by_name: HashMap<String, Doc>,
}

impl Docs {
    /// A document was opened.
    pub fn open(&mut self, uri: Uri, version: i32, text: String) {
        let name = uri_to_name(&uri);
        self.by_name.insert(
            name,
            Doc {
                uri,
                version,
                text: Text::new(text),
                analysis: None,
                compilation: None,
            },
        );
    }

    /// A document changed.
    pub fn change(
        &mut self,
        name: &str,
        version: i32,
        changes: Vec<TextDocumentContentChangeEvent>,
    ) {
        if let Some(d) = self.by_name.get_mut(name) {
            for c in changes {
                d.text.apply(c);
            }
            d.version = version;
        }
    }

    /// A document was closed.
    pub fn close(&mut self, name: &str) {
        self.by_name.remove(name);
    }

    /// The names of the open files.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Whether a file is open.
    #[must_use]
    pub fn is_open(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The URI an open file was opened with.
    #[must_use]
    pub fn uri(&self, name: &str) -> Option<&Uri> {
        self.by_name.get(name).map(|d| &d.uri)
    }

    /// The version and text of every open file, by name.
    #[must_use]
    pub fn overlay(&self) -> HashMap<String, (i32, String)> {
        self.by_name
            .iter()
            .map(|(n, d)| (n.clone(), (d.version, d.text.as_str().to_owned())))
            .collect()
    }

    /// The analysis of the current text (made now if the last one is older).
    fn fresh(&mut self, name: &str) -> Option<Arc<Analysis>> {
        let d = self.by_name.get_mut(name)?;
        match &d.analysis {
            Some(a) if a.version == d.version && a.source.text == d.text.as_str() => {
                Some(Arc::clone(a))
            }
            _ => {
                let a = Arc::new(Analysis::new(d.version, name, d.text.as_str()));
                d.analysis = Some(Arc::clone(&a));
                Some(a)
            }
        }
    }

    /// The last analysis, even if the text changed since (names only are read from it).
    fn latest(&mut self, name: &str) -> Option<Arc<Analysis>> {
        match self.by_name.get(name)?.analysis.as_ref() {
            Some(a) => Some(Arc::clone(a)),
            None => self.fresh(name),
        }
    }

    /// Records an analysis made elsewhere (by the compile worker), if it is newer.
    pub fn offer_analysis(&mut self, name: &str, a: Analysis) {
        if let Some(d) = self.by_name.get_mut(name)
            && d.analysis
                .as_ref()
                .is_none_or(|old| old.version <= a.version)
            && a.version <= d.version
        {
            d.analysis = Some(Arc::new(a));
        }
    }

    /// Whether a file holds only groups (a library imported by runbooks).
    pub fn is_library(&mut self, name: &str) -> bool {
        self.latest(name).is_some_and(|a| {
            a.index.header.is_none() && a.index.symbols.iter().any(|s| s.kind == SymbolKind::Group)
        })
    }

    /// The files to compile when `name` changes: itself (unless it is a library) and every open
    /// file that imports it.
    pub fn roots_for(&mut self, name: &str) -> Vec<String> {
        let mut roots = Vec::new();
        if !self.is_library(name) {
            roots.push(name.to_owned());
        }
        let others: Vec<String> = self
            .by_name
            .keys()
            .filter(|n| *n != name)
            .cloned()
            .collect();
        for other in others {
            if let Some(a) = self.latest(&other)
                && a.index
                    .imports
                    .iter()
                    .any(|i| FsLoader.resolve(Some(&other), &i.path) == name)
            {
                roots.push(other);
            }
        }
        if roots.is_empty() {
            roots.push(name.to_owned());
        }
        roots
    }

    /// Keeps a root's latest compilation (for hovers: dependencies and estimates).
    pub fn set_compilation(&mut self, root: &str, c: Compilation) {
        if let Some(d) = self.by_name.get_mut(root) {
            d.compilation = Some(c);
        }
    }

    fn plan(&self, name: &str) -> Option<&Plan> {
        self.by_name.get(name)?.compilation.as_ref()?.plan.as_ref()
    }

    fn text(&self, name: &str) -> Option<&Text> {
        self.by_name.get(name).map(|d| &d.text)
    }

    /// A file's text: the open document's, else the disk's.
    fn read(&self, name: &str) -> Option<String> {
        match self.by_name.get(name) {
            Some(d) => Some(d.text.as_str().to_owned()),
            None => FsLoader.read(name).ok(),
        }
    }
}

/// A compiler diagnostic in the protocol's terms: the same code, message and hint as
/// `drover check`, related places and the hint as related information, the fix as data.
pub fn to_lsp_diagnostic(
    d: &drover_dsl::Diagnostic,
    c: &Compilation,
    docs_url: &str,
    texts: &mut HashMap<FileId, Text>,
) -> Diagnostic {
    let mut range_of = |span: Span| {
        let t = texts
            .entry(span.file)
            .or_insert_with(|| Text::new(c.sources.get(span.file).text.clone()));
        t.range(span.start as usize, span.end as usize)
    };
    let range = range_of(d.primary.span);
    let here = name_to_uri(&c.sources.get(d.primary.span.file).name);
    let mut related = Vec::new();
    for l in &d.secondary {
        if let Some(uri) = name_to_uri(&c.sources.get(l.span.file).name) {
            related.push(DiagnosticRelatedInformation {
                location: Location::new(uri, range_of(l.span)),
                message: if l.message.is_empty() {
                    "related".to_owned()
                } else {
                    l.message.clone()
                },
            });
        }
    }
    if let (Some(h), Some(uri)) = (&d.help, &here) {
        related.push(DiagnosticRelatedInformation {
            location: Location::new(uri.clone(), range),
            message: format!("help: {h}"),
        });
    }
    let href = Uri::from_str(&format!(
        "{docs_url}#{}",
        d.code.as_str().to_ascii_lowercase()
    ))
    .ok();
    Diagnostic {
        range,
        severity: Some(severity(d.severity)),
        code: Some(code(d.code)),
        code_description: href.map(|href| CodeDescription { href }),
        source: Some("drover".to_owned()),
        message: d.message.clone(),
        related_information: (!related.is_empty()).then_some(related),
        tags: None,
        data: d
            .suggestion
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .map(|v| serde_json::json!({ "suggestion": v, "help": d.help })),
    }
}

// ----------------------------------------------------------------------------------------------
// Completion

struct Items {
    items: Vec<CompletionItem>,
    range: Range,
    /// Whether the text replaced is empty or a plain word.
    word_prefix: bool,
}

fn is_word(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Items {
    fn push(
        &mut self,
        label: &str,
        kind: CompletionItemKind,
        detail: Option<String>,
        doc: Option<String>,
    ) {
        self.add(label, label, kind, detail, doc, None);
    }

    fn add(
        &mut self,
        label: &str,
        insert: &str,
        kind: CompletionItemKind,
        detail: Option<String>,
        doc: Option<String>,
        sort: Option<String>,
    ) {
        // A plain word replacing a plain word needs no edit of its own: the editor replaces the
        // word at the cursor. That keeps a list of 10,000 step ids small.
        let text_edit = (insert != label || !is_word(label) || !self.word_prefix).then(|| {
            CompletionTextEdit::Edit(TextEdit {
                range: self.range,
                new_text: insert.to_owned(),
            })
        });
        self.items.push(CompletionItem {
            label: label.to_owned(),
            kind: Some(kind),
            detail,
            documentation: doc.map(|d| {
                Documentation::MarkupContent(MarkupContent {
                    kind: MarkupKind::Markdown,
                    value: d,
                })
            }),
            sort_text: sort,
            text_edit,
            ..CompletionItem::default()
        });
    }
}

/// Completion at a position.
pub fn completion(
    docs: &mut Docs,
    catalogue: &dyn Catalogue,
    uri: &Uri,
    pos: Position,
) -> Option<CompletionList> {
    let name = uri_to_name(uri);
    let text = docs.text(&name)?;
    let offset = text.offset(pos);
    let ctx = context::at(text.as_str(), offset);
    let (replace_len, word) = replaced_word(&ctx);
    let start = offset.saturating_sub(replace_len);
    let range = Range::new(text.position(start), pos);
    let a = docs.latest(&name)?;
    let mut out = Items {
        items: Vec::new(),
        range,
        word_prefix: is_word(&word),
    };
    let ix = &a.index;
    let scope = ctx.scope().map(str::to_owned);
    let scope = scope.as_deref();
    match &ctx {
        Context::Nothing => {}
        Context::TopLevel { .. } => {
            for k in vocabulary::TOP_LEVEL {
                out.push(k, CompletionItemKind::KEYWORD, None, None);
            }
        }
        Context::Type { .. } => {
            for t in vocabulary::TYPES {
                out.push(t, CompletionItemKind::TYPE_PARAMETER, None, None);
            }
        }
        Context::Key { frames, .. } => key_items(&mut out, frames, ix, catalogue, docs, &name),
        Context::Template { prefix, .. } => {
            if !step_path_items(&mut out, prefix, ix, scope, catalogue) {
                param_items(&mut out, ix, scope);
                for w in ["steps", "run", "mode", "each"] {
                    out.push(w, CompletionItemKind::KEYWORD, None, None);
                }
            }
        }
        Context::Value {
            frames,
            key,
            prefix,
            in_list,
            in_string,
        } => {
            let last = frames.last().map(|f| f.kind.as_str());
            let current = ctx.step().and_then(|f| f.label.clone());
            if *in_string {
                if key == "roles" {
                    for r in roster_roles(docs, &name, ix) {
                        out.push(
                            &r,
                            CompletionItemKind::ENUM_MEMBER,
                            Some("role".into()),
                            None,
                        );
                    }
                }
            } else if step_path_items(&mut out, prefix, ix, scope, catalogue) {
            } else if key == "action" {
                for n in catalogue.names() {
                    if !n.starts_with(word.as_str()) {
                        continue;
                    }
                    let summary = catalogue.lookup(n).map(|s| s.summary.clone());
                    out.push(
                        n,
                        CompletionItemKind::FUNCTION,
                        summary,
                        catalogue.lookup(n).map(action_markdown),
                    );
                }
            } else if (key == "after" || key == "rpo_from") && (*in_list || prefix.is_empty()) {
                for s in ix.steps_in_scope(scope) {
                    if Some(&s.name) == current.as_ref() && s.scope.as_deref() == scope {
                        continue;
                    }
                    if key == "rpo_from" && s.kind != SymbolKind::Step {
                        continue;
                    }
                    out.push(
                        &s.name,
                        step_kind(s.kind),
                        step_detail(s),
                        s.description.clone(),
                    );
                }
            } else if key == "modes" || key == "mode" {
                for m in Mode::ALL {
                    out.push(
                        m.as_str(),
                        CompletionItemKind::ENUM_MEMBER,
                        Some("mode".into()),
                        None,
                    );
                }
            } else if key == "on_failure" {
                for w in vocabulary::ON_FAILURE {
                    out.push(w, CompletionItemKind::ENUM_MEMBER, None, None);
                }
            } else if key == "group" && ctx.step().is_some_and(|f| f.kind == "use") {
                for g in groups_visible(docs, &name, ix) {
                    out.push(
                        &g.name,
                        CompletionItemKind::MODULE,
                        Some("group".into()),
                        None,
                    );
                }
            } else if key == "stops_rto" {
                for w in ["true", "false"] {
                    out.push(w, CompletionItemKind::VALUE, None, None);
                }
            } else if last == Some("with") {
                let spec = input_spec(frames, ix, catalogue, key);
                let words = spec.as_ref().map(|s| words_of(&s.ty)).unwrap_or_default();
                for w in &words {
                    out.push(
                        w,
                        CompletionItemKind::ENUM_MEMBER,
                        spec.as_ref().map(|s| s.ty.describe()),
                        None,
                    );
                }
                if key == "roles" {
                    for r in roster_roles(docs, &name, ix) {
                        let quoted = format!("\"{r}\"");
                        out.add(
                            &quoted,
                            &quoted,
                            CompletionItemKind::ENUM_MEMBER,
                            Some("role".into()),
                            None,
                            None,
                        );
                    }
                }
                if words.is_empty() {
                    param_items(&mut out, ix, scope);
                    out.add(
                        "steps",
                        "steps.",
                        CompletionItemKind::KEYWORD,
                        Some("another step's output: steps.ID.OUTPUT".into()),
                        None,
                        None,
                    );
                }
            } else {
                param_items(&mut out, ix, scope);
            }
        }
    }
    Some(CompletionList {
        is_incomplete: false,
        items: out.items,
    })
}

/// How many bytes before the cursor a completion replaces, and that text.
fn replaced_word(ctx: &Context) -> (usize, String) {
    let prefix = match ctx {
        Context::TopLevel { prefix }
        | Context::Key { prefix, .. }
        | Context::Template { prefix, .. }
        | Context::Type { prefix } => prefix.as_str(),
        Context::Value {
            prefix, in_string, ..
        } => {
            if *in_string {
                // Inside quotes: the word after the last separator.
                let cut = prefix
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                    .map_or(0, |i| i + 1);
                &prefix[cut..]
            } else {
                prefix.as_str()
            }
        }
        Context::Nothing => "",
    };
    if prefix.starts_with("steps.") {
        let last = prefix.rsplit('.').next().unwrap_or("");
        return (last.len(), last.to_owned());
    }
    (prefix.len(), prefix.to_owned())
}

/// Completes `steps.` (step ids) and `steps.ID.` (that step's outputs); false if the prefix is
/// neither.
fn step_path_items(
    out: &mut Items,
    prefix: &str,
    ix: &Index,
    scope: Option<&str>,
    catalogue: &dyn Catalogue,
) -> bool {
    let Some(rest) = prefix.strip_prefix("steps.") else {
        return false;
    };
    match rest.split_once('.') {
        None => {
            for s in ix
                .steps_in_scope(scope)
                .filter(|s| s.kind == SymbolKind::Step)
            {
                out.push(
                    &s.name,
                    CompletionItemKind::FUNCTION,
                    step_detail(s),
                    s.description.clone(),
                );
            }
        }
        Some((id, _)) => {
            let action = ix.step(id, scope).and_then(|s| s.action.clone());
            if let Some(schema) = action.as_deref().and_then(|a| catalogue.lookup(a)) {
                for o in &schema.outputs {
                    out.push(
                        &o.name,
                        CompletionItemKind::FIELD,
                        Some(o.ty.describe()),
                        Some(o.doc.clone()),
                    );
                }
            }
        }
    }
    true
}

fn param_items(out: &mut Items, ix: &Index, scope: Option<&str>) {
    for p in ix.params_in_scope(scope) {
        let detail = match (&p.ty, &p.default) {
            (Some(t), Some(d)) => format!("{t} = {d}"),
            (Some(t), None) => t.clone(),
            _ => String::new(),
        };
        out.push(&p.name, CompletionItemKind::VARIABLE, Some(detail), None);
    }
}

fn key_items(
    out: &mut Items,
    frames: &[Frame],
    ix: &Index,
    catalogue: &dyn Catalogue,
    docs: &mut Docs,
    name: &str,
) {
    let Some(last) = frames.last() else {
        return;
    };
    let fixed: &[&str] = match last.kind.as_str() {
        "runbook" => vocabulary::HEADER,
        "step" => vocabulary::STEP,
        "retry" => vocabulary::RETRY,
        "compensate" => vocabulary::COMPENSATE,
        "schedule" => vocabulary::SCHEDULE,
        "policy" => vocabulary::POLICY,
        "milestone" => vocabulary::MILESTONE,
        "use" => vocabulary::USE,
        "production" => vocabulary::PRODUCTION,
        "group" => &["param", "step", "milestone"],
        _ => &[],
    };
    let blocks: &[&str] = match last.kind.as_str() {
        "step" => vocabulary::STEP_BLOCKS,
        "compensate" | "use" => &["with"],
        _ => &[],
    };
    for k in fixed.iter().filter(|k| !last.keys.iter().any(|h| h == *k)) {
        let insert = if last.kind == "group" {
            format!("{k} ")
        } else {
            format!("{k} = ")
        };
        out.add(k, &insert, CompletionItemKind::PROPERTY, None, None, None);
    }
    for k in blocks.iter().filter(|k| !last.keys.iter().any(|h| h == *k)) {
        out.add(
            k,
            &format!("{k} {{"),
            CompletionItemKind::STRUCT,
            Some("block".into()),
            None,
            None,
        );
    }
    if last.kind == "allow" {
        for l in drover_dsl::Lint::ALL {
            out.add(
                l.as_str(),
                &format!("{} = ", l.as_str()),
                CompletionItemKind::PROPERTY,
                Some("waive with a reason".into()),
                None,
                None,
            );
        }
    }
    if last.kind != "with" || frames.len() < 2 {
        return;
    }
    let parent = &frames[frames.len() - 2];
    if parent.kind == "use" {
        let group = ix
            .step(parent.label.as_deref().unwrap_or(""), None)
            .and_then(|s| s.action.clone());
        if let Some(g) = group {
            for p in group_params(docs, name, ix, &g) {
                if !last.keys.contains(&p.name) {
                    out.add(
                        &p.name,
                        &format!("{} = ", p.name),
                        CompletionItemKind::FIELD,
                        p.ty.clone(),
                        None,
                        None,
                    );
                }
            }
        }
        return;
    }
    let Some(schema) = action_of(frames, frames.len() - 2, ix).and_then(|a| catalogue.lookup(&a))
    else {
        return;
    };
    for i in &schema.inputs {
        if last.keys.contains(&i.name) {
            continue;
        }
        let detail = format!(
            "{}{}",
            i.ty.describe(),
            if i.required { " (required)" } else { "" }
        );
        let sort = format!("{}{}", if i.required { 0 } else { 1 }, i.name);
        out.add(
            &i.name,
            &format!("{} = ", i.name),
            CompletionItemKind::FIELD,
            Some(detail),
            Some(i.doc.clone()),
            Some(sort),
        );
    }
}

/// The action of the step (or compensate) at `frames[at]`: as written before the cursor, else as
/// last indexed.
fn action_of(frames: &[Frame], at: usize, ix: &Index) -> Option<String> {
    let f = frames.get(at)?;
    if let Some(a) = &f.action {
        return Some(a.clone());
    }
    if f.kind == "step" {
        let scope = frames
            .first()
            .filter(|g| g.kind == "group")
            .and_then(|g| g.label.as_deref());
        return ix
            .step(f.label.as_deref()?, scope)
            .and_then(|s| s.action.clone());
    }
    None
}

fn input_spec(
    frames: &[Frame],
    ix: &Index,
    catalogue: &dyn Catalogue,
    key: &str,
) -> Option<drover_schema::InputSpec> {
    if frames.len() < 2 {
        return None;
    }
    let action = action_of(frames, frames.len() - 2, ix)?;
    catalogue
        .lookup(&action)?
        .inputs
        .iter()
        .find(|i| i.name == key)
        .cloned()
}

/// The words a value of this type may be written as.
fn words_of(ty: &ValueType) -> Vec<String> {
    match ty {
        ValueType::Enum(w) => w.clone(),
        ValueType::List(inner) => words_of(inner),
        ValueType::Bool => vec!["true".into(), "false".into()],
        _ => Vec::new(),
    }
}

fn step_kind(k: SymbolKind) -> CompletionItemKind {
    match k {
        SymbolKind::Milestone => CompletionItemKind::EVENT,
        SymbolKind::Use => CompletionItemKind::MODULE,
        _ => CompletionItemKind::FUNCTION,
    }
}

fn step_detail(s: &Symbol) -> Option<String> {
    Some(match (&s.kind, &s.action) {
        (SymbolKind::Step, Some(a)) => a.clone(),
        (SymbolKind::Use, Some(g)) => format!("group {g}"),
        (k, _) => k.word().to_owned(),
    })
}

/// The roles of the header's operator roster.
fn roster_roles(docs: &Docs, name: &str, ix: &Index) -> Vec<String> {
    let Some(path) = &ix.operators else {
        return Vec::new();
    };
    let file = FsLoader.resolve(Some(name), path);
    let Some(text) = docs.read(&file) else {
        return Vec::new();
    };
    let Ok(value) = toml::from_str::<toml::Value>(&text) else {
        return Vec::new();
    };
    let mut roles = BTreeSet::new();
    collect_roles(&value, &mut roles);
    roles.into_iter().collect()
}

fn collect_roles(v: &toml::Value, out: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                if k == "roles"
                    && let toml::Value::Array(a) = x
                {
                    out.extend(a.iter().filter_map(|r| r.as_str().map(str::to_owned)));
                } else {
                    collect_roles(x, out);
                }
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|x| collect_roles(x, out)),
        _ => {}
    }
}

/// The analyses of the files a file imports, with their names.
fn imported(docs: &mut Docs, name: &str, ix: &Index) -> Vec<(String, Arc<Analysis>)> {
    let mut out = Vec::new();
    for i in &ix.imports {
        let file = FsLoader.resolve(Some(name), &i.path);
        let a = if docs.is_open(&file) {
            docs.fresh(&file)
        } else {
            docs.read(&file)
                .map(|t| Arc::new(Analysis::new(0, &file, &t)))
        };
        if let Some(a) = a {
            out.push((file, a));
        }
    }
    out
}

fn groups_visible(docs: &mut Docs, name: &str, ix: &Index) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = ix
        .symbols
        .iter()
        .filter(|s| s.kind == SymbolKind::Group)
        .cloned()
        .collect();
    for (_, a) in imported(docs, name, ix) {
        out.extend(
            a.index
                .symbols
                .iter()
                .filter(|s| s.kind == SymbolKind::Group)
                .cloned(),
        );
    }
    out
}

fn group_params(docs: &mut Docs, name: &str, ix: &Index, group: &str) -> Vec<Symbol> {
    let mut all: Vec<Symbol> = ix.symbols.clone();
    for (_, a) in imported(docs, name, ix) {
        all.extend(a.index.symbols.iter().cloned());
    }
    all.into_iter()
        .filter(|s| s.kind == SymbolKind::Param && s.scope.as_deref() == Some(group))
        .collect()
}

// ----------------------------------------------------------------------------------------------
// Hover

fn action_markdown(s: &ActionSchema) -> String {
    let mut m = format!("**{}** — {}\n\n", s.name, s.summary);
    m.push_str(&format!(
        "effect: {:?} · role: {:?}{}\n",
        s.effect,
        s.role,
        s.default_timeout_ms
            .map(|t| format!(" · default timeout {}", format_duration(t)))
            .unwrap_or_default()
    ));
    if !s.inputs.is_empty() {
        m.push_str("\n**Inputs**\n");
        for i in &s.inputs {
            m.push_str(&format!(
                "- `{}` ({}{}) — {}\n",
                i.name,
                i.ty.describe(),
                if i.required { ", required" } else { "" },
                i.doc
            ));
        }
    }
    if !s.outputs.is_empty() {
        m.push_str("\n**Outputs**\n");
        for o in &s.outputs {
            m.push_str(&format!(
                "- `{}` ({}) — {}\n",
                o.name,
                o.ty.describe(),
                o.doc
            ));
        }
    }
    m
}

fn markdown(value: String, range: Range) -> Hover {
    Hover {
        contents: HoverContents::Markup(MarkupContent {
            kind: MarkupKind::Markdown,
            value,
        }),
        range: Some(range),
    }
}

fn estimate_text(e: &drover_dsl::Estimate) -> String {
    use drover_dsl::Estimate as E;
    match *e {
        E::Fixed { ms } => format_duration(ms),
        E::Range { min_ms, max_ms } => format!(
            "{}..{} (uniform)",
            format_duration(min_ms),
            format_duration(max_ms)
        ),
        E::Triangular {
            min_ms,
            mode_ms,
            max_ms,
        } => format!(
            "{}..{}, most likely {}",
            format_duration(min_ms),
            format_duration(max_ms),
            format_duration(mode_ms)
        ),
        E::Percentiles { p50_ms, p95_ms } => {
            format!(
                "p50 {}, p95 {}",
                format_duration(p50_ms),
                format_duration(p95_ms)
            )
        }
    }
}

fn symbol_markdown(docs: &Docs, name: &str, s: &Symbol, ix: &Index) -> String {
    match s.kind {
        SymbolKind::Param => format!(
            "**param** `{}`: `{}`{}",
            s.name,
            s.ty.as_deref().unwrap_or("?"),
            s.default
                .as_ref()
                .map(|d| format!("\n\ndefault: `{d}`"))
                .unwrap_or_else(|| "\n\nno default: set it with `--var`".to_owned())
        ),
        SymbolKind::Group => format!("**group** `{}`", s.name),
        _ => {
            let mut m = format!("**{}** `{}`", s.kind.word(), s.name);
            if let Some(d) = &s.description {
                m.push_str(&format!(" — {d}"));
            }
            if let Some(a) = &s.action {
                m.push_str(&format!("\n\naction: `{a}`"));
            }
            let id = match &s.scope {
                Some(g) => format!("{g}.{}", s.name),
                None => s.name.clone(),
            };
            let planned = docs.plan(name).and_then(|p| {
                let node = p.graph.node_indices().find(|&i| {
                    let n = &p.graph[i];
                    n.id() == id || n.as_step().is_some_and(|st| st.base_id == id)
                })?;
                Some((p, node))
            });
            match planned {
                Some((p, node)) => {
                    let deps = incoming(p, node);
                    if deps.is_empty() {
                        m.push_str("\n\ndepends on nothing: starts first");
                    } else {
                        m.push_str("\n\ndepends on: ");
                        let list: Vec<String> = deps
                            .iter()
                            .map(|(d, kind)| match kind {
                                Dependency::Explicit => format!("`{d}`"),
                                Dependency::Data => format!("`{d}` (reads its outputs)"),
                            })
                            .collect();
                        m.push_str(&list.join(", "));
                    }
                    if let Some(st) = p.graph[node].as_step() {
                        match &st.estimate {
                            Some(e) => m.push_str(&format!("\n\nestimate: {}", estimate_text(e))),
                            None => {
                                m.push_str("\n\nestimate: none (counts as 0 in the predicted RTO)")
                            }
                        }
                        if let Some(t) = st.timeout_ms {
                            m.push_str(&format!(
                                "\n\ntimeout: {}{}",
                                format_duration(t),
                                if st.timeout_is_default {
                                    " (the action's default)"
                                } else {
                                    ""
                                }
                            ));
                        }
                    }
                }
                None => {
                    let mut deps: Vec<String> = s.after.clone();
                    for r in ix.refs.iter().filter(|r| {
                        r.kind == RefKind::Step && contains(s.span, r.span.start as usize)
                    }) {
                        if !deps.contains(&r.name) && r.name != s.name {
                            deps.push(r.name.clone());
                        }
                    }
                    if !deps.is_empty() {
                        m.push_str(&format!(
                            "\n\ndepends on: {}",
                            deps.iter()
                                .map(|d| format!("`{d}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    if let Some(e) = &s.estimate {
                        m.push_str(&format!("\n\nestimate: `{e}`"));
                    }
                    m.push_str("\n\n(the runbook has errors: dependencies as written)");
                }
            }
            m
        }
    }
}

/// The ids a plan node waits for, and how.
fn incoming(p: &Plan, node: NodeIndex) -> Vec<(String, Dependency)> {
    let mut out: Vec<(String, Dependency)> = p
        .graph
        .edges_directed(node, Direction::Incoming)
        .map(|e| (p.graph[e.source()].id().to_owned(), *e.weight()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Hover at a position.
pub fn hover(
    docs: &mut Docs,
    catalogue: &dyn Catalogue,
    uri: &Uri,
    pos: Position,
) -> Option<Hover> {
    let name = uri_to_name(uri);
    let a = docs.fresh(&name)?;
    let offset = a.text.offset(pos);
    let ix = &a.index;
    if let Some((span, action)) = ix.actions.iter().find(|(s, _)| contains(*s, offset)) {
        let text = catalogue
            .lookup(action)
            .map_or_else(|| format!("`{action}` is not an action"), action_markdown);
        return Some(markdown(text, a.range(*span)));
    }
    if let Some(k) = ix.inputs.iter().find(|k| contains(k.span, offset)) {
        let spec = k
            .action
            .as_deref()
            .and_then(|x| catalogue.lookup(x))
            .and_then(|s| s.inputs.iter().find(|i| i.name == k.name));
        if let Some(i) = spec {
            let text = format!(
                "**{}** ({}{})\n\n{}",
                i.name,
                i.ty.describe(),
                if i.required { ", required" } else { "" },
                i.doc
            );
            return Some(markdown(text, a.range(k.span)));
        }
    }
    if let Some((span, d)) = ix.durations.iter().find(|(s, _)| contains(*s, offset)) {
        let ms = parse_duration(d)?;
        let secs = ms as f64 / 1000.0;
        let text = if ms % 1000 == 0 {
            format!("`{d}` = {} seconds", ms / 1000)
        } else {
            format!("`{d}` = {secs} seconds")
        };
        return Some(markdown(text, a.range(*span)));
    }
    let (sym, span) = match ix.ref_at(offset) {
        Some(r) => (ix.resolve(r)?, r.span),
        None => {
            let s = ix.symbol_at(offset)?;
            (s, s.name_span)
        }
    };
    Some(markdown(
        symbol_markdown(docs, &name, sym, ix),
        a.range(span),
    ))
}

// ----------------------------------------------------------------------------------------------
// Navigation

/// A definition's file and symbol: in the file itself or one it imports.
fn target(
    docs: &mut Docs,
    name: &str,
    a: &Analysis,
    offset: usize,
) -> Option<(String, Arc<Analysis>, Symbol)> {
    let ix = &a.index;
    if let Some(s) = ix.symbol_at(offset) {
        return Some((name.to_owned(), docs.fresh(name)?, s.clone()));
    }
    let r = ix.ref_at(offset)?;
    if let Some(s) = ix.resolve(r) {
        return Some((name.to_owned(), docs.fresh(name)?, s.clone()));
    }
    for (file, other) in imported(docs, name, ix) {
        let found = other.index.symbols.iter().find(|s| {
            s.name == r.name
                && s.scope.is_none()
                && match r.kind {
                    RefKind::Group => s.kind == SymbolKind::Group,
                    RefKind::Step => s.kind.is_step_like(),
                    RefKind::Param => s.kind == SymbolKind::Param,
                }
        });
        if let Some(s) = found.cloned() {
            return Some((file, other, s));
        }
    }
    None
}

/// Go to definition.
pub fn definition(docs: &mut Docs, uri: &Uri, pos: Position) -> Option<GotoDefinitionResponse> {
    let name = uri_to_name(uri);
    let a = docs.fresh(&name)?;
    let offset = a.text.offset(pos);
    if let Some(i) = a.index.imports.iter().find(|i| contains(i.span, offset)) {
        let file = FsLoader.resolve(Some(&name), &i.path);
        let uri = docs.uri(&file).cloned().or_else(|| name_to_uri(&file))?;
        return Some(GotoDefinitionResponse::Scalar(Location::new(
            uri,
            Range::default(),
        )));
    }
    let (file, fa, s) = target(docs, &name, &a, offset)?;
    let uri = docs.uri(&file).cloned().or_else(|| name_to_uri(&file))?;
    Some(GotoDefinitionResponse::Scalar(Location::new(
        uri,
        fa.range(s.name_span),
    )))
}

/// Every place a name is written: its definition (if asked) and its references, in the file
/// and, for a group, in the open files that use it.
fn occurrences(
    docs: &mut Docs,
    name: &str,
    pos: Position,
    with_decl: bool,
) -> Option<Vec<(String, Arc<Analysis>, Span)>> {
    let a = docs.fresh(name)?;
    let offset = a.text.offset(pos);
    let (file, fa, s) = target(docs, name, &a, offset)?;
    let mut out = Vec::new();
    if with_decl {
        out.push((file.clone(), Arc::clone(&fa), s.name_span));
    }
    for r in fa.index.references_to(&s) {
        out.push((file.clone(), Arc::clone(&fa), r.span));
    }
    if s.kind == SymbolKind::Group {
        let names: Vec<String> = docs
            .by_name
            .keys()
            .filter(|n| **n != file)
            .cloned()
            .collect();
        for other in names {
            let Some(oa) = docs.fresh(&other) else {
                continue;
            };
            for r in &oa.index.refs {
                if r.kind == RefKind::Group && r.name == s.name && oa.index.resolve(r).is_none() {
                    out.push((other.clone(), Arc::clone(&oa), r.span));
                }
            }
        }
    }
    Some(out)
}

/// Find references.
pub fn references(
    docs: &mut Docs,
    uri: &Uri,
    pos: Position,
    with_decl: bool,
) -> Option<Vec<Location>> {
    let name = uri_to_name(uri);
    let found = occurrences(docs, &name, pos, with_decl)?;
    Some(
        found
            .into_iter()
            .filter_map(|(file, a, span)| {
                let uri = docs.uri(&file).cloned().or_else(|| name_to_uri(&file))?;
                Some(Location::new(uri, a.range(span)))
            })
            .collect(),
    )
}

/// The name under the cursor, if it can be renamed.
pub fn prepare_rename(docs: &mut Docs, uri: &Uri, pos: Position) -> Option<PrepareRenameResponse> {
    let name = uri_to_name(uri);
    let a = docs.fresh(&name)?;
    let offset = a.text.offset(pos);
    let span = match a.index.symbol_at(offset) {
        Some(s) => s.name_span,
        None => {
            let r = a.index.ref_at(offset)?;
            target(docs, &name, &a, offset)?;
            r.span
        }
    };
    Some(PrepareRenameResponse::Range(a.range(span)))
}

/// Rename a step, milestone, `use`, parameter or group everywhere it is written.
///
/// # Errors
/// The new name is not a name, or something of the same kind already has it.
pub fn rename(
    docs: &mut Docs,
    uri: &Uri,
    pos: Position,
    new_name: &str,
) -> Result<Option<WorkspaceEdit>, String> {
    let valid = new_name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && new_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{new_name}` is not a name: letters, digits and `_`, not starting with a digit"
        ));
    }
    let name = uri_to_name(uri);
    let Some(a) = docs.fresh(&name) else {
        return Ok(None);
    };
    let offset = a.text.offset(pos);
    let Some((_, fa, s)) = target(docs, &name, &a, offset) else {
        return Ok(None);
    };
    let clash = fa.index.symbols.iter().find(|o| {
        o.name == new_name
            && o.scope == s.scope
            && (o.kind == s.kind || (o.kind.is_step_like() && s.kind.is_step_like()))
    });
    if let Some(c) = clash {
        let (line, col) = fa.source.line_col(c.name_span.start as usize);
        return Err(format!(
            "a {} is already called `{new_name}` (line {line}, column {col})",
            c.kind.word()
        ));
    }
    let found = occurrences(docs, &name, pos, true).unwrap_or_default();
    #[allow(
        clippy::mutable_key_type,
        reason = "the protocol's own map type; URIs are never changed while keys"
    )]
    let mut changes: HashMap<Uri, Vec<TextEdit>> = HashMap::new();
    for (f, fa, span) in found {
        let Some(uri) = docs.uri(&f).cloned().or_else(|| name_to_uri(&f)) else {
            continue;
        };
        changes.entry(uri).or_default().push(TextEdit {
            range: fa.range(span),
            new_text: new_name.to_owned(),
        });
    }
    Ok(Some(WorkspaceEdit {
        changes: Some(changes),
        ..WorkspaceEdit::default()
    }))
}

// ----------------------------------------------------------------------------------------------
// Formatting, symbols, code actions

/// The whole document in canonical layout (`drover fmt`).
///
/// # Errors
/// The file does not parse (formatting would lose text); the message says where.
pub fn format(docs: &Docs, uri: &Uri) -> Result<Option<Vec<TextEdit>>, String> {
    let name = uri_to_name(uri);
    let Some(text) = docs.text(&name) else {
        return Ok(None);
    };
    match drover_dsl::format_source(&name, text.as_str()) {
        Ok(formatted) if formatted == text.as_str() => Ok(Some(Vec::new())),
        Ok(formatted) => Ok(Some(vec![TextEdit {
            range: text.range(0, text.as_str().len()),
            new_text: formatted,
        }])),
        Err(e) => Err(format!("cannot format {name}: {e}")),
    }
}

/// Steps, milestones, `use`s, parameters and groups (with their own), for the outline.
pub fn symbols(docs: &mut Docs, uri: &Uri) -> Option<Vec<DocumentSymbol>> {
    let name = uri_to_name(uri);
    let a = docs.fresh(&name)?;
    let mut top: Vec<DocumentSymbol> = Vec::new();
    let mut groups: HashMap<String, Vec<DocumentSymbol>> = HashMap::new();
    for s in &a.index.symbols {
        #[allow(deprecated, reason = "the field is required by the type")]
        let sym = DocumentSymbol {
            name: s.name.clone(),
            detail: match s.kind {
                SymbolKind::Param => s.ty.clone(),
                _ => s.action.clone().or_else(|| Some(s.kind.word().to_owned())),
            },
            kind: match s.kind {
                SymbolKind::Step => lsp_types::SymbolKind::FUNCTION,
                SymbolKind::Milestone => lsp_types::SymbolKind::EVENT,
                SymbolKind::Use => lsp_types::SymbolKind::OBJECT,
                SymbolKind::Param => lsp_types::SymbolKind::VARIABLE,
                SymbolKind::Group => lsp_types::SymbolKind::MODULE,
            },
            tags: None,
            deprecated: None,
            range: a.range(s.span),
            selection_range: a.range(s.name_span),
            children: None,
        };
        match &s.scope {
            Some(g) => groups.entry(g.clone()).or_default().push(sym),
            None => top.push(sym),
        }
    }
    for t in &mut top {
        if t.kind == lsp_types::SymbolKind::MODULE {
            t.children = groups.remove(&t.name);
        }
    }
    if let Some(h) = a.index.header {
        #[allow(deprecated, reason = "the field is required by the type")]
        top.insert(
            0,
            DocumentSymbol {
                name: "runbook".to_owned(),
                detail: None,
                kind: lsp_types::SymbolKind::NAMESPACE,
                tags: None,
                deprecated: None,
                range: a.range(h),
                selection_range: a.range(Span::new(
                    h.file,
                    h.start as usize,
                    h.start as usize + "runbook".len(),
                )),
                children: None,
            },
        );
    }
    Some(top)
}

/// Quick fixes: a typo'd name → the one meant (from the diagnostic's data); a step with no
/// `timeout` → its action's default written out.
pub fn code_actions(
    docs: &mut Docs,
    catalogue: &dyn Catalogue,
    p: &CodeActionParams,
) -> Vec<CodeActionOrCommand> {
    let name = uri_to_name(&p.text_document.uri);
    let Some(text) = docs.text(&name).cloned() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for d in &p.context.diagnostics {
        let Some(s) = d.data.as_ref().and_then(|v| v.get("suggestion")) else {
            continue;
        };
        let (Some(from), Some(to)) = (
            s.get("replace").and_then(|v| v.as_str()),
            s.get("with").and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let start = text.offset(d.range.start);
        let end = text.offset(d.range.end).max(start);
        let Some(at) = find_word(&text.as_str()[start..end], from) else {
            continue;
        };
        let edit = TextEdit {
            range: text.range(start + at, start + at + from.len()),
            new_text: to.to_owned(),
        };
        out.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: format!("Change `{from}` to `{to}`"),
            kind: Some(CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![d.clone()]),
            edit: Some(WorkspaceEdit {
                changes: Some(HashMap::from([(p.text_document.uri.clone(), vec![edit])])),
                ..WorkspaceEdit::default()
            }),
            is_preferred: Some(true),
            ..CodeAction::default()
        }));
    }
    if let Some(a) = docs.fresh(&name) {
        let offset = a.text.offset(p.range.start);
        if let Some(s) = a
            .index
            .enclosing(offset)
            .filter(|s| s.kind == SymbolKind::Step && !s.has_timeout)
        {
            let default = s
                .action
                .as_deref()
                .and_then(|x| catalogue.lookup(x))
                .and_then(|x| x.default_timeout_ms);
            if let (Some(ms), Some(after)) = (default, s.action_end) {
                let src = a.source.text.as_str();
                let line_start = src[..after.start as usize].rfind('\n').map_or(0, |i| i + 1);
                let indent: String = src[line_start..]
                    .chars()
                    .take_while(|c| *c == ' ' || *c == '\t')
                    .collect();
                let line_end = src[after.end as usize..]
                    .find('\n')
                    .map_or(src.len(), |i| after.end as usize + i);
                let t = format_duration(ms);
                out.push(CodeActionOrCommand::CodeAction(CodeAction {
                    title: format!("Add the default timeout (`timeout = {t}`)"),
                    kind: Some(CodeActionKind::QUICKFIX),
                    edit: Some(WorkspaceEdit {
                        changes: Some(HashMap::from([(
                            p.text_document.uri.clone(),
                            vec![TextEdit {
                                range: a.text.range(line_end, line_end),
                                new_text: format!("\n{indent}timeout = {t}"),
                            }],
                        )])),
                        ..WorkspaceEdit::default()
                    }),
                    ..CodeAction::default()
                }));
            }
        }
    }
    out
}

/// The first whole-word occurrence of `word` in `hay`.
fn find_word(hay: &str, word: &str) -> Option<usize> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    hay.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = hay[..i].chars().next_back().is_none_or(|c| !is_word(c));
        let after = hay[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !is_word(c));
        before && after
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_schema::StaticCatalogue;

    fn runbooks() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
        let mut out = Vec::new();
        for sub in [dir.clone(), dir.join("lib")] {
            for e in std::fs::read_dir(&sub).expect("runbooks dir").flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "drover") {
                    let text = std::fs::read_to_string(&p).expect("runbook");
                    out.push((p.to_string_lossy().into_owned(), text));
                }
            }
        }
        assert!(out.len() >= 8, "{} runbooks", out.len());
        out
    }

    /// Every request at every position of every example runbook, whole and cut in half (text
    /// as it is mid-typing): answers or nothing, never a panic.
    #[test]
    fn every_request_at_every_position_answers_without_panicking() {
        let catalogue = StaticCatalogue::default();
        for (name, full) in runbooks() {
            let cut = full.len() / 2;
            let cut = (0..=cut)
                .rev()
                .find(|&i| full.is_char_boundary(i))
                .unwrap_or(0);
            for text in [full.clone(), full[..cut].to_owned()] {
                let uri = name_to_uri(&name).expect("uri");
                let mut docs = Docs::default();
                docs.open(uri.clone(), 1, text.clone());
                for (line, l) in text.split('\n').enumerate() {
                    for col in 0..=l.encode_utf16().count() {
                        let pos = Position::new(line as u32, col as u32);
                        let _ = completion(&mut docs, &catalogue, &uri, pos);
                        let _ = hover(&mut docs, &catalogue, &uri, pos);
                        let _ = definition(&mut docs, &uri, pos);
                        let _ = references(&mut docs, &uri, pos, true);
                        let _ = prepare_rename(&mut docs, &uri, pos);
                        let _ = code_actions(
                            &mut docs,
                            &catalogue,
                            &CodeActionParams {
                                text_document: lsp_types::TextDocumentIdentifier {
                                    uri: uri.clone(),
                                },
                                range: Range::new(pos, pos),
                                context: lsp_types::CodeActionContext::default(),
                                work_done_progress_params:
                                    lsp_types::WorkDoneProgressParams::default(),
                                partial_result_params: lsp_types::PartialResultParams::default(),
                            },
                        );
                    }
                }
                let _ = symbols(&mut docs, &uri);
                let _ = format(&docs, &uri);
            }
        }
    }

    #[test]
    fn rename_refuses_what_is_not_a_name() {
        let (name, text) = runbooks()
            .into_iter()
            .find(|(n, _)| n.ends_with("ehr-failover.drover"))
            .expect("ehr-failover");
        let uri = name_to_uri(&name).expect("uri");
        let mut docs = Docs::default();
        docs.open(uri.clone(), 1, text.clone());
        let t = Text::new(text.clone());
        let pos = t.position(text.find("step declare").expect("step") + 6);
        assert!(rename(&mut docs, &uri, pos, "two words").is_err());
        assert!(rename(&mut docs, &uri, pos, "9lives").is_err());
        let ok = rename(&mut docs, &uri, pos, "announce")
            .expect("renames")
            .expect("an edit");
        assert_eq!(
            ok.changes.map(|c| c.values().map(Vec::len).sum::<usize>()),
            Some(1)
        );
    }
}
