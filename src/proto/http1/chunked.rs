//! The chunked transfer coding (RFC 9112 §7.1), decoding side.
//!
//! ```text
//! chunked-body   = *chunk
//!                  last-chunk
//!                  trailer-section
//!                  CRLF
//!
//! chunk          = chunk-size [ chunk-ext ] CRLF
//!                  chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//!
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name
//!                     [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! ```
//!
//! # Theory of operation
//!
//! [`ChunkedDecoder`] is a byte-driven state machine that consumes everything it is given up
//! to the end of the chunked body and not one byte further:
//!
//! ```text
//!  Size --CRLF, n > 0--> Data(n) --n bytes--> DataCr --CR--> DataLf --LF--> Size
//!    |
//!    +--CRLF, n = 0--> Trailers --blank line--> Done
//! ```
//!
//! A chunk-size line is copied into a small buffer until its LF arrives (at most
//! [`MAX_CHUNK_LINE`] bytes, so extensions are bounded), then checked against the grammar
//! above. Chunk data is streamed straight to the caller. The trailer section is copied until
//! its blank line (bounded by the caller's trailer limits) and parsed by `httparse`. Every
//! byte is looked at once, so the result does not depend on how the input was split.
//! Extensions are validated and ignored, as RFC 9112 §7.1.1 allows ("A recipient MUST
//! ignore unrecognized chunk extensions").

use super::{is_tchar, own_headers, Header, HttpError};

/// The longest chunk-size line [`ChunkedDecoder`] accepts, extensions and CRLF included
/// (400 above it).
pub const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data { remaining: u64 },
    DataCr,
    DataLf,
    Trailers { lines: usize },
    Done,
    Failed(HttpError),
}

/// A decoder for one chunked message body (RFC 9112 §7.1). Reused by the request reader,
/// the response reader and fuzzed on its own.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk-size line or the trailer section received so far.
    line: Vec<u8>,
    /// Decoded data bytes so far.
    total: u64,
    max_body: u64,
    max_trailer_bytes: usize,
    max_trailers: usize,
    trailers: Vec<Header>,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `max_body` decoded bytes (413 above it), with a
    /// trailer section of at most `max_trailer_bytes` bytes including its final CRLF and at
    /// most `max_trailers` fields (431 above either).
    pub fn new(max_body: u64, max_trailer_bytes: usize, max_trailers: usize) -> Self {
        ChunkedDecoder {
            state: State::Size,
            line: Vec::new(),
            total: 0,
            max_body,
            max_trailer_bytes,
            max_trailers,
            trailers: Vec::new(),
        }
    }

    /// Decodes from `input`, appending chunk data to `body`. Returns how many bytes of
    /// `input` were consumed (all of it, unless the body ended inside it) and whether the
    /// chunked body, trailers included, is complete. Once complete it consumes nothing more;
    /// once it has failed it returns the same error again.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<(usize, bool), HttpError> {
        self.decode_into(input, &mut |data| body.extend_from_slice(data))
    }

    /// The trailer fields, once the body is complete (empty before, and after the first
    /// call).
    pub fn take_trailers(&mut self) -> Vec<Header> {
        std::mem::take(&mut self.trailers)
    }

    /// Whether the whole chunked body has been decoded.
    pub fn is_complete(&self) -> bool {
        self.state == State::Done
    }

    /// [`decode`](Self::decode) with the data handed to `sink` instead of a vector.
    pub(crate) fn decode_into(
        &mut self,
        input: &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(usize, bool), HttpError> {
        let mut pos = 0;
        loop {
            let rest = input.get(pos..).unwrap_or_default();
            let step = match self.state {
                State::Done => return Ok((pos, true)),
                State::Failed(e) => return Err(e),
                State::Size => self.size_line(rest),
                State::Data { remaining } => {
                    let n = rest
                        .len()
                        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    if n > 0 {
                        sink(&rest[..n]);
                        self.total += n as u64;
                        let remaining = remaining - n as u64;
                        self.state = if remaining == 0 {
                            State::DataCr
                        } else {
                            State::Data { remaining }
                        };
                    }
                    Ok(n)
                }
                State::DataCr => self.expect(rest, b'\r', State::DataLf),
                State::DataLf => self.expect(rest, b'\n', State::Size),
                State::Trailers { lines } => self.trailer_bytes(rest, lines),
            };
            match step {
                Ok(0) => return Ok((pos, false)),
                Ok(n) => pos += n,
                Err(e) => {
                    log::debug!("chunked body refused: {e}");
                    self.state = State::Failed(e);
                    return Err(e);
                }
            }
        }
    }

    /// "chunk-data CRLF": a missing CR or LF after the data is an error.
    fn expect(&mut self, rest: &[u8], byte: u8, next: State) -> Result<usize, HttpError> {
        match rest.first() {
            None => Ok(0),
            Some(&b) if b == byte => {
                self.state = next;
                Ok(1)
            }
            Some(_) => Err(HttpError::bad_request("missing CRLF after chunk data")),
        }
    }

    /// Copies bytes of the chunk-size line; parses it once its LF is there.
    fn size_line(&mut self, rest: &[u8]) -> Result<usize, HttpError> {
        let (take, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (rest.len(), false),
        };
        if self.line.len() + take > MAX_CHUNK_LINE {
            return Err(HttpError::bad_request("chunk size line too long"));
        }
        self.line.extend_from_slice(&rest[..take]);
        if !complete {
            return Ok(take);
        }
        let size = parse_size_line(&self.line)?;
        self.line.clear();
        log::trace!("chunk of {size} bytes");
        if size == 0 {
            self.state = State::Trailers { lines: 0 };
        } else {
            if self
                .total
                .checked_add(size)
                .is_none_or(|t| t > self.max_body)
            {
                return Err(HttpError::new(413, "body too large"));
            }
            self.state = State::Data { remaining: size };
        }
        Ok(take)
    }

    /// Copies bytes of the trailer section; parses it once its blank line is there.
    fn trailer_bytes(&mut self, rest: &[u8], lines: usize) -> Result<usize, HttpError> {
        let (take, line_end) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (rest.len(), false),
        };
        if self.line.len() + take > self.max_trailer_bytes {
            return Err(HttpError::new(431, "trailer section too large"));
        }
        self.line.extend_from_slice(&rest[..take]);
        if !line_end {
            return Ok(take);
        }
        if !self.line.ends_with(b"\r\n") {
            return Err(HttpError::bad_request("bare LF in trailer section"));
        }
        if self.line.as_slice() != b"\r\n" && !self.line.ends_with(b"\r\n\r\n") {
            if lines + 1 > self.max_trailers {
                return Err(HttpError::new(431, "too many trailer fields"));
            }
            self.state = State::Trailers { lines: lines + 1 };
            return Ok(take);
        }
        let mut fields = vec![httparse::EMPTY_HEADER; lines];
        match httparse::parse_headers(&self.line, &mut fields) {
            Ok(httparse::Status::Complete((n, parsed))) if n == self.line.len() => {
                self.trailers = own_headers(parsed);
            }
            _ => return Err(HttpError::bad_request("malformed trailer section")),
        }
        log::trace!(
            "chunked body complete: {} bytes, {} trailers",
            self.total,
            lines
        );
        self.line = Vec::new();
        self.state = State::Done;
        Ok(take)
    }
}

/// Parses `chunk-size [ chunk-ext ] CRLF` (the line includes its CRLF).
fn parse_size_line(line: &[u8]) -> Result<u64, HttpError> {
    let content = line
        .strip_suffix(b"\r\n")
        .ok_or(HttpError::bad_request("bare LF after chunk size"))?;
    let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::bad_request("invalid chunk size"));
    }
    let (hex, ext) = content.split_at(digits);
    let size = hex
        .iter()
        .try_fold(0u64, |n, &d| {
            let v = (d as char).to_digit(16)?;
            n.checked_mul(16)?.checked_add(u64::from(v))
        })
        .ok_or(HttpError::bad_request("chunk size overflows"))?;
    if !valid_chunk_ext(ext) {
        return Err(HttpError::bad_request("invalid chunk extension"));
    }
    Ok(size)
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`.
fn valid_chunk_ext(ext: &[u8]) -> bool {
    let ows = |s: &[u8], mut i: usize| {
        while matches!(s.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    let token = |s: &[u8], mut i: usize| {
        let start = i;
        while s.get(i).is_some_and(|&b| is_tchar(b)) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let mut i = 0;
    while i < ext.len() {
        i = ows(ext, i);
        if ext.get(i) != Some(&b';') {
            return false;
        }
        i = ows(ext, i + 1);
        let Some(after_name) = token(ext, i) else {
            return false;
        };
        i = after_name;
        let j = ows(ext, i);
        if ext.get(j) == Some(&b'=') {
            let k = ows(ext, j + 1);
            let after_value = if ext.get(k) == Some(&b'"') {
                quoted_string_end(ext, k)
            } else {
                token(ext, k)
            };
            let Some(after_value) = after_value else {
                return false;
            };
            i = after_value;
        }
    }
    true
}

/// The index after a `quoted-string` starting at `s[start] == '"'` (RFC 9110 §5.6.4).
pub(crate) fn quoted_string_end(s: &[u8], start: usize) -> Option<usize> {
    let is_qdtext = |b: u8| matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..);
    let mut i = start + 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *s.get(i + 1)? {
                b'\t' | b' ' | 0x21..=0x7E | 0x80.. => i += 2,
                _ => return None,
            },
            b if is_qdtext(b) => i += 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<(Vec<u8>, Vec<Header>, usize), u16>;

    /// Decodes `input` in pieces of `step` bytes, handing the decoder each time the bytes
    /// it has not consumed yet plus the next piece, as a driver would.
    fn run(input: &[u8], splits: &[usize], max_body: u64) -> Outcome {
        let mut d = ChunkedDecoder::new(max_body, 64, 4);
        let mut body = Vec::new();
        let mut start = 0;
        let mut consumed_total = 0;
        let mut ends: Vec<usize> = splits.to_vec();
        ends.push(input.len());
        for end in ends {
            let (n, done) = d
                .decode(&input[start..end], &mut body)
                .map_err(|e| e.status)?;
            start += n;
            consumed_total += n;
            if done {
                return Ok((body, d.take_trailers(), consumed_total));
            }
        }
        Err(0) // incomplete
    }

    fn check(input: &[u8], max_body: u64) -> Outcome {
        let whole = run(input, &[], max_body);
        let bytewise: Vec<usize> = (1..input.len()).collect();
        assert_eq!(
            run(input, &bytewise, max_body),
            whole,
            "byte by byte: {input:?}"
        );
        for split in 1..input.len() {
            assert_eq!(
                run(input, &[split], max_body),
                whole,
                "split at {split}: {input:?}"
            );
        }
        whole
    }

    fn ok(body: &[u8], trailers: &[(&str, &str)], consumed: usize) -> Outcome {
        let trailers = trailers
            .iter()
            .map(|(n, v)| Header {
                name: n.to_string(),
                value: v.as_bytes().to_vec(),
            })
            .collect();
        Ok((body.to_vec(), trailers, consumed))
    }

    #[test]
    fn decode_table() {
        let table: &[(&[u8], Outcome)] = &[
            (b"0\r\n\r\n", ok(b"", &[], 5)),
            (b"000\r\n\r\nNEXT", ok(b"", &[], 7)),
            (b"5\r\nhello\r\n0\r\n\r\n", ok(b"hello", &[], 15)),
            (
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET",
                ok(b"hello world", &[], 26),
            ),
            (b"A\r\n0123456789\r\n0\r\n\r\n", ok(b"0123456789", &[], 20)),
            (b"a\r\n0123456789\r\n0\r\n\r\n", ok(b"0123456789", &[], 20)),
            (b"3;ext\r\nabc\r\n0\r\n\r\n", ok(b"abc", &[], 17)),
            (
                b"3 ; a=b ;c=\"x\\\"y\" ;d\r\nabc\r\n0;z\r\n\r\n",
                ok(b"abc", &[], 34),
            ),
            (
                b"1\r\nx\r\n0\r\nChecksum: abc\r\nX-B:  y \r\n\r\nrest",
                ok(b"x", &[("Checksum", "abc"), ("X-B", "y")], 36),
            ),
            // errors
            (b"\r\n", Err(400)),
            (b"x\r\n", Err(400)),
            (b"-1\r\n", Err(400)),
            (b" 5\r\nhello\r\n0\r\n\r\n", Err(400)),
            (b"5 \r\nhello\r\n0\r\n\r\n", Err(400)),
            (b"0x5\r\nhello\r\n0\r\n\r\n", Err(400)),
            (b"5\nhello\r\n0\r\n\r\n", Err(400)),
            (b"5;\r\nhello\r\n0\r\n\r\n", Err(400)),
            (b"5;a=\r\nhello\r\n0\r\n\r\n", Err(400)),
            (b"5;a=\"x\r\nhello\r\n0\r\n\r\n", Err(400)),
            (b"5;a b\r\nhello\r\n0\r\n\r\n", Err(400)),
            (b"10000000000000000\r\n", Err(400)),
            (b"5\r\nhelloX\r\n0\r\n\r\n", Err(400)),
            (b"5\r\nhello\rX0\r\n\r\n", Err(400)),
            (b"5\r\nhello\n0\r\n\r\n", Err(400)),
            (b"0\r\n\n", Err(400)),
            (b"0\r\nA: b\n\r\n", Err(400)),
            (b"0\r\nA : b\r\n\r\n", Err(400)),
            (b"0\r\nA: b\r\n c\r\n\r\n", Err(400)),
            (
                b"0\r\nA: b\r\nB: c\r\nC: d\r\nD: e\r\nE: f\r\n\r\n",
                Err(431),
            ),
            (
                b"0\r\nA: 0123456789012345678901234567890123456789012345678901234567890123\r\n\r\n",
                Err(431),
            ),
            // 16 bytes allowed, the 17th is over max_body = 16
            (
                b"10\r\n0123456789abcdef\r\n0\r\n\r\n",
                ok(b"0123456789abcdef", &[], 27),
            ),
            (b"11\r\n0123456789abcdefg\r\n0\r\n\r\n", Err(413)),
            (b"8\r\n01234567\r\n9\r\n", Err(413)),
            (b"8\r\n0123", Err(0)),
            (b"0\r\n\r", Err(0)),
        ];
        for (input, want) in table {
            assert_eq!(
                &check(input, 16),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunk_line_limit() {
        let mut line = b"1;a=".to_vec();
        line.resize(MAX_CHUNK_LINE - 2, b'b');
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(check(&line, 16), ok(b"x", &[], line.len()));
        let mut long = b"1;a=".to_vec();
        long.resize(MAX_CHUNK_LINE - 1, b'b');
        long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert_eq!(check(&long, 16), Err(400));
        // leading zeros are fine while the line fits
        let mut zeros = vec![b'0'; 100];
        zeros.extend_from_slice(b"1\r\nx\r\n0\r\n\r\n");
        assert_eq!(check(&zeros, 16), ok(b"x", &[], zeros.len()));
    }

    #[test]
    fn errors_are_sticky_and_done_consumes_nothing() {
        let mut d = ChunkedDecoder::new(100, 100, 10);
        let mut body = Vec::new();
        assert_eq!(d.decode(b"0\r\n\r\nX", &mut body), Ok((5, true)));
        assert!(d.is_complete());
        assert_eq!(d.decode(b"X", &mut body), Ok((0, true)));
        let mut d = ChunkedDecoder::new(100, 100, 10);
        assert_eq!(
            d.decode(b"z", &mut body).map_err(|e| e.status),
            Ok((1, false))
        );
        let e = d.decode(b"\r\n", &mut body).unwrap_err();
        assert_eq!(d.decode(b"0\r\n\r\n", &mut body), Err(e));
    }

    #[test]
    fn quoted_strings() {
        let table: &[(&[u8], Option<usize>)] = &[
            (b"\"\"", Some(2)),
            (b"\"a b\"x", Some(5)),
            (b"\"a\\\"b\"", Some(6)),
            (b"\"a", None),
            (b"\"\\", None),
            (b"\"a\x01\"", None),
            (b"\"\\\x7f\"", None),
        ];
        for (s, want) in table {
            assert_eq!(quoted_string_end(s, 0), *want, "{s:?}");
        }
    }
}
