//! Open documents: their text, positions in the protocol's UTF-16 units, incremental edits, and
//! file URIs.

use lsp_types::{Position, Range, TextDocumentContentChangeEvent, Uri};
use std::str::FromStr;

/// The text of an open document and where its lines start.
#[derive(Debug, Clone)]
pub struct Text {
    text: String,
    line_starts: Vec<usize>,
}

impl Text {
    /// Wraps a document's text.
    #[must_use]
    pub fn new(text: String) -> Self {
        let mut t = Self {
            text,
            line_starts: Vec::new(),
        };
        t.reindex();
        t
    }

    fn reindex(&mut self) {
        self.line_starts.clear();
        self.line_starts.push(0);
        self.line_starts
            .extend(self.text.match_indices('\n').map(|(i, _)| i + 1));
    }

    /// The whole text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The byte offset of a protocol position (UTF-16 columns), clamped to the text.
    #[must_use]
    pub fn offset(&self, pos: Position) -> usize {
        let Some(&start) = self.line_starts.get(pos.line as usize) else {
            return self.text.len();
        };
        let line = &self.text[start..];
        let line = line.split('\n').next().unwrap_or("");
        let mut units = 0u32;
        for (i, c) in line.char_indices() {
            if units >= pos.character {
                return start + i;
            }
            units += u32::try_from(c.len_utf16()).unwrap_or(1);
        }
        start + line.len()
    }

    /// The protocol position of a byte offset.
    #[must_use]
    pub fn position(&self, offset: usize) -> Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let character: usize = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().map(char::len_utf16).sum());
        Position {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            character: u32::try_from(character).unwrap_or(u32::MAX),
        }
    }

    /// The protocol range of a byte range.
    #[must_use]
    pub fn range(&self, start: usize, end: usize) -> Range {
        Range {
            start: self.position(start),
            end: self.position(end),
        }
    }

    /// Applies one change: a replaced range, or the whole text.
    pub fn apply(&mut self, change: TextDocumentContentChangeEvent) {
        match change.range {
            Some(r) => {
                let start = self.offset(r.start);
                let end = self.offset(r.end).max(start);
                self.text.replace_range(start..end, &change.text);
            }
            None => self.text = change.text,
        }
        self.reindex();
    }
}

/// The file path a `file:` URI names (percent-decoded), or the URI itself for other schemes
/// (untitled buffers): the name the compiler reads and reports.
#[must_use]
pub fn uri_to_name(uri: &Uri) -> String {
    let s = uri.as_str();
    let Some(rest) = s.strip_prefix("file://") else {
        return s.to_owned();
    };
    // `file:///path` or `file://host/path`: the host is dropped.
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => rest,
    };
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `file:` URI of a path (absolute paths; others are made absolute against the working
/// directory).
#[must_use]
pub fn name_to_uri(name: &str) -> Option<Uri> {
    if name.contains("://") || name.starts_with("untitled:") {
        return Uri::from_str(name).ok();
    }
    let path = std::path::Path::new(name);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let mut s = String::from("file://");
    for c in abs.to_string_lossy().bytes() {
        if c.is_ascii_alphanumeric() || b"/-_.~".contains(&c) {
            s.push(char::from(c));
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    Uri::from_str(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let t = Text::new("ab\nçd 😀e\n".to_owned());
        assert_eq!(t.offset(Position::new(1, 0)), 3);
        // 'ç' is one UTF-16 unit and two bytes.
        assert_eq!(t.offset(Position::new(1, 1)), 5);
        // '😀' is two UTF-16 units and four bytes.
        assert_eq!(t.offset(Position::new(1, 5)), 11);
        assert_eq!(t.position(11), Position::new(1, 5));
        assert_eq!(t.offset(Position::new(9, 0)), t.as_str().len());
    }

    #[test]
    fn incremental_edits_apply_in_order() {
        let mut t = Text::new("step a {\n}\n".to_owned());
        t.apply(TextDocumentContentChangeEvent {
            range: Some(Range::new(Position::new(0, 5), Position::new(0, 6))),
            range_length: None,
            text: "restore".to_owned(),
        });
        assert_eq!(t.as_str(), "step restore {\n}\n");
        t.apply(TextDocumentContentChangeEvent {
            range: Some(Range::new(Position::new(1, 0), Position::new(1, 0))),
            range_length: None,
            text: "  action = wait\n".to_owned(),
        });
        assert_eq!(t.as_str(), "step restore {\n  action = wait\n}\n");
        assert_eq!(t.position(t.as_str().len()), Position::new(3, 0));
    }

    #[test]
    fn file_uris_round_trip_with_escapes() {
        let uri = name_to_uri("/tmp/dr runbooks/ehr.drover").expect("uri");
        assert_eq!(uri.as_str(), "file:///tmp/dr%20runbooks/ehr.drover");
        assert_eq!(uri_to_name(&uri), "/tmp/dr runbooks/ehr.drover");
    }
}
