//! A dialed WebSocket (the client side): the request, the answer, the deadline, and the
//! client role after the `101`, with exact bytes and fake time.

use super::*;
use crate::proto::ws::client::WsUrl;

/// RFC 6455 §1.3's nonce: "the sample nonce".
const NONCE: [u8; 16] = *b"the sample nonce";

fn spec(deflate: bool) -> DialSpec {
    DialSpec {
        url: WsUrl::parse("ws://127.0.0.1:9001/feed?x=1").unwrap(),
        protocols: vec!["v1".into()],
        headers: vec![("Origin".into(), "http://127.0.0.1".into())],
        deflate,
        limits: WsLimits::default(),
        timeout: Duration::from_secs(3),
    }
}

fn dialed(deflate: bool) -> H {
    let mut h = H::new();
    let conn = h.call(|_, env| ServerConn::dial(&spec(deflate), NONCE, [9; 32], env));
    h.conn = conn.unwrap();
    h
}

const ANSWER: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
    Sec-WebSocket-Protocol: v1\r\n";

fn read_dial(h: &mut H, bytes: &[u8]) -> (usize, bool) {
    h.call(|c, env| c.read_dial(bytes, env))
}

#[test]
fn the_request_is_queued_at_once_and_the_deadline_runs() {
    let mut h = dialed(true);
    same(
        h.take(),
        b"GET /feed?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9001\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v1\r\n\
          Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
          Origin: http://127.0.0.1\r\n\r\n",
    );
    assert!(h.conn.dialing());
    assert_eq!(h.conn.kind(), ConnKind::WebSocket);
    assert_eq!(h.conn.dial_url(), Some("ws://127.0.0.1:9001/feed?x=1"));
    assert_eq!(h.conn.poll_timeout(), Some(h.at(3)));
    // Not open yet: no broadcasts, no sends.
    assert_eq!(h.conn.transport(), Transport::None);
    assert!(!h.call(|c, env| c.ws_send(OpCode::Text, b"x", env)));
    // The answer, in pieces: nothing is taken until the head is whole.
    let mut whole = ANSWER.to_vec();
    whole.extend_from_slice(b"\r\n");
    whole.extend_from_slice(&server_frame(0x1, b"hi"));
    for cut in [0, 10, ANSWER.len()] {
        assert_eq!(read_dial(&mut h, &whole[..cut]), (0, false));
    }
    let head = ANSWER.len() + 2;
    assert_eq!(read_dial(&mut h, &whole), (head, true));
    assert!(!h.conn.dialing());
    // Open: the keepalive runs (the default interval, 30 s).
    assert_eq!(h.conn.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    assert_eq!(h.conn.dial_failure(), None);
    // The frames after the head are the WebSocket's; the server's are unmasked.
    assert_eq!(h.ws_feed(&whole[head..]), [Msg::Text("hi".into())]);
    // What the client sends is masked.
    assert!(h.call(|c, env| c.ws_send(OpCode::Text, b"hello", env)));
    let out = h.take();
    let (hdr, n) = ws::parse_header(&out).unwrap().unwrap();
    let mut payload = out[n..].to_vec();
    ws::apply_mask(&mut payload, hdr.mask.expect("masked"), 0);
    assert_eq!(payload, b"hello");
    // And it still takes no shared frames.
    assert_eq!(h.conn.transport(), Transport::None);
}

#[test]
fn a_deflate_answer_sets_up_both_directions() {
    let mut h = dialed(true);
    h.take();
    let mut answer = ANSWER.to_vec();
    answer.extend_from_slice(
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
          client_no_context_takeover\r\n\r\n",
    );
    assert_eq!(read_dial(&mut h, &answer), (answer.len(), true));
    // RFC 7692 §7.2.3.1's "Hello", unmasked from the server, RSV1.
    let frame = [0xC1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(h.ws_feed(&frame), [Msg::Text("Hello".into())]);
    let long = "pushwire ".repeat(20);
    assert!(h.call(|c, env| c.ws_send(OpCode::Text, long.as_bytes(), env)));
    let out = h.take();
    assert_eq!(out[0], 0xC1, "FIN, RSV1, text");
    assert!(out.len() < long.len() / 3);
}

#[test]
fn refused_answers_fail_the_dial_with_their_cause() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            "server answered 403 Forbidden, not 101",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            "Sec-WebSocket-Accept",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Protocol: v2\r\n\r\n",
            "v2",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
              Sec-WebSocket-Extensions: x-other\r\n\r\n",
            "x-other",
        ),
    ];
    for (answer, cause) in cases {
        let mut h = dialed(true);
        let (n, open) = read_dial(&mut h, answer);
        assert_eq!((n, open), (answer.len(), false));
        assert_eq!(h.conn.finished(), Some(CloseReason::HandshakeFailed));
        let why = h.conn.dial_failure().unwrap();
        assert!(why.contains(cause), "{why:?} should name {cause:?}");
    }
    // Without a deflate offer, a deflate answer is refused too.
    let mut h = dialed(false);
    let mut answer = ANSWER.to_vec();
    answer.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n");
    assert!(!read_dial(&mut h, &answer).1);
    assert!(h.conn.dial_failure().is_some());
}

#[test]
fn the_deadline_eof_and_a_stop_fail_the_dial() {
    let mut h = dialed(false);
    assert_eq!(h.expire(), Expired::Nothing);
    assert_eq!(h.conn.finished(), Some(CloseReason::ConnectTimeout));
    assert_eq!(
        h.conn.dial_failure().as_deref(),
        Some("not connected within the connect timeout")
    );

    let mut h = dialed(false);
    h.eof();
    assert_eq!(
        h.conn.dial_failure().as_deref(),
        Some("the server closed the connection before the handshake answer")
    );

    let mut h = dialed(false);
    h.call(|c, env| c.stop(0, env));
    assert_eq!(h.conn.finished(), Some(CloseReason::ServerStopped));
    assert_eq!(h.conn.dial_failure().as_deref(), Some("server stopped"));
    // An opened connection is no failed dial.
    let mut h = dialed(false);
    let mut answer = ANSWER.to_vec();
    answer.extend_from_slice(b"\r\n");
    assert!(read_dial(&mut h, &answer).1);
    h.eof();
    assert_eq!(h.conn.dial_failure(), None);
}

#[test]
fn a_dialed_websocket_pings_a_quiet_server_masked_and_closes_it_masked() {
    let mut h = dialed(false);
    h.take();
    let mut answer = ANSWER.to_vec();
    answer.extend_from_slice(b"\r\n");
    assert!(read_dial(&mut h, &answer).1);
    let opened = h.now;
    assert_eq!(
        h.conn.poll_timeout(),
        Some(opened + Duration::from_secs(30))
    );
    h.expire();
    // A client masks its Ping like any frame (RFC 6455 §5.3).
    let out = h.take();
    assert_eq!(&out[..2], &[0x89, 0x88]);
    let key = &out[2..6];
    let payload: Vec<u8> = out[6..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    same(payload, b"ping0001");
    assert_eq!(
        h.conn.poll_timeout(),
        Some(opened + Duration::from_secs(60))
    );
    // No answer: the masked Close 1001.
    h.expire();
    let out = h.take();
    assert_eq!(&out[..2], &[0x88, 0x8e]);
    let key = &out[2..6];
    let body: Vec<u8> = out[6..]
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    same(body, b"\x03\xe9ping timeout");
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::PingTimeout));
}
