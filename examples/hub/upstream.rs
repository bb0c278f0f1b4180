//! `--upstream TOPIC=ws://HOST:PORT/PATH`: the hub subscribes to an upstream WebSocket feed
//! and publishes every text message it receives to TOPIC (a binary message is logged and
//! skipped). A dropped or refused upstream is dialed again after a backoff: 100 ms,
//! doubling up to 30 s, each delay drawn at random between half and all of it (jitter, so
//! hubs that lost the same upstream do not come back in step). The backoff starts over
//! once a connection stayed open for 10 s.

use std::time::{Duration, Instant};

use pushwire::{ConnId, Ctx, Publishing, WsConnect};

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(30);
/// A connection open this long resets the backoff.
const STABLE: Duration = Duration::from_secs(10);
/// Timer tags of upstream reconnects start here (the index is added).
pub const TAG_BASE: u64 = 1 << 40;

/// One `--upstream` feed.
struct Feed {
    topic: String,
    url: String,
    conn: Option<ConnId>,
    opened: Option<Instant>,
    /// Failed or short-lived connections in a row.
    failures: u32,
}

/// Every `--upstream` feed.
#[derive(Default)]
pub struct Upstreams {
    feeds: Vec<Feed>,
}

/// Parses `TOPIC=URL`.
pub fn parse(arg: &str) -> Result<(String, String), String> {
    let (topic, url) = arg
        .split_once('=')
        .ok_or_else(|| format!("--upstream {arg:?}: expected TOPIC=ws://HOST:PORT/PATH"))?;
    if !pushwire::proto::topic::valid_topic(topic) {
        return Err(format!("--upstream: {topic:?} is not a valid topic name"));
    }
    pushwire::proto::ws::client::WsUrl::parse(url)
        .map_err(|e| format!("--upstream {url:?}: {e}"))?;
    Ok((topic.to_owned(), url.to_owned()))
}

/// The delay before reconnect attempt number `failures` (1, 2, ...), before jitter.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    FIRST.saturating_mul(1 << doublings).min(MAX)
}

impl Upstreams {
    /// Adds a feed (dialed by [`start`](Self::start)).
    pub fn add(&mut self, topic: String, url: String) {
        self.feeds.push(Feed {
            topic,
            url,
            conn: None,
            opened: None,
            failures: 0,
        });
    }

    /// Dials every feed.
    pub fn start(&mut self, cx: &mut Ctx<'_>) {
        for i in 0..self.feeds.len() {
            self.dial(cx, i);
        }
    }

    fn dial(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let feed = &mut self.feeds[i];
        match cx.connect_ws(&feed.url, &WsConnect::new()) {
            Ok(conn) => feed.conn = Some(conn),
            Err(e) => {
                log::warn!("upstream {}: {e}", feed.url);
                self.retry(cx, i);
            }
        }
    }

    fn retry(&mut self, cx: &mut Ctx<'_>, i: usize) {
        let feed = &mut self.feeds[i];
        feed.conn = None;
        feed.failures = feed.failures.saturating_add(1);
        let full = backoff(feed.failures);
        let delay = full.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        log::info!("upstream {}: reconnecting in {delay:?}", feed.url);
        cx.set_timer(delay, TAG_BASE + i as u64);
    }

    fn find(&self, conn: ConnId) -> Option<usize> {
        self.feeds.iter().position(|f| f.conn == Some(conn))
    }

    /// A dialed connection opened: true when it is an upstream's.
    pub fn opened(&mut self, conn: ConnId, now: Instant) -> bool {
        let Some(i) = self.find(conn) else {
            return false;
        };
        let feed = &mut self.feeds[i];
        log::info!(
            "upstream {}: connected, publishing to {}",
            feed.url,
            feed.topic
        );
        feed.opened = Some(now);
        true
    }

    /// A text message from `conn`: published to its feed's topic. False when `conn` is no
    /// upstream.
    pub fn message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, text: Option<&str>) -> bool {
        let Some(i) = self.find(conn) else {
            return false;
        };
        let feed = &self.feeds[i];
        match text {
            Some(text) => match cx.publish_async(&feed.topic, None, text) {
                Ok(Publishing::Done(_) | Publishing::Pending(_)) => {}
                Err(e) => log::warn!("upstream {}: publish to {}: {e}", feed.url, feed.topic),
            },
            None => log::warn!("upstream {}: binary message skipped", feed.url),
        }
        true
    }

    /// `conn` closed, or never opened: if it was an upstream's, dial again after the
    /// backoff. True when it was one.
    pub fn closed(&mut self, cx: &mut Ctx<'_>, conn: ConnId, why: &str, now: Instant) -> bool {
        let Some(i) = self.find(conn) else {
            return false;
        };
        let feed = &mut self.feeds[i];
        log::warn!("upstream {}: {why}", feed.url);
        if feed
            .opened
            .take()
            .is_some_and(|t| now.duration_since(t) >= STABLE)
        {
            feed.failures = 0;
        }
        self.retry(cx, i);
        true
    }

    /// A timer fired: true when it was an upstream's reconnect (then it dials).
    pub fn timer(&mut self, cx: &mut Ctx<'_>, tag: u64) -> bool {
        let Some(i) = tag.checked_sub(TAG_BASE).map(|i| i as usize) else {
            return false;
        };
        if i >= self.feeds.len() || self.feeds[i].conn.is_some() {
            return false;
        }
        self.dial(cx, i);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_100_ms_to_30_s() {
        let ms: Vec<u128> = (1..=11).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        assert_eq!(backoff(u32::MAX), MAX);
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse("prices=ws://127.0.0.1:9000/feed"),
            Ok(("prices".into(), "ws://127.0.0.1:9000/feed".into()))
        );
        assert!(parse("prices").is_err());
        assert!(parse("bad topic=ws://127.0.0.1:9000/").is_err());
        assert!(parse("t=http://127.0.0.1:9000/").is_err());
    }
}
