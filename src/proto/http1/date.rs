//! HTTP-date (RFC 9110 §5.6.7): writing IMF-fixdate, reading all three formats.
//!
//! ```text
//! IMF-fixdate  = day-name "," SP date1 SP time-of-day SP GMT   ; Sun, 06 Nov 1994 08:49:37 GMT
//! rfc850-date  = day-name-l "," SP date2 SP time-of-day SP GMT ; Sunday, 06-Nov-94 08:49:37 GMT
//! asctime-date = day-name SP date3 SP time-of-day SP year      ; Sun Nov  6 08:49:37 1994
//! ```
//!
//! No clock is read: times are seconds since the Unix epoch, passed in and out.

use std::fmt::Write as _;

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const LONG_DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Formats `unix_secs` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (the only
/// format a sender may generate: "a sender MUST generate timestamps in the IMF-fixdate
/// format", RFC 9110 §5.6.7).
pub fn http_date(unix_secs: u64) -> String {
    // u64::MAX / 86400 fits in an i64.
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = (days + 4).rem_euclid(7) as usize;
    let mut s = String::with_capacity(29);
    let _ = write!(
        s,
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[weekday],
        day,
        MONTHS[(month - 1) as usize],
        year,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    s
}

/// Parses an HTTP-date in any of its three formats (RFC 9110 §5.6.7: "A recipient that
/// parses a timestamp value in an HTTP field MUST accept all three HTTP-date formats")
/// into seconds since the Unix epoch; `None` when malformed or before 1970.
///
/// The two-digit year of the obsolete RFC 850 format is resolved against `now_unix`, as
/// the RFC asks: "Recipients of a timestamp value in rfc850-date format, which uses a
/// two-digit year, MUST interpret a timestamp that appears to be more than 50 years in the
/// future as representing the most recent year in the past that had the same last two
/// digits." The day name is checked for form, not against the date.
pub fn parse_http_date(value: &[u8], now_unix: u64) -> Option<u64> {
    let s = value;
    let (mut year, month, day, time, two_digit) = strip_day_name(s, &DAYS, b", ")
        .and_then(imf_fixdate)
        .map(|(y, m, d, t)| (y, m, d, t, false))
        .or_else(|| {
            let rest = strip_day_name(s, &LONG_DAYS, b", ")?;
            rfc850_date(rest).map(|(y, m, d, t)| (y, m, d, t, true))
        })
        .or_else(|| {
            strip_day_name(s, &DAYS, b" ")
                .and_then(asctime_date)
                .map(|(y, m, d, t)| (y, m, d, t, false))
        })?;
    if two_digit {
        // rfc850-date: the year in the current century, or the previous one when that
        // would be more than 50 years ahead. (A four-digit year below 100 is just that
        // year, long before 1970.) Clocks past year 9999 are not believed.
        let now_year = civil_from_days((now_unix / 86_400).min(3_000_000) as i64)
            .0
            .max(0) as u64;
        year += now_year - now_year % 100;
        if year > now_year + 50 {
            year -= 100;
        }
    }
    let seconds = time_of_day(time)?;
    if !(1970..=9999).contains(&year) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year as i64, month, day) as u64;
    Some(days * 86_400 + seconds)
}

/// (year, month, day, time-of-day) in one of the three layouts, after the day name.
type DateParts<'a> = (u64, u32, u64, &'a [u8]);

/// `date1 SP time-of-day SP GMT`: `06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(rest: &[u8]) -> Option<DateParts<'_>> {
    match rest {
        [d1, d2, b' ', m1, m2, m3, b' ', y1, y2, y3, y4, b' ', time @ .., b' ', b'G', b'M', b'T'] => {
            Some((
                digits(&[*y1, *y2, *y3, *y4])?,
                month(&[*m1, *m2, *m3])?,
                digits(&[*d1, *d2])?,
                time,
            ))
        }
        _ => None,
    }
}

/// `date2 SP time-of-day SP GMT`: `06-Nov-94 08:49:37 GMT`; the two-digit year is returned
/// as is (below 100) for the caller to resolve.
fn rfc850_date(rest: &[u8]) -> Option<DateParts<'_>> {
    match rest {
        [d1, d2, b'-', m1, m2, m3, b'-', y1, y2, b' ', time @ .., b' ', b'G', b'M', b'T'] => {
            let yy = digits(&[*y1, *y2])?;
            Some((yy, month(&[*m1, *m2, *m3])?, digits(&[*d1, *d2])?, time))
        }
        _ => None,
    }
}

/// `date3 SP time-of-day SP year`: `Nov  6 08:49:37 1994` (the day is padded with a space).
fn asctime_date(rest: &[u8]) -> Option<DateParts<'_>> {
    match rest {
        [m1, m2, m3, b' ', d1, d2, b' ', time @ .., b' ', y1, y2, y3, y4] => {
            let day = if *d1 == b' ' {
                digits(&[*d2])?
            } else {
                digits(&[*d1, *d2])?
            };
            Some((
                digits(&[*y1, *y2, *y3, *y4])?,
                month(&[*m1, *m2, *m3])?,
                day,
                time,
            ))
        }
        _ => None,
    }
}

/// `hour ":" minute ":" second` as seconds into the day; second 60 (a leap second) is
/// allowed by the grammar.
fn time_of_day(time: &[u8]) -> Option<u64> {
    match time {
        [h1, h2, b':', m1, m2, b':', s1, s2] => {
            let (h, m, s) = (
                digits(&[*h1, *h2])?,
                digits(&[*m1, *m2])?,
                digits(&[*s1, *s2])?,
            );
            (h <= 23 && m <= 59 && s <= 60).then_some(h * 3600 + m * 60 + s)
        }
        _ => None,
    }
}

fn strip_day_name<'a>(s: &'a [u8], names: &[&str], sep: &[u8]) -> Option<&'a [u8]> {
    names
        .iter()
        .find_map(|n| s.strip_prefix(n.as_bytes())?.strip_prefix(sep))
}

fn digits(s: &[u8]) -> Option<u64> {
    s.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

fn month(s: &[u8]) -> Option<u32> {
    MONTHS
        .iter()
        .position(|m| m.as_bytes() == s)
        .map(|i| i as u32 + 1)
}

fn days_in_month(year: u64, month: u32) -> u64 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01, in the proleptic
/// Gregorian calendar (the "civil_from_days" algorithm of H. Hinnant's date library).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(year: i64, month: u32, day: u64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_digit_years_before_1970_and_absurd_clocks_are_refused() {
        let now = 1_764_620_000; // 2025
        assert_eq!(parse_http_date(b"Sun, 06 Nov 0094 08:49:37 GMT", now), None);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 0094", now), None);
        assert_eq!(
            parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT", now),
            Some(784_111_777)
        );
        // A clock at the end of time neither panics nor wraps.
        assert_eq!(
            parse_http_date(b"Friday, 31-Dec-00 23:59:59 GMT", u64::MAX),
            None
        );
        assert!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT", u64::MAX).is_some());
    }

    #[test]
    fn format_table() {
        let table = [
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_700_000_000, "Tue, 14 Nov 2023 22:13:20 GMT"),
            (4_133_980_799, "Fri, 31 Dec 2100 23:59:59 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for (secs, want) in table {
            assert_eq!(http_date(secs), want);
            assert_eq!(
                parse_http_date(want.as_bytes(), NOW_2026),
                Some(secs),
                "{want}"
            );
        }
        // no panic at the extreme
        assert!(http_date(u64::MAX).ends_with(" GMT"));
    }

    /// 2026-01-01T00:00:00Z, the "now" the rfc850 years are resolved against.
    const NOW_2026: u64 = 1_767_225_600;

    #[test]
    fn parse_table() {
        let table: &[(&str, Option<u64>)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Sun Nov 06 08:49:37 1994", Some(784_111_777)),
            ("Sun Nov 16 08:49:37 1994", Some(784_111_777 + 10 * 86_400)),
            // 70 is 44 years ahead of 2026, so 2070 (not 1970).
            ("Thursday, 01-Jan-70 00:00:00 GMT", Some(3_155_760_000)),
            ("Sat, 29 Feb 2020 23:59:60 GMT", Some(1_583_020_800)),
            // rfc850 two-digit years around now (2026): 76 -> 2076, 77 -> 1977, 26 -> 2026
            ("Wednesday, 01-Jan-76 00:00:00 GMT", Some(3_345_062_400)),
            ("Saturday, 01-Jan-77 00:00:00 GMT", Some(220_924_800)),
            ("Thursday, 01-Jan-26 00:00:00 GMT", Some(NOW_2026)),
            ("Sun, 06 Nov 1994 08:60:00 GMT", None),
            ("Sun, 00 Nov 1994 08:49:37 GMT", None),
            ("Mon, 29 Feb 2100 08:49:37 GMT", None),
            ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
            ("Sun, 06-Nov-94 08:49:37 GMT", None),
            ("Sun Nov  6 08:49:37 1994 GMT", None),
            ("Sun, 06 Nov 1994 08:49:37 UTC", None),
            ("Sun, 6 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 nov 1994 08:49:37 GMT", None),
            ("Sun,06 Nov 1994 08:49:37 GMT", None),
            ("Xyz, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 31 Nov 1994 08:49:37 GMT", None),
            ("Sun, 29 Feb 1900 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 24:00:00 GMT", None),
            ("Sun, 06 Nov 1969 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 08:49:37 GMT ", None),
            ("Sun Nov 6 08:49:37 1994", None),
            ("", None),
            ("120", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_http_date(s.as_bytes(), NOW_2026), *want, "{s:?}");
        }
    }
}
