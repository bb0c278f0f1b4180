//! Realistic JSON for the permessage-deflate benches (`#[path]`-included, not a bench of its
//! own): arrays of market quotes, the kind of event a push server fans out. Every object has
//! the same keys (what DEFLATE finds again and again), the numbers and symbols vary (what it
//! cannot), nothing is random bytes and nothing is one byte repeated. Deterministic: the same
//! seed and length give the same bytes, so two runs (and the server and the client of one
//! run) compress the same input.
//!
//! ```text
//! [{"sym":"AAPL","bid":189.23,"ask":189.25,"last":189.24,"size":300,"vol":1234567,"ts":1764620000123},...]
//! ```
//!
//! [`quotes`] makes exactly the requested number of bytes: whole quote objects while they
//! fit, then one last `{"sym":"..","note":"<trading words>"}` object whose note fills the
//! rest. [`event`] wraps data the way pushwire's hub sends an event to a WebSocket:
//! `{"id":N,"event":null,"data":"<data as a JSON string>"}`.

#![allow(dead_code)] // each bench uses part of it

/// A small deterministic generator (xorshift64*): no dependency, same numbers everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 11) % n
    }
}

const SYMBOLS: [(&str, u64); 24] = [
    ("AAPL", 18923),
    ("MSFT", 41702),
    ("NVDA", 12188),
    ("AMZN", 18466),
    ("GOOGL", 17315),
    ("META", 50412),
    ("TSLA", 24871),
    ("BRK.B", 41233),
    ("JPM", 19877),
    ("V", 27644),
    ("XOM", 11795),
    ("UNH", 52210),
    ("JNJ", 15381),
    ("WMT", 6742),
    ("MA", 45519),
    ("PG", 16603),
    ("HD", 34428),
    ("COST", 74690),
    ("ABBV", 17055),
    ("KO", 6231),
    ("PEP", 16890),
    ("NFLX", 63112),
    ("AMD", 15867),
    ("INTC", 3121),
];

const WORDS: [&str; 20] = [
    "bid", "ask", "halt", "open", "close", "auction", "limit", "market", "fill", "partial",
    "cancel", "venue", "XNAS", "XNYS", "BATS", "IEX", "odd", "lot", "sweep", "block",
];

/// `cents` as a price with two decimals.
fn price(out: &mut String, cents: u64) {
    out.push_str(&format!("{}.{:02}", cents / 100, cents % 100));
}

/// One quote object, about 95 bytes.
pub fn quote(rng: &mut Rng) -> String {
    let (sym, base) = SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize];
    // Within +-2% of the base price, a spread of 1-5 cents.
    let bid = base - base / 50 + rng.below(base / 25 + 1);
    let ask = bid + 1 + rng.below(5);
    let last = bid + rng.below(ask - bid + 1);
    let mut q = format!("{{\"sym\":\"{sym}\",\"bid\":");
    price(&mut q, bid);
    q.push_str(",\"ask\":");
    price(&mut q, ask);
    q.push_str(",\"last\":");
    price(&mut q, last);
    q.push_str(&format!(
        ",\"size\":{},\"vol\":{},\"ts\":{}}}",
        100 * (1 + rng.below(20)),
        100_000 + rng.below(40_000_000),
        1_764_620_000_000u64 + rng.below(3_600_000)
    ));
    q
}

/// `len` bytes of trading words separated by spaces (the last one cut to fit).
fn words(rng: &mut Rng, len: usize) -> String {
    let mut s = String::with_capacity(len + 8);
    while s.len() < len {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    s.truncate(len);
    s
}

/// Exactly `len` bytes of JSON (`len >= 2`): an array of quotes (see the module docs); under
/// 32 bytes a JSON string of words.
pub fn quotes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    // `,{"sym":"BRK.B","note":""}`, the closing bracket and a little note: what the filler
    // object needs at least.
    const FILL_MIN: usize = 30;
    if len < 32 {
        let mut s = String::from("\"");
        s.push_str(&words(&mut rng, len.saturating_sub(2)));
        s.push('"');
        s.truncate(len.max(2));
        return s.into_bytes();
    }
    let mut out = String::with_capacity(len);
    out.push('[');
    loop {
        let q = quote(&mut rng);
        let comma = usize::from(out.len() > 1);
        // Leave room for the filler object and the closing bracket.
        if out.len() + comma + q.len() + FILL_MIN + 2 > len {
            break;
        }
        if comma == 1 {
            out.push(',');
        }
        out.push_str(&q);
    }
    let comma = usize::from(out.len() > 1);
    if comma == 1 {
        out.push(',');
    }
    let (sym, _) = SYMBOLS[rng.below(SYMBOLS.len() as u64) as usize];
    let head = format!("{{\"sym\":\"{sym}\",\"note\":\"");
    // What is left for the note: the object's head, `"}` and `]` come around it.
    let rest = len.saturating_sub(out.len() + head.len() + 3);
    if out.len() + head.len() + 3 <= len {
        out.push_str(&head);
        out.push_str(&words(&mut rng, rest));
        out.push_str("\"}");
    } else {
        // Too short for the object (only when no quote fit): a note string instead.
        let rest = len.saturating_sub(out.len() + 3);
        out.push('"');
        out.push_str(&words(&mut rng, rest));
        out.push('"');
    }
    out.push(']');
    debug_assert_eq!(out.len(), len, "quotes({seed}, {len})");
    out.into_bytes()
}

/// A short chat-like text of exactly `len` bytes (no characters that JSON escapes).
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    const NAMES: [&str; 8] = ["ana", "ben", "chloe", "dev", "eli", "fatima", "gus", "hana"];
    const VERBS: [&str; 6] = ["joined", "left", "said", "reacted to", "pinned", "edited"];
    let mut s = String::new();
    while s.len() < len {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(&format!(
            "{} {} #{} {}",
            NAMES[rng.below(8) as usize],
            VERBS[rng.below(6) as usize],
            ["general", "random", "ops", "sales"][rng.below(4) as usize],
            rng.below(100_000)
        ));
    }
    s.truncate(len);
    s.into_bytes()
}

/// `data` as a JSON string's contents (quotes and backslashes escaped; what the hub does to a
/// published body).
pub fn escape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    for &b in data {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out
}

/// The WebSocket message the hub sends for an event with this id and data.
pub fn event(id: u64, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{{\"id\":{id},\"event\":null,\"data\":\"").into_bytes();
    out.extend_from_slice(&escape(data));
    out.extend_from_slice(b"\"}");
    out
}

/// The size of [`event`]'s wrapper around data that needs no escaping.
pub fn event_overhead(id: u64) -> usize {
    event(id, b"").len()
}
