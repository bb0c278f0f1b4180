//! Incremental UTF-8 validation for text messages (RFC 6455 §5.6, §8.1; RFC 3629 §4).
//!
//! A text message may arrive in many fragments, and each fragment's payload in many reads.
//! §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte
//! stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket
//! Connection_." To fail *fast*, [`Utf8Validator`] is a deterministic finite automaton fed
//! byte slices as they arrive; it rejects at the first byte after which no continuation
//! could make the stream valid, even in the middle of a sequence.
//!
//! The states follow the table of well-formed byte sequences in RFC 3629 §4 (and Unicode
//! Table 3-7). The second byte after `E0`, `ED`, `F0` and `F4` has a narrower range than
//! `80..=BF`: that is what excludes overlong forms, the surrogates `U+D800..=U+DFFF` and
//! code points above `U+10FFFF`.
//!
//! ```text
//! lead byte    state after it      next byte must be
//! 00..7F       Ready               (any lead)
//! C2..DF       Need1               80..BF -> Ready
//! E1..EC EE EF Need2               80..BF -> Need1
//! E0           AfterE0             A0..BF -> Need1   (no overlongs)
//! ED           AfterED             80..9F -> Need1   (no surrogates)
//! F1..F3       Need3               80..BF -> Need2
//! F0           AfterF0             90..BF -> Need2   (no overlongs)
//! F4           AfterF4             80..8F -> Need2   (nothing above U+10FFFF)
//! 80..C1 F5..FF Invalid            (never a lead byte)
//! ```

use std::fmt;

/// The automaton's states; see the module table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between characters.
    Ready,
    /// One continuation byte (`80..=BF`) still due.
    Need1,
    /// Two continuation bytes still due.
    Need2,
    /// Three continuation bytes still due.
    Need3,
    /// After `E0`: `A0..=BF` then one more.
    AfterE0,
    /// After `ED`: `80..=9F` then one more.
    AfterED,
    /// After `F0`: `90..=BF` then two more.
    AfterF0,
    /// After `F4`: `80..=8F` then two more.
    AfterF4,
    /// Rejected; stays rejected.
    Invalid,
}

/// One step of the automaton.
fn step(state: State, byte: u8) -> State {
    use State::*;
    let cont = (0x80..=0xBF).contains(&byte);
    match state {
        Ready => match byte {
            0x00..=0x7F => Ready,
            0xC2..=0xDF => Need1,
            0xE0 => AfterE0,
            0xE1..=0xEC | 0xEE..=0xEF => Need2,
            0xED => AfterED,
            0xF0 => AfterF0,
            0xF1..=0xF3 => Need3,
            0xF4 => AfterF4,
            _ => Invalid, // 80..C1 (continuation or overlong lead), F5..FF
        },
        Need1 if cont => Ready,
        Need2 if cont => Need1,
        Need3 if cont => Need2,
        AfterE0 if (0xA0..=0xBF).contains(&byte) => Need1,
        AfterED if (0x80..=0x9F).contains(&byte) => Need1,
        AfterF0 if (0x90..=0xBF).contains(&byte) => Need2,
        AfterF4 if (0x80..=0x8F).contains(&byte) => Need2,
        _ => Invalid,
    }
}

/// The error of [`Utf8Validator::feed`]: the bytes fed so far cannot begin any valid UTF-8
/// string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// An incremental UTF-8 validator: feed it the pieces of one text message in order.
///
/// It is one byte of state, so it costs nothing to keep per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utf8Validator {
    state: State,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Validator {
    /// A validator at the start of a string.
    pub const fn new() -> Self {
        Utf8Validator {
            state: State::Ready,
        }
    }

    /// Checks the next piece of the string. Fails as soon as the bytes fed so far are not a
    /// prefix of any valid UTF-8 string (overlong forms, surrogates, code points above
    /// `U+10FFFF`, stray continuation bytes, a lead byte where a continuation was due), and
    /// keeps failing after that.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
        let mut state = self.state;
        let mut rest = bytes;
        loop {
            if state == State::Ready {
                // Fast path for ASCII: eight bytes at a time while none has its top bit set.
                while let Some((word, tail)) = rest.split_first_chunk::<8>() {
                    if u64::from_ne_bytes(*word) & HIGH_BITS != 0 {
                        break;
                    }
                    rest = tail;
                }
            }
            let Some((&byte, tail)) = rest.split_first() else {
                break;
            };
            state = step(state, byte);
            if state == State::Invalid {
                self.state = state;
                return Err(InvalidUtf8);
            }
            rest = tail;
        }
        self.state = state;
        Ok(())
    }

    /// True when the bytes fed so far are a whole valid string: not rejected and not in the
    /// middle of a multi-byte sequence.
    pub fn is_complete(&self) -> bool {
        self.state == State::Ready
    }
}

/// `bytes` as a `&str`, without checking them a second time: `v` was fed exactly `bytes`,
/// in order, and ended complete ([`Utf8Validator::is_complete`]). A text message assembled
/// from fragments is thus checked once, as it arrives (to fail fast), not again at the end.
///
/// Debug builds (and fuzzing, which builds with debug assertions) check the claim with std.
pub(crate) fn validated<'a>(bytes: &'a [u8], v: &Utf8Validator) -> &'a str {
    assert!(
        v.is_complete(),
        "text handed out before its validation completed"
    );
    debug_assert!(
        std::str::from_utf8(bytes).is_ok(),
        "validator and std disagree"
    );
    // SAFETY: the automaton accepts exactly the well-formed UTF-8 byte sequences of RFC
    // 3629 §4 (the module table; the tests compare it with std on every short sequence and
    // random long ones), it saw every byte of `bytes` (the caller's contract), and it
    // ended between characters, so `bytes` is valid UTF-8.
    #[allow(unsafe_code)]
    unsafe {
        std::str::from_utf8_unchecked(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oracle: index of the first byte after which `s` is no longer a prefix of any
    /// valid UTF-8 string, according to std.
    fn first_bad_index(s: &[u8]) -> Option<usize> {
        (0..s.len())
            .find(|&i| matches!(std::str::from_utf8(&s[..=i]), Err(e) if e.error_len().is_some()))
    }

    /// Feeds byte by byte; returns the failing index, and whether the end is complete.
    fn dfa_bytewise(s: &[u8]) -> (Option<usize>, bool) {
        let mut v = Utf8Validator::new();
        for (i, b) in s.iter().enumerate() {
            if v.feed(std::slice::from_ref(b)).is_err() {
                return (Some(i), false);
            }
        }
        (None, v.is_complete())
    }

    fn check_against_std(s: &[u8]) {
        let std_ok = std::str::from_utf8(s).is_ok();
        let mut whole = Utf8Validator::new();
        let whole_ok = whole.feed(s).is_ok() && whole.is_complete();
        assert_eq!(whole_ok, std_ok, "{s:02x?}");
        let (bad, complete) = dfa_bytewise(s);
        assert_eq!(bad, first_bad_index(s), "{s:02x?}");
        assert_eq!(bad.is_none() && complete, std_ok, "{s:02x?}");
        // Every split point gives the same verdict.
        for split in 0..=s.len() {
            let mut v = Utf8Validator::new();
            let ok = v.feed(&s[..split]).is_ok() && v.feed(&s[split..]).is_ok() && v.is_complete();
            assert_eq!(ok, std_ok, "{s:02x?} split {split}");
        }
    }

    #[test]
    fn table() {
        // (bytes, valid, index of the byte where it fails fast)
        let cases: &[(&[u8], bool, Option<usize>)] = &[
            (b"", true, None),
            (
                b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
                true,
                None,
            ),
            (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true, None), // κόσμε
            (b"\xf0\x90\x80\x80", true, None),                             // U+10000
            (b"\xf4\x8f\xbf\xbf", true, None),                             // U+10FFFF
            (b"\xef\xbf\xbf", true, None),                                 // U+FFFF
            (b"\xed\x9f\xbf", true, None),                                 // U+D7FF
            (b"\xee\x80\x80", true, None),                                 // U+E000
            (b"\xc2", false, None),                                        // truncated
            (b"\xe0\xa0", false, None),                                    // truncated
            (b"\xf0\x90\x80", false, None),                                // truncated
            (b"\x80", false, Some(0)),                                     // stray continuation
            (b"\xc0\xaf", false, Some(0)),                                 // overlong '/'
            (b"\xc1\xbf", false, Some(0)),                                 // overlong
            (b"\xe0\x80\xaf", false, Some(1)),                             // overlong
            (b"\xe0\x9f\xbf", false, Some(1)),                             // overlong
            (b"\xf0\x80\x80\xaf", false, Some(1)),                         // overlong
            (b"\xf0\x8f\xbf\xbf", false, Some(1)),                         // overlong
            (b"\xed\xa0\x80", false, Some(1)),                             // U+D800
            (b"\xed\xbf\xbf", false, Some(1)),                             // U+DFFF
            (b"\xf4\x90\x80\x80", false, Some(1)),                         // U+110000
            (b"\xf5\x80\x80\x80", false, Some(0)),
            (b"\xff", false, Some(0)),
            (b"\xfe", false, Some(0)),
            (b"\xc2\x41", false, Some(1)), // lead then ASCII
            (b"\xe1\x80\xc2", false, Some(2)),
            (
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
                false,
                Some(12),
            ),
        ];
        for &(s, valid, bad) in cases {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(s).is_ok() && v.is_complete(), valid, "{s:02x?}");
            assert_eq!(dfa_bytewise(s).0, bad, "{s:02x?}");
            check_against_std(s);
        }
    }

    #[test]
    fn stays_rejected() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xff"), Err(InvalidUtf8));
        assert_eq!(v.feed(b"a"), Err(InvalidUtf8));
        assert!(!v.is_complete());
    }

    #[test]
    fn ascii_fast_path_edges() {
        // Multi-byte sequences at every position around the 8-byte words.
        for pos in 0..20 {
            let mut s = vec![b'a'; 20];
            s.splice(pos..pos, [0xe2, 0x82, 0xac]); // €
            check_against_std(&s);
            s[pos + 1] = 0x41;
            check_against_std(&s);
        }
    }

    #[test]
    fn all_one_and_two_byte_sequences() {
        for a in 0..=255u8 {
            check_against_std(&[a]);
            for b in 0..=255u8 {
                let s = [a, b];
                let mut v = Utf8Validator::new();
                let ok = v.feed(&s).is_ok() && v.is_complete();
                assert_eq!(ok, std::str::from_utf8(&s).is_ok(), "{s:02x?}");
                assert_eq!(dfa_bytewise(&s).0, first_bad_index(&s), "{s:02x?}");
            }
        }
    }

    #[test]
    fn three_and_four_byte_sequences() {
        let probes = [
            0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xe0, 0xf0, 0xff,
        ];
        for a in 0xc0..=0xffu8 {
            for b in 0..=255u8 {
                for &c in &probes {
                    let s = [a, b, c];
                    assert_eq!(dfa_bytewise(&s).0, first_bad_index(&s), "{s:02x?}");
                    let mut v = Utf8Validator::new();
                    let ok = v.feed(&s).is_ok() && v.is_complete();
                    assert_eq!(ok, std::str::from_utf8(&s).is_ok(), "{s:02x?}");
                    if a >= 0xf0 {
                        for &d in &probes {
                            let s = [a, b, c, d];
                            let mut v = Utf8Validator::new();
                            let ok = v.feed(&s).is_ok() && v.is_complete();
                            assert_eq!(ok, std::str::from_utf8(&s).is_ok(), "{s:02x?}");
                        }
                    }
                }
            }
        }
    }
}
