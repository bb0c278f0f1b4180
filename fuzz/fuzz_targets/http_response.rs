//! ResponseReader: arbitrary bytes never panic, and feeding them whole or in pieces (sizes
//! chosen by the first input byte, whose top bits also pick HEAD and EOF) gives the same
//! response or error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::http1::{ClientResponse, HttpError, Limits, ResponseReader};

fn run(
    input: &[u8],
    step: usize,
    head: bool,
    eof: bool,
) -> Result<Option<ClientResponse>, HttpError> {
    let limits = Limits {
        max_head_bytes: 512,
        max_headers: 8,
        max_body_bytes: 0,
    };
    let mut reader = ResponseReader::new(head, 64, &limits);
    let mut buf = Vec::new();
    let mut got = None;
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        let (n, response) = reader.advance(&buf)?;
        buf.drain(..n);
        got = got.or(response);
    }
    if eof {
        got = got.or(reader.on_eof()?);
    }
    Ok(got)
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let (head, eof) = (seed & 0x80 != 0, seed & 0x40 != 0);
    let whole = run(input, input.len(), head, eof);
    assert_eq!(run(input, usize::from(seed & 0x3f) + 1, head, eof), whole);
});
