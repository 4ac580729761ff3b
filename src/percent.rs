//! Percent-encoding (RFC 3986 §2.1), the byte-level part shared by path
//! normalization and form decoding: each decides for itself what a
//! decoded byte means.

/// The value of one hex digit.
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte encoded by the escape `%XY` that starts at `bytes[i]` (which
/// must be the `%`), or `None` when two hex digits do not follow.
pub fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let h = hex_digit(*bytes.get(i + 1)?)?;
    let l = hex_digit(*bytes.get(i + 2)?)?;
    Some((h << 4) | l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape_at(b"%2F", 0), Some(b'/'));
        assert_eq!(escape_at(b"a%2f", 1), Some(b'/'));
        assert_eq!(escape_at(b"%C3%A9", 3), Some(0xa9));
        assert_eq!(escape_at(b"%zz", 0), None);
        assert_eq!(escape_at(b"%4", 0), None);
        assert_eq!(escape_at(b"%", 0), None);
        assert_eq!(hex_digit(b'g'), None);
    }
}
