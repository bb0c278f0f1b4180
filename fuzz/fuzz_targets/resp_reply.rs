//! RESP reply parser: arbitrary bytes never panic; fed whole or in pieces (their sizes
//! drawn from the first input byte) they give the same replies and the same error; no call
//! consumes more than it was given; and every reply re-encodes to bytes that parse back to
//! an equal value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::resp::{parse, Limits, Parser, RespError, Value};

/// Small limits, so that the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_bulk_len: 4096,
    max_depth: 8,
    max_elements: 64,
    max_reply_bytes: 16 * 1024,
    max_line_len: 256,
};

/// Feeds `input` in pieces of the sizes `sizes` yields, as a connection does.
fn run(input: &[u8], mut sizes: impl FnMut() -> usize) -> (Vec<Value>, Option<RespError>) {
    let mut parser = Parser::new(LIMITS);
    let (mut buf, mut replies, mut rest) = (Vec::new(), Vec::new(), input);
    while !rest.is_empty() {
        let (piece, after) = rest.split_at(sizes().clamp(1, rest.len()));
        rest = after;
        buf.extend_from_slice(piece);
        loop {
            match parser.advance(&buf) {
                Ok((used, value)) => {
                    assert!(used <= buf.len(), "consumed {used} of {}", buf.len());
                    buf.drain(..used);
                    match value {
                        Some(v) => replies.push(v),
                        None => break,
                    }
                }
                Err(e) => return (replies, Some(e)),
            }
        }
    }
    (replies, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, || input.len());
    // Piece sizes from 1 to 32 from a small xorshift generator seeded by the first byte.
    let mut state = u32::from(seed) | 0x100;
    let pieces = run(input, || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        (state % 32) as usize + 1
    });
    assert_eq!(pieces, whole);
    assert_eq!(run(input, || 1), whole);
    for value in &whole.0 {
        let bytes = value.to_bytes();
        // The encoder may write a double in more digits than it came in: default limits.
        let back = parse(&bytes, &Limits::default());
        assert_eq!(back, Ok(Some((value.clone(), bytes.len()))), "{bytes:?}");
    }
});
