//! The concrete syntax tree: what the parser read, comments and layout included.
//!
//! The formatter prints a [`Document`] back; the lowering pass turns it into the typed
//! [`crate::Runbook`]. Keeping the tree generic (blocks, attributes, values) lets the lowering pass
//! give precise diagnostics ("`retyr` is not an attribute of a step; did you mean `retry`?").

use crate::span::{Span, Spanned};

/// A parsed file.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// Top-level items in source order.
    pub items: Vec<Item>,
    /// Comments after the last item.
    pub dangling: Vec<Comment>,
    /// Top-level items dropped after a syntax error, so that later passes do not report
    /// references to them as unknown.
    pub recovered: Vec<Recovered>,
}

/// A top-level item that could not be parsed and was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The item's keyword (`step`, `param`…).
    pub keyword: String,
    /// Its name, if one could be read.
    pub name: Option<String>,
}

/// A `#` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The text, starting with `#`, without the line break.
    pub text: String,
    /// Where.
    pub span: Span,
    /// Whether a blank line precedes it.
    pub blank_before: bool,
}

/// An item of a file or a block, with the comments around it.
#[derive(Debug, Clone)]
pub struct Item {
    /// What it is.
    pub kind: ItemKind,
    /// Where.
    pub span: Span,
    /// Comments on the lines before it (and any written inside it, hoisted here).
    pub leading: Vec<Comment>,
    /// A comment on the same line after it.
    pub trailing: Option<Box<Comment>>,
    /// Whether a blank line precedes it (and its leading comments).
    pub blank_before: bool,
    /// Whether a blank line separates its leading comments from it.
    pub blank_after_leading: bool,
}

/// The kinds of item.
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// `key = value`
    Attribute(Attribute),
    /// `kind label... { items }`
    Block(Block),
    /// `param name: type = default` (boxed, as imports: both are rare, and an item is as large
    /// as its largest kind)
    Param(Box<ParamDecl>),
    /// `import "path" as name`
    Import(Box<ImportDecl>),
}

/// `key = value`.
#[derive(Debug, Clone)]
pub struct Attribute {
    /// The key.
    pub key: Spanned<String>,
    /// Whether the key was written as a quoted string.
    pub key_quoted: bool,
    /// The value.
    pub value: Value,
}

/// `kind label... { items }`.
#[derive(Debug, Clone)]
pub struct Block {
    /// The block's keyword (`step`, `runbook`, `with`…).
    pub kind: Spanned<String>,
    /// Labels after the keyword (`step restore_db`, `runbook "EHR failover"`).
    pub labels: Vec<BlockLabel>,
    /// Items inside the braces.
    pub items: Vec<Item>,
    /// Comments after the last item, before the closing brace.
    pub dangling: Vec<Comment>,
}

/// A block label: a name or a quoted string.
#[derive(Debug, Clone)]
pub struct BlockLabel {
    /// The label (unquoted).
    pub text: String,
    /// Whether it was quoted.
    pub quoted: bool,
    /// Where.
    pub span: Span,
}

/// `param name: type = default`.
#[derive(Debug, Clone)]
pub struct ParamDecl {
    /// The parameter's name.
    pub name: Spanned<String>,
    /// Its declared type.
    pub ty: TypeExpr,
    /// Its default value.
    pub default: Option<Value>,
}

/// A type: `string`, `list<string>`.
#[derive(Debug, Clone)]
pub struct TypeExpr {
    /// The type's name.
    pub name: Spanned<String>,
    /// Its argument (`list<int>`).
    pub arg: Option<Box<TypeExpr>>,
    /// Where.
    pub span: Span,
}

/// `import "path" as name`.
#[derive(Debug, Clone)]
pub struct ImportDecl {
    /// The path, relative to the importing file.
    pub path: Spanned<String>,
    /// An optional alias (kept for documentation; groups are imported by their own names).
    pub alias: Option<Spanned<String>>,
}

/// A value.
#[derive(Debug, Clone)]
pub struct Value {
    /// What kind.
    pub kind: ValueKind,
    /// Where.
    pub span: Span,
}

/// The kinds of value.
#[derive(Debug, Clone)]
pub enum ValueKind {
    /// A quoted string: `raw` as written between the quotes, `text` with escapes resolved.
    Str {
        /// As written.
        raw: String,
        /// Unescaped.
        text: String,
    },
    /// A number as written.
    Number(String),
    /// `true` or `false`.
    Bool(bool),
    /// A duration as written (`1h30m`).
    Duration(String),
    /// `low..high`.
    Range(Box<Value>, Box<Value>),
    /// `[a, b]`.
    List(Vec<Value>),
    /// `{ k = v, ... }`.
    Map(Vec<Attribute>),
    /// `name(args)`.
    Call {
        /// The function (boxed, so that a value — every attribute of every lowered step holds
        /// one — is the size of a string's).
        name: Box<Spanned<String>>,
        /// Its arguments.
        args: Vec<Value>,
    },
    /// A dotted name: a parameter, a word, an action or `steps.<id>.<output>`.
    Path(String),
}

impl Value {
    /// A short name of the value's kind, for diagnostics.
    #[must_use]
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            ValueKind::Str { .. } => "a string",
            ValueKind::Number(_) => "a number",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Duration(_) => "a duration",
            ValueKind::Range(..) => "a range",
            ValueKind::List(_) => "a list",
            ValueKind::Map(_) => "a map",
            ValueKind::Call { .. } => "a function call",
            ValueKind::Path(_) => "a name",
        }
    }

    /// The string's text, if this is a quoted string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::Str { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The dotted name, if this is a path.
    #[must_use]
    pub fn as_path(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::Path(p) => Some(p),
            _ => None,
        }
    }
}

impl Item {
    /// The block, if this item is one.
    #[must_use]
    pub fn as_block(&self) -> Option<&Block> {
        match &self.kind {
            ItemKind::Block(b) => Some(b),
            _ => None,
        }
    }
}
