//! A dialed WebSocket's connection core on arbitrary server bytes, in arbitrary pieces:
//! the handshake answer (`ServerConn::read_dial`), then whatever follows as the server's
//! frames (`ws_read`), with permessage-deflate offered or not. Nothing panics; a dial
//! either opens, fails with a cause, or waits; once open, every frame the client sends is
//! masked.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pushwire::proto::out::OutQueue;
use pushwire::proto::server::{ConnSettings, DialSpec, Env, ServerConn};
use pushwire::proto::ws::client::WsUrl;
use pushwire::proto::ws::{self, deflate::Codec, OpCode, WsLimits};

/// The accept value for the nonce below (RFC 6455 §1.3).
const ANSWER: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

fuzz_target!(|input: &[u8]| {
    let Some((&sel, rest)) = input.split_first() else {
        return;
    };
    let cfg = ConnSettings::default();
    let mut out = OutQueue::default();
    let mut codec = Codec::new();
    let now = Instant::now();
    macro_rules! env {
        () => {
            &mut Env {
                now,
                cfg: &cfg,
                stopping: false,
                date: None,
                out: &mut out,
                codec: &mut codec,
            }
        };
    }
    let spec = DialSpec {
        url: WsUrl::parse("ws://127.0.0.1:9/x").unwrap(),
        protocols: vec!["v1".into()],
        headers: Vec::new(),
        deflate: sel & 1 == 1,
        limits: WsLimits {
            max_frame_bytes: 1 << 16,
            max_message_bytes: 1 << 16,
        },
        timeout: Duration::from_secs(1),
    };
    let mut conn = ServerConn::dial(&spec, *b"the sample nonce", [7; 32], env!()).unwrap();
    out.take_all();
    // Half the inputs start with a valid answer head, so the frame side gets exercised.
    let mut wire = Vec::new();
    if sel & 2 == 2 {
        wire.extend_from_slice(ANSWER);
    }
    wire.extend_from_slice(rest);
    let step = usize::from(sel >> 2).max(1);
    let mut buf: Vec<u8> = Vec::new();
    let mut recv = None;
    for piece in wire.chunks(step) {
        buf.extend_from_slice(piece);
        if conn.dialing() {
            let (n, open) = conn.read_dial(&buf, env!());
            assert!(n <= buf.len());
            buf.drain(..n);
            if !open {
                if conn.finished().is_some() {
                    assert!(conn.dial_failure().is_some());
                    return;
                }
                continue;
            }
            assert!(conn.dial_failure().is_none());
            recv = conn.take_receiver();
        }
        let Some(r) = recv.as_mut() else { return };
        loop {
            let (n, _msg) = conn.ws_read(r, &mut buf, env!());
            buf.drain(..n.min(buf.len()));
            if n == 0 || buf.is_empty() {
                break;
            }
        }
        if conn.finished().is_some() {
            break;
        }
    }
    if let Some(r) = recv {
        conn.put_receiver(r);
        conn.ws_send(OpCode::Text, &[b'a'; 100], env!());
    }
    // Everything the client wrote after the request is frames, each masked.
    let sent = out.take_all();
    let mut at = &sent[..];
    while let Ok(Some((h, n))) = ws::parse_header(at) {
        assert!(h.mask.is_some(), "a client frame went out unmasked");
        let end = n + h.payload_len as usize;
        assert!(end <= at.len());
        at = &at[end..];
    }
    assert!(at.is_empty());
});
