//! Connection::read over arbitrary bytes, whole and in pieces: never panics, and both ways
//! give the same events, the same output and the same error.
//!
//! Input: byte 0 picks the limits (bit 0) and whether permessage-deflate was negotiated
//! (bit 1: RSV1 messages are inflated, within the message limit), bytes 1..4 the piece
//! sizes (cycled), the rest is the stream from the client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::ws::{CloseError, Connection, Receiver, Sender, WsEvent, WsLimits};

#[derive(Debug, PartialEq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

fn owned(e: WsEvent<'_>) -> Owned {
    match e {
        WsEvent::Text(t) => Owned::Text(t.to_owned()),
        WsEvent::Binary(b) => Owned::Binary(b.to_vec()),
        WsEvent::Ping(b) => Owned::Ping(b.to_vec()),
        WsEvent::Pong(b) => Owned::Pong(b.to_vec()),
        WsEvent::Close { code, reason } => Owned::Close(code, reason.to_owned()),
    }
}

fn drive(
    config: WsLimits,
    deflate: bool,
    pieces: &mut dyn Iterator<Item = &[u8]>,
) -> (Vec<Owned>, Option<CloseError>, Vec<u8>) {
    let mut conn = if deflate {
        Connection::from_halves(
            Receiver::new(config).with_deflate(false, 15),
            Sender::default().with_deflate(15, false),
        )
    } else {
        Connection::new(config)
    };
    let mut buffer = Vec::new();
    let mut events = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            match conn.read(&mut buffer, &mut out) {
                Ok((n, ev)) => {
                    let done = n == 0 && ev.is_none();
                    events.extend(ev.map(owned));
                    assert!(n <= buffer.len());
                    buffer.drain(..n);
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    assert!(conn.is_closed());
                    return (events, Some(e), out);
                }
            }
        }
    }
    (events, None, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&limits, rest)) = data.split_first() else {
        return;
    };
    let (sizes, input) = rest.split_at(rest.len().min(3));
    let config = if limits & 1 == 0 {
        WsLimits::default()
    } else {
        WsLimits {
            max_frame_bytes: usize::from(limits),
            max_message_bytes: 2 * usize::from(limits),
        }
    };

    let deflate = limits & 2 == 2;
    let whole = drive(config, deflate, &mut std::iter::once(input));

    let mut cut = Vec::new();
    let mut at = 0;
    for &s in sizes
        .iter()
        .cycle()
        .take(if sizes.is_empty() { 0 } else { input.len() })
    {
        if at >= input.len() {
            break;
        }
        let n = (usize::from(s) % 17 + 1).min(input.len() - at);
        cut.push(&input[at..at + n]);
        at += n;
    }
    if at < input.len() {
        cut.push(&input[at..]);
    }
    let pieces = drive(config, deflate, &mut cut.into_iter());
    assert_eq!(whole, pieces);
});
