//! RequestReader: arbitrary bytes never panic, and feeding them whole or in pieces (sizes
//! chosen by the first input byte) yields the same requests, error and leftover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::http1::{HttpError, Limits, Request, RequestReader};

/// Feeds `input` in pieces of `step` bytes like the driver does: append, advance with the
/// whole unconsumed buffer, drain, repeat while requests come out.
fn run(input: &[u8], step: usize, limits: &Limits) -> (Vec<Request>, Result<usize, HttpError>) {
    let (mut reader, mut buf, mut out, mut requests) =
        (RequestReader::new(), Vec::new(), Vec::new(), Vec::new());
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match reader.advance(&buf, limits, &mut out) {
                Ok((n, req)) => {
                    buf.drain(..n);
                    match req {
                        Some(r) => requests.push(r),
                        None => break,
                    }
                }
                Err(e) => return (requests, Err(e)),
            }
        }
    }
    (requests, Ok(buf.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    // Small limits, so that every limit is within the fuzzer's reach.
    let limits = Limits {
        max_head_bytes: 512,
        max_headers: 8,
        max_body_bytes: 256,
    };
    let whole = run(input, input.len(), &limits);
    assert_eq!(run(input, usize::from(seed % 32) + 1, &limits), whole);
    if seed >= 224 {
        assert_eq!(run(input, 1, &limits), whole);
    }
});
