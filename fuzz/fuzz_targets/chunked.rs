//! ChunkedDecoder: arbitrary bytes never panic, and decoding them whole or in pieces
//! (sizes chosen by the first input byte) gives the same body, trailers, result and count
//! of consumed bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::http1::{ChunkedDecoder, Header, HttpError};

type Outcome = (Vec<u8>, Vec<Header>, Result<(usize, bool), HttpError>);

fn run(input: &[u8], step: usize) -> Outcome {
    let mut decoder = ChunkedDecoder::new(1024, 256, 8);
    let (mut body, mut pending, mut consumed) = (Vec::new(), Vec::new(), 0);
    for piece in input.chunks(step.max(1)) {
        pending.extend_from_slice(piece);
        match decoder.decode(&pending, &mut body) {
            Ok((n, done)) => {
                assert!(n <= pending.len());
                pending.drain(..n);
                consumed += n;
                if done {
                    return (body, decoder.take_trailers(), Ok((consumed, true)));
                }
            }
            Err(e) => return (body, Vec::new(), Err(e)),
        }
    }
    (body, Vec::new(), Ok((consumed, false)))
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len());
    let split = run(input, usize::from(seed) + 1);
    // On error the body may hold more or less of the data decoded before the error.
    match (&whole.2, &split.2) {
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => assert_eq!(split, whole),
    }
});
