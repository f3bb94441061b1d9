//! Text that came from outside (paths, names, input snippets) as logs and summaries show it:
//! control characters (newlines, escapes, carriage returns) are escaped, so that a file named
//! `out\nERROR ...` prints as one line and cannot forge log or summary lines.

use std::borrow::Cow;

/// `text` with every control character escaped Rust-style (`\n`, `\u{1b}`); other text,
/// any script included, unchanged.
///
/// ```
/// assert_eq!(stream_kernel::text::printable("a\nb"), "a\\nb");
/// assert_eq!(stream_kernel::text::printable("données"), "données");
/// ```
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
