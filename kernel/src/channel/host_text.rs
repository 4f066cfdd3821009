//! Text from the host, made safe to print on the monitor's console.

use core::fmt;

/// Most characters of host text shown; the rest is summarised.
pub const MAX_SHOWN: usize = 256;

/// Displays host-supplied text (a `Notice`, an `Error` message) on the console.
///
/// SECURITY: the console is a terminal for whoever reads it. Printable ASCII passes; `\`,
/// control characters (ESC sequences that would move the cursor, rewrite earlier lines,
/// set the window title…), DEL and every non-ASCII character (bidirectional overrides,
/// look-alikes) are shown as escapes, so a host cannot forge monitor output or drive the
/// operator's terminal; at most [`MAX_SHOWN`] characters are shown.
pub struct HostText<'a>(pub &'a str);

impl fmt::Display for HostText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(MAX_SHOWN) {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                ' '..='~' => fmt::Write::write_char(f, c)?,
                c if (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
                c => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        let rest = chars.as_str().len();
        if rest > 0 {
            write!(f, "... ({rest} more bytes)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;
    use std::string::String;

    use super::*;

    #[test]
    fn control_characters_and_non_ascii_are_escaped() {
        let attack = "ok\x1b[2J\x1b]0;pwned\x07\r\nomega: bundle: complete\u{202e}\\\x7f";
        let shown = format!("{}", HostText(attack));
        assert_eq!(
            shown,
            "ok\\x1b[2J\\x1b]0;pwned\\x07\\r\\nomega: bundle: complete\\u{202e}\\\\\\x7f"
        );
        assert!(shown.bytes().all(|b| (b' '..=b'~').contains(&b)));
        assert_eq!(
            format!("{}", HostText("plain text, 100%")),
            "plain text, 100%"
        );
    }

    #[test]
    fn long_text_is_cut() {
        let long: String = core::iter::repeat_n('a', MAX_SHOWN + 10).collect();
        let shown = format!("{}", HostText(&long));
        assert!(shown.ends_with("... (10 more bytes)"), "{shown}");
        assert_eq!(shown.len(), MAX_SHOWN + "... (10 more bytes)".len());
    }
}
