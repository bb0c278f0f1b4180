//! The WebSocket keepalive: a Ping after the interval without input, any input as the
//! answer, the close 1001 after the ping timeout; exact bytes and fake time.

use super::*;

/// Ping every 10 s without input, 5 s to answer, 5 s for the Close (from `settings`).
fn keepalive() -> ConnSettings {
    ConnSettings {
        ws_ping_interval: Some(Duration::from_secs(10)),
        ws_ping_timeout: Duration::from_secs(5),
        ..settings()
    }
}

/// Keepalive Ping number `n` as the server writes it: unmasked, `ping` and 4 hex digits.
fn ping(n: u16) -> Vec<u8> {
    server_frame(0x9, format!("ping{n:04x}").as_bytes())
}

/// Acts on the deadline and asserts the next one is later: a deadline that stayed due
/// would wake the driver again and again.
fn expire_and_move_on(h: &mut H) {
    h.expire();
    if let Some(next) = h.conn.poll_timeout() {
        assert!(next > h.now, "the next deadline is in the future");
    }
}

#[test]
fn the_ping_payload_is_ping_and_four_hex_digits() {
    assert_eq!(&ping_payload_of(1), b"ping0001");
    assert_eq!(&ping_payload_of(0xbeef), b"pingbeef");
    assert_eq!(&ping_payload_of(u16::MAX), b"pingffff");
}

fn ping_payload_of(n: u16) -> [u8; 8] {
    super::super::ws_mode::ping_payload(n)
}

#[test]
fn a_quiet_peer_gets_a_ping_after_the_interval() {
    let mut h = ws_conn(keepalive());
    assert_eq!(h.conn.poll_timeout(), Some(h.at(10)));
    assert_eq!(h.expire(), Expired::Nothing);
    same(
        h.take(),
        [0x89, 0x08, b'p', b'i', b'n', b'g', b'0', b'0', b'0', b'1'],
    );
    same(ping(1), b"\x89\x08ping0001");
    // Now the ping timeout runs.
    assert_eq!(h.conn.poll_timeout(), Some(h.at(15)));
    assert!(h.conn.ws_open());
}

#[test]
fn a_pong_resets_the_keepalive_and_the_next_ping_has_the_next_number() {
    let mut h = ws_conn(keepalive());
    h.expire();
    same(h.take(), ping(1));
    h.set_time(12);
    assert_eq!(h.ws_feed(&client_frame(0xA, b"ping0001")), []);
    assert_eq!(h.take(), b"", "a Pong is not answered");
    assert_eq!(h.conn.poll_timeout(), Some(h.at(22)));
    expire_and_move_on(&mut h);
    same(h.take(), ping(2));
    assert_eq!(h.conn.poll_timeout(), Some(h.at(27)));
    assert_eq!(h.conn.finished(), None);
}

#[test]
fn data_resets_the_keepalive_without_moving_the_deadline() {
    let mut h = ws_conn(keepalive());
    h.set_time(4);
    assert_eq!(
        h.ws_feed(&client_frame(0x1, b"hi")),
        [Msg::Text("hi".into())]
    );
    // The driver's timer is not re-armed for a message: the deadline stays ...
    assert_eq!(h.conn.poll_timeout(), Some(h.at(10)));
    // ... and, when it fires, moves on to an interval after the input, sending nothing.
    expire_and_move_on(&mut h);
    assert_eq!(h.take(), b"");
    assert_eq!(h.conn.poll_timeout(), Some(h.at(14)));
    h.expire();
    same(h.take(), ping(1));
}

#[test]
fn input_after_the_ping_counts_even_when_it_is_no_pong() {
    let mut h = ws_conn(keepalive());
    h.expire();
    same(h.take(), ping(1));
    h.set_time(13);
    // A Ping of the peer's own: answered with its Pong, and alive.
    assert_eq!(h.ws_feed(&client_frame(0x9, b"yo")), []);
    same(h.take(), server_frame(0xA, b"yo"));
    assert_eq!(h.conn.poll_timeout(), Some(h.at(23)));
    // Part of a frame is input too.
    h.set_time(20);
    let frame = client_frame(0x2, b"abcdef");
    assert_eq!(h.ws_feed(&frame[..3]), []);
    expire_and_move_on(&mut h);
    assert_eq!(h.take(), b"");
    assert_eq!(h.conn.poll_timeout(), Some(h.at(30)));
    assert_eq!(h.ws_feed(&frame[3..]), [Msg::Binary(b"abcdef".to_vec())]);
}

#[test]
fn unsolicited_and_stale_pongs_are_only_input() {
    let mut h = ws_conn(keepalive());
    // A Pong before any Ping (RFC 6455 §5.5.3 allows it).
    h.set_time(3);
    assert_eq!(h.ws_feed(&client_frame(0xA, b"whatever")), []);
    assert_eq!(h.take(), b"");
    expire_and_move_on(&mut h);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(13)));
    h.expire();
    same(h.take(), ping(1));
    // A Pong answering another (older) Ping answers this one as well.
    h.set_time(14);
    assert_eq!(h.ws_feed(&client_frame(0xA, b"ping0000")), []);
    assert_eq!(h.conn.poll_timeout(), Some(h.at(24)));
    assert!(h.conn.ws_open());
}

#[test]
fn no_answer_within_the_ping_timeout_closes_with_1001() {
    let mut h = ws_conn(keepalive());
    h.expire();
    same(h.take(), ping(1));
    h.expire();
    assert_eq!(h.now, h.at(15));
    same(h.take(), b"\x88\x0e\x03\xe9ping timeout");
    same(
        server_close(1001, "ping timeout"),
        b"\x88\x0e\x03\xe9ping timeout",
    );
    assert_eq!(h.conn.ws_code(), Some(1001));
    assert!(!h.conn.ws_open());
    assert_eq!(h.conn.finished(), None);
    // A half-open peer does not answer the Close: the close timeout drops it.
    assert_eq!(h.conn.poll_timeout(), Some(h.at(20)));
    h.expire();
    assert_eq!(h.conn.finished(), Some(CloseReason::PingTimeout));
}

#[test]
fn a_peer_that_answers_the_close_still_ends_as_a_ping_timeout() {
    let mut h = ws_conn(keepalive());
    h.expire();
    h.expire();
    same(h.take(), b"\x89\x08ping0001\x88\x0e\x03\xe9ping timeout");
    h.set_time(17);
    assert_eq!(h.ws_feed(&client_close(1001, "")), []);
    let (_, shut) = h.flush();
    assert!(shut);
    h.eof();
    assert_eq!(h.conn.finished(), Some(CloseReason::PingTimeout));
}

#[test]
fn a_disabled_keepalive_sets_no_deadline() {
    for interval in [None, Some(Duration::ZERO)] {
        let mut h = ws_conn(ConnSettings {
            ws_ping_interval: interval,
            ..keepalive()
        });
        assert_eq!(h.conn.poll_timeout(), None, "{interval:?}");
        h.set_time(100);
        assert_eq!(h.ws_feed(&client_frame(0x1, b"hi")).len(), 1);
        assert_eq!(h.conn.poll_timeout(), None);
        assert_eq!(h.call(|c, env| c.handle_timeout(env)), Expired::Nothing);
        assert_eq!(h.take(), b"");
    }
}

#[test]
fn a_closing_websocket_sends_no_ping() {
    let mut h = ws_conn(keepalive());
    assert!(h.call(|c, env| c.close_ws(env, 1000, "bye")));
    same(h.take(), server_close(1000, "bye"));
    // The close timeout replaced the keepalive.
    assert_eq!(h.conn.poll_timeout(), Some(h.at(5)));
    h.expire();
    assert_eq!(h.take(), b"");
    assert_eq!(h.conn.finished(), Some(CloseReason::CloseTimeout));
}

#[test]
fn a_ping_is_sent_behind_queued_output() {
    let mut h = ws_conn(keepalive());
    assert!(h.call(|c, env| c.ws_send(OpCode::Text, b"queued", env)));
    h.expire();
    let mut want = server_frame(0x1, b"queued");
    want.extend_from_slice(&ping(1));
    same(h.take(), want);
}

#[test]
fn slack_is_kept_to_the_millisecond() {
    let mut h = ws_conn(keepalive());
    h.now = h.at(2) + Duration::from_micros(1500);
    h.ws_feed(&client_frame(0x1, b"x"));
    h.expire();
    assert_eq!(h.take(), b"");
    // 12.0015 s, rounded up: never before a whole interval without input.
    assert_eq!(
        h.conn.poll_timeout(),
        Some(h.at(12) + Duration::from_millis(2))
    );
}
