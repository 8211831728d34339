//! What the overlay ffmpeg children draw, decided without ffmpeg: the text of the
//! chat-in-the-picture output (which lines, how many per second, how long, cleaned of
//! anything a terminal or a filter could read as syntax) and the escaping of text put
//! into a filter graph.
//!
//! Chat text never enters a filter graph: the child's `drawtext` reads it from a file
//! (`textfile=…:reload=1`) that the media server rewrites atomically, so the graph is
//! fixed when the child starts and hostile chat can only ever be text. The rules here
//! still strip control, bidirectional-override and zero-width characters (a line break
//! would draw extra lines; an override could reorder what viewers read) and bound the
//! lines. [`escape_drawtext`] is for the values that do go into a graph (the
//! configured overlay text, file paths).

use std::collections::VecDeque;

/// The room layer's side of the chat output: the media service implements it, the
/// hub calls it (neither knows the other; the server wires them).
pub trait ChatOverlaySink: Send + Sync {
    /// Switches the burned-in chat output of `stream` on or off.
    fn set_enabled(&self, stream: &str, on: bool);
    /// The text the output of `stream` draws now (lines joined by `\n`, already
    /// filtered, bounded and cleaned by [`ChatBoard`]).
    fn set_text(&self, stream: &str, text: &str);
}

/// Bounds of the chat output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChatBoardConfig {
    /// Lines shown at once (the oldest scrolls out).
    pub max_lines: usize,
    /// Characters per line (longer lines end with `…`).
    pub max_chars: usize,
    /// Chat messages drawn per second (a token bucket of `max_lines` burst); the
    /// rest are not drawn. Gift highlights have a bucket of their own.
    pub per_sec: f64,
    /// A line disappears after this long.
    pub hold_ms: u64,
}

impl Default for ChatBoardConfig {
    fn default() -> Self {
        ChatBoardConfig { max_lines: 6, max_chars: 48, per_sec: 2.0, hold_ms: 15_000 }
    }
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

impl Bucket {
    fn take(&mut self, now_ms: u64, per_sec: f64, burst: f64) -> bool {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * per_sec).min(burst);
        self.at_ms = now_ms.max(self.at_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One room's chat output: the lines on screen now.
#[derive(Debug, Clone)]
pub struct ChatBoard {
    cfg: ChatBoardConfig,
    lines: VecDeque<(u64, String)>,
    chat: Bucket,
    gifts: Bucket,
    /// Messages offered but not drawn (over the rate).
    pub skipped: u64,
}

impl ChatBoard {
    /// An empty board at `now_ms`.
    pub fn new(cfg: ChatBoardConfig, now_ms: u64) -> ChatBoard {
        let burst = cfg.max_lines.max(1) as f64;
        ChatBoard {
            cfg,
            lines: VecDeque::new(),
            chat: Bucket { tokens: burst, at_ms: now_ms },
            gifts: Bucket { tokens: burst, at_ms: now_ms },
            skipped: 0,
        }
    }

    /// Offers a chat message (`who: text`) or, with `highlight`, a gift line. Returns
    /// whether it is drawn (false: over the rate, or nothing printable in it).
    pub fn offer(&mut self, now_ms: u64, who: &str, text: &str, highlight: bool) -> bool {
        let who = sanitize_line(who, self.cfg.max_chars / 2);
        let text = sanitize_line(text, self.cfg.max_chars);
        if text.is_empty() {
            return false;
        }
        let burst = self.cfg.max_lines.max(1) as f64;
        let bucket = if highlight { &mut self.gifts } else { &mut self.chat };
        if !bucket.take(now_ms, self.cfg.per_sec, burst) {
            self.skipped += 1;
            return false;
        }
        let line = if who.is_empty() { text } else { format!("{who}: {text}") };
        let line = if highlight { format!("* {line}") } else { line };
        self.lines.push_back((now_ms, truncate(&line, self.cfg.max_chars)));
        while self.lines.len() > self.cfg.max_lines.max(1) {
            self.lines.pop_front();
        }
        true
    }

    /// Drops lines older than the hold time; true when something went.
    pub fn expire(&mut self, now_ms: u64) -> bool {
        let before = self.lines.len();
        self.lines.retain(|(at, _)| now_ms.saturating_sub(*at) < self.cfg.hold_ms);
        self.lines.len() != before
    }

    /// The text to draw: the lines, oldest first, joined by `\n`.
    pub fn render(&self) -> String {
        self.lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// Lines on screen.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|(_, l)| l.as_str())
    }
}

/// Characters that must not reach a drawn line: controls (line breaks included),
/// bidirectional embeddings/overrides/isolates, zero-width and other format marks.
fn forbidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}' | '\u{00AD}' | '\u{061C}' | '\u{180E}')
}

/// One drawable line: forbidden characters removed, runs of whitespace made one
/// space, trimmed, at most `max_chars` characters (ending with `…` when cut).
pub fn sanitize_line(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut space = false;
    for c in text.chars() {
        // Line breaks and tabs are whitespace (one space), other controls go.
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if forbidden(c) {
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
        if out.chars().count() > max_chars {
            break;
        }
    }
    truncate(&out, max_chars)
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max_chars.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Escapes `text` for a `drawtext=text=…` (or any filter option) value inside a
/// filter graph given as one argv entry: first the option level (`\ ' :`), then the
/// graph level (`\ ' [ ] , ;`), as the ffmpeg filter docs describe. Control
/// characters are dropped. No shell is involved.
pub fn escape_drawtext(text: &str) -> String {
    let mut level1 = String::with_capacity(text.len() * 2);
    for c in text.chars().filter(|c| !c.is_control()) {
        if matches!(c, '\\' | '\'' | ':') {
            level1.push('\\');
        }
        level1.push(c);
    }
    let mut level2 = String::with_capacity(level1.len() * 2);
    for c in level1.chars() {
        if matches!(c, '\\' | '\'' | '[' | ']' | ',' | ';') {
            level2.push('\\');
        }
        level2.push(c);
    }
    level2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn drawtext_escaping() {
        // The ffmpeg filter docs' own example.
        assert_eq!(
            escape_drawtext("this is a 'string': may contain one, or more, special characters"),
            r"this is a \\\'string\\\'\\: may contain one\, or more\, special characters"
        );
        assert_eq!(escape_drawtext("a[b];c\n"), r"a\[b\]\;c");
    }

    /// The graph parser's view (libavfilter `av_get_token` with the graph's
    /// terminators): reads one value up to an unescaped terminator; returns the value
    /// and where it stopped.
    fn graph_token(s: &str, terms: &[char]) -> (String, usize) {
        let chars: Vec<char> = s.chars().collect();
        let (mut out, mut i) = (String::new(), 0);
        while i < chars.len() {
            let c = chars[i];
            if terms.contains(&c) {
                break;
            }
            if c == '\\' {
                i += 1;
                if let Some(n) = chars.get(i) {
                    out.push(*n);
                }
            } else if c == '\'' {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    out.push(chars[i]);
                    i += 1;
                }
            } else {
                out.push(c);
            }
            i += 1;
        }
        (out, i.min(chars.len()))
    }

    proptest! {
        // Whatever the text, the escaped value is read back as exactly that text (less
        // control characters) by both parsing levels, and never ends the option, the
        // filter or the chain early: no filter syntax can be injected.
        #[test]
        fn escaping_round_trips_and_never_terminates(text in "\\PC*|[\\\\':,;\\[\\]=%{} a-z\\n]{0,40}") {
            let escaped = escape_drawtext(&text);
            let (level1, stop) = graph_token(&escaped, &[',', ';', '[', ']']);
            prop_assert_eq!(stop, escaped.chars().count(), "graph level stopped early");
            let (value, stop) = graph_token(&level1, &[':']);
            prop_assert_eq!(stop, level1.chars().count(), "option level stopped early");
            let expected: String = text.chars().filter(|c| !c.is_control()).collect();
            prop_assert_eq!(value, expected);
        }

        #[test]
        fn sanitized_lines_are_one_bounded_clean_line(text in "\\PC*|[\\n\\r\\t\\u{202E}\\u{200B}a-z ]{0,80}", max in 4usize..60) {
            let line = sanitize_line(&text, max);
            prop_assert!(line.chars().count() <= max);
            prop_assert!(!line.chars().any(forbidden), "{:?}", line);
            prop_assert!(!line.starts_with(' ') && !line.ends_with(' '));
            prop_assert!(!line.contains("  "));
        }
    }

    #[test]
    fn lines_are_cleaned_and_cut() {
        assert_eq!(sanitize_line("  hi\n\nthere\u{202E}dlrow\u{200B} ", 40), "hi theredlrow");
        assert_eq!(sanitize_line("abcdefghij", 5), "abcd…");
        assert_eq!(sanitize_line("\n\t\u{202E}", 5), "");
    }

    #[test]
    fn the_board_bounds_rate_lines_and_time() {
        let cfg = ChatBoardConfig { max_lines: 3, max_chars: 24, per_sec: 1.0, hold_ms: 10_000 };
        let mut b = ChatBoard::new(cfg, 0);
        // A burst of 3, then one per second.
        for i in 0..5 {
            b.offer(0, "u", &format!("m{i}"), false);
        }
        assert_eq!(b.render(), "u: m0\nu: m1\nu: m2");
        assert_eq!(b.skipped, 2);
        assert!(!b.offer(500, "u", "m5", false), "half a token");
        assert!(b.offer(1_000, "u", "m6", false));
        assert_eq!(b.render(), "u: m1\nu: m2\nu: m6", "the oldest scrolls out");
        // Gifts have their own allowance: a chat flood does not hide them.
        assert!(b.offer(1_000, "bob", "sent Rocket x3", true));
        assert_eq!(b.lines().last(), Some("* bob: sent Rocket x3"));
        assert!(!b.offer(1_000, "u", "\n\u{202E}", false), "nothing printable");
        assert!(!b.expire(9_999));
        assert!(b.expire(11_000));
        assert_eq!(b.render(), "", "all held 10 s");
        // A long line is cut with an ellipsis.
        b.offer(20_000, "someone", "a very long message that goes on", false);
        assert_eq!(b.render().chars().count(), 24);
        assert!(b.render().ends_with('…'));
    }
}
