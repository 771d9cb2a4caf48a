//! The parser: pest grammar → [`Document`], with error recovery.
//!
//! pest stops at the first syntax error. To report every error, the parser blanks out the
//! top-level item that holds the error (keeping byte offsets and line breaks, so every later span
//! stays exact) and parses again, until the rest parses. Nesting deeper than [`MAX_DEPTH`] is
//! refused before pest runs, so no input can exhaust the stack.

use crate::code::Code;
use crate::diagnostic::Diagnostic;
use crate::document::{
    Attribute, Block, BlockLabel, Comment, Document, ImportDecl, Item, ItemKind, ParamDecl,
    Recovered, TypeExpr, Value, ValueKind,
};
use crate::source_map::SourceFile;
use crate::span::{FileId, Span, Spanned};
use pest::Parser as _;
use pest::iterators::Pair;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct RunbookParser;

/// The deepest nesting of brackets and braces a runbook may use.
pub const MAX_DEPTH: usize = 32;

/// After this many syntax errors in one file the parser stops looking for more.
const MAX_SYNTAX_ERRORS: usize = 50;

/// Parses one file. Always returns a document (possibly missing the items that did not parse)
/// and every syntax diagnostic found.
#[must_use]
pub fn parse(file: FileId, source: &SourceFile) -> (Document, Vec<Diagnostic>) {
    match parse_in_pieces(file, &source.text, PIECE_BYTES) {
        Some(doc) => (doc, Vec::new()),
        None => parse_whole(file, source),
    }
}

/// Parses the whole file at once, blanking each broken top-level item and parsing again until
/// the rest parses.
pub(crate) fn parse_whole(file: FileId, source: &SourceFile) -> (Document, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut work = source.text.clone().into_bytes();
    let mut recovered = Vec::new();

    while let Some(pos) = too_deep(&work) {
        diags.push(
            Diagnostic::error(
                Code::NestingTooDeep,
                Span::new(file, pos, pos + 1),
                format!("brackets nest deeper than {MAX_DEPTH} levels"),
            )
            .label("this bracket is too deep")
            .help("flatten the structure; runbooks never need this much nesting"),
        );
        if !blank_region(&mut work, pos, &mut recovered) {
            return (Document::default(), diags);
        }
    }

    for _ in 0..=MAX_SYNTAX_ERRORS {
        let text = String::from_utf8_lossy(&work).into_owned();
        match RunbookParser::parse(Rule::file, &text) {
            Ok(mut pairs) => {
                let builder = Builder {
                    file,
                    text: &text,
                    offset: 0,
                };
                let mut items = Items::new(0);
                items.extend(
                    &builder,
                    pairs.next().into_iter().flat_map(Pair::into_inner),
                );
                return (items.into_document(recovered), diags);
            }
            Err(first) => {
                // Expected-token tracking (which says "expected `=`") slows parsing several
                // times, so only the parse that explains an error runs with it.
                let err = with_error_detail(|| RunbookParser::parse(Rule::file, &text).err())
                    .unwrap_or(first);
                let pos = match err.location {
                    pest::error::InputLocation::Pos(p) => p,
                    pest::error::InputLocation::Span((p, _)) => p,
                };
                diags.push(syntax_error(file, &text, pos, &err));
                if diags.len() > MAX_SYNTAX_ERRORS || !blank_region(&mut work, pos, &mut recovered)
                {
                    break;
                }
            }
        }
    }
    let doc = Document {
        recovered,
        ..Document::default()
    };
    (doc, diags)
}

/// Parses that explain a syntax error now, in any thread.
static DETAILED: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// Runs `parse` with pest's expected-token tracking on. The setting is process-wide and read when
/// a parse starts, so it is on while any thread is in here and off once none is: a long-lived
/// process (the language server, the server) parses at full speed again after reporting an error.
fn with_error_detail<T>(parse: impl FnOnce() -> T) -> T {
    struct Detailed;
    impl Drop for Detailed {
        fn drop(&mut self) {
            let mut n = DETAILED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *n = n.saturating_sub(1);
            if *n == 0 {
                pest::set_error_detail(false);
            }
        }
    }
    {
        let mut n = DETAILED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *n += 1;
        pest::set_error_detail(true);
    }
    let _detailed = Detailed;
    parse()
}

/// Pieces of about this many bytes are parsed one at a time (whole top-level items each). Small,
/// because a piece's syntax tree is many times its text and two threads hold a few each: at
/// 50,000 steps, 16 KiB pieces left the process 12 MB larger after loading than 8 KiB ones, and
/// no faster.
pub(crate) const PIECE_BYTES: usize = 8 * 1024;

/// Parses a file that has no syntax error a piece at a time (see [`Pieces`]). `None` when a
/// piece does not parse (or the nesting is too deep): the caller parses the whole file, which
/// reports every error where the whole-file grammar sees it.
fn parse_in_pieces(file: FileId, text: &str, piece_bytes: usize) -> Option<Document> {
    let items = Pieces::cut(file, text, piece_bytes)?.parse()?;
    Some(items.into_document(Vec::new()))
}

/// A file cut into pieces to parse one at a time. pest keeps a token for the start and the end of
/// every rule it matched until the pairs are dropped, several times the size of the text, so
/// parsing the whole file at once holds all of them together. A piece is a run of whole top-level
/// items of about `piece_bytes` — cut where a line at nesting depth 0 starts with a name — and
/// items never reach across a cut, so the pieces give the same items as the whole file.
pub(crate) struct Pieces<'t> {
    file: FileId,
    text: &'t str,
    /// Piece boundaries, from 0 to the end of the text.
    cuts: Vec<usize>,
    /// How many top-level lines start with `step` (a capacity hint, not a count of steps).
    pub(crate) steps: usize,
}

impl<'t> Pieces<'t> {
    /// Cuts `text`; `None` when its brackets nest deeper than [`MAX_DEPTH`].
    pub(crate) fn cut(file: FileId, text: &'t str, piece_bytes: usize) -> Option<Self> {
        let bytes = text.as_bytes();
        let mut cuts = vec![0];
        let mut steps = 0;
        let too_deep = scan_lines(bytes, |start, depth| {
            if depth != 0 || !starts_item(bytes, start) {
                return;
            }
            if bytes[start..].starts_with(b"step ") {
                steps += 1;
            }
            let last = cuts.last().copied().unwrap_or(0);
            if start - last >= piece_bytes && !continues_import(&bytes[start..]) {
                cuts.push(start);
            }
        });
        if too_deep.is_some() {
            return None;
        }
        cuts.push(text.len());
        Some(Self {
            file,
            text,
            cuts,
            steps,
        })
    }

    /// Parses the pieces in order into one list of items; a comment before an item stays with
    /// that item even when a cut falls between them. `None` as soon as a piece does not parse.
    fn parse(&self) -> Option<Items> {
        let mut items = Items::new(0);
        for k in 0..self.cuts.len().saturating_sub(1) {
            self.parse_into(k, &mut items)?;
        }
        Some(items)
    }

    /// The items of piece `k` parsed on their own, `None` if it does not parse. A comment
    /// before the piece's first cut stays in the piece before (the document of the whole file
    /// would lead this piece's first item with it).
    fn parse_piece(&self, k: usize) -> Option<Vec<Item>> {
        let mut items = Items::new(*self.cuts.get(k)?);
        self.parse_into(k, &mut items)?;
        Some(items.items)
    }

    /// Parses piece `k` and adds its items to `items`.
    fn parse_into(&self, k: usize, items: &mut Items) -> Option<()> {
        let (from, to) = (*self.cuts.get(k)?, *self.cuts.get(k + 1)?);
        let piece = self.text.get(from..to)?;
        let mut pairs = RunbookParser::parse(Rule::file, piece).ok()?;
        let builder = Builder {
            file: self.file,
            text: self.text,
            offset: from,
        };
        items.extend(
            &builder,
            pairs.next().into_iter().flat_map(Pair::into_inner),
        );
        Some(())
    }

    /// Parses the pieces and hands each piece's items to `each`, in order, dropping them after:
    /// only a few pieces' syntax trees are held at a time. With four pieces or more, a second
    /// thread parses pieces too: both take the next unparsed piece from a shared counter, so
    /// the thread that also runs `each` parses fewer (it takes one only when the piece `each`
    /// needs next is not there yet). Comments are not carried across a cut (lowering does not
    /// read them). False as soon as a piece does not parse (`each` has then seen the items of
    /// some pieces before it, and no piece after it).
    pub(crate) fn for_each(&self, mut each: impl FnMut(&[Item])) -> bool {
        let pieces = self.cuts.len().saturating_sub(1);
        let sequential = |each: &mut dyn FnMut(&[Item])| {
            (0..pieces).all(|k| self.parse_piece(k).map(|items| each(&items)).is_some())
        };
        if pieces < 4 {
            return sequential(&mut each);
        }
        let next = AtomicUsize::new(0);
        let claim = || Some(next.fetch_add(1, Ordering::Relaxed)).filter(|&k| k < pieces);
        std::thread::scope(|scope| {
            // Bounded, so that a fast parser does not pile up syntax trees ahead of `each`.
            let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Option<Vec<Item>>)>(2);
            let helper = std::thread::Builder::new()
                .name("drover-parse".to_owned())
                .spawn_scoped(scope, {
                    let claim = &claim;
                    move || {
                        while let Some(k) = claim() {
                            let items = self.parse_piece(k);
                            let failed = items.is_none();
                            // A closed channel: the other side stopped at a broken piece.
                            if tx.send((k, items)).is_err() || failed {
                                break;
                            }
                        }
                    }
                });
            if helper.is_err() {
                return sequential(&mut each);
            }
            // Pieces parsed (by either thread) but not yet handed to `each`: this thread parses
            // ahead only while fewer than `AHEAD` wait, so a stalled helper cannot make it hold
            // the rest of the file's syntax trees.
            const AHEAD: usize = 2;
            let mut ready: BTreeMap<usize, Vec<Item>> = BTreeMap::new();
            for wanted in 0..pieces {
                let items = loop {
                    if let Some(items) = ready.remove(&wanted) {
                        break items;
                    }
                    let (k, items) = match rx.try_recv() {
                        Ok(parsed) => parsed,
                        Err(_) => match (ready.len() < AHEAD).then(claim).flatten() {
                            Some(k) => (k, self.parse_piece(k)),
                            // The piece wanted is on the other thread (claims go in order).
                            None => match rx.recv() {
                                Ok(parsed) => parsed,
                                Err(_) => return false,
                            },
                        },
                    };
                    match items {
                        Some(items) => ready.insert(k, items),
                        None => return false,
                    };
                };
                each(&items);
            }
            true
        })
    }
}

/// Turns a pest error into a diagnostic that says what was expected in words.
fn syntax_error(
    file: FileId,
    text: &str,
    pos: usize,
    err: &pest::error::Error<Rule>,
) -> Diagnostic {
    let mut expected: Vec<String> = Vec::new();
    let mut item = false;
    let mut value = false;
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &err.variant {
        for r in positives {
            match r {
                Rule::attribute | Rule::block | Rule::kw_import | Rule::kw_param => item = true,
                Rule::string
                | Rule::number
                | Rule::duration
                | Rule::range
                | Rule::boolean
                | Rule::list
                | Rule::map
                | Rule::call
                | Rule::path => value = true,
                other => {
                    if let Some(name) = describe(*other) {
                        expected.push(name.to_owned());
                    }
                }
            }
        }
    }
    if let Some(attempts) = err.parse_attempts() {
        for t in attempts.expected_tokens() {
            // The token type is not exported; its Display is the literal. Only punctuation is
            // worth naming: other literals are the insides of rules already described.
            let text = t.to_string();
            if PUNCTUATION.contains(&text.as_str()) {
                expected.push(format!("`{text}`"));
            }
        }
    }
    if item {
        expected.retain(|e| e != "a name");
        expected.push("an attribute".to_owned());
        expected.push("a block".to_owned());
    }
    if value {
        expected.retain(|e| e != "a name");
        expected.push("a value".to_owned());
    }
    expected.sort();
    expected.dedup();
    let found = text[pos..].chars().next().map_or_else(
        || "the end of the file".to_owned(),
        |c| found_word(&text[pos..], c),
    );
    let end = text[pos..]
        .chars()
        .next()
        .map_or(pos, |c| pos + c.len_utf8());
    let message = if expected.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("expected {}, found {found}", join_or(&expected))
    };
    let mut d =
        Diagnostic::error(Code::SyntaxError, Span::new(file, pos, end), message).label("here");
    let before = text[..pos].trim_end();
    if let Some(hint) = syntax_hint(before, &text[pos..], &expected) {
        d = d.help(hint);
    }
    d
}

fn found_word(rest: &str, first: char) -> String {
    if first == '\n' || first == '\r' {
        return "the end of the line".to_owned();
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .take(20)
        .collect();
    if word.is_empty() {
        format!("`{first}`")
    } else {
        format!("`{word}`")
    }
}

fn syntax_hint(before: &str, rest: &str, expected: &[String]) -> Option<String> {
    let first = rest.chars().next();
    if first == Some('\'') {
        return Some("strings use double quotes: \"like this\"".to_owned());
    }
    if first == Some(':') {
        return Some("attributes are written `name = value`".to_owned());
    }
    if expected.iter().any(|e| e == "`}`") && first.is_none() {
        return Some("a block is not closed: add the missing `}`".to_owned());
    }
    if before.ends_with('=') && expected.iter().any(|e| e == "a value") {
        return Some("the value after `=` is missing".to_owned());
    }
    if expected.iter().any(|e| e == "`=`" || e == "`{`") {
        return Some(
            "attributes are written `name = value`; blocks `name label { ... }`".to_owned(),
        );
    }
    None
}

fn join_or(words: &[String]) -> String {
    match words {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Literal tokens worth naming in "expected ..." messages.
const PUNCTUATION: &[&str] = &["=", "{", "}", "[", "]", "(", ")", ",", ":", "..", "<", ">"];

fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident => "a name",
        Rule::kw_as => "`as`",
        Rule::type_expr => "a type",
        Rule::EOI => "the end of the file",
        _ => return None,
    })
}

/// A lexical scan that tracks bracket depth outside strings and comments.
struct Scan {
    /// Depth at the start of each line.
    line_depth: Vec<usize>,
    /// Byte offset of each line start.
    line_start: Vec<usize>,
    /// First position deeper than [`MAX_DEPTH`].
    too_deep: Option<usize>,
}

fn scan(text: &[u8]) -> Scan {
    let mut line_depth = Vec::new();
    let mut line_start = Vec::new();
    let too_deep = scan_lines(text, |start, depth| {
        line_start.push(start);
        line_depth.push(depth);
    });
    Scan {
        line_depth,
        line_start,
        too_deep,
    }
}

/// Calls `line(start, depth)` for the start of every line, with the bracket depth there (outside
/// strings and comments); returns the first position deeper than [`MAX_DEPTH`].
fn scan_lines(text: &[u8], mut line: impl FnMut(usize, usize)) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut in_comment = false;
    let mut escaped = false;
    let mut too_deep = None;
    line(0, 0);
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' {
            in_string = false;
            in_comment = false;
            escaped = false;
            line(i + 1, depth);
            continue;
        }
        if in_comment {
            continue;
        }
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'#' => in_comment = true,
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_DEPTH && too_deep.is_none() {
                    too_deep = Some(i);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    too_deep
}

fn too_deep(text: &[u8]) -> Option<usize> {
    scan(text).too_deep
}

/// Whether a line is the `as name` tail of an import written on the line before.
fn continues_import(line: &[u8]) -> bool {
    line.starts_with(b"as")
        && !line
            .get(2)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

fn starts_item(text: &[u8], line_start: usize) -> bool {
    text.get(line_start)
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
}

/// Blanks the top-level item holding `pos`: from the last line at or before `pos` that starts an
/// item at depth 0, to the next line that starts an item after the error (or where the broken item
/// never closed). Returns false if nothing could be blanked (no progress possible).
fn blank_region(text: &mut [u8], pos: usize, recovered: &mut Vec<Recovered>) -> bool {
    let s = scan(text);
    let lines = s.line_start.len();
    let err_line = s
        .line_start
        .partition_point(|&st| st <= pos)
        .saturating_sub(1);
    let start_line = (0..=err_line)
        .rev()
        .find(|&l| s.line_depth[l] == 0 && starts_item(text, s.line_start[l]))
        .unwrap_or(0);
    let end_line = (start_line + 1..lines)
        .find(|&l| starts_item(text, s.line_start[l]) && (l > err_line || s.line_depth[l] > 0))
        .unwrap_or(lines);
    let start = s.line_start[start_line];
    let end = if end_line >= lines {
        text.len()
    } else {
        s.line_start[end_line]
    };
    if text[start..end].iter().all(u8::is_ascii_whitespace) {
        return false;
    }
    let head = String::from_utf8_lossy(&text[start..end.min(start + 200)]).into_owned();
    let mut words = head
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty());
    if let Some(keyword) = words.next() {
        recovered.push(Recovered {
            keyword: keyword.to_owned(),
            name: words.next().map(str::to_owned),
        });
    }
    for b in &mut text[start..end] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    true
}

/// The items of a file or block, collected pair by pair with their comments (a comment on an
/// item's last line trails it; others lead the next item, or dangle at the end).
struct Items {
    items: Vec<Item>,
    pending: Vec<Comment>,
    /// Where the last item or comment ended (whole-file position).
    last_end: usize,
}

impl Items {
    fn new(last_end: usize) -> Self {
        Self {
            items: Vec::new(),
            pending: Vec::new(),
            last_end,
        }
    }

    fn extend<'i>(&mut self, b: &Builder<'_>, pairs: impl IntoIterator<Item = Pair<'i, Rule>>) {
        for p in pairs {
            self.push(b, p);
        }
    }

    /// The file's document: its items, the comments after the last one.
    fn into_document(self, recovered: Vec<Recovered>) -> Document {
        Document {
            items: self.items,
            dangling: self.pending,
            recovered,
        }
    }

    fn push(&mut self, b: &Builder<'_>, p: Pair<'_, Rule>) {
        match p.as_rule() {
            Rule::EOI => {}
            Rule::COMMENT => {
                let c = b.comment(&p, self.last_end);
                let start = b.start(&p);
                match self.items.last_mut() {
                    Some(last)
                        if self.pending.is_empty()
                            && last.trailing.is_none()
                            && b.same_line(last.span.end as usize, start) =>
                    {
                        last.trailing = Some(Box::new(c));
                    }
                    _ => self.pending.push(c),
                }
                self.last_end = b.end(&p);
            }
            _ => {
                let start = b.start(&p);
                let end = b.end(&p);
                let span = b.span(&p);
                let mut stray = Vec::new();
                let Some(kind) = b.item_kind(p, &mut stray) else {
                    return;
                };
                let blank_before = self
                    .pending
                    .first()
                    .map_or_else(|| b.blank_between(self.last_end, start), |c| c.blank_before);
                let blank_after_leading = self
                    .pending
                    .last()
                    .is_some_and(|c| b.blank_between(c.span.end as usize, start));
                let mut leading = std::mem::take(&mut self.pending);
                leading.extend(stray);
                self.items.push(Item {
                    kind,
                    span,
                    leading,
                    trailing: None,
                    blank_before,
                    blank_after_leading,
                });
                self.last_end = end;
            }
        }
    }
}

/// Builds the document from pest's pairs. Pairs count positions from the start of the text pest
/// parsed, which is the piece of the file starting at `offset`; every position the builder keeps
/// or compares is one in the whole file.
struct Builder<'a> {
    file: FileId,
    /// The whole file.
    text: &'a str,
    /// Where the parsed piece starts in `text`.
    offset: usize,
}

impl Builder<'_> {
    fn start(&self, p: &Pair<'_, Rule>) -> usize {
        self.offset + p.as_span().start()
    }

    fn end(&self, p: &Pair<'_, Rule>) -> usize {
        self.offset + p.as_span().end()
    }

    fn span(&self, p: &Pair<'_, Rule>) -> Span {
        Span::new(self.file, self.start(p), self.end(p))
    }

    fn spanned(&self, p: &Pair<'_, Rule>) -> Spanned<String> {
        Spanned::new(p.as_str().to_owned(), self.span(p))
    }

    fn blank_between(&self, from: usize, to: usize) -> bool {
        self.text
            .get(from..to)
            .is_some_and(|gap| gap.matches('\n').count() >= 2)
    }

    fn same_line(&self, from: usize, to: usize) -> bool {
        self.text
            .get(from..to)
            .is_some_and(|gap| !gap.contains('\n'))
    }

    fn comment(&self, p: &Pair<'_, Rule>, last_end: usize) -> Comment {
        Comment {
            text: p.as_str().trim_end().to_owned(),
            span: self.span(p),
            blank_before: self.blank_between(last_end, self.start(p)),
        }
    }

    fn item_kind(&self, p: Pair<'_, Rule>, stray: &mut Vec<Comment>) -> Option<ItemKind> {
        Some(match p.as_rule() {
            Rule::attribute => ItemKind::Attribute(self.attribute(p, stray)),
            Rule::block => ItemKind::Block(self.block(p, stray)),
            Rule::param => ItemKind::Param(Box::new(self.param(p, stray))),
            Rule::import => ItemKind::Import(Box::new(self.import(p, stray))),
            _ => return None,
        })
    }

    fn non_comments<'i>(
        &self,
        p: Pair<'i, Rule>,
        stray: &mut Vec<Comment>,
    ) -> impl Iterator<Item = Pair<'i, Rule>> + use<'i> {
        // Two passes over the children (pairs are cheap to copy) instead of a list of the
        // non-comments: this runs for every attribute, block and value with parts.
        let inner = p.into_inner();
        for c in inner.clone().filter(|c| c.as_rule() == Rule::COMMENT) {
            stray.push(self.comment(&c, self.start(&c)));
        }
        inner.filter(|c| c.as_rule() != Rule::COMMENT)
    }

    fn attribute(&self, p: Pair<'_, Rule>, stray: &mut Vec<Comment>) -> Attribute {
        let mut inner = self.non_comments(p, stray);
        let (key, key_quoted) = match inner.next() {
            Some(k) if k.as_rule() == Rule::string => {
                let (raw, text) = string_parts(&k);
                let _ = raw;
                (Spanned::new(text, self.span(&k)), true)
            }
            Some(k) => (self.spanned(&k), false),
            None => (
                Spanned::new(String::new(), Span::new(self.file, 0, 0)),
                false,
            ),
        };
        let value = inner.next().map_or_else(
            || Value {
                kind: ValueKind::Path(String::new()),
                span: key.span,
            },
            |v| self.value(v, stray),
        );
        Attribute {
            key,
            key_quoted,
            value,
        }
    }

    fn block(&self, p: Pair<'_, Rule>, stray: &mut Vec<Comment>) -> Block {
        let mut kind = None;
        let mut labels = Vec::new();
        let mut rest = Vec::new();
        let mut last_label_end = self.start(&p);
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::ident if kind.is_none() => {
                    last_label_end = self.end(&c);
                    kind = Some(self.spanned(&c));
                }
                Rule::ident if rest.is_empty() => {
                    last_label_end = self.end(&c);
                    labels.push(BlockLabel {
                        text: c.as_str().to_owned(),
                        quoted: false,
                        span: self.span(&c),
                    });
                }
                Rule::string if rest.is_empty() => {
                    last_label_end = self.end(&c);
                    let (_, text) = string_parts(&c);
                    labels.push(BlockLabel {
                        text,
                        quoted: true,
                        span: self.span(&c),
                    });
                }
                Rule::COMMENT
                    if rest.is_empty()
                        && !self.text[last_label_end..self.start(&c)].contains('{') =>
                {
                    stray.push(self.comment(&c, self.start(&c)));
                }
                _ => rest.push(c),
            }
        }
        let open = self.text[last_label_end..]
            .find('{')
            .map_or(last_label_end, |i| last_label_end + i + 1);
        let mut collected = Items::new(open);
        // Every pair left is an item or a comment: room for all of them, no slack from doubling.
        collected.items.reserve_exact(rest.len());
        collected.extend(self, rest);
        let (items, dangling) = (collected.items, collected.pending);
        Block {
            kind: kind.unwrap_or_else(|| Spanned::new(String::new(), Span::new(self.file, 0, 0))),
            labels,
            items,
            dangling,
        }
    }

    fn param(&self, p: Pair<'_, Rule>, stray: &mut Vec<Comment>) -> ParamDecl {
        let mut name = None;
        let mut ty = None;
        let mut default = None;
        for c in self.non_comments(p, stray) {
            match c.as_rule() {
                Rule::kw_param => {}
                Rule::ident => name = Some(self.spanned(&c)),
                Rule::type_expr => ty = Some(self.type_expr(c, stray)),
                _ => default = Some(self.value(c, stray)),
            }
        }
        let name = name.unwrap_or_else(|| Spanned::new(String::new(), Span::new(self.file, 0, 0)));
        let ty = ty.unwrap_or_else(|| TypeExpr {
            name: name.clone(),
            arg: None,
            span: name.span,
        });
        ParamDecl { name, ty, default }
    }

    fn type_expr(&self, p: Pair<'_, Rule>, stray: &mut Vec<Comment>) -> TypeExpr {
        let span = self.span(&p);
        let mut name = Spanned::new(String::new(), span);
        let mut arg = None;
        for c in self.non_comments(p, stray) {
            match c.as_rule() {
                Rule::ident => name = self.spanned(&c),
                _ => arg = Some(Box::new(self.type_expr(c, stray))),
            }
        }
        TypeExpr { name, arg, span }
    }

    fn import(&self, p: Pair<'_, Rule>, stray: &mut Vec<Comment>) -> ImportDecl {
        let mut path = None;
        let mut alias = None;
        for c in self.non_comments(p, stray) {
            match c.as_rule() {
                Rule::string => {
                    let (_, text) = string_parts(&c);
                    path = Some(Spanned::new(text, self.span(&c)));
                }
                Rule::ident => alias = Some(self.spanned(&c)),
                _ => {}
            }
        }
        ImportDecl {
            path: path.unwrap_or_else(|| Spanned::new(String::new(), Span::new(self.file, 0, 0))),
            alias,
        }
    }

    fn value(&self, p: Pair<'_, Rule>, stray: &mut Vec<Comment>) -> Value {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::string => {
                let (raw, text) = string_parts(&p);
                ValueKind::Str { raw, text }
            }
            Rule::number => ValueKind::Number(p.as_str().to_owned()),
            Rule::boolean => ValueKind::Bool(p.as_str() == "true"),
            Rule::duration => ValueKind::Duration(p.as_str().to_owned()),
            Rule::path => ValueKind::Path(p.as_str().to_owned()),
            Rule::range => {
                let mut parts = self.non_comments(p, stray).map(|c| self.value(c, stray));
                let lo = parts.next();
                let hi = parts.next();
                match (lo, hi) {
                    (Some(lo), Some(hi)) => ValueKind::Range(Box::new(lo), Box::new(hi)),
                    _ => ValueKind::Path(String::new()),
                }
            }
            Rule::list => {
                let items: Vec<_> = self.non_comments(p, stray).collect();
                ValueKind::List(items.into_iter().map(|c| self.value(c, stray)).collect())
            }
            Rule::map => {
                let items: Vec<_> = self.non_comments(p, stray).collect();
                ValueKind::Map(
                    items
                        .into_iter()
                        .map(|c| self.attribute(c, stray))
                        .collect(),
                )
            }
            Rule::call => {
                let mut inner: Vec<_> = self.non_comments(p, stray).collect();
                let name = if inner.is_empty() {
                    Spanned::new(String::new(), span)
                } else {
                    self.spanned(&inner.remove(0))
                };
                let args = inner.into_iter().map(|c| self.value(c, stray)).collect();
                ValueKind::Call {
                    name: Box::new(name),
                    args,
                }
            }
            _ => ValueKind::Path(p.as_str().to_owned()),
        };
        Value { kind, span }
    }
}

/// The raw text between the quotes and its unescaped form.
fn string_parts(p: &Pair<'_, Rule>) -> (String, String) {
    let s = p.as_str();
    let raw = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .to_owned();
    (raw.clone(), unescape(&raw))
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn parse_str(text: &str) -> (Document, Vec<Diagnostic>) {
        parse(FileId(0), &SourceFile::new("t.drover", text))
    }

    /// Every runbook of the repository (fixtures with errors among them), the generated ones
    /// and texts made to sit on a cut.
    pub(crate) fn corpus() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut texts = vec![
            crate::synthetic_runbook(200),
            crate::synthetic_wide_runbook(200),
            "# lead\n\nparam a: string # t\n# between\n\nparam b: list<string> = [\"x\", # in\n  \"y\"]\nstep s {\n  action = wait\n}\n\n\n# dangling\n".to_owned(),
            "import \"lib/x.drover\"\nas lib\nstep s {\n  action = wait\n}\n".to_owned(),
            "import \"lib/x.drover\"\nassert = 1\n\"quoted\" = 2\nx = foo(1,\n2)\n".to_owned(),
            // Lowering errors before a syntax error: only the whole-file pass may report them.
            "step a {\n  actoin = wait\n}\nstep b {\n  action = wait\n  after = \"a\"\n}\nstep c {\n  action wait\n}\n".to_owned(),
        ];
        let mut dirs = vec![root.join("runbooks"), root.join("dsl/tests/fixtures")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "drover") {
                    texts.push(std::fs::read_to_string(&path).expect("read runbook"));
                }
            }
        }
        assert!(texts.len() > 60, "{} texts", texts.len());
        texts
    }

    /// Parsed a piece at a time with a cut at every top-level item, the document is the
    /// whole-file one.
    #[test]
    fn pieces_give_the_whole_file_document() {
        let mut in_pieces = 0;
        for text in &corpus() {
            let source = SourceFile::new("t.drover", text.clone());
            let (whole, diags) = parse_whole(FileId(0), &source);
            match parse_in_pieces(FileId(0), text, 1) {
                Some(doc) => {
                    assert!(diags.is_empty(), "{diags:?}");
                    assert_eq!(format!("{doc:?}"), format!("{whole:?}"), "{text}");
                    in_pieces += 1;
                }
                None => assert!(
                    !diags.is_empty(),
                    "only a file with an error is parsed whole"
                ),
            }
        }
        assert!(in_pieces > 20, "{in_pieces} parsed in pieces");
    }

    #[test]
    fn expected_token_tracking_is_on_only_while_an_error_is_explained() {
        let (_, diags) = parse_str("step a {\n  action wait\n}\n");
        assert!(
            diags.first().is_some_and(|d| d.message.contains("`{`")),
            "{diags:?}"
        );
        // Off again afterwards: a file parsed now runs without the tracking. Other tests may be
        // explaining errors in other threads: check at a moment none is (holding the count keeps
        // any from starting).
        for _ in 0..10_000 {
            let n = DETAILED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *n > 0 {
                drop(n);
                std::thread::yield_now();
                continue;
            }
            let Err(e) = RunbookParser::parse(Rule::file, "step a {\n  action wait\n}\n") else {
                panic!("the text has an error");
            };
            assert!(e.parse_attempts().is_none(), "tracking left on");
            return;
        }
        panic!("some thread kept explaining errors");
    }

    #[test]
    fn parses_blocks_attributes_params_and_comments() {
        let (doc, diags) = parse_str(
            "# lead\nparam region: string = \"us\" # why\n\nstep a {\n  action = wait # t\n  with { duration = 5s }\n}\n# end\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(doc.items.len(), 2);
        assert_eq!(doc.items[0].leading.len(), 1);
        assert_eq!(
            doc.items[0].trailing.as_ref().map(|c| c.text.as_str()),
            Some("# why")
        );
        assert!(doc.items[1].blank_before);
        let b = doc.items[1].as_block().expect("block");
        assert_eq!(b.kind.value, "step");
        assert_eq!(b.labels[0].text, "a");
        assert_eq!(
            b.items[0].trailing.as_ref().map(|c| c.text.as_str()),
            Some("# t")
        );
        assert_eq!(doc.dangling.len(), 1);
    }

    #[test]
    fn reports_every_broken_item_and_keeps_the_rest() {
        let (doc, diags) = parse_str(
            "step a {\n  action = \n}\nstep b {\n  action = wait\n}\nstep c {\n  with { x = }\n}\n",
        );
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert_eq!(doc.items.len(), 1);
        assert_eq!(
            doc.recovered
                .iter()
                .filter_map(|r| r.name.as_deref())
                .collect::<Vec<_>>(),
            vec!["a", "c"]
        );
    }

    #[test]
    fn unclosed_block_loses_only_itself() {
        let (doc, diags) = parse_str("step a {\n  action = wait\n\nstep b {\n  action = wait\n}\n");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(doc.items.len(), 1);
        assert_eq!(
            doc.items[0].as_block().map(|b| b.labels[0].text.as_str()),
            Some("b")
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let text = format!("x = {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let (_, diags) = parse_str(&text);
        assert_eq!(diags[0].code, Code::NestingTooDeep);
        assert_eq!(diags[0].primary.span.start as usize, 4 + MAX_DEPTH);
    }

    /// pest runs without its stack probe (see the workspace manifest): the deepest nesting the
    /// parser lets through — blocks, maps, lists and calls, `MAX_DEPTH` brackets — parses on a
    /// thread with a small stack, in a debug build (larger frames than a release one).
    #[test]
    fn the_deepest_allowed_nesting_parses_on_a_small_stack() {
        // step → block, then list → call → map (→ list …) until MAX_DEPTH brackets are open.
        let mut open = String::from("step s {\nb {\n");
        let mut close = String::from("}\n}\n");
        for level in 2..MAX_DEPTH {
            let (o, c) = match level % 3 {
                2 => ("y = [", "]"),
                0 => ("f(", ")"),
                _ => ("{\n", "\n}"),
            };
            open.push_str(o);
            close.insert_str(0, c);
        }
        let inner = if open.ends_with('\n') { "a = 1" } else { "1" };
        let text = format!("{open}{inner}{close}");
        let depth = text.chars().filter(|c| "{[(".contains(*c)).count();
        assert_eq!(depth, MAX_DEPTH);
        let parsed = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || parse_str(&text).1)
            .expect("spawn")
            .join();
        let diags = parsed.expect("no stack overflow");
        assert!(diags.is_empty(), "it parses: {diags:?}");
    }

    #[test]
    fn unescapes_strings() {
        assert_eq!(unescape(r#"a\"b\\c\nd\q"#), "a\"b\\c\nd\\q");
    }
}
