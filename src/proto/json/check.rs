//! A JSON validator (RFC 8259), sans-IO: bytes in, `Ok` or the first fault with its byte
//! position out. Nothing is built: the hub stores a JSON body as the text it was given
//! and writes it back verbatim, so it only needs to know that the text is one JSON value.
//!
//! # What is accepted
//!
//! Exactly the grammar of RFC 8259 §2-§7:
//!
//! * `JSON-text = ws value ws`: one value, surrounded by optional whitespace, which is
//!   only "space, horizontal tab, line feed or carriage return" (§2). Nothing may follow
//!   the value (`1 2`, `{}x` are refused).
//! * Objects and arrays (§4, §5): no trailing comma, no empty element, member names are
//!   strings. Duplicate names are not refused ("names within an object SHOULD be
//!   unique", §4: a SHOULD, and it would need memory proportional to the input).
//! * Numbers (§6): `[ minus ] int [ frac ] [ exp ]`, `int = zero / ( digit1-9 *DIGIT )`:
//!   no leading zeros (`01`), no `+`, no bare `.5` or `1.`, no `Infinity` or `NaN`.
//! * Strings (§7): no raw control character (U+0000-U+001F "MUST be escaped"), escapes
//!   only `\" \\ \/ \b \f \n \r \t \uXXXX`.
//! * Literals `true`, `false`, `null`, lower case (§3).
//! * The text is UTF-8 (§8.1: "JSON text exchanged between systems that are not part of
//!   a closed ecosystem MUST be encoded using UTF-8"). A byte order mark is refused (§8.1:
//!   "Implementations MUST NOT add a byte order mark").
//!
//! # One choice stricter than the grammar: lone surrogates
//!
//! The grammar lets `\uD800` stand alone, but §8.2 warns that a string holding an unpaired
//! surrogate makes "the behavior of software that receives JSON texts containing such
//! values ... unpredictable". The hub hands the text to every consumer as it is, and many
//! parsers refuse it (serde_json, Go's `encoding/json` replaces it), so it is refused
//! here: a `\uD800`-`\uDBFF` escape must be followed at once by a `\uDC00`-`\uDFFF` escape,
//! and a low surrogate escape may not stand alone. Every accepted text is then I-JSON
//! clean as far as strings go (RFC 7493 §2.1).
//!
//! # Limits and cost
//!
//! [`Limits::max_depth`] bounds nesting (default 64: `[[1]]` has depth 2), and
//! [`Limits::max_bytes`] the length. There is no recursion: an explicit stack of one bit
//! per open array or object, at most `max_depth` bits (a `u64` word per 64 levels,
//! allocated only past the first 128 levels), so memory does not grow with the input.
//! One pass, each byte looked at a bounded number of times.
//!
//! Positions are 0-based byte offsets into the input: the byte where the fault was seen
//! (for an unexpected end of input, the input's length).

use std::fmt;

/// How deep and how large a JSON text may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Arrays and objects nested at most this deep (`[]` is depth 1). Default 64.
    pub max_depth: usize,
    /// At most this many bytes. Default `usize::MAX` (the caller's body limit bounds it).
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: usize::MAX,
        }
    }
}

/// The default nesting limit.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Why a text is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The input ended inside a value (or was empty, or only whitespace).
    UnexpectedEnd,
    /// A byte that cannot start a value where a value must be.
    ExpectedValue,
    /// Not `true`, `false` or `null` after its first letter.
    BadLiteral,
    /// An object member does not start with a string name.
    ExpectedName,
    /// No `:` after a member name.
    ExpectedColon,
    /// No `,` or `}` after a member.
    ExpectedCommaOrBrace,
    /// No `,` or `]` after an element.
    ExpectedCommaOrBracket,
    /// Something other than whitespace after the value.
    TrailingCharacters,
    /// A number with a leading zero (`01`, `-00`).
    LeadingZero,
    /// A number missing its digits (after `-`, `.`, `e`).
    ExpectedDigit,
    /// A raw control character (U+0000-U+001F) in a string.
    ControlCharacter,
    /// A backslash not followed by one of `"\/bfnrtu`.
    BadEscape,
    /// `\u` not followed by four hexadecimal digits.
    BadUnicodeEscape,
    /// A `\u` surrogate escape without its pair (see the module docs).
    LoneSurrogate,
    /// The text is not UTF-8.
    InvalidUtf8,
    /// A byte order mark at the start.
    ByteOrderMark,
    /// Nested deeper than the limit (the limit).
    TooDeep(usize),
    /// Longer than the limit (the limit).
    TooLarge(usize),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match *self {
            Cause::UnexpectedEnd => "unexpected end of input",
            Cause::ExpectedValue => "expected a value",
            Cause::BadLiteral => "expected true, false or null",
            Cause::ExpectedName => "expected a string member name",
            Cause::ExpectedColon => "expected ':'",
            Cause::ExpectedCommaOrBrace => "expected ',' or '}'",
            Cause::ExpectedCommaOrBracket => "expected ',' or ']'",
            Cause::TrailingCharacters => "unexpected characters after the value",
            Cause::LeadingZero => "leading zero in a number",
            Cause::ExpectedDigit => "expected a digit",
            Cause::ControlCharacter => "raw control character in a string (escape it)",
            Cause::BadEscape => "invalid escape (use \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)",
            Cause::BadUnicodeEscape => "\\u must be followed by 4 hexadecimal digits",
            Cause::LoneSurrogate => "unpaired surrogate in a \\u escape",
            Cause::InvalidUtf8 => "not UTF-8",
            Cause::ByteOrderMark => "byte order mark",
            Cause::TooDeep(n) => return write!(f, "nested deeper than {n}"),
            Cause::TooLarge(n) => return write!(f, "larger than {n} bytes"),
        };
        f.write_str(s)
    }
}

/// A refused JSON text: where and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// 0-based byte offset of the fault (the input's length for an unexpected end).
    pub at: usize,
    /// What is wrong there.
    pub cause: Cause,
}

impl fmt::Display for JsonError {
    /// `invalid JSON at byte 7: expected ':'`, or for the limits `JSON nested deeper than
    /// 64 (at byte 64)` and `JSON larger than 10 bytes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.cause {
            Cause::TooDeep(_) => write!(f, "JSON {} (at byte {})", self.cause, self.at),
            Cause::TooLarge(_) => write!(f, "JSON {}", self.cause),
            c => write!(f, "invalid JSON at byte {}: {c}", self.at),
        }
    }
}

impl std::error::Error for JsonError {}

/// Checks `text` with the default limits ([`Limits::default`]).
pub fn check(text: &[u8]) -> Result<(), JsonError> {
    check_with(text, Limits::default())
}

/// The open arrays and objects, one bit each (1 = object), at most `max` of them.
struct Stack {
    inline: [u64; 2],
    more: Vec<u64>,
    len: usize,
    max: usize,
}

impl Stack {
    fn push(&mut self, object: bool, at: usize) -> Result<(), JsonError> {
        if self.len >= self.max {
            return Err(JsonError {
                at,
                cause: Cause::TooDeep(self.max),
            });
        }
        let (word, bit) = (self.len / 64, self.len % 64);
        let slot = match self.inline.get_mut(word) {
            Some(w) => w,
            None => {
                let i = word - self.inline.len();
                if self.more.len() <= i {
                    self.more.push(0);
                }
                &mut self.more[i]
            }
        };
        if object {
            *slot |= 1 << bit;
        } else {
            *slot &= !(1 << bit);
        }
        self.len += 1;
        Ok(())
    }

    /// The innermost open container: `Some(true)` for an object.
    fn top(&self) -> Option<bool> {
        let i = self.len.checked_sub(1)?;
        let (word, bit) = (i / 64, i % 64);
        let w = match self.inline.get(word) {
            Some(w) => *w,
            None => self.more[word - self.inline.len()],
        };
        Some(w >> bit & 1 == 1)
    }
}

fn err<T>(at: usize, cause: Cause) -> Result<T, JsonError> {
    Err(JsonError { at, cause })
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    // RFC 8259 §2: ws = *( %x20 / %x09 / %x0A / %x0D )
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The byte at `i`, or the unexpected end.
fn at(b: &[u8], i: usize) -> Result<u8, JsonError> {
    match b.get(i) {
        Some(&c) => Ok(c),
        None => err(i, Cause::UnexpectedEnd),
    }
}

/// Checks `text` is exactly one JSON value (RFC 8259), within `limits`.
pub fn check_with(text: &[u8], limits: Limits) -> Result<(), JsonError> {
    if text.len() > limits.max_bytes {
        return err(limits.max_bytes, Cause::TooLarge(limits.max_bytes));
    }
    if let Err(e) = std::str::from_utf8(text) {
        return err(e.valid_up_to(), Cause::InvalidUtf8);
    }
    if text.starts_with("\u{feff}".as_bytes()) {
        return err(0, Cause::ByteOrderMark);
    }
    let b = text;
    let mut stack = Stack {
        inline: [0; 2],
        more: Vec::new(),
        len: 0,
        max: limits.max_depth,
    };
    let mut i = skip_ws(b, 0);
    'value: loop {
        // A value starts at `i` (whitespace skipped).
        match at(b, i)? {
            b'{' => {
                stack.push(true, i)?;
                i = skip_ws(b, i + 1);
                if at(b, i)? == b'}' {
                    stack.len -= 1;
                    i += 1;
                } else {
                    i = member_name(b, i)?;
                    continue 'value;
                }
            }
            b'[' => {
                stack.push(false, i)?;
                i = skip_ws(b, i + 1);
                if at(b, i)? == b']' {
                    stack.len -= 1;
                    i += 1;
                } else {
                    continue 'value;
                }
            }
            b'"' => i = string(b, i)?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return err(i, Cause::ExpectedValue),
        }
        // A value ended at `i`: close containers until one wants another value.
        loop {
            i = skip_ws(b, i);
            match stack.top() {
                None if i == b.len() => return Ok(()),
                None => return err(i, Cause::TrailingCharacters),
                Some(object) => {
                    let (close, cause) = if object {
                        (b'}', Cause::ExpectedCommaOrBrace)
                    } else {
                        (b']', Cause::ExpectedCommaOrBracket)
                    };
                    match at(b, i)? {
                        b',' => {
                            i = skip_ws(b, i + 1);
                            if object {
                                i = member_name(b, i)?;
                            }
                            continue 'value;
                        }
                        c if c == close => {
                            stack.len -= 1;
                            i += 1;
                        }
                        _ => return err(i, cause),
                    }
                }
            }
        }
    }
}

/// `"name" ws : ws` at `i`; returns where the member's value starts.
fn member_name(b: &[u8], i: usize) -> Result<usize, JsonError> {
    if at(b, i)? != b'"' {
        return err(i, Cause::ExpectedName);
    }
    let i = skip_ws(b, string(b, i)?);
    if at(b, i)? != b':' {
        return err(i, Cause::ExpectedColon);
    }
    Ok(skip_ws(b, i + 1))
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, JsonError> {
    for (k, &want) in word.iter().enumerate() {
        match b.get(i + k) {
            Some(&c) if c == want => {}
            Some(_) => return err(i + k, Cause::BadLiteral),
            None => return err(i + k, Cause::UnexpectedEnd),
        }
    }
    Ok(i + word.len())
}

/// `number = [ minus ] int [ frac ] [ exp ]` (RFC 8259 §6) at `i`; returns its end.
fn number(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    // int = zero / ( digit1-9 *DIGIT )
    match at(b, i)? {
        b'0' => {
            i += 1;
            if b.get(i).is_some_and(u8::is_ascii_digit) {
                return err(i - 1, Cause::LeadingZero);
            }
        }
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return err(i, Cause::ExpectedDigit),
    }
    // frac = decimal-point 1*DIGIT
    if b.get(i) == Some(&b'.') {
        i = one_or_more_digits(b, i + 1)?;
    }
    // exp = e [ minus / plus ] 1*DIGIT
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        i = one_or_more_digits(b, i)?;
    }
    Ok(i)
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

fn one_or_more_digits(b: &[u8], i: usize) -> Result<usize, JsonError> {
    if !at(b, i)?.is_ascii_digit() {
        return err(i, Cause::ExpectedDigit);
    }
    Ok(digits(b, i + 1))
}

/// Four hex digits at `i` (after `\u`), as a number.
fn hex4(b: &[u8], i: usize) -> Result<u32, JsonError> {
    let mut v = 0;
    for k in 0..4 {
        let d = match at(b, i + k)? {
            c @ b'0'..=b'9' => c - b'0',
            c @ b'a'..=b'f' => c - b'a' + 10,
            c @ b'A'..=b'F' => c - b'A' + 10,
            _ => return err(i + k, Cause::BadUnicodeEscape),
        };
        v = v << 4 | u32::from(d);
    }
    Ok(v)
}

/// A string starting with its `"` at `i` (the text is known to be UTF-8); returns its end.
fn string(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    i += 1;
    loop {
        // Skip a run of plain bytes in one go.
        while b
            .get(i)
            .is_some_and(|&c| c >= 0x20 && c != b'"' && c != b'\\')
        {
            i += 1;
        }
        match at(b, i)? {
            b'"' => return Ok(i + 1),
            b'\\' => {
                let e = i;
                match at(b, i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        let u = hex4(b, i + 2)?;
                        i += 6;
                        if (0xDC00..0xE000).contains(&u) {
                            return err(e, Cause::LoneSurrogate);
                        }
                        if (0xD800..0xDC00).contains(&u) {
                            // The low half must follow at once.
                            match b.get(i..i + 2) {
                                Some(b"\\u") => {}
                                // Cut short where the pair may still come.
                                None if b"\\u".starts_with(&b[i.min(b.len())..]) => {
                                    return err(b.len(), Cause::UnexpectedEnd)
                                }
                                _ => return err(e, Cause::LoneSurrogate),
                            }
                            let lo = hex4(b, i + 2)?;
                            if !(0xDC00..0xE000).contains(&lo) {
                                return err(e, Cause::LoneSurrogate);
                            }
                            i += 6;
                        }
                    }
                    _ => return err(i + 1, Cause::BadEscape),
                }
            }
            _ => return err(i, Cause::ControlCharacter),
        }
    }
}

#[cfg(test)]
mod tests;
