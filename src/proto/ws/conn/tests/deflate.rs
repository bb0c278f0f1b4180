//! permessage-deflate in the frame layer (RFC 7692 §6, §7.2) and the client role (RFC 6455
//! §5.1, §5.3), with exact bytes.

use super::*;
use crate::proto::ws::deflate::Deflater;
use crate::proto::ws::mask::MaskKeys;

/// RFC 7692 §7.2.3.1: "Hello" compressed.
const HELLO: &[u8] = &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

fn deflating_server() -> Connection {
    Connection::from_halves(
        Receiver::new(WsLimits::default()).with_deflate(false, 15),
        Sender::default().with_deflate(15, false),
    )
}

fn deflating_client(takeover: bool) -> Connection {
    Connection::from_halves(
        Receiver::client(WsLimits::default()).with_deflate(takeover, 15),
        Sender::client(MaskKeys::new([7; 32])).with_deflate(15, takeover),
    )
}

#[test]
fn rfc7692_7_2_3_1_a_compressed_message_in_one_frame() {
    let got = drive(&mut deflating_server(), &[&frame(0xC1, HELLO)]);
    assert_eq!(got, ok(vec![text("Hello")], vec![]));
}

#[test]
fn rfc7692_7_2_3_1_a_compressed_message_in_two_fragments() {
    // "the first frame [...] 0x41 0x03 0xf2 0x48 0xcd, the second frame 0x80 0x04 0xc9 0xc9
    // 0x07 0x00": RSV1 on the first frame only.
    let input = cat(&[frame(0x41, &HELLO[..3]), frame(0x80, &HELLO[3..])]);
    let whole = drive(&mut deflating_server(), &[&input]);
    assert_eq!(whole, ok(vec![text("Hello")], vec![]));
    // Byte by byte, the same.
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(&mut deflating_server(), &bytes), whole);
}

#[test]
fn rfc7692_7_2_3_3_and_7_2_3_6_stored_and_empty() {
    let stored = [
        0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
    ];
    let input = cat(&[frame(0xC1, &stored), frame(0xC2, &[0x00])]);
    let got = drive(&mut deflating_server(), &[&input]);
    assert_eq!(got, ok(vec![text("Hello"), Ev::Binary(vec![])], vec![]));
}

#[test]
fn rsv1_rules_are_1002() {
    let cases = [
        // RSV1 without the extension.
        (
            Connection::new(WsLimits::default()),
            frame(0xC1, HELLO),
            "RSV1 set without permessage-deflate",
        ),
        (
            deflating_server(),
            frame(0xC9, b""),
            "RSV1 set on a control frame",
        ),
        (
            deflating_server(),
            frame(0xC8, b""),
            "RSV1 set on a control frame",
        ),
        (
            deflating_server(),
            cat(&[frame(0x41, &HELLO[..3]), frame(0xC0, &HELLO[3..])]),
            "RSV1 set on a continuation frame",
        ),
        // RSV2 and RSV3 stay reserved with the extension.
        (deflating_server(), frame(0xE1, HELLO), "reserved bits set"),
        (deflating_server(), frame(0x91, HELLO), "reserved bits set"),
    ];
    for (mut conn, input, reason) in cases {
        let got = drive(&mut conn, &[&input]);
        assert_eq!(
            got.error.map(|e| (e.code, e.reason)),
            Some((1002, reason)),
            "{input:02x?}"
        );
    }
}

#[test]
fn a_corrupt_stream_is_1007() {
    // Block type 3 is reserved (RFC 1951 §3.2.3).
    let got = drive(
        &mut deflating_server(),
        &[&frame(0xC1, &[0xff, 0xff, 0xff])],
    );
    assert_eq!(got.error.map(|e| e.code), Some(1007));
    assert_eq!(got.out, close_frame(1007, "invalid compressed data"));
}

#[test]
fn compressed_invalid_utf8_is_1007() {
    let mut packed = Vec::new();
    Deflater::new(15, 6, false).compress(&[0xff, 0xfe, 0x41], &mut packed);
    let got = drive(&mut deflating_server(), &[&frame(0xC1, &packed)]);
    assert_eq!(got.error.map(|e| e.code), Some(1007));
}

#[test]
fn a_bomb_stops_at_the_limit_with_1009() {
    // 16 MiB of zeros compress to about 16 KiB; the limit is 1 MiB.
    let mut packed = Vec::new();
    Deflater::new(15, 9, false).compress(&vec![0u8; 16 << 20], &mut packed);
    assert!(packed.len() < 30_000, "{}", packed.len());
    let limits = WsLimits {
        max_frame_bytes: 1 << 20,
        max_message_bytes: 1 << 20,
    };
    for fragmented in [false, true] {
        let mut conn = Connection::from_halves(
            Receiver::new(limits).with_deflate(false, 15),
            Sender::default(),
        );
        let input = if fragmented {
            let (a, b) = packed.split_at(packed.len() / 2);
            cat(&[frame(0x42, a), frame(0x80, b)])
        } else {
            frame(0xC2, &packed)
        };
        let got = drive(&mut conn, &[&input]);
        assert_eq!(
            got.error.map(|e| e.code),
            Some(1009),
            "fragmented {fragmented}"
        );
        // Nothing of the message is kept after the failure.
        assert_eq!(conn.receiver.data_capacity(), 0);
    }
    // Exactly at the limit is fine.
    let mut packed = Vec::new();
    Deflater::new(15, 9, false).compress(&vec![b'a'; 1 << 20], &mut packed);
    let mut conn = Connection::from_halves(
        Receiver::new(limits).with_deflate(false, 15),
        Sender::default(),
    );
    let got = drive(&mut conn, &[&frame(0xC1, &packed)]);
    assert_eq!(got.error, None);
    assert_eq!(got.events, vec![Ev::Text("a".repeat(1 << 20))]);
}

/// The frames in `out` from a client, unmasked: (first byte, payload) each.
fn client_frames(mut out: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Some((h, n)) = parse_header(out).unwrap() {
        let len = h.payload_len as usize;
        let mut p = out[n..n + len].to_vec();
        apply_mask_bytewise(&mut p, h.mask.expect("client frames are masked"), 0);
        frames.push((out[0], p));
        out = &out[n + len..];
    }
    assert!(out.is_empty());
    frames
}

#[test]
fn small_messages_go_out_plain_larger_ones_compressed() {
    let mut server = deflating_server();
    let mut out = Vec::new();
    let short = r#"{"id":1,"event":null,"data":"hi"}"#;
    assert!(short.len() < MIN_COMPRESSED_LEN);
    assert!(server.send_text(&mut out, short));
    assert_eq!(out, server_frame_bytes(0x81, short.as_bytes()));
    out.clear();
    let long = format!(
        r#"{{"id":2,"event":"price","data":"{}"}}"#,
        "EURUSD 1.0842 ".repeat(8)
    );
    assert!(server.send_text(&mut out, &long));
    assert_eq!(out[0], 0xC1, "FIN, RSV1, text");
    assert!(
        out.len() < long.len() / 2,
        "{} of {}",
        out.len(),
        long.len()
    );
    // A client inflates it back.
    let got = drive(&mut deflating_client(false), &[&out]);
    assert_eq!(got, ok(vec![Ev::Text(long)], vec![]));
}

fn server_frame_bytes(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    crate::proto::ws::frame::write_header_rsv(
        &mut v,
        true,
        (b0 >> 4) & 7,
        OpCode::Text,
        None,
        payload.len() as u64,
    );
    v[0] = b0;
    v.extend_from_slice(payload);
    v
}

const MIN_COMPRESSED_LEN: usize = crate::proto::ws::deflate::MIN_COMPRESSED;

#[test]
fn incompressible_messages_go_out_plain_without_takeover() {
    let mut server = deflating_server();
    let mut out = Vec::new();
    // 200 bytes that DEFLATE cannot shrink.
    let noise: Vec<u8> = (0u32..200)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(server.send_binary(&mut out, &noise));
    assert_eq!(out[0], 0x82, "plain binary");
}

#[test]
fn the_client_masks_every_frame_and_refuses_masked_ones() {
    let mut client = Connection::client(WsLimits::default(), MaskKeys::new([1; 32]));
    let mut out = Vec::new();
    assert!(client.send_text(&mut out, "Hello"));
    assert!(client.sender.send_ping(&mut out, b"p"));
    // A server's unmasked Ping is answered with a masked Pong.
    let got = drive(&mut client, &[&server(0x89, b"yo")]);
    assert_eq!(got.events, vec![Ev::Ping(b"yo".to_vec())]);
    out.extend_from_slice(&got.out);
    assert!(client.close(&mut out, 1000, "bye"));
    let frames = client_frames(&out);
    assert_eq!(
        frames,
        vec![
            (0x81, b"Hello".to_vec()),
            (0x89, b"p".to_vec()),
            (0x8A, b"yo".to_vec()),
            (0x88, [&1000u16.to_be_bytes()[..], b"bye"].concat()),
        ]
    );
    // Every key differs (a fresh key per frame, §5.3).
    let mut keys = Vec::new();
    let mut rest = &out[..];
    while let Some((h, n)) = parse_header(rest).unwrap() {
        keys.push(h.mask.unwrap());
        rest = &rest[n + h.payload_len as usize..];
    }
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4);

    // "A client MUST close a connection if it detects a masked frame." (§5.1)
    let mut client = Connection::client(WsLimits::default(), MaskKeys::new([1; 32]));
    let got = drive(&mut client, &[&frame(0x81, b"Hello")]);
    assert_eq!(
        got.error.map(|e| (e.code, e.reason)),
        Some((1002, "server frame masked"))
    );
    // Its Close is masked too.
    assert_eq!(client_frames(&got.out)[0].0, 0x88);
}

#[test]
fn rfc6455_5_7_unmasked_text_reaches_a_client() {
    let mut client = Connection::client(WsLimits::default(), MaskKeys::new([1; 32]));
    let got = drive(&mut client, &[&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]]);
    assert_eq!(got, ok(vec![text("Hello")], vec![]));
}

#[test]
fn context_takeover_keeps_the_window_both_ways() {
    let mut client = deflating_client(true);
    let mut server = Connection::from_halves(
        Receiver::new(WsLimits::default()).with_deflate(true, 15),
        Sender::default().with_deflate(15, true),
    );
    let msg = format!(
        r#"{{"symbol":"EURUSD","bid":1.0842,"ask":1.0843,"pad":"{}"}}"#,
        "x".repeat(120)
    );
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut out = Vec::new();
        assert!(client.send_text(&mut out, &msg));
        sizes.push(out.len());
        let got = drive(&mut server, &[&out]);
        assert_eq!(got, ok(vec![Ev::Text(msg.clone())], vec![]));
    }
    // The second message refers back to the first: much smaller.
    assert!(sizes[1] < sizes[0] / 2, "{sizes:?}");
    // And the other way.
    let mut out = Vec::new();
    assert!(server.send_text(&mut out, &msg));
    assert!(server.send_text(&mut out, &msg));
    let got = drive(&mut client, &[&out]);
    assert_eq!(got.events, vec![Ev::Text(msg.clone()), Ev::Text(msg)]);
}
