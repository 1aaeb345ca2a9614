//! JSON primitives shared by the log lines and the span export: escaping and integers, appended to a
//! caller's `Vec<u8>` without allocating.

/// Appends `text` JSON-escaped, without quotes.
///
/// Quotes, backslashes and every control character (including DEL) are escaped, so a message with a
/// newline stays on its one line; everything else, including non-ASCII, is copied as UTF-8.
pub(crate) fn escape(buf: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    let mut copied = 0;
    // Scanning with a table lookup per byte and copying runs keeps plain text (almost all of it) at
    // memcpy speed.
    while let Some(offset) = bytes[copied..]
        .iter()
        .position(|b| NEEDS_ESCAPE[usize::from(*b)])
    {
        let at = copied + offset;
        buf.extend_from_slice(&bytes[copied..at]);
        let b = bytes[at];
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => buf.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        copied = at + 1;
    }
    buf.extend_from_slice(&bytes[copied..]);
}

/// The bytes [`escape`] replaces: control characters, DEL, `"` and `\`.
static NEEDS_ESCAPE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[0x7f] = true;
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Appends `text` as a JSON string.
pub(crate) fn string(buf: &mut Vec<u8>, text: &str) {
    buf.push(b'"');
    escape(buf, text);
    buf.push(b'"');
}

/// Writes `bytes` as lower-case hex, two digits each, into the start of `out` (trace and span ids); digits
/// beyond `out`'s length are left out.
pub(crate) fn hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// Appends an integer.
pub(crate) fn integer<I: itoa::Integer>(buf: &mut Vec<u8>, value: I) {
    buf.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Runs `format` on this thread's buffers in `buffers`, reused from line to line. A `Debug` impl that logs
/// while being formatted finds them borrowed, and a thread being torn down has none: both get fresh buffers
/// rather than losing the line.
pub(crate) fn with_thread_buffers<T: Default>(
    buffers: &'static std::thread::LocalKey<std::cell::RefCell<T>>,
    mut format: impl FnMut(&mut T),
) {
    let reused = buffers
        .try_with(|cell| {
            cell.try_borrow_mut()
                .map(|mut reused| format(&mut reused))
                .is_ok()
        })
        .unwrap_or(false);
    if !reused {
        format(&mut T::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_produces_what_a_json_parser_reads_back() {
        let texts = [
            "plain",
            "quote \" backslash \\ slash /",
            "line\nbreak\r\ttab",
            "\u{0}\u{1}\u{1f}\u{7f} controls",
            "æøå ÆØÅ 🩺 \u{2028}",
            "",
        ];
        for text in texts {
            let mut buf = Vec::new();
            string(&mut buf, text);
            assert!(!buf.contains(&b'\n'));
            let parsed: String = serde_json::from_slice(&buf).unwrap();
            assert_eq!(parsed, text);
        }
    }

    #[test]
    fn integers_are_written_exactly() {
        for value in [0i128, 7, -7, 1_234_567_890, i128::MIN, i128::MAX] {
            let mut buf = Vec::new();
            integer(&mut buf, value);
            assert_eq!(String::from_utf8(buf).unwrap(), value.to_string());
        }
        let mut buf = Vec::new();
        integer(&mut buf, u128::MAX);
        integer(&mut buf, u16::MAX);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            format!("{}{}", u128::MAX, u16::MAX)
        );
    }
}
