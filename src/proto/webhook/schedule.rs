//! The retry schedule of a webhook message and the `Retry-After` header.
//!
//! The Standard Webhooks spec ("Deliverability and reliability") recommends "a retry
//! schedule spanning multiple days, with an exponential backoff" and "some level of random
//! jitter to retries to prevent cases where the failures are due to recurring load caused
//! by the webhook attempts themselves". Its example starts: immediately, 5 seconds,
//! 5 minutes, 30 minutes, 2 hours, 5 hours, 10 hours, ...; pushwire's [`Schedule::default`]
//! is that list cut at eight attempts (about 27.6 hours in all).
//!
//! Jitter: [`Schedule::delay_before`] takes a uniform random number in `0..1` from the
//! caller and scales the delay by a factor between 0.8 and 1.2 (±20%), so receivers that
//! failed at the same moment are not all retried at the same moment.
//!
//! `Retry-After` (RFC 9110 §10.2.3) is either delay-seconds or an HTTP-date
//! (RFC 9110 §5.6.7, all three forms that recipients MUST accept). [`parse_retry_after`]
//! turns either into a delay and applies the cap [`MAX_RETRY_AFTER`] itself, so a receiver
//! cannot park a message for days.

use std::fmt;
use std::time::Duration;

/// The longest delay a `Retry-After` header can impose (1 hour).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60 * 60);

/// The longest single delay [`Schedule::from_secs`] accepts (7 days).
pub const MAX_DELAY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The most attempts a schedule may have (the first one included).
pub const MAX_ATTEMPTS: usize = 100;

/// How far jitter spreads a delay either way, as a fraction of it.
pub const JITTER: f64 = 0.2;

/// When to make each delivery attempt of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `delays[i]` is the wait before attempt `i + 1`; `delays[0]` is always zero.
    delays: Vec<Duration>,
}

impl Default for Schedule {
    /// Immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts.
    fn default() -> Schedule {
        const M: u64 = 60;
        const H: u64 = 60 * M;
        let secs = [0, 5, 5 * M, 30 * M, 2 * H, 5 * H, 10 * H, 10 * H];
        Schedule {
            delays: secs.iter().map(|&s| Duration::from_secs(s)).collect(),
        }
    }
}

/// Why a schedule given in seconds was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduleError {
    /// The delay at this index (0-based) is negative.
    Negative(usize),
    /// The delay at this index is NaN or infinite.
    NotFinite(usize),
    /// The delay at this index is longer than [`MAX_DELAY`].
    TooLong(usize),
    /// More than [`MAX_ATTEMPTS`]` - 1` retries.
    TooMany,
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Negative(i) => write!(f, "retry delay #{} is negative", i + 1),
            ScheduleError::NotFinite(i) => write!(f, "retry delay #{} is not a number", i + 1),
            ScheduleError::TooLong(i) => {
                write!(f, "retry delay #{} is longer than 7 days", i + 1)
            }
            ScheduleError::TooMany => {
                write!(f, "at most {} retries are allowed", MAX_ATTEMPTS - 1)
            }
        }
    }
}

impl std::error::Error for ScheduleError {}

impl Schedule {
    /// Builds a schedule from the delays in seconds (fractions allowed) *between* attempts
    /// after the first, immediate one: `[5.0, 300.0, 1800.0]` means four attempts, at 0,
    /// 5, 305 and 2105 seconds (before jitter). An empty list means a single attempt.
    pub fn from_secs(secs: &[f64]) -> Result<Schedule, ScheduleError> {
        if secs.len() >= MAX_ATTEMPTS {
            return Err(ScheduleError::TooMany);
        }
        let mut delays = Vec::with_capacity(secs.len() + 1);
        delays.push(Duration::ZERO);
        for (i, &s) in secs.iter().enumerate() {
            if !s.is_finite() {
                return Err(ScheduleError::NotFinite(i));
            }
            if s < 0.0 {
                return Err(ScheduleError::Negative(i));
            }
            match Duration::try_from_secs_f64(s) {
                Ok(d) if d <= MAX_DELAY => delays.push(d),
                _ => return Err(ScheduleError::TooLong(i)),
            }
        }
        Ok(Schedule { delays })
    }

    /// The total number of attempts, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.delays.len() as u32
    }

    /// The nominal waits before each attempt (the first is zero), without jitter.
    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How long to wait before attempt number `attempt` (1-based: attempt 1 is the
    /// immediate first one and gets zero; attempt 2 is the first retry), counted from the
    /// end of the previous attempt. `None` when the schedule has no such attempt (or for
    /// `attempt == 0`).
    ///
    /// `jitter` is a uniform random number in `0..1` from the caller: the delay is
    /// multiplied by `0.8 + 0.4 * jitter`, i.e. spread by up to ±20%. Values outside
    /// `0..=1` are clamped; NaN counts as 0.5 (no spread).
    pub fn delay_before(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        let index = (attempt as usize).checked_sub(1)?;
        let nominal = *self.delays.get(index)?;
        let jitter = if jitter.is_nan() {
            0.5
        } else {
            jitter.clamp(0.0, 1.0)
        };
        Some(nominal.mul_f64(1.0 - JITTER + 2.0 * JITTER * jitter))
    }
}

/// Parses a `Retry-After` value (RFC 9110 §10.2.3) into a delay from now, capped at
/// [`MAX_RETRY_AFTER`]:
///
/// ```text
/// Retry-After = HTTP-date / delay-seconds
/// delay-seconds = 1*DIGIT
/// ```
///
/// Surrounding spaces and tabs are ignored. An HTTP-date in the past (or now) gives zero.
/// `now_unix` is the current time in unix seconds. `None` for anything else.
pub fn parse_retry_after(value: &[u8], now_unix: u64) -> Option<Duration> {
    let value = trim_ows(value);
    if value.is_empty() {
        return None;
    }
    let secs = if value.iter().all(u8::is_ascii_digit) {
        // Saturate instead of failing on absurdly long numbers: the cap applies anyway.
        value.iter().fold(0u64, |acc, &d| {
            acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
    } else {
        let date = crate::proto::http1::parse_http_date(value, now_unix)?;
        date.saturating_sub(now_unix)
    };
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn default_schedule() {
        let s = Schedule::default();
        assert_eq!(s.max_attempts(), 8);
        let want = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(
                s.delay_before(i as u32 + 1, 0.5),
                Some(S(*w)),
                "attempt {}",
                i + 1
            );
        }
        assert_eq!(s.delay_before(9, 0.5), None);
        assert_eq!(s.delay_before(0, 0.5), None);
        assert_eq!(s.delay_before(u32::MAX, 0.5), None);
    }

    #[test]
    fn jitter_spreads_twenty_percent() {
        let s = Schedule::default();
        assert_eq!(s.delay_before(2, 0.0), Some(Duration::from_millis(4000)));
        assert_eq!(s.delay_before(2, 1.0), Some(Duration::from_millis(6000)));
        assert_eq!(s.delay_before(2, 0.25), Some(Duration::from_millis(4500)));
        assert_eq!(s.delay_before(3, 0.75), Some(S(330)));
        assert_eq!(s.delay_before(2, -3.0), Some(Duration::from_millis(4000)));
        assert_eq!(s.delay_before(2, 7.0), Some(Duration::from_millis(6000)));
        assert_eq!(s.delay_before(2, f64::NAN), Some(S(5)));
        assert_eq!(s.delay_before(1, 1.0), Some(Duration::ZERO));
    }

    #[test]
    fn from_secs() {
        let s = Schedule::from_secs(&[5.0, 300.0, 0.25]).unwrap();
        assert_eq!(
            s.delays(),
            &[Duration::ZERO, S(5), S(300), Duration::from_millis(250)]
        );
        assert_eq!(s.max_attempts(), 4);
        let one = Schedule::from_secs(&[]).unwrap();
        assert_eq!(one.max_attempts(), 1);
        assert_eq!(one.delay_before(2, 0.5), None);
        assert_eq!(
            Schedule::from_secs(&[0.0]).unwrap().delays(),
            &[Duration::ZERO; 2]
        );
        assert_eq!(
            Schedule::from_secs(&[1.0, -1.0]),
            Err(ScheduleError::Negative(1))
        );
        assert_eq!(
            Schedule::from_secs(&[f64::NAN]),
            Err(ScheduleError::NotFinite(0))
        );
        assert_eq!(
            Schedule::from_secs(&[f64::INFINITY]),
            Err(ScheduleError::NotFinite(0))
        );
        assert_eq!(Schedule::from_secs(&[1e30]), Err(ScheduleError::TooLong(0)));
        assert_eq!(
            Schedule::from_secs(&[604_801.0]),
            Err(ScheduleError::TooLong(0))
        );
        assert!(Schedule::from_secs(&[604_800.0]).is_ok());
        assert_eq!(
            Schedule::from_secs(&[1.0; 100]),
            Err(ScheduleError::TooMany)
        );
        assert!(Schedule::from_secs(&[1.0; 99]).is_ok());
        assert_eq!(
            ScheduleError::Negative(1).to_string(),
            "retry delay #2 is negative"
        );
    }

    // 2026-01-01T00:00:00Z
    const NOW_2026: u64 = 1_767_225_600;

    #[test]
    fn retry_after() {
        let now = NOW_2026;
        let table: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"120", Some(120)),
            (b" 120\t", Some(120)),
            (b"3600", Some(3600)),
            (b"3601", Some(3600)),
            (b"99999999999999999999999999", Some(3600)),
            (b"Thu, 01 Jan 2026 00:00:30 GMT", Some(30)),
            (b"Thursday, 01-Jan-26 00:10:00 GMT", Some(600)),
            (b"Thu Jan  1 00:00:45 2026", Some(45)),
            (b"Thu, 01 Jan 2026 05:00:00 GMT", Some(3600)),
            (b"Thu, 01 Jan 2026 00:00:00 GMT", Some(0)),
            (b"Sun, 06 Nov 1994 08:49:37 GMT", Some(0)),
            (b"", None),
            (b"  ", None),
            (b"-5", None),
            (b"1.5", None),
            (b"+5", None),
            (b"5 s", None),
            (b"soon", None),
            (b"\xff", None),
        ];
        for (value, want) in table {
            assert_eq!(
                parse_retry_after(value, now),
                want.map(S),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }
}
