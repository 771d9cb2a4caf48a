//! Text rendering of diagnostics (feature `render`): the exact text `drover check` prints and the
//! golden tests snapshot.

use crate::diagnostic::Diagnostic;
use crate::source_map::SourceMap;

/// Renders one diagnostic with its source snippet, labels and hint.
#[must_use]
pub fn render(d: &Diagnostic, sources: &SourceMap, color: bool, width: usize) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_links(false);
    let mut out = String::new();
    let report = d.report(sources);
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}: {}\n", sources.location(d.primary.span), d.message);
    }
    out
}
