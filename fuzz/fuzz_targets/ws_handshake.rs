//! validate_request over an arbitrary header list: never panics; an accepted handshake
//! can always be answered, with the permessage-deflate answer its offers get, and the 101
//! is one head (no header field smuggled in through an offer).
//!
//! Input: lines separated by `\n`; the first is the method, the others `name:value`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::ws::extensions::{negotiate, ServerPolicy};
use pushwire::proto::ws::{validate_request, write_accept_response};

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let method = std::str::from_utf8(lines.next().unwrap_or_default()).unwrap_or("GET");
    let headers: Vec<(&str, &[u8])> = lines
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            Some((name, &line[colon + 1..]))
        })
        .collect();
    match validate_request(method, headers.iter().copied()) {
        Ok(hs) => {
            let answer = negotiate(&hs.extensions, ServerPolicy::default()).map(|a| a.response());
            let mut out = Vec::new();
            write_accept_response(
                &mut out,
                hs.key,
                hs.protocols.first().copied(),
                answer.as_deref(),
                &[],
            );
            assert!(out.starts_with(b"HTTP/1.1 101 ") && out.ends_with(b"\r\n\r\n"));
            let head_end = out.windows(4).position(|w| w == b"\r\n\r\n");
            assert_eq!(head_end, Some(out.len() - 4), "one head, ended once");
        }
        Err(e) => assert!(e.status == 400 || e.status == 426),
    }
});
