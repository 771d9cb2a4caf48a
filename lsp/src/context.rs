//! Where the cursor is, for completion: read straight off the text from the start of the
//! top-level item around it, so that it costs the size of one item, not of the file, and works on
//! text that does not parse yet (which is what a file is while someone types).

use drover_dsl::vocabulary::TOP_LEVEL;

/// A block the cursor is inside: `step restore { ... }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// The block's keyword (`step`, `with`, `runbook`…).
    pub kind: String,
    /// Its first label (`restore`), if any.
    pub label: Option<String>,
    /// The value of its `action = ...`, if written before the cursor.
    pub action: Option<String>,
    /// The attribute and block names it already holds.
    pub keys: Vec<String>,
}

/// What is being typed at the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// A top-level keyword.
    TopLevel {
        /// The word typed so far.
        prefix: String,
    },
    /// An attribute or block name inside `frames` (outermost first).
    Key {
        /// The blocks around the cursor.
        frames: Vec<Frame>,
        /// The word typed so far.
        prefix: String,
    },
    /// The value of `key` inside `frames`.
    Value {
        /// The blocks around the cursor.
        frames: Vec<Frame>,
        /// The attribute whose value it is.
        key: String,
        /// The word typed so far (dots included: `steps.restore.`).
        prefix: String,
        /// Whether the cursor is inside a list (`after = [a, |`).
        in_list: bool,
        /// Whether the cursor is inside a quoted string (outside any template).
        in_string: bool,
    },
    /// A name inside `{{ }}` in a string.
    Template {
        /// The blocks around the cursor.
        frames: Vec<Frame>,
        /// The word typed so far.
        prefix: String,
    },
    /// The type of a parameter (`param x: |`).
    Type {
        /// The word typed so far.
        prefix: String,
    },
    /// Nothing to complete (a comment, a label, a number).
    Nothing,
}

impl Context {
    /// The blocks around the cursor.
    #[must_use]
    pub fn frames(&self) -> &[Frame] {
        match self {
            Context::Key { frames, .. }
            | Context::Value { frames, .. }
            | Context::Template { frames, .. } => frames,
            _ => &[],
        }
    }

    /// The group the cursor is in, if any.
    #[must_use]
    pub fn scope(&self) -> Option<&str> {
        self.frames()
            .first()
            .filter(|f| f.kind == "group")
            .and_then(|f| f.label.as_deref())
    }

    /// The innermost step, milestone or `use` around the cursor.
    #[must_use]
    pub fn step(&self) -> Option<&Frame> {
        self.frames()
            .iter()
            .rev()
            .find(|f| matches!(f.kind.as_str(), "step" | "milestone" | "use"))
    }
}

/// The byte offset where the top-level item holding `offset` starts: the nearest line at or
/// before it that starts, in its first column, with a top-level keyword.
#[must_use]
pub fn item_start(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    let mut line_end = offset;
    loop {
        let start = text[..line_end].rfind('\n').map_or(0, |i| i + 1);
        let line = &text[start..];
        let word: &str = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        if start < offset && TOP_LEVEL.contains(&word) {
            return start;
        }
        if start == 0 {
            return 0;
        }
        line_end = start - 1;
    }
}

#[derive(Debug)]
enum Open {
    List(String),
    Map,
    Call,
}

/// Reads the cursor's context at byte `offset`.
#[must_use]
pub fn at(text: &str, offset: usize) -> Context {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let from = item_start(text, offset);
    let mut ctx = Lexer::default().run(&text[from..offset]);
    if let Context::Key { frames, .. } = &mut ctx
        && let Some(f) = frames.last_mut()
    {
        // Keys written after the cursor in the same block are taken too.
        f.keys.extend(keys_after(&text[offset..]));
    }
    ctx
}

/// The attribute and block names of the rest of the block the text starts in, up to its `}`.
fn keys_after(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut i = 0;
    // The rest of the word under the cursor is not a key of its own.
    while i < b.len() && word_char(b[i]) {
        i += 1;
    }
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut last_word: Option<&str> = None;
    while i < b.len() {
        match b[i] {
            b'#' => i += s[i..].find('\n').unwrap_or(s.len() - i),
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                last_word = None;
            }
            b'{' | b'[' | b'(' => {
                if depth == 0
                    && b[i] == b'{'
                    && let Some(w) = last_word.take()
                {
                    out.push(w.to_owned());
                }
                depth += 1;
                i += 1;
            }
            b'}' | b']' | b')' => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
                i += 1;
            }
            b'=' => {
                if depth == 0
                    && let Some(w) = last_word.take()
                {
                    out.push(w.to_owned());
                }
                i += 1;
            }
            c if word_char(c) => {
                let start = i;
                while i < b.len() && word_char(b[i]) {
                    i += 1;
                }
                last_word = Some(&s[start..i]);
            }
            _ => i += 1,
        }
    }
    out
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Default)]
struct Lexer {
    frames: Vec<Frame>,
    open: Vec<Open>,
    /// An attribute whose value comes next (`":type"` after `param x:`).
    pending: Option<String>,
    /// Words and strings read at a key position since the last item.
    words: Vec<String>,
}

fn word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-')
}

impl Lexer {
    fn key_position(&self) -> bool {
        self.pending.is_none() && !matches!(self.open.last(), Some(Open::List(_) | Open::Call))
    }

    /// A whole value has been read.
    fn value_done(&mut self, value: Option<&str>) {
        if self.open.is_empty()
            && let Some(key) = self.pending.take()
            && let Some(f) = self.frames.last_mut()
        {
            if key == "action" {
                f.action = value.map(str::to_owned);
            }
            f.keys.push(key);
        }
    }

    fn run(mut self, s: &str) -> Context {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'#' => match s[i..].find('\n') {
                    Some(k) => i += k,
                    None => return Context::Nothing,
                },
                b'"' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'"' && b[j] != b'\n' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    if j >= b.len() {
                        return self.in_string(&s[start..]);
                    }
                    let text = &s[start..j];
                    if self.key_position() && self.open.is_empty() {
                        self.words.push(text.to_owned());
                    } else {
                        self.value_done(None);
                    }
                    i = j + 1;
                }
                c if word_char(c) => {
                    let start = i;
                    while i < b.len() && word_char(b[i]) {
                        i += 1;
                    }
                    let word = &s[start..i];
                    if i == b.len() {
                        return self.finish(word);
                    }
                    if self.pending.as_deref() == Some(":type") {
                        // `param x: list<string>`: the type ends at the line's end or `=`.
                        continue;
                    }
                    if self.key_position() && self.open.is_empty() {
                        self.words.push(word.to_owned());
                    } else if self.key_position() {
                        // A key inside a map value.
                    } else {
                        self.value_done(Some(word));
                    }
                }
                b'=' => {
                    if self.pending.as_deref() == Some(":type") {
                        self.pending = Some(":default".to_owned());
                    } else if self.key_position() {
                        if self.open.is_empty() {
                            self.pending = self.words.pop();
                            self.words.clear();
                        } else {
                            self.pending = Some(":map".to_owned());
                        }
                    }
                    i += 1;
                }
                b':' => {
                    if self.frames.is_empty() && self.words.first().is_some_and(|w| w == "param") {
                        self.pending = Some(":type".to_owned());
                        self.words.clear();
                    }
                    i += 1;
                }
                b'{' => {
                    if self.pending.is_some() || !self.open.is_empty() {
                        let key = self.pending.take();
                        if let Some(k) = key.filter(|_| self.open.is_empty())
                            && let Some(f) = self.frames.last_mut()
                        {
                            f.keys.push(k);
                        }
                        self.open.push(Open::Map);
                    } else {
                        let mut words = std::mem::take(&mut self.words).into_iter();
                        let kind = words.next().unwrap_or_default();
                        if let Some(f) = self.frames.last_mut() {
                            f.keys.push(kind.clone());
                        }
                        self.frames.push(Frame {
                            kind,
                            label: words.next(),
                            action: None,
                            keys: Vec::new(),
                        });
                    }
                    i += 1;
                }
                b'}' => {
                    if matches!(self.open.last(), Some(Open::Map)) {
                        self.open.pop();
                        if self.open.is_empty() {
                            // The key was recorded when the map opened.
                            self.pending = None;
                        }
                    } else {
                        self.open.clear();
                        self.pending = None;
                        self.words.clear();
                        self.frames.pop();
                    }
                    i += 1;
                }
                b'[' => {
                    let key = self.pending.clone().unwrap_or_default();
                    self.open.push(Open::List(key));
                    i += 1;
                }
                b']' => {
                    if matches!(self.open.last(), Some(Open::List(_))) {
                        self.open.pop();
                    }
                    self.value_done(None);
                    i += 1;
                }
                b'(' => {
                    self.open.push(Open::Call);
                    i += 1;
                }
                b')' => {
                    if matches!(self.open.last(), Some(Open::Call)) {
                        self.open.pop();
                    }
                    self.value_done(None);
                    i += 1;
                }
                b'\n' => {
                    if self.pending.as_deref().is_some_and(|p| p.starts_with(':'))
                        && self.open.is_empty()
                    {
                        self.pending = None;
                        self.words.clear();
                    }
                    i += 1;
                }
                b',' => {
                    if matches!(self.open.last(), Some(Open::Map)) {
                        self.pending = None;
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
        self.finish("")
    }

    fn finish(self, prefix: &str) -> Context {
        let prefix = prefix.to_owned();
        if self.pending.as_deref() == Some(":type") {
            return Context::Type { prefix };
        }
        if let Some(Open::List(key)) = self.open.last() {
            return Context::Value {
                frames: self.frames,
                key: key.clone(),
                prefix,
                in_list: true,
                in_string: false,
            };
        }
        if !self.open.is_empty() {
            return Context::Nothing;
        }
        match self.pending {
            Some(key) if key.starts_with(':') => Context::Nothing,
            Some(key) => Context::Value {
                frames: self.frames,
                key,
                prefix,
                in_list: false,
                in_string: false,
            },
            None if !self.words.is_empty() => Context::Nothing,
            None if self.frames.is_empty() => Context::TopLevel { prefix },
            None => Context::Key {
                frames: self.frames,
                prefix,
            },
        }
    }

    fn in_string(self, body: &str) -> Context {
        let open = body.rfind("{{");
        let close = body.rfind("}}");
        let in_template = match (open, close) {
            (Some(o), Some(c)) => o > c,
            (Some(_), None) => true,
            _ => false,
        };
        let prefix: String = {
            let tail = body
                .char_indices()
                .rev()
                .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .map_or(0, |(k, c)| k + c.len_utf8());
            body[tail..].to_owned()
        };
        if in_template {
            return Context::Template {
                frames: self.frames,
                prefix,
            };
        }
        let key = match (self.open.last(), self.pending) {
            (Some(Open::List(k)), _) => Some(k.clone()),
            (None, Some(k)) => Some(k),
            _ => None,
        };
        match key {
            Some(key) if !key.starts_with(':') => Context::Value {
                frames: self.frames,
                key,
                prefix: body.to_owned(),
                in_list: false,
                in_string: true,
            },
            _ => Context::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(src: &str) -> Context {
        let at_ = src.find('|').expect("cursor");
        let text = src.replacen('|', "", 1);
        at(&text, at_)
    }

    fn kinds(c: &Context) -> Vec<&str> {
        c.frames().iter().map(|f| f.kind.as_str()).collect()
    }

    #[test]
    fn action_value() {
        let c = ctx("runbook \"x\" {\n}\nstep a {\n  action = aws_|\n}\n");
        let Context::Value { key, prefix, .. } = &c else {
            panic!("{c:?}")
        };
        assert_eq!((key.as_str(), prefix.as_str()), ("action", "aws_"));
        assert_eq!(kinds(&c), ["step"]);
    }

    #[test]
    fn input_key_inside_with_knows_the_action() {
        let c = ctx(
            "step dns {\n  action = aws_route53.set_failover\n  with {\n    zone_id = zone\n    |\n  }\n}\n",
        );
        let Context::Key { frames, prefix } = &c else {
            panic!("{c:?}")
        };
        assert_eq!(prefix, "");
        assert_eq!(
            frames[0].action.as_deref(),
            Some("aws_route53.set_failover")
        );
        assert_eq!(frames[1].kind, "with");
        assert_eq!(frames[1].keys, ["zone_id"]);
    }

    #[test]
    fn after_list_and_outputs() {
        let c = ctx("step b {\n  after = [a, re|]\n}\n");
        assert!(
            matches!(&c, Context::Value { key, in_list: true, prefix, .. } if key == "after" && prefix == "re"),
            "{c:?}"
        );
        let c = ctx("step b {\n  with {\n    x = steps.rehydrate.|\n  }\n}\n");
        assert!(
            matches!(&c, Context::Value { key, prefix, .. } if key == "x" && prefix == "steps.rehydrate."),
            "{c:?}"
        );
    }

    #[test]
    fn templates_types_and_comments() {
        let c = ctx("step b {\n  with {\n    message = \"in {{ reg|\"\n  }\n}\n");
        assert!(
            matches!(&c, Context::Template { prefix, .. } if prefix == "reg"),
            "{c:?}"
        );
        let c = ctx("param x: li|");
        assert!(
            matches!(&c, Context::Type { prefix } if prefix == "li"),
            "{c:?}"
        );
        assert_eq!(ctx("# step a {|"), Context::Nothing);
        let c = ctx("step a {\n  estimate = { p50 = 1m, p95 = 2m }\n  |\n}\n");
        assert!(
            matches!(&c, Context::Key { frames, .. } if frames[0].keys == ["estimate"]),
            "{c:?}"
        );
        let c = ctx("ste|");
        assert!(
            matches!(&c, Context::TopLevel { prefix } if prefix == "ste"),
            "{c:?}"
        );
    }

    #[test]
    fn starts_at_the_item_not_the_file() {
        let text = "step a {\n}\n\nstep b {\n  action = wait\n}\n";
        assert_eq!(
            item_start(text, text.len() - 3),
            text.find("step b").unwrap_or(0)
        );
    }
}
