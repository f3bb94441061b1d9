//! The JSON object scanner behind [`super::parse_fields`]: the full JSON grammar for values it
//! skips, escapes, bounded nesting, and a word-at-a-time (SWAR) search for a string's end.

use super::*;

pub(super) struct Scanner<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Scanner<'a> {
    pub(super) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    pub(super) fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(JsonError::Malformed(self.pos))
        }
    }

    /// Reads a JSON string starting at `"`; borrows when it has no escapes. ASCII-only strings
    /// (the common case) skip UTF-8 validation.
    pub(super) fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.expect(b'"')?;
        let start = self.pos;
        let bytes = self.bytes;
        let rest = &bytes[start..];
        let (stop, high_bits) = find_string_end(rest);
        let Some(stop) = stop else {
            return Err(JsonError::Malformed(bytes.len()));
        };
        let head = &rest[..stop];
        self.pos = start + stop;
        match rest[stop] {
            b'"' => {
                self.pos += 1;
                if high_bits < 0x80 {
                    // SAFETY: every byte of `head` is below 0x80 (accumulated in `high_bits`
                    // above), and ASCII is valid UTF-8.
                    return Ok(Cow::Borrowed(unsafe {
                        std::str::from_utf8_unchecked(head)
                    }));
                }
                return std::str::from_utf8(head)
                    .map(Cow::Borrowed)
                    .map_err(|_| JsonError::InvalidUtf8);
            }
            b'\\' => {}
            _ => return Err(JsonError::Malformed(self.pos)),
        }
        let mut out: Vec<u8> = bytes[start..self.pos].to_vec();
        loop {
            match self.peek() {
                None => return Err(JsonError::Malformed(self.pos)),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(out)
                        .map(Cow::Owned)
                        .map_err(|_| JsonError::InvalidUtf8);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                Some(b) if b < 0x20 => return Err(JsonError::Malformed(self.pos)),
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    pub(super) fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), JsonError> {
        let at = self.pos;
        let Some(code) = self.peek() else {
            return Err(JsonError::Malformed(at));
        };
        self.pos += 1;
        let simple = match code {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let ch = self.unicode_escape()?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                return Ok(());
            }
            _ => return Err(JsonError::Malformed(at)),
        };
        out.push(simple);
        Ok(())
    }

    pub(super) fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or(JsonError::Malformed(self.pos))?;
        let text = std::str::from_utf8(digits).map_err(|_| JsonError::Malformed(self.pos))?;
        let value = u32::from_str_radix(text, 16).map_err(|_| JsonError::Malformed(self.pos))?;
        self.pos += 4;
        Ok(value)
    }

    pub(super) fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let at = self.pos;
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return Err(JsonError::Malformed(at));
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(JsonError::Malformed(at));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or(JsonError::Malformed(at))
    }

    /// Skips any JSON value iteratively, with an explicit stack of open containers bounded by
    /// [`MAX_JSON_DEPTH`] (no recursion, so hostile nesting cannot exhaust the stack).
    pub(super) fn skip_value(&mut self) -> Result<(), JsonError> {
        // `true` = object (keys expected after a comma), `false` = array.
        let mut open: [bool; MAX_JSON_DEPTH] = [false; MAX_JSON_DEPTH];
        let mut depth = 0usize;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(opener @ (b'{' | b'[')) => {
                    self.pos += 1;
                    if depth == MAX_JSON_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                    open[depth] = opener == b'{';
                    depth += 1;
                    self.skip_ws();
                    let close = if opener == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.pos += 1;
                        depth -= 1;
                    } else {
                        if opener == b'{' {
                            self.object_key()?;
                        }
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(JsonError::Malformed(self.pos)),
            }
            // A value is complete: close containers, or move on to the next element.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                self.skip_ws();
                let in_object = open[depth - 1];
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if in_object {
                            self.object_key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    Some(b']') if !in_object => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    _ => return Err(JsonError::Malformed(self.pos)),
                }
            }
        }
    }

    /// Reads `"key" :` inside an object being skipped.
    pub(super) fn object_key(&mut self) -> Result<(), JsonError> {
        self.skip_ws();
        self.string()?;
        self.skip_ws();
        self.expect(b':')
    }

    pub(super) fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(JsonError::Malformed(self.pos))
        }
    }

    pub(super) fn number(&mut self) -> Result<(), JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |s: &mut Self| {
            let from = s.pos;
            while let Some(b'0'..=b'9') = s.peek() {
                s.pos += 1;
            }
            s.pos > from
        };
        if !digits(self) {
            return Err(JsonError::Malformed(start));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(JsonError::Malformed(start));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(JsonError::Malformed(start));
            }
        }
        Ok(())
    }
}

pub(super) const SWAR_ONES: u64 = 0x0101_0101_0101_0101;
pub(super) const SWAR_HIGHS: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit set in (at least) the lowest byte of `word` that is below `n`
/// (`n <= 0x80`); bytes above the lowest match may be false positives, which never matters
/// because only the lowest set bit is used.
pub(super) fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(SWAR_ONES * u64::from(n)) & !word & SWAR_HIGHS
}

pub(super) fn bytes_equal(word: u64, byte: u8) -> u64 {
    bytes_below(word ^ (SWAR_ONES * u64::from(byte)), 1)
}

/// Finds the first `"`, `\` or control byte of a JSON string body, eight bytes at a time
/// (SWAR). Returns its index (`None` when absent) and the OR of every byte before it (a high
/// bit set means the string is not ASCII).
pub(super) fn find_string_end(body: &[u8]) -> (Option<usize>, u8) {
    let mut high_bits = 0u8;
    let mut chunks = body.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let special = bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below(word, 0x20);
        if special != 0 {
            let at = (special.trailing_zeros() / 8) as usize;
            high_bits |= chunk[..at].iter().fold(0, |acc, b| acc | b);
            return (Some(offset + at), high_bits);
        }
        high_bits |= ((word & SWAR_HIGHS) != 0) as u8 * 0x80;
        offset += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return (Some(offset + i), high_bits);
        }
        high_bits |= b;
    }
    (None, high_bits)
}

#[cfg(test)]
mod swar_tests {
    use super::find_string_end;
    use proptest::prelude::*;

    fn reference(body: &[u8]) -> (Option<usize>, bool) {
        let stop = body
            .iter()
            .position(|b| *b == b'"' || *b == b'\\' || *b < 0x20);
        let ascii = body[..stop.unwrap_or(body.len())].is_ascii();
        (stop, ascii)
    }

    proptest! {
        #[test]
        fn swar_scan_matches_a_byte_loop(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let (stop, high) = find_string_end(&body);
            let (expected_stop, ascii) = reference(&body);
            prop_assert_eq!(stop, expected_stop);
            prop_assert_eq!(high < 0x80, ascii);
        }
    }
}
