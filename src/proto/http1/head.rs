//! Pieces shared by the request and the response reader: finding the end of a head without
//! rescanning (RFC 9112 §2.1-§2.2) and reading the framing fields (RFC 9112 §6).

use super::{list_elements, trim_ows, values_named, Header, HttpError, Limits};

/// Where a complete head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadEnd {
    /// Bytes from the start line up to and including the blank line's LF.
    pub len: usize,
    /// Lines between the start line and the blank line: an upper bound on the fields.
    pub fields: usize,
}

/// An incremental search for the blank line that ends a head.
///
/// Each byte is looked at once across calls: the caller passes the same unconsumed bytes
/// again with more appended, and the scan resumes where it stopped. On the way it refuses a
/// bare LF, counts lines against [`Limits::max_headers`] and never looks past
/// [`Limits::max_head_bytes`], so the outcome depends only on the bytes, not on how they
/// were split into reads.
#[derive(Debug, Default, Clone)]
pub(crate) struct HeadScan {
    scanned: usize,
    lines: usize,
}

impl HeadScan {
    /// `Ok(Some(end))` once the head is complete, `Ok(None)` for more input.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<HeadEnd>, HttpError> {
        let end = buf.len().min(limits.max_head_bytes);
        let window = buf.get(..end).unwrap_or(buf);
        let mut i = self.scanned.min(end);
        while let Some(off) = window
            .get(i..)
            .and_then(|w| w.iter().position(|&b| b == b'\n'))
        {
            let lf = i + off;
            i = lf + 1;
            // RFC 9112 §2.2: a recipient MAY recognize a single LF as a line terminator; we
            // do not (see the module docs).
            if lf == 0 || window.get(lf - 1) != Some(&b'\r') {
                return Err(HttpError::bad_request("bare LF in head"));
            }
            self.lines += 1;
            if lf >= 3 && window.get(lf - 3..lf - 1) == Some(b"\r\n") {
                self.scanned = i;
                return Ok(Some(HeadEnd {
                    len: i,
                    fields: self.lines.saturating_sub(2),
                }));
            }
            if self.lines - 1 > limits.max_headers {
                return Err(HttpError::new(431, "too many header fields"));
            }
        }
        self.scanned = end;
        if buf.len() > limits.max_head_bytes {
            return Err(HttpError::new(431, "header section too large"));
        }
        Ok(None)
    }
}

/// The value of `Content-Length`, if present (RFC 9110 §8.6).
///
/// Several fields or a list of identical values (`5, 5`) are one length: "a recipient MAY
/// either reject the message as invalid or replace that invalid field value with a single
/// instance of the decimal value". Differing values, anything but digits, an empty value and
/// a value that overflows `u64` are errors (400).
pub(crate) fn content_length(headers: &[Header]) -> Result<Option<u64>, HttpError> {
    let mut length = None;
    for value in values_named(headers, "content-length") {
        for element in value.split(|&b| b == b',') {
            let digits = trim_ows(element);
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return Err(HttpError::bad_request("invalid Content-Length"));
            }
            let n = digits
                .iter()
                .try_fold(0u64, |n, &d| {
                    n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                })
                .ok_or(HttpError::bad_request("Content-Length overflows"))?;
            match length {
                Some(m) if m != n => {
                    return Err(HttpError::bad_request("conflicting Content-Length values"))
                }
                _ => length = Some(n),
            }
        }
    }
    Ok(length)
}

/// What the `Transfer-Encoding` fields say about framing (RFC 9112 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    /// No `Transfer-Encoding` field.
    Absent,
    /// `chunked` is the final coding (and appears once); `others` when codings precede it.
    Chunked {
        /// Whether other codings (`gzip, chunked`) were applied first.
        others: bool,
    },
    /// A `Transfer-Encoding` field whose final coding is not `chunked` (or that is empty).
    NotChunked,
}

/// Reads the `Transfer-Encoding` fields. `chunked` applied twice is an error: "A sender MUST
/// NOT apply the chunked transfer coding more than once to a message body" (RFC 9112 §7).
pub(crate) fn transfer_coding(headers: &[Header]) -> Result<Coding, HttpError> {
    let mut present = false;
    let mut count = 0usize;
    let mut chunked = 0usize;
    let mut last_is_chunked = false;
    for value in values_named(headers, "transfer-encoding") {
        present = true;
        for coding in list_elements(std::iter::once(value)) {
            count += 1;
            last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if last_is_chunked {
                chunked += 1;
            }
        }
    }
    if !present {
        return Ok(Coding::Absent);
    }
    if chunked > 1 {
        return Err(HttpError::bad_request("chunked applied more than once"));
    }
    if !last_is_chunked {
        return Ok(Coding::NotChunked);
    }
    Ok(Coding::Chunked { others: count > 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields<'a> = &'a [(&'a str, &'a str)];
    type Scanned = Result<Option<HeadEnd>, u16>;

    fn hdrs(fields: Fields) -> Vec<Header> {
        fields
            .iter()
            .map(|(n, v)| Header {
                name: n.to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn content_length_table() {
        let ok: &[(Fields, Option<u64>)] = &[
            (&[], None),
            (&[("Content-Length", "0")], Some(0)),
            (&[("content-length", "42")], Some(42)),
            (&[("Content-Length", "5, 5")], Some(5)),
            (&[("Content-Length", "5"), ("CONTENT-LENGTH", "5")], Some(5)),
            (&[("Content-Length", "007")], Some(7)),
            (
                &[("Content-Length", "18446744073709551615")],
                Some(u64::MAX),
            ),
        ];
        for (h, want) in ok {
            assert_eq!(content_length(&hdrs(h)), Ok(*want), "{h:?}");
        }
        let bad: &[Fields] = &[
            &[("Content-Length", "")],
            &[("Content-Length", "+5")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "5 5")],
            &[("Content-Length", "0x10")],
            &[("Content-Length", "5,")],
            &[("Content-Length", "5, 6")],
            &[("Content-Length", "5"), ("Content-Length", "6")],
            &[("Content-Length", "18446744073709551616")],
            &[("Content-Length", "99999999999999999999999")],
        ];
        for h in bad {
            assert_eq!(
                content_length(&hdrs(h)).map_err(|e| e.status),
                Err(400),
                "{h:?}"
            );
        }
    }

    #[test]
    fn transfer_coding_table() {
        use Coding::*;
        let table: &[(Fields, Result<Coding, u16>)] = &[
            (&[], Ok(Absent)),
            (
                &[("Transfer-Encoding", "chunked")],
                Ok(Chunked { others: false }),
            ),
            (
                &[("Transfer-Encoding", "CHUNKED")],
                Ok(Chunked { others: false }),
            ),
            (
                &[("Transfer-Encoding", "gzip, chunked")],
                Ok(Chunked { others: true }),
            ),
            (
                &[
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Ok(Chunked { others: true }),
            ),
            (&[("Transfer-Encoding", "chunked, gzip")], Ok(NotChunked)),
            (&[("Transfer-Encoding", "gzip")], Ok(NotChunked)),
            (&[("Transfer-Encoding", "")], Ok(NotChunked)),
            (&[("Transfer-Encoding", "chunked;x=1")], Ok(NotChunked)),
            (&[("Transfer-Encoding", "chunked, chunked")], Err(400)),
            (
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked"),
                ],
                Err(400),
            ),
        ];
        for (h, want) in table {
            assert_eq!(
                transfer_coding(&hdrs(h)).map_err(|e| e.status),
                *want,
                "{h:?}"
            );
        }
    }

    /// Scans `input` whole, then byte by byte with the same scanner state.
    fn scan_both(input: &[u8], limits: &Limits) -> Result<Option<HeadEnd>, HttpError> {
        let whole = HeadScan::default().scan(input, limits);
        let mut s = HeadScan::default();
        let mut drip = Ok(None);
        for n in 0..=input.len() {
            drip = s.scan(&input[..n], limits);
            if !matches!(drip, Ok(None)) {
                break;
            }
        }
        assert_eq!(whole, drip, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn scan_table() {
        let l = Limits {
            max_head_bytes: 32,
            max_headers: 2,
            max_body_bytes: 0,
        };
        let table: &[(&[u8], Scanned)] = &[
            (b"GET / HTTP/1.1\r\n", Ok(None)),
            (
                b"GET / HTTP/1.1\r\n\r\n",
                Ok(Some(HeadEnd { len: 18, fields: 0 })),
            ),
            (
                b"GET / HTTP/1.1\r\nA: b\r\n\r\nBODY",
                Ok(Some(HeadEnd { len: 24, fields: 1 })),
            ),
            (b"GET / HTTP/1.1\n\n", Err(400)),
            (b"GET / HTTP/1.1\r\nA: b\n\r\n", Err(400)),
            (b"\n", Err(400)),
            (b"G: 1\r\nA: 1\r\nB: 1\r\nC: 1\r\n", Err(431)),
            (
                b"G: 1\r\nA: 1\r\nB: 1\r\n\r\n",
                Ok(Some(HeadEnd { len: 20, fields: 2 })),
            ),
            // exactly 32 bytes is allowed, 33 is not, terminated or not
            (b"GET /aaaaaaaaaaaaaaaa HTTP/1.1\r\n", Ok(None)),
            (
                b"GET /aaaaaaaaaaaaaa HTTP/1.1\r\n\r\n",
                Ok(Some(HeadEnd { len: 32, fields: 0 })),
            ),
            (b"GET /aaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n", Err(431)),
            (
                b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                Err(431),
            ),
            // a bare LF beyond the limit is not looked at: the size decides
            (b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n", Err(431)),
        ];
        for (input, want) in table {
            assert_eq!(
                scan_both(input, &l).map_err(|e| e.status),
                *want,
                "{input:?}"
            );
        }
    }
}
