//! Masking of credentials and Danish CPR numbers in every output.
//!
//! The platform forbids sensitive data in the system log, and a CPR number or an access token that reaches
//! stdout is kept by the log collector for as long as the logs are. The log layer therefore runs [`redact`]
//! over every message and every string field; error messages that embed request data go through it too.
//! Every mask is the same ten `x`, the mask the platform's audit log uses for CPR numbers.
//!
//! # Example
//!
//! ```
//! use telemed_kit::redact::{header_value, query, redact};
//!
//! assert_eq!(redact("patient 010203-1234 not found"), "patient xxxxxxxxxx not found");
//! assert_eq!(redact("Authorization: Bearer eyJhbGciOi.x.y"), "Authorization: Bearer xxxxxxxxxx");
//! assert_eq!(redact("GET /cb?code=abc&state=1"), "GET /cb?code=xxxxxxxxxx&state=1");
//! assert_eq!(header_value("Cookie", "session=abc"), "xxxxxxxxxx");
//! assert_eq!(query("identifier=0102031234&_count=10"), "identifier=xxxxxxxxxx&_count=10");
//!
//! // Nothing to mask: the text is borrowed, not copied.
//! assert!(matches!(redact("GET /Patient 200"), std::borrow::Cow::Borrowed(_)));
//! ```
//!
//! # What is masked
//! - **CPR numbers**: `DDMMYY-SSSS`, or ten consecutive digits, when the first six are a date: month 01 to 12
//!   and a day that exists in that month. 29 February is accepted for every year, because the century is not
//!   in the first six digits and masking too much is the safe mistake. A run of more or fewer digits is not a
//!   CPR number (an 11-digit id keeps its digits); letters next to the digits do not matter (`cpr0102031234`
//!   is masked). The check digit is not checked: CPR numbers issued since 2007 need not satisfy modulus 11.
//!   A percent escape right before the digits (`%200102031234`, a URL-encoded space) is not counted as
//!   digits.
//! - **Credentials after an authentication scheme**: `Bearer <token>` always; `Basic <token>` unless the word
//!   after `Basic` is a plain lower-case word, so that prose like "basic check failed" stays readable (a
//!   base64 credential is mixed-case, or holds digits or `+/=`).
//! - **Secret query parameters**: the value of `access_token`, `id_token`, `refresh_token`, `token`,
//!   `api_key`, `apikey`, `password`, `client_secret`, `code`, `signature` and `sig` (names in any case) in
//!   `name=value` text, up to the next `&`, whitespace or quote. An empty value stays empty. `code` also
//!   matches prose such as `exit code=2`; masking an exit code is cheaper than logging an OAuth code.
//! - **Sensitive headers** ([`header_value`]): the whole value of `Authorization`, `Cookie`, `Set-Cookie`,
//!   `Proxy-Authorization` and `X-Api-Key`.
//!
//! # Cost
//! When there is nothing to mask, [`redact`] reads the text once, plus once for each kind of mask whose
//! first character (a digit, a `b`, a `=`) it holds, and allocates nothing. Each kind of mask that applies
//! allocates one new string.

use std::borrow::Cow;

/// What every masked value is replaced with.
pub const MASK: &str = "xxxxxxxxxx";

/// Query parameter names whose values are credentials, lower case.
const SECRET_PARAMETERS: [&str; 11] = [
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "api_key",
    "apikey",
    "password",
    "client_secret",
    "code",
    "signature",
    "sig",
];

/// Header names whose whole value is a credential, lower case.
const SENSITIVE_HEADERS: [&str; 5] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
    "x-api-key",
];

/// Returns `text` with CPR numbers, credentials after `Bearer`/`Basic`, secret query parameter values and the
/// `user:password` of a URL masked as `xxxxxxxxxx`; borrowed when there is nothing to mask.
pub fn redact(text: &str) -> Cow<'_, str> {
    // One branch-free pass finds which masks could apply; most log text triggers one of them at most.
    let triggers = text
        .bytes()
        .fold(0u8, |seen, b| seen | TRIGGERS[usize::from(b)]);
    let mut out = Cow::Borrowed(text);
    for (trigger, pass) in [
        (DIGIT, mask_cpr as fn(&str) -> Cow<'_, str>),
        (LETTER_B, mask_schemes),
        (EQUALS, mask_parameters),
        (AT, mask_userinfo),
    ] {
        if triggers & trigger == 0 {
            continue;
        }
        let masked = match pass(&out) {
            Cow::Owned(masked) => masked,
            Cow::Borrowed(_) => continue,
        };
        out = Cow::Owned(masked);
    }
    out
}

const DIGIT: u8 = 1;
const LETTER_B: u8 = 2;
const EQUALS: u8 = 4;
const AT: u8 = 8;

/// For each byte, the masks it could start: a CPR number needs digits, a scheme `b`, a parameter `=`.
static TRIGGERS: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = b'0';
    while b <= b'9' {
        table[b as usize] = DIGIT;
        b += 1;
    }
    table[b'b' as usize] = LETTER_B;
    table[b'B' as usize] = LETTER_B;
    table[b'=' as usize] = EQUALS;
    table[b'@' as usize] = AT;
    table
};

/// Whether the header `name` (any case) carries a credential in its whole value.
pub fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS
        .iter()
        .any(|sensitive| name.eq_ignore_ascii_case(sensitive))
}

/// The value of header `name` as it may be logged: fully masked for a [sensitive](is_sensitive_header)
/// header (an empty value stays empty, so that a missing credential is still visible), [`redact`]ed
/// otherwise.
pub fn header_value<'a>(name: &str, value: &'a str) -> Cow<'a, str> {
    if is_sensitive_header(name) {
        if value.is_empty() {
            Cow::Borrowed(value)
        } else {
            Cow::Borrowed(MASK)
        }
    } else {
        redact(value)
    }
}

/// Whether a log field called `name` holds a credential: a secret query parameter name or a sensitive header
/// name, in any case, with `_` and `-` taken as the same (`x_api_key`, `set_cookie`).
///
/// The log layer masks the whole string value of such a field.
pub fn is_sensitive_field(name: &str) -> bool {
    let same = |candidate: &str| {
        name.len() == candidate.len()
            && name.bytes().zip(candidate.bytes()).all(|(a, b)| {
                let a = if a == b'_' { b'-' } else { a };
                let b = if b == b'_' { b'-' } else { b };
                a.eq_ignore_ascii_case(&b)
            })
    };
    SECRET_PARAMETERS.iter().any(|candidate| same(candidate))
        || SENSITIVE_HEADERS.iter().any(|candidate| same(candidate))
}

/// Returns the query string `query` (without the leading `?`) with secret parameter values and CPR numbers
/// masked; borrowed when there is nothing to mask.
///
/// Unlike [`redact`], a value runs to the next `&` whatever it contains, because in a query string only `&`
/// separates parameters; a value with an unencoded space or quote is still masked whole.
pub fn query(query: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut start = 0;
    for end in query
        .match_indices('&')
        .map(|(at, _)| at)
        .chain([query.len()])
    {
        let pair = &query[start..end];
        if let Some((name, value)) = pair.split_once('=')
            && !value.is_empty()
            && is_secret_parameter(name.as_bytes())
        {
            let value_start = start + name.len() + 1;
            let out = out.get_or_insert_with(|| String::with_capacity(query.len()));
            out.push_str(&mask_cpr(&query[copied..value_start]));
            out.push_str(MASK);
            copied = end;
        }
        start = end + 1;
    }
    match out {
        None => mask_cpr(query),
        Some(mut out) => {
            out.push_str(&mask_cpr(&query[copied..]));
            Cow::Owned(out)
        }
    }
}

/// Rebuilds `text` with the byte ranges `masks` (sorted, not overlapping) replaced by [`MASK`].
struct Masker<'a> {
    text: &'a str,
    out: Option<String>,
    copied: usize,
}

impl<'a> Masker<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            out: None,
            copied: 0,
        }
    }

    fn mask(&mut self, start: usize, end: usize) {
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.text.len()));
        out.push_str(&self.text[self.copied..start]);
        out.push_str(MASK);
        self.copied = end;
    }

    fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.text),
            Some(mut out) => {
                out.push_str(&self.text[self.copied..]);
                Cow::Owned(out)
            }
        }
    }
}

/// Masks the userinfo of every URL (`https://user:password@host/`): what stands between `://` and the last `@`
/// of the authority, which ends at `/`, `?`, `#`, a space or a quote.
fn mask_userinfo(text: &str) -> Cow<'_, str> {
    let mut masker = Masker::new(text);
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let authority_end = text[start..]
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .map_or(text.len(), |end| start + end);
        if let Some(at) = text[start..authority_end].rfind('@') {
            masker.mask(start, start + at);
        }
        from = authority_end;
    }
    masker.finish()
}

/// Whether `text` holds a CPR number [`redact`] would mask. For text that can hold nothing else redaction
/// masks (no `=`, no `b` or `B` starting a scheme name, such as a hex UUID), `redact` changes it exactly
/// when this is `true`, at about half the cost (the other masks' passes are skipped).
pub(crate) fn contains_cpr(text: &str) -> bool {
    matches!(mask_cpr(text), Cow::Owned(_))
}

fn mask_cpr(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !has_six_digit_run(bytes) {
        return Cow::Borrowed(text);
    }
    let mut masker = Masker::new(text);
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        let run_start = at;
        let run_end = digit_run_end(bytes, run_start);
        // The two hex digits of a percent escape (`%20`) are not part of the number that follows.
        let start = if run_start > 0 && bytes[run_start - 1] == b'%' && run_end - run_start >= 2 {
            run_start + 2
        } else {
            run_start
        };
        let digits = &bytes[start..run_end];
        if digits.len() == 10 && is_cpr_date(&digits[..6]) {
            masker.mask(start, run_end);
        } else if digits.len() == 6
            && bytes.get(run_end) == Some(&b'-')
            && is_cpr_date(digits)
            && digit_run_end(bytes, run_end + 1) == run_end + 5
        {
            // The scan goes on after the date: the dash and the four digits after it start nothing.
            masker.mask(start, run_end + 5);
        }
        at = run_end;
    }
    masker.finish()
}

/// Whether `bytes` holds six digits in a row, which every form of CPR number needs. Most text with digits in it
/// (a status, a version, a duration) has no such run, and this one counting pass is far cheaper than the parse.
fn has_six_digit_run(bytes: &[u8]) -> bool {
    let mut run = 0;
    bytes.iter().any(|b| {
        run = if b.is_ascii_digit() { run + 1 } else { 0 };
        run == 6
    })
}

fn digit_run_end(bytes: &[u8], from: usize) -> usize {
    bytes[from.min(bytes.len())..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(bytes.len(), |length| from + length)
}

/// `DDMMYY` with a month from 01 to 12 and a day that exists in it (29 February in every year).
fn is_cpr_date(digits: &[u8]) -> bool {
    let number = |at: usize| u32::from(digits[at] - b'0') * 10 + u32::from(digits[at + 1] - b'0');
    let (day, month) = (number(0), number(2));
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 => 29,
        _ => return false,
    };
    (1..=days_in_month).contains(&day)
}

fn mask_schemes(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut masker = Masker::new(text);
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|b| matches!(b, b'b' | b'B')) {
        let word_start = at + offset;
        at = word_start + 1;
        if word_start > 0 && bytes[word_start - 1].is_ascii_alphanumeric() {
            continue;
        }
        let rest = &bytes[word_start..];
        let scheme_len = if starts_with_ignore_case(rest, b"bearer") {
            6
        } else if starts_with_ignore_case(rest, b"basic") {
            5
        } else {
            continue;
        };
        let after_scheme = word_start + scheme_len;
        let token_start = after_scheme
            + bytes[after_scheme..]
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t'))
                .count();
        if token_start == after_scheme {
            continue;
        }
        let token_end = token_start
            + bytes[token_start..]
                .iter()
                .take_while(|b| is_token68(**b))
                .count();
        let token = &bytes[token_start..token_end];
        if token.is_empty() || (scheme_len == 5 && is_plain_word(token)) {
            continue;
        }
        masker.mask(token_start, token_end);
        at = token_end;
    }
    masker.finish()
}

/// The characters of an RFC 7235 `token68` credential.
fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// A word of prose: letters, lower case after the first.
fn is_plain_word(token: &[u8]) -> bool {
    token[0].is_ascii_alphabetic() && token[1..].iter().all(u8::is_ascii_lowercase)
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn mask_parameters(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut masker = Masker::new(text);
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|b| *b == b'=') {
        let equals = at + offset;
        at = equals + 1;
        let name_start = bytes[..equals]
            .iter()
            .rposition(|b| !is_name_byte(*b))
            .map_or(0, |before| before + 1);
        if !is_secret_parameter(&bytes[name_start..equals]) {
            continue;
        }
        let value_end = bytes[at..]
            .iter()
            .position(|b| matches!(b, b'&' | b'"' | b'\'') || b.is_ascii_whitespace())
            .map_or(bytes.len(), |length| at + length);
        if value_end > at {
            masker.mask(at, value_end);
            at = value_end;
        }
    }
    masker.finish()
}

/// Bytes that continue a parameter name: `zipcode=` is not `code=`.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

fn is_secret_parameter(name: &[u8]) -> bool {
    SECRET_PARAMETERS
        .iter()
        .any(|secret| name.eq_ignore_ascii_case(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpr_numbers_are_masked_by_the_table() {
        let cases: &[(&str, &str)] = &[
            // Valid dates, with and without the dash.
            ("3101991234", "xxxxxxxxxx"),
            ("310199-1234", "xxxxxxxxxx"),
            ("0101001234", "xxxxxxxxxx"),
            ("2902001234", "xxxxxxxxxx"),
            ("290200-1234", "xxxxxxxxxx"),
            ("2902991234", "xxxxxxxxxx"),
            ("3112991234", "xxxxxxxxxx"),
            ("3004991234", "xxxxxxxxxx"),
            // Invalid dates stay: 32 January, 31 and 30 February, 31 April, day 00, months 00 and 13.
            ("3201991234", "3201991234"),
            ("3102991234", "3102991234"),
            ("310299-1234", "310299-1234"),
            ("320199-1234", "320199-1234"),
            ("3002991234", "3002991234"),
            ("300299-1234", "300299-1234"),
            ("3104991234", "3104991234"),
            ("0001991234", "0001991234"),
            ("0100991234", "0100991234"),
            ("0113991234", "0113991234"),
            // Longer and shorter digit runs are not CPR numbers.
            ("31019912345", "31019912345"),
            ("13101991234", "13101991234"),
            ("310199123", "310199123"),
            ("310199-12345", "310199-12345"),
            ("1310199-1234", "1310199-1234"),
            ("310199-123", "310199-123"),
            ("310199--1234", "310199--1234"),
            ("310199 1234", "310199 1234"),
            // Embedded in text, next to letters and punctuation.
            ("cpr 3101991234 found", "cpr xxxxxxxxxx found"),
            ("cpr=3101991234&x=1", "cpr=xxxxxxxxxx&x=1"),
            ("abc3101991234def", "abcxxxxxxxxxxdef"),
            ("(310199-1234)", "(xxxxxxxxxx)"),
            ("urn:dk:cpr|3101991234", "urn:dk:cpr|xxxxxxxxxx"),
            ("a-310199-1234-b", "a-xxxxxxxxxx-b"),
            // Multiple occurrences.
            (
                "3101991234 and 010101-0101, 0202021234",
                "xxxxxxxxxx and xxxxxxxxxx, xxxxxxxxxx",
            ),
            ("3101991234 3201991234", "xxxxxxxxxx 3201991234"),
            // Unicode around.
            ("Ærø 3101991234 ø", "Ærø xxxxxxxxxx ø"),
            ("🩺310199-1234🩺", "🩺xxxxxxxxxx🩺"),
            ("→0101011234←", "→xxxxxxxxxx←"),
            // A percent escape before the digits is not part of them.
            ("q=%200101011234", "q=%20xxxxxxxxxx"),
            ("q=%7C0101011234", "q=%7Cxxxxxxxxxx"),
            ("q=%2001010112345", "q=%2001010112345"),
            // The escape's digits are skipped by position, wherever the run starts; a lone digit after `%` is
            // not an escape's two.
            (
                "a long prefix, then %200101011234",
                "a long prefix, then %20xxxxxxxxxx",
            ),
            ("%5 0101011234", "%5 xxxxxxxxxx"),
            // No digits at all.
            ("", ""),
            ("plain text", "plain text"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn scheme_credentials_are_masked() {
        let cases: &[(&str, &str)] = &[
            (
                "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
                "Authorization: Bearer xxxxxxxxxx",
            ),
            ("bearer abc", "bearer xxxxxxxxxx"),
            ("BEARER\tabc-def", "BEARER\txxxxxxxxxx"),
            ("\"Bearer abc\"", "\"Bearer xxxxxxxxxx\""),
            ("Basic dXNlcjpwYXNz", "Basic xxxxxxxxxx"),
            ("basic YWRtaW46YWRtaW4=", "basic xxxxxxxxxx"),
            ("Basic abc123", "Basic xxxxxxxxxx"),
            ("Bearer a, Bearer b", "Bearer xxxxxxxxxx, Bearer xxxxxxxxxx"),
            // Prose stays readable.
            ("basic check failed", "basic check failed"),
            ("Basic auth is off", "Basic auth is off"),
            ("token_type=Bearer&x=1", "token_type=Bearer&x=1"),
            ("Bearer", "Bearer"),
            ("Bearer ", "Bearer "),
            ("unbearer abc", "unbearer abc"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn secret_parameters_are_masked() {
        let cases: &[(&str, &str)] = &[
            ("/cb?code=abc&state=1", "/cb?code=xxxxxxxxxx&state=1"),
            ("access_token=a.b.c", "access_token=xxxxxxxxxx"),
            (
                "ID_TOKEN=x&Refresh_Token=y",
                "ID_TOKEN=xxxxxxxxxx&Refresh_Token=xxxxxxxxxx",
            ),
            (
                "token=1 api_key=2 apikey=3",
                "token=xxxxxxxxxx api_key=xxxxxxxxxx apikey=xxxxxxxxxx",
            ),
            (
                "password=hunter2;x client_secret=s",
                "password=xxxxxxxxxx client_secret=xxxxxxxxxx",
            ),
            (
                "?sig=abc&signature=def",
                "?sig=xxxxxxxxxx&signature=xxxxxxxxxx",
            ),
            ("\"password=p\"", "\"password=xxxxxxxxxx\""),
            // Other names, longer names and empty values stay.
            ("zipcode=1234&state=x", "zipcode=1234&state=x"),
            ("my_token=abc", "my_token=abc"),
            ("token.x=abc", "token.x=abc"),
            ("code=&x=1", "code=&x=1"),
            ("a=b&c=d", "a=b&c=d"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn all_three_kinds_combine() {
        assert_eq!(
            redact("GET /x?token=t&cpr=3101991234 Authorization: Bearer abc"),
            "GET /x?token=xxxxxxxxxx&cpr=xxxxxxxxxx Authorization: Bearer xxxxxxxxxx"
        );
    }

    #[test]
    fn the_credentials_of_a_url_are_masked() {
        for (input, expected) in [
            (
                "https://svc:s3cret@kvstore.example/x",
                "https://xxxxxxxxxx@kvstore.example/x",
            ),
            (
                "KVSTORE_URL=\"http://a@b@host:1\"",
                "KVSTORE_URL=\"http://xxxxxxxxxx@host:1\"",
            ),
            (
                "two: ftp://u:p@h and http://h/@not-userinfo",
                "two: ftp://xxxxxxxxxx@h and http://h/@not-userinfo",
            ),
            (
                "mail someone@example.org, see http://h/",
                "mail someone@example.org, see http://h/",
            ),
        ] {
            assert_eq!(redact(input), expected, "{input:?}");
        }
    }

    #[test]
    fn the_shortcut_finds_six_digits_in_a_row_only() {
        for text in ["123456", "a123456b", "12 1234567", "0101011234"] {
            assert!(has_six_digit_run(text.as_bytes()), "{text:?}");
        }
        // No six digits in a row (a run of five, six broken up): no CPR number can be there.
        for text in [
            "",
            "12345",
            "12345 12345",
            "123-456",
            "HTTP/1.1 200 in 12345 us",
        ] {
            assert!(!has_six_digit_run(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn contains_cpr_answers_for_cpr_numbers_only() {
        for text in ["3101991234", "id 310199-1234", "q=%200101011234"] {
            assert!(contains_cpr(text), "{text:?}");
        }
        // Text redact would change for another reason holds no CPR number; nor do non-dates and other lengths.
        for text in [
            "",
            "Bearer abc",
            "token=abc&code=x",
            "3201991234",
            "31019912345",
            "00010190-1234-4000-8000-000000000000",
        ] {
            assert!(!contains_cpr(text), "{text:?}");
        }
    }

    #[test]
    fn nothing_to_mask_borrows() {
        for text in [
            "GET /Patient/123 200",
            "basic check ok",
            "x=1&y=2",
            "31019912345",
            "",
        ] {
            assert!(matches!(redact(text), Cow::Borrowed(_)), "{text:?}");
            assert!(matches!(query(text), Cow::Borrowed(_)), "{text:?}");
        }
    }

    #[test]
    fn sensitive_headers_are_masked_whole() {
        for name in [
            "Authorization",
            "authorization",
            "COOKIE",
            "Set-Cookie",
            "Proxy-Authorization",
            "x-api-key",
        ] {
            assert!(is_sensitive_header(name), "{name}");
            assert_eq!(header_value(name, "Bearer abc def"), MASK);
            assert_eq!(header_value(name, ""), "");
        }
        for name in ["Accept", "X-Request-Id", "Cookies", "X-Api-Key-Id"] {
            assert!(!is_sensitive_header(name), "{name}");
        }
        assert_eq!(header_value("Accept", "text/plain"), "text/plain");
        assert_eq!(header_value("X-Patient", "3101991234"), MASK);
    }

    #[test]
    fn sensitive_field_names_match_parameters_and_headers() {
        for name in [
            "password",
            "Access_Token",
            "authorization",
            "x_api_key",
            "set-cookie",
            "code",
        ] {
            assert!(is_sensitive_field(name), "{name}");
        }
        for name in ["status", "uri_path", "passwords", "tokens", "error"] {
            assert!(!is_sensitive_field(name), "{name}");
        }
    }

    #[test]
    fn query_masks_whole_values_up_to_the_next_ampersand() {
        let cases: &[(&str, &str)] = &[
            ("code=abc def&state=1", "code=xxxxxxxxxx&state=1"),
            (
                "state=1&password=a\"b&x=2",
                "state=1&password=xxxxxxxxxx&x=2",
            ),
            (
                "identifier=urn%3Acpr%7C3101991234&TOKEN=t",
                "identifier=urn%3Acpr%7Cxxxxxxxxxx&TOKEN=xxxxxxxxxx",
            ),
            ("token=&x=3101991234", "token=&x=xxxxxxxxxx"),
            ("x=1&y=2", "x=1&y=2"),
            ("token", "token"),
        ];
        for (input, expected) in cases {
            assert_eq!(query(input), *expected, "input {input:?}");
        }
    }
}
