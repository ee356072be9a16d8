//! Tool logs as the CLI prints them: a tool is never trusted, and its log stream goes
//! to the operator's terminal. Escape sequences there can rewrite what was printed
//! before (`\r`, cursor moves), retitle the window, write to the clipboard (OSC 52),
//! or on some terminals answer back as typed input. So every control character but
//! `\n` and `\t` is shown escaped (`\x1b`, `\r`, `\u{9b}`), as are bytes that are not
//! UTF-8 (`\xff`) and the bidirectional overrides that make text read other than it is.
//! `job logs --raw` prints the bytes as stored.

/// Escapes a stream chunk by chunk: a UTF-8 sequence split across two chunks is held
/// back until the rest arrives, so it is not mistaken for invalid bytes.
#[derive(Default)]
pub struct Escaper {
    pending: Vec<u8>,
}

impl Escaper {
    /// The escaped text of what can be decoded so far.
    pub fn push(&mut self, chunk: &[u8]) -> String {
        self.pending.extend_from_slice(chunk);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    escape_str(s, &mut out);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    escape_str(std::str::from_utf8(good).unwrap_or_default(), &mut out);
                    match e.error_len() {
                        Some(n) => {
                            for b in &bad[..n] {
                                out.push_str(&format!("\\x{b:02x}"));
                            }
                            rest = &bad[n..];
                        }
                        // An incomplete sequence at the end: wait for more.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// What is left at the end of the stream (an unfinished sequence), escaped.
    pub fn finish(&mut self) -> String {
        let mut out = String::new();
        for b in std::mem::take(&mut self.pending) {
            out.push_str(&format!("\\x{b:02x}"));
        }
        out
    }
}

/// Escapes a whole buffer.
pub fn bytes(b: &[u8]) -> String {
    let mut e = Escaper::default();
    let mut s = e.push(b);
    s.push_str(&e.finish());
    s
}

fn escape_str(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            // C1 controls (U+0080-U+009F: U+009B is a one-character CSI on some
            // terminals) and the bidirectional embeddings, overrides and isolates.
            '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_text_kept() {
        assert_eq!(
            bytes(b"ok\tdone\n\x1b[2J\x1b]52;c;aGk=\x07\rfake\x7f"),
            "ok\tdone\n\\x1b[2J\\x1b]52;c;aGk=\\x07\\rfake\\x7f"
        );
        assert_eq!(bytes("héllo ✓\n".as_bytes()), "héllo ✓\n");
        assert_eq!(bytes("\u{9b}31m\u{202e}txt".as_bytes()), "\\u{9b}31m\\u{202e}txt");
        assert_eq!(bytes(b"\xff\xfe!"), "\\xff\\xfe!");
    }

    #[test]
    fn a_sequence_split_across_chunks_is_kept_whole() {
        let text = "a✓b".as_bytes();
        let mut e = Escaper::default();
        let mut out = e.push(&text[..2]);
        out.push_str(&e.push(&text[2..]));
        out.push_str(&e.finish());
        assert_eq!(out, "a✓b");
        let mut e = Escaper::default();
        assert_eq!(e.push(&text[..2]), "a");
        assert_eq!(e.finish(), "\\xe2");
    }
}
