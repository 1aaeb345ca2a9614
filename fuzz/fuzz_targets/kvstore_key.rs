//! Key validation for the key-value store: a key that passes can never change the request path.
//!
//! Invariants: no panic; an accepted key is 1 to 128 bytes of `A-Z a-z 0-9 . _ -`, is not `.` or `..`, and so
//! holds no `/`, `%`, `?`, `#` or whitespace; an accepted entity tag is one quoted tag and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemed_kit::kvstore::{ETag, MAX_KEY_LEN, valid_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if valid_key(text) {
        assert!((1..=MAX_KEY_LEN).contains(&text.len()));
        assert!(text != "." && text != "..");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "{text:?}"
        );
    }
    if let Some(etag) = ETag::parse(text) {
        assert_eq!(etag.to_string(), text);
        assert!(text.len() >= 2 && text.starts_with('"') && text.ends_with('"'));
        assert!(!text[1..text.len() - 1].contains('"'));
    }
});
