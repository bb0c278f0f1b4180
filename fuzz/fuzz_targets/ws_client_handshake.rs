//! The client side of the opening handshake on arbitrary input: read_response never
//! panics and decides on the head alone; a 101 built by hand is accepted whatever bytes
//! follow it, with head_len exactly its length; a URL that parses writes a request of
//! exactly its fixed lines (nothing in it can add a field) and prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::ws::client::{read_response, write_request, ClientOffer, WsUrl};
use pushwire::proto::ws::extensions::DeflateParams;
use pushwire::proto::ws::handshake::accept_key;

const NONCE: &[u8; 16] = b"the sample nonce";

fuzz_target!(|data: &[u8]| {
    let expected = accept_key("dGhlIHNhbXBsZSBub25jZQ==");
    let deflate = DeflateParams {
        client_max_window_bits: Some(None),
        ..DeflateParams::default()
    };
    let offers = [
        ClientOffer::default(),
        ClientOffer {
            protocols: &["chat", "superchat"],
            deflate: Some(deflate),
            headers: &[],
        },
    ];
    for offer in &offers {
        if let Ok(Some(accepted)) = read_response(data, &expected, offer) {
            assert!(accepted.head_len <= data.len());
            let head = read_response(&data[..accepted.head_len], &expected, offer);
            assert_eq!(head, Ok(Some(accepted)));
        }
    }

    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {expected}\r\n\r\n"
    )
    .into_bytes();
    let head_len = answer.len();
    answer.extend_from_slice(data);
    let got = read_response(&answer, &expected, &offers[1]);
    assert_eq!(got.map(|a| a.map(|a| a.head_len)), Ok(Some(head_len)));

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = WsUrl::parse(text) {
        assert_eq!(WsUrl::parse(&url.to_string()).as_ref(), Ok(&url));
        let mut out = Vec::new();
        write_request(&mut out, &url, NONCE, &offers[1]).expect("a parsed URL can be sent");
        // The request line, seven fields and the blank line; no bare CR or LF.
        let count = |pat: &[u8]| out.windows(pat.len()).filter(|w| *w == pat).count();
        let lines = (count(b"\r\n"), count(b"\r"), count(b"\n"));
        assert_eq!(lines, (9, 9, 9), "{:?}", String::from_utf8_lossy(&out));
    }
});
