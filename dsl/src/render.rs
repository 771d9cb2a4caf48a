//! Text rendering of diagnostics (feature `render`): the exact text `drover check` prints and the
//! golden tests snapshot.

use crate::diagnostic::Diagnostic;
use crate::source_map::SourceMap;

/// Source lines longer than this are not echoed in a rendered diagnostic.
pub const MAX_ECHOED_LINE: usize = 1_000;

/// Renders one diagnostic with its source snippet, labels and hint (without the snippet when its
/// line is longer than `MAX_ECHOED_LINE`, 1,000 bytes).
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
    // A huge source line (a generated file, a pasted blob) is not echoed: location, message and
    // help are what the reader needs, and the output stays small whatever the input.
    let file = sources.get(d.primary.span.file);
    let at = (d.primary.span.start as usize).min(file.text.len());
    let line_start = file.text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = file.text[at..]
        .find('\n')
        .map_or(file.text.len(), |i| at + i);
    if line_end - line_start > MAX_ECHOED_LINE || d.message.len() > MAX_ECHOED_LINE {
        let message: String = if d.message.len() > MAX_ECHOED_LINE {
            format!("{}…", d.message.chars().take(200).collect::<String>())
        } else {
            d.message.clone()
        };
        out = format!(
            "{}[{}]: {}\n  at {} (the line is {} bytes long; not shown)\n",
            if d.is_error() { "error" } else { "warning" },
            d.code.as_str(),
            message,
            sources.location(d.primary.span),
            line_end - line_start
        );
        if let Some(h) = &d.help {
            out.push_str(&format!("  help: {h}\n"));
        }
        return out;
    }
    let report = d.report(sources);
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}: {}\n", sources.location(d.primary.span), d.message);
    }
    out
}
