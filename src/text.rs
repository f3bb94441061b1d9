//! Text that came from outside (paths, names, input snippets) as logs and summaries show it:
//! control characters (newlines, escapes, carriage returns) are escaped, so that a file named
//! `out\nERROR ...` prints as one line and cannot forge log or summary lines.

use std::borrow::Cow;

/// `text` with every control character escaped Rust-style (`\n`, `\u{1b}`); other text,
/// any script included, unchanged.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path as logs and summaries show it (see [`printable`]).
pub fn path(path: &std::path::Path) -> String {
    printable(&path.to_string_lossy()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_other_text_kept() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert_eq!(printable("out\u{1b}[2J"), "out\\u{1b}[2J");
        assert_eq!(printable("données"), "données");
    }
}
