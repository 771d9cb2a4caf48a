//! Diagnostics as data: a code, a severity, a message, labelled spans and a hint.

use crate::code::Code;
use crate::source_map::SourceMap;
use crate::span::Span;
use serde::Serialize;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look; does not fail `drover check`.
    Warning,
    /// The runbook cannot be compiled.
    Error,
}

/// A span with a short message saying what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What (may be empty).
    pub message: String,
}

/// One finding of the compiler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// Error or warning.
    pub severity: Severity,
    /// One sentence saying what is wrong.
    pub message: String,
    /// The main place.
    pub primary: Label,
    /// Related places (the first definition of a duplicate, the rest of a cycle).
    pub secondary: Vec<Label>,
    /// How to fix it.
    pub help: Option<String>,
    /// A fix a tool can apply without asking: the word to replace inside the primary span, and
    /// its replacement (a typo'd name and the one meant).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<Suggestion>,
}

/// A mechanical fix of a [`Diagnostic`]: replace the word `replace`, found inside the primary span,
/// with `with`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    /// The word as written.
    pub replace: String,
    /// What it should be.
    pub with: String,
}

impl Diagnostic {
    /// A new error.
    #[must_use]
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: Label {
                span,
                message: String::new(),
            },
            secondary: Vec::new(),
            help: None,
            suggestion: None,
        }
    }

    /// A new warning.
    #[must_use]
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, span, message)
        }
    }

    /// Sets the primary label's message.
    #[must_use]
    pub fn label(mut self, message: impl Into<String>) -> Self {
        self.primary.message = message.into();
        self
    }

    /// Adds a secondary label.
    #[must_use]
    pub fn with(mut self, span: Span, message: impl Into<String>) -> Self {
        self.secondary.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    /// Sets the hint.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the hint "did you mean `meant`?" and the fix replacing `written` by `meant`.
    #[must_use]
    pub fn did_you_mean(mut self, written: &str, meant: &str) -> Self {
        self.help = Some(format!("did you mean `{meant}`?"));
        self.suggestion = Some(Suggestion {
            replace: written.to_owned(),
            with: meant.to_owned(),
        });
        self
    }

    /// Whether this is an error.
    #[must_use]
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Wraps the diagnostic with its sources so that a `miette` handler can render it.
    #[must_use]
    pub fn report(&self, sources: &SourceMap) -> Report {
        Report::new(self, sources)
    }
}

/// A [`Diagnostic`] bound to its source text, implementing [`miette::Diagnostic`]. Labels in
/// other files than the primary one become notes with their location.
#[derive(Debug)]
pub struct Report {
    message: String,
    code: Code,
    severity: Severity,
    help: Option<String>,
    labels: Vec<miette::LabeledSpan>,
    source: miette::NamedSource<String>,
}

impl Report {
    fn new(d: &Diagnostic, sources: &SourceMap) -> Self {
        let file = sources.get(d.primary.span.file);
        let mut labels = Vec::new();
        let mut notes = Vec::new();
        let to_label = |l: &crate::diagnostic::Label, primary: bool| {
            let text = (!l.message.is_empty()).then(|| l.message.clone());
            let span = (l.span.start as usize, l.span.len());
            if primary {
                miette::LabeledSpan::new_primary_with_span(text, span)
            } else {
                miette::LabeledSpan::new_with_span(text, span)
            }
        };
        labels.push(to_label(&d.primary, true));
        for l in &d.secondary {
            if l.span.file == d.primary.span.file {
                labels.push(to_label(l, false));
            } else {
                notes.push(format!("{}: {}", sources.location(l.span), l.message));
            }
        }
        let help = match (&d.help, notes.is_empty()) {
            (h, true) => h.clone(),
            (None, false) => Some(notes.join("\n")),
            (Some(h), false) => Some(format!("{}\n{h}", notes.join("\n"))),
        };
        Self {
            message: d.message.clone(),
            code: d.code,
            severity: d.severity,
            help,
            labels,
            source: miette::NamedSource::new(file.name.clone(), file.text.clone()),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        Some(Box::new(self.labels.iter().cloned()))
    }
}
