//! `http1::parse_http_date` and `http1::http_date`: parsing arbitrary bytes never panics,
//! and what parses is exactly the date it says (formatting the result again gives the input
//! back, up to the unchecked day name and the padding of the asctime day; an RFC 850
//! two-digit year lands in the century the RFC 9110 §5.6.7 rule picks); every time up to
//! 9999-12-31 formats as an IMF-fixdate, an RFC 850 date and an asctime date that all parse
//! back to the same second (the RFC 850 one when its century is the one the rule picks);
//! formatting any `u64` never panics.
//!
//! Input: 8 bytes of `now` (little-endian, reduced to the years 1970..=9999), 8 bytes of a
//! time to format, then the value to parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::http1::{http_date, parse_http_date};

/// 9999-12-31T23:59:59Z, the last second an IMF-fixdate's four-digit year can hold.
const MAX_FOUR_DIGIT: u64 = 253_402_300_799;

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const LONG_DAYS: [&str; 7] = [
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A broken-down UTC time, computed here independently of the library (a plain day walk
/// by years and months, fast enough for four-digit years).
struct Civil {
    year: u64,
    month: usize,
    day: u64,
    hms: (u64, u64, u64),
    weekday: usize,
}

fn leap(y: u64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn month_len(y: u64, m: usize) -> u64 {
    [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][m]
}

fn civil(t: u64) -> Civil {
    let mut days = t / 86_400;
    let weekday = (days % 7) as usize;
    let s = t % 86_400;
    // Whole 400-year cycles (146,097 days) first, then years, then months.
    let mut year = 1970 + 400 * (days / 146_097);
    days %= 146_097;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 0;
    while days >= month_len(year, month) {
        days -= month_len(year, month);
        month += 1;
    }
    Civil {
        year,
        month,
        day: days + 1,
        hms: (s / 3600, s / 60 % 60, s % 60),
        weekday,
    }
}

fn time(c: &Civil) -> String {
    format!("{:02}:{:02}:{:02}", c.hms.0, c.hms.1, c.hms.2)
}

fn imf(c: &Civil) -> String {
    let m = MONTHS[c.month];
    format!(
        "{}, {:02} {m} {:04} {} GMT",
        DAYS[c.weekday],
        c.day,
        c.year,
        time(c)
    )
}

fn rfc850(c: &Civil) -> String {
    let (m, yy) = (MONTHS[c.month], c.year % 100);
    format!(
        "{}, {:02}-{m}-{yy:02} {} GMT",
        LONG_DAYS[c.weekday],
        c.day,
        time(c)
    )
}

/// Both paddings of the day: `Nov  6` and `Nov 06`.
fn asctime(c: &Civil) -> [String; 2] {
    let (m, t, y) = (MONTHS[c.month], time(c), c.year);
    [
        format!("{} {m} {:>2} {t} {y:04}", DAYS[c.weekday], c.day),
        format!("{} {m} {:02} {t} {y:04}", DAYS[c.weekday], c.day),
    ]
}

/// The year RFC 9110 gives a two-digit `yy` at `now_year`: in the current century, unless
/// that is more than 50 years ahead, then the century before.
fn resolve(yy: u64, now_year: u64) -> u64 {
    let y = now_year - now_year % 100 + yy;
    if y > now_year + 50 {
        y - 100
    } else {
        y
    }
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, x) in b.iter_mut().enumerate() {
        *x = data.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

/// What `parse_http_date(value, now)` returned as `t`, checked against the text.
fn check_parsed(value: &[u8], t: u64, now: u64) {
    let c = civil(t);
    let text = std::str::from_utf8(value).expect("a parsed date is ASCII");
    // The time of day is the only `dd:dd:dd` in the text.
    let leap_second = text.as_bytes().windows(8).any(|w| {
        let d = |i: usize| w[i].is_ascii_digit();
        d(0) && d(1) && w[2] == b':' && d(3) && d(4) && w[5] == b':' && w[6..] == *b"60"
    });
    if leap_second {
        // 23:59:60 is the grammar's leap second; it counts as the next day's 00:00:00.
        assert!(t >= 1, "{text:?}");
        check_parsed_fields(text, &civil(t - 1), now, true);
    } else {
        check_parsed_fields(text, &c, now, false);
    }
}

fn check_parsed_fields(text: &str, c: &Civil, now: u64, leap_second: bool) {
    let fix = |s: String| {
        if leap_second {
            // The second before a leap second is :59; the text says :60.
            s.replacen(":59 ", ":60 ", 1)
        } else {
            s
        }
    };
    let after_day = |s: &str, sep: &str| s.split_once(sep).map(|(_, r)| r.to_owned());
    if text.len() == 29 && text.as_bytes()[3] == b',' {
        // IMF-fixdate.
        assert_eq!(
            after_day(text, ", "),
            after_day(&fix(imf(c)), ", "),
            "{text:?}"
        );
    } else if text.contains('-') {
        assert_eq!(
            after_day(text, ", "),
            after_day(&fix(rfc850(c)), ", "),
            "{text:?}"
        );
        let now_year = civil(now).year;
        assert_eq!(c.year, resolve(c.year % 100, now_year), "{text:?} at {now}");
    } else {
        let want = asctime(c).map(|s| after_day(&fix(s), " "));
        assert!(want.contains(&after_day(text, " ")), "{text:?} vs {want:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let now = u64_at(data, 0) % (MAX_FOUR_DIGIT + 1);
    let raw_t = u64_at(data, 8);
    let value = data.get(16..).unwrap_or(b"");

    // 1. Arbitrary bytes.
    if let Some(t) = parse_http_date(value, now) {
        check_parsed(value, t, now);
    }

    // 2. Formatting any time never panics.
    let any = http_date(raw_t);
    assert!(any.len() >= 29 && any.ends_with(" GMT"), "{any:?}");

    // 3. Every four-digit-year time in all three forms parses back.
    let t = raw_t % (MAX_FOUR_DIGIT + 1);
    let c = civil(t);
    let f = http_date(t);
    assert_eq!(f, imf(&c), "http_date({t})");
    assert_eq!(parse_http_date(f.as_bytes(), now), Some(t), "{f:?}");
    for a in asctime(&c) {
        assert_eq!(parse_http_date(a.as_bytes(), now), Some(t), "{a:?}");
    }
    // The day name is checked for form only: any other valid one is accepted too.
    let other = format!("{}{}", DAYS[(c.weekday + 1) % 7], &f[3..]);
    assert_eq!(parse_http_date(other.as_bytes(), now), Some(t), "{other:?}");
    let r = rfc850(&c);
    let year = resolve(c.year % 100, civil(now).year);
    let got = parse_http_date(r.as_bytes(), now);
    if year == c.year {
        assert_eq!(got, Some(t), "{r:?} at {now}");
    } else if year < 1970 {
        assert_eq!(got, None, "{r:?} at {now}");
    } else {
        // Another century: the same day and time there (or none for 29 February).
        match got {
            Some(g) => {
                let gc = civil(g);
                assert_eq!(
                    (gc.year, gc.month, gc.day, gc.hms),
                    (year, c.month, c.day, c.hms)
                );
            }
            None => assert!(c.month == 1 && c.day == 29 && !leap(year), "{r:?} at {now}"),
        }
    }
});
