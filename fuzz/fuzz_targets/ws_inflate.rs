//! permessage-deflate's inflate-with-limit on arbitrary payloads: it never panics, never
//! makes more than the limit plus one byte, and what it deflates (any window 9-15) inflates
//! back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::ws::deflate::{Deflater, InflateError, Inflater};

fuzz_target!(|input: &[u8]| {
    let Some((&head, rest)) = input.split_first() else {
        return;
    };
    let bits = 9 + head % 7;
    let limit = usize::from(head) * 97;
    let mut out = Vec::new();
    let mut inf = Inflater::new(bits, head & 0x80 != 0);
    match inf.inflate(rest, limit, &mut out) {
        Ok(()) => assert!(out.len() <= limit),
        Err(InflateError::TooBig) => assert!(out.len() <= limit + 1, "{}", out.len()),
        Err(InflateError::Corrupt) => {}
    }
    let mut packed = Vec::new();
    Deflater::new(bits, u32::from(head % 10), false).compress(rest, &mut packed);
    let mut back = Vec::new();
    Inflater::new(bits, false)
        .inflate(&packed, rest.len(), &mut back)
        .expect("what we deflate inflates");
    assert_eq!(back, rest);
});
