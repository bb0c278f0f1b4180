//! Reconnect delays: exponential backoff with a cap.
//!
//! After a connection to Redis fails, the driver waits [`Backoff::next_delay`] before the
//! next attempt: 100 ms, 200 ms, 400 ms, ... doubling up to 5 s, then 5 s for as long as
//! the failures go on. A successful handshake calls [`Backoff::reset`], so the next
//! failure starts at 100 ms again.
//!
//! Several hubs losing the same Redis at once would all come back in step; the driver can
//! spread them with [`Backoff::next_delay_jittered`], which takes its randomness as an
//! argument like every other input of the core.

use std::time::Duration;

/// The first delay.
pub const DEFAULT_BASE: Duration = Duration::from_millis(100);
/// The longest delay.
pub const DEFAULT_CAP: Duration = Duration::from_secs(5);

/// Reconnect delays doubling from a base to a cap (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// 100 ms doubling to 5 s.
    pub fn new() -> Backoff {
        Backoff::with_limits(DEFAULT_BASE, DEFAULT_CAP)
    }

    /// `base` doubling to `cap` (a `cap` below `base` is raised to it).
    pub fn with_limits(base: Duration, cap: Duration) -> Backoff {
        let cap = cap.max(base);
        Backoff {
            base,
            cap,
            next: base,
        }
    }

    /// The delay before the next attempt; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = delay.saturating_mul(2).min(self.cap);
        delay
    }

    /// Like [`next_delay`](Self::next_delay), spread by `random` (any `u32`, uniformly
    /// drawn by the caller) over the upper half: from half the delay to the whole delay.
    pub fn next_delay_jittered(&mut self, random: u32) -> Duration {
        let delay = self.next_delay();
        let half = delay / 2;
        let spread = (half.as_nanos() * u128::from(random)) / u128::from(u32::MAX);
        half + Duration::from_nanos(spread as u64) // spread <= half, fits in u64 nanos
    }

    /// The delay [`next_delay`](Self::next_delay) returns next, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// Back to the base delay (after a successful handshake).
    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_from_100ms_to_5s_and_resets() {
        let mut b = Backoff::new();
        let got: Vec<Duration> = (0..9).map(|_| b.next_delay()).collect();
        let want = [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000].map(ms);
        assert_eq!(got, want);
        assert_eq!(b.peek(), ms(5000));
        b.reset();
        assert_eq!(b.peek(), ms(100));
        assert_eq!(b.next_delay(), ms(100));
        assert_eq!(b.next_delay(), ms(200));
        assert_eq!(Backoff::default(), Backoff::new());
    }

    #[test]
    fn other_limits() {
        let mut b = Backoff::with_limits(ms(30), ms(100));
        let got: Vec<Duration> = (0..4).map(|_| b.next_delay()).collect();
        assert_eq!(got, [30, 60, 100, 100].map(ms));
        let mut b = Backoff::with_limits(ms(50), ms(10));
        assert_eq!((b.next_delay(), b.next_delay()), (ms(50), ms(50)));
        let mut huge = Backoff::with_limits(Duration::MAX / 2 + ms(1), Duration::MAX);
        huge.next_delay();
        assert_eq!(huge.next_delay(), Duration::MAX);
    }

    #[test]
    fn jitter_spreads_over_the_upper_half() {
        let mut b = Backoff::new();
        assert_eq!(b.next_delay_jittered(0), ms(50));
        assert_eq!(b.next_delay_jittered(u32::MAX), ms(200));
        let mid = b.next_delay_jittered(u32::MAX / 2);
        assert!(mid > ms(299) && mid < ms(301), "{mid:?}");
        assert_eq!(b.peek(), ms(800), "jitter advances like next_delay");
    }
}
