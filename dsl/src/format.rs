//! The canonical layout of a runbook (`drover fmt`).
//!
//! Two-space indentation; one item per line; `=` aligned within runs of consecutive attributes;
//! one blank line around top-level blocks, other blank lines kept (at most one); lists and maps
//! inline when they fit in [`WIDTH`] columns, one entry per line otherwise. Comments are kept:
//! own-line comments stay before the item they precede, end-of-line comments stay at the end of
//! the line; a comment written inside a value moves to the line before its item. Formatting is
//! idempotent.

use crate::diagnostic::Diagnostic;
use crate::document::{
    Attribute, Block, Comment, Document, Item, ItemKind, TypeExpr, Value, ValueKind,
};
use crate::source_map::SourceFile;
use crate::span::FileId;

/// Lines longer than this break lists and maps over several lines.
pub const WIDTH: usize = 100;

/// Why a file could not be formatted.
#[derive(Debug, thiserror::Error)]
#[error("the file has {} syntax error(s); fix them before formatting", .diagnostics.len())]
pub struct FormatError {
    /// The syntax errors.
    pub diagnostics: Vec<Diagnostic>,
}

/// Formats a runbook's source.
///
/// # Errors
/// [`FormatError`] if the source does not parse: a file with syntax errors is never rewritten.
pub fn format_source(name: &str, text: &str) -> Result<String, FormatError> {
    let file = SourceFile::new(name, text);
    let (doc, diags) = crate::parse::parse(FileId(0), &file);
    if !diags.is_empty() {
        return Err(FormatError { diagnostics: diags });
    }
    Ok(format_document(&doc))
}

/// Prints a parsed document in canonical layout.
#[must_use]
pub fn format_document(doc: &Document) -> String {
    let mut p = Printer { out: String::new() };
    p.items(&doc.items, &doc.dangling, 0, true);
    while p.out.ends_with("\n\n") {
        p.out.pop();
    }
    if !p.out.is_empty() && !p.out.ends_with('\n') {
        p.out.push('\n');
    }
    p.out
}

struct Printer {
    out: String,
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

impl Printer {
    fn line(&mut self, indent: usize, text: &str) {
        self.out.push_str(&pad(indent));
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn comments(&mut self, comments: &[Comment], indent: usize) {
        for (k, c) in comments.iter().enumerate() {
            if k > 0 && c.blank_before {
                self.blank();
            }
            self.line(indent, &c.text);
        }
    }

    fn items(&mut self, items: &[Item], dangling: &[Comment], indent: usize, top: bool) {
        // Key width for `=` alignment: runs of consecutive attributes without blank lines.
        let mut widths = vec![0usize; items.len()];
        let mut k = 0;
        while k < items.len() {
            let mut end = k;
            while end < items.len()
                && matches!(items[end].kind, ItemKind::Attribute(_))
                && (end == k || !items[end].blank_before)
            {
                end += 1;
            }
            if end == k {
                k += 1;
                continue;
            }
            let w = items[k..end]
                .iter()
                .filter_map(|i| match &i.kind {
                    ItemKind::Attribute(a) => Some(key_text(a).chars().count()),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            widths[k..end].iter_mut().for_each(|x| *x = w);
            k = end;
        }
        for (k, item) in items.iter().enumerate() {
            if k > 0 {
                let prev_block = matches!(items[k - 1].kind, ItemKind::Block(_));
                let this_block = matches!(item.kind, ItemKind::Block(_));
                if item.blank_before || (top && (prev_block || this_block)) {
                    self.blank();
                }
            }
            self.comments(&item.leading, indent);
            if item.blank_after_leading && !item.leading.is_empty() {
                self.blank();
            }
            let text = self.item(item, indent, widths[k]);
            self.out.push_str(&pad(indent));
            self.out.push_str(&text);
            if let Some(c) = &item.trailing {
                self.out.push(' ');
                self.out.push_str(&c.text);
            }
            self.out.push('\n');
        }
        if !dangling.is_empty() {
            if !items.is_empty() && dangling[0].blank_before {
                self.blank();
            }
            self.comments(dangling, indent);
        }
    }

    /// An item's text, starting at `indent` (the first line's indent is added by the caller).
    fn item(&mut self, item: &Item, indent: usize, key_width: usize) -> String {
        match &item.kind {
            ItemKind::Attribute(a) => {
                let key = key_text(a);
                let lead = format!(
                    "{key}{} = ",
                    pad(key_width.saturating_sub(key.chars().count()))
                );
                let col = indent + lead.chars().count();
                format!("{lead}{}", value(&a.value, indent, col))
            }
            ItemKind::Param(p) => {
                let mut s = format!("param {}: {}", p.name.value, type_text(&p.ty));
                if let Some(v) = &p.default {
                    s.push_str(" = ");
                    let col = indent + s.chars().count();
                    s.push_str(&value(v, indent, col));
                }
                s
            }
            ItemKind::Import(i) => {
                let mut s = format!("import \"{}\"", escape(&i.path.value));
                if let Some(a) = &i.alias {
                    s.push_str(&format!(" as {}", a.value));
                }
                s
            }
            ItemKind::Block(b) => self.block(b, indent),
        }
    }

    fn block(&mut self, b: &Block, indent: usize) -> String {
        let mut head = b.kind.value.clone();
        for l in &b.labels {
            head.push(' ');
            if l.quoted {
                head.push_str(&format!("\"{}\"", escape(&l.text)));
            } else {
                head.push_str(&l.text);
            }
        }
        if b.items.is_empty() && b.dangling.is_empty() {
            return format!("{head} {{}}");
        }
        let mut inner = Printer { out: String::new() };
        inner.items(&b.items, &b.dangling, indent + 2, false);
        format!("{head} {{\n{}{}}}", inner.out, pad(indent))
    }
}

fn key_text(a: &Attribute) -> String {
    if a.key_quoted {
        format!("\"{}\"", escape(&a.key.value))
    } else {
        a.key.value.clone()
    }
}

fn type_text(t: &TypeExpr) -> String {
    match &t.arg {
        Some(a) => format!("{}<{}>", t.name.value, type_text(a)),
        None => t.name.value.clone(),
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\t', "\\t")
}

/// A value on one line.
fn inline(v: &Value) -> String {
    match &v.kind {
        ValueKind::Str { raw, .. } => format!("\"{raw}\""),
        ValueKind::Number(n) | ValueKind::Duration(n) | ValueKind::Path(n) => n.clone(),
        ValueKind::Bool(b) => b.to_string(),
        ValueKind::Range(a, b) => format!("{}..{}", inline(a), inline(b)),
        ValueKind::List(items) => format!(
            "[{}]",
            items.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
        ValueKind::Map(entries) if entries.is_empty() => "{}".to_owned(),
        ValueKind::Map(entries) => format!(
            "{{ {} }}",
            entries
                .iter()
                .map(|e| format!("{} = {}", key_text(e), inline(&e.value)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ValueKind::Call { name, args } => format!(
            "{}({})",
            name.value,
            args.iter().map(inline).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A value starting at column `col` of a line indented by `indent`: inline if it fits.
fn value(v: &Value, indent: usize, col: usize) -> String {
    let one = inline(v);
    if col + one.chars().count() <= WIDTH {
        return one;
    }
    match &v.kind {
        ValueKind::List(items) if !items.is_empty() => {
            let inner = indent + 2;
            let mut s = "[\n".to_owned();
            for i in items {
                s.push_str(&pad(inner));
                s.push_str(&value(i, inner, inner));
                s.push_str(",\n");
            }
            s.push_str(&pad(indent));
            s.push(']');
            s
        }
        ValueKind::Map(entries) if !entries.is_empty() => {
            let inner = indent + 2;
            let w = entries
                .iter()
                .map(|e| key_text(e).chars().count())
                .max()
                .unwrap_or(0);
            let mut s = "{\n".to_owned();
            for e in entries {
                let key = key_text(e);
                let lead = format!("{key}{} = ", pad(w - key.chars().count()));
                s.push_str(&pad(inner));
                s.push_str(&lead);
                s.push_str(&value(&e.value, inner, inner + lead.chars().count()));
                s.push('\n');
            }
            s.push_str(&pad(indent));
            s.push('}');
            s
        }
        _ => one,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_keeps_comments_and_is_idempotent() {
        let src = "# top\nrunbook \"x\" {\n  rto=4h # target\n     description = \"d\"\n\n  rpo = 15m\n}\nparam a: list<string> = [\"x\",\"y\"]\nstep s {\n  with {\n    # why\n    n = { a = 1, \"b.c\" = 2 }\n  }\n}\n# tail\n";
        let once = format_source("t", src).expect("formats");
        assert_eq!(
            once,
            "# top\nrunbook \"x\" {\n  rto         = 4h # target\n  description = \"d\"\n\n  rpo = 15m\n}\n\nparam a: list<string> = [\"x\", \"y\"]\n\nstep s {\n  with {\n    # why\n    n = { a = 1, \"b.c\" = 2 }\n  }\n}\n# tail\n"
        );
        assert_eq!(format_source("t", &once).expect("formats"), once);
    }

    #[test]
    fn long_lists_break_one_item_per_line() {
        let items: Vec<String> = (0..20).map(|i| format!("\"item-number-{i}\"")).collect();
        let src = format!("x {{\n  l = [{}]\n}}\n", items.join(", "));
        let out = format_source("t", &src).expect("formats");
        assert!(out.contains("  l = [\n    \"item-number-0\",\n"), "{out}");
        assert_eq!(format_source("t", &out).expect("formats"), out);
    }

    #[test]
    fn refuses_files_with_syntax_errors() {
        assert!(format_source("t", "step a {").is_err());
    }
}
