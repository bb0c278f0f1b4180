//! proto::tap over arbitrary traffic in both directions: never panics, never holds more
//! than its budgets allow, writes only whole lines of its own format, and with hex on
//! writes the same unit lines as with hex off (the hexdump rows only added).
//!
//! Input: byte 0 picks the client's direction (bit 0: `Left`, else `Right`). Then pieces,
//! each a control byte and its bytes: bit 7 of the control byte is the direction (`Left`
//! when set), bit 6 ends that direction after the piece (`Tap::eof`), bits 0-5 the length
//! (63: the next two bytes, big-endian); the last piece may be short.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::http1::{Limits, MAX_CHUNK_LINE};
use pushwire::proto::tap::{Dir, Tap, HEX_MAX, HOLD_MAX, INFLATE_MAX, MAX_PENDING, SSE_LINE_MAX};

/// The most a tap may hold, from the budgets in its module docs. Per direction one of: the
/// bytes held after an upgrade request (`HOLD_MAX`); a head (the head limit plus the byte
/// that tells it is too large) with a body's preview, a chunk line and an SSE reader (a
/// line, the id, event and retry fields of up to a line each, the data preview and the
/// event's bytes for the hexdump); or a frame's preview and a compressed message
/// (`INFLATE_MAX`). Each is doubled, as a `Vec` grown by appending can have twice the
/// capacity it fills; the requests waiting for answers add a few bytes each.
fn bound() -> usize {
    let head = Limits::default().max_head_bytes + 1;
    let http = head + HEX_MAX + MAX_CHUNK_LINE + 4 * SSE_LINE_MAX + 2 * HEX_MAX;
    let ws = HEX_MAX + INFLATE_MAX;
    let per_dir = 2 * HOLD_MAX.max(http).max(ws);
    2 * per_dir + pending()
}

/// What the queue of unanswered requests may hold (each entry is a few flags).
fn pending() -> usize {
    2 * MAX_PENDING * 8
}

/// The unit lines of `out`: the hexdump rows (label, arrow, four spaces) left out.
fn units(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with("#1 >     ") && !l.starts_with("#1 <     "))
        .collect()
}

fn check_lines(out: &str) {
    if out.is_empty() {
        return;
    }
    assert!(out.ends_with('\n'), "{out:?}");
    for l in out.lines() {
        assert!(l.starts_with("#1 > ") || l.starts_with("#1 < "), "{l:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let client = if flags & 1 == 1 {
        Dir::Left
    } else {
        Dir::Right
    };
    let mut plain = Tap::new(1, client);
    let mut hex = Tap::new(1, client);
    hex.set_hex(true);
    let (mut a, mut b) = (String::new(), String::new());
    let bound = bound();
    while let Some((&c, tail)) = rest.split_first() {
        let dir = if c & 0x80 != 0 { Dir::Left } else { Dir::Right };
        let (len, tail) = match c & 0x3f {
            63 if tail.len() >= 2 => (
                usize::from(u16::from_be_bytes([tail[0], tail[1]])),
                &tail[2..],
            ),
            n => (usize::from(n), tail),
        };
        let (piece, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        plain.feed(dir, piece, &mut a);
        hex.feed(dir, piece, &mut b);
        if c & 0x40 != 0 {
            plain.eof(dir, &mut a);
            hex.eof(dir, &mut b);
        }
        assert!(plain.buffered() <= bound, "{} > {bound}", plain.buffered());
        assert!(hex.buffered() <= bound, "{} > {bound}", hex.buffered());
    }
    for dir in [Dir::Right, Dir::Left] {
        plain.eof(dir, &mut a);
        hex.eof(dir, &mut b);
    }
    // Both directions ended: only the queue of unanswered requests may be left.
    assert!(plain.buffered() <= pending(), "{}", plain.buffered());
    assert!(hex.buffered() <= pending(), "{}", hex.buffered());
    check_lines(&a);
    check_lines(&b);
    assert_eq!(units(&a), units(&b));
});
