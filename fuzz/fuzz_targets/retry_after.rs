//! `webhook::parse_retry_after`: arbitrary bytes never panic; the delay is never above
//! `MAX_RETRY_AFTER`; delay-seconds (digits only, optional spaces and tabs around) give
//! exactly that many seconds, capped, however many digits; an HTTP-date gives its distance
//! from `now` (zero in the past), capped, and agrees with `parse_http_date`; anything else
//! is `None`. And the date `now + k` formatted with `http_date` is a delay of `k` (capped).
//!
//! Input: 8 bytes of `now` (little-endian, reduced to the years 1970..=9999), 4 bytes of
//! `k`, then the header value.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pushwire::proto::http1::{http_date, parse_http_date};
use pushwire::proto::webhook::{parse_retry_after, MAX_RETRY_AFTER};

const MAX_FOUR_DIGIT: u64 = 253_402_300_799;

fn le(data: &[u8], at: usize, n: usize) -> u64 {
    (0..n).fold(0, |acc, i| {
        acc | u64::from(data.get(at + i).copied().unwrap_or(0)) << (8 * i)
    })
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t'));
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t'));
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

fn cap(secs: u64) -> Duration {
    Duration::from_secs(secs).min(MAX_RETRY_AFTER)
}

fuzz_target!(|data: &[u8]| {
    let now = le(data, 0, 8) % (MAX_FOUR_DIGIT + 1);
    let k = le(data, 8, 4);
    let value = data.get(12..).unwrap_or(b"");

    let got = parse_retry_after(value, now);
    if let Some(d) = got {
        assert!(d <= MAX_RETRY_AFTER, "{value:?} -> {d:?}");
    }
    let v = trim(value);
    let want = if v.is_empty() {
        None
    } else if v.iter().all(u8::is_ascii_digit) {
        // More than 20 digits overflow a u64: any of them is over the cap anyway.
        let secs = std::str::from_utf8(v)
            .unwrap()
            .parse::<u64>()
            .unwrap_or(u64::MAX);
        Some(cap(secs))
    } else {
        parse_http_date(v, now).map(|date| cap(date.saturating_sub(now)))
    };
    assert_eq!(got, want, "{:?} at {now}", String::from_utf8_lossy(value));

    // A date k seconds ahead, in the one format senders generate (while its year has four
    // digits).
    if now + k <= MAX_FOUR_DIGIT {
        let date = http_date(now + k);
        assert_eq!(
            parse_retry_after(date.as_bytes(), now),
            Some(cap(k)),
            "{date:?}"
        );
    }
    if let Some(back) = now.checked_sub(k) {
        let past = format!(" \t{}\t ", http_date(back));
        assert_eq!(
            parse_retry_after(past.as_bytes(), now),
            Some(Duration::ZERO)
        );
    }
    let digits = format!("\t{k} ");
    assert_eq!(parse_retry_after(digits.as_bytes(), now), Some(cap(k)));
});
