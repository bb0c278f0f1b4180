//! `GET /metrics`: the hub's counters and gauges in the Prometheus text exposition format,
//! version 0.0.4 (<https://prometheus.io/docs/instrumenting/exposition_formats/>): for
//! each metric a `# HELP` line (backslash and line feed escaped), a `# TYPE` line, then
//! its samples `name{label="value"} number`, label values escaped (`\\`, `\"`, `\n`).
//! Counters end in `_total`. Everything comes from `Ctx::stats`, `Ctx::webhook_stats` and
//! the hub's own counts of received webhooks.

use pushwire::{Stats, WebhookStats};

/// The answer's `Content-Type`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Writes metric families to a string.
struct Writer(String);

impl Writer {
    /// Starts a family: its `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        self.0 += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample, with labels.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0 += name;
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                self.0 += &format!("{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        self.0 += &format!(" {value}\n");
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A family whose samples differ by one label.
    fn by(&mut self, name: &str, kind: &str, help: &str, label: &str, values: &[(&str, u64)]) {
        self.family(name, kind, help);
        for (v, n) in values {
            self.sample(name, &[(label, v)], *n);
        }
    }
}

/// What the hub counts itself.
pub struct HubCounts {
    /// Webhooks received at /hooks/receive and verified.
    pub received: u64,
    /// Webhooks refused there for a bad signature.
    pub bad_signature: u64,
}

/// The whole exposition.
pub fn render(s: &Stats, w: &WebhookStats, hub: &HubCounts) -> String {
    let mut m = Writer(String::with_capacity(4096));
    let (c, g) = ("counter", "gauge");
    m.by(
        "pushwire_connections",
        g,
        "Open connections by kind.",
        "kind",
        &[
            ("http", s.http as u64),
            ("websocket", s.websocket as u64),
            ("sse", s.sse as u64),
            ("parked", s.parked as u64),
        ],
    );
    m.single(
        "pushwire_connections_max",
        g,
        "The connection limit.",
        s.max_connections as u64,
    );
    m.single(
        "pushwire_published_total",
        c,
        "Events published.",
        s.published,
    );
    m.by(
        "pushwire_delivered_total",
        c,
        "Events delivered, by transport (long-poll counts events, not responses).",
        "transport",
        &[
            ("websocket", s.delivered_websocket),
            ("sse", s.delivered_sse),
            ("longpoll", s.delivered_longpoll),
            ("webhook", s.delivered_webhook),
        ],
    );
    m.single(
        "pushwire_webhook_messages_delivered_total",
        c,
        "Webhook messages delivered (2xx).",
        w.delivered,
    );
    m.single(
        "pushwire_webhook_messages_failed_total",
        c,
        "Webhook messages failed for good.",
        w.failed,
    );
    m.single(
        "pushwire_webhook_attempts_total",
        c,
        "Webhook delivery attempts.",
        w.attempts,
    );
    m.single(
        "pushwire_webhook_messages_retrying",
        g,
        "Webhook messages waiting for a retry.",
        w.retrying,
    );
    m.single(
        "pushwire_webhook_endpoints_disabled_total",
        c,
        "Webhook endpoints disabled by 410 Gone.",
        w.endpoints_disabled,
    );
    m.single(
        "pushwire_webhook_queued_bytes",
        g,
        "Body bytes of webhook messages not yet at their outcome.",
        w.queued_bytes,
    );
    m.by(
        "pushwire_webhooks_received_total",
        c,
        "Webhooks received at /hooks/receive, by result.",
        "result",
        &[
            ("verified", hub.received),
            ("bad_signature", hub.bad_signature),
        ],
    );
    m.single(
        "pushwire_output_queued_bytes",
        g,
        "Bytes queued for output on open connections.",
        s.output_queued_bytes as u64,
    );
    m.single(
        "pushwire_history_bytes",
        g,
        "Bytes of topic history kept.",
        s.history_bytes as u64,
    );
    m.single(
        "pushwire_history_max_bytes",
        g,
        "The history budget across topics.",
        s.history_max_bytes as u64,
    );
    m.single("pushwire_topics", g, "Topics that exist.", s.topics as u64);
    m.single(
        "pushwire_topics_max",
        g,
        "The topic limit.",
        s.max_topics as u64,
    );
    m.single(
        "pushwire_store_held",
        g,
        "Publishes and registrations waiting for their fsync.",
        s.store_held as u64,
    );
    m.single(
        "pushwire_store_failed_total",
        c,
        "Publishes and registrations refused: not stored.",
        s.store_failed,
    );
    // Without --redis these stay 0.
    m.single(
        "pushwire_redis_ready",
        g,
        "With --redis: both links to Redis are up (1) or not (0).",
        u64::from(s.redis_ready),
    );
    m.single(
        "pushwire_redis_publishes_total",
        c,
        "With --redis: publish scripts sent to Redis.",
        s.redis_publishes,
    );
    m.single(
        "pushwire_redis_reads_total",
        c,
        "With --redis: stream reads sent to Redis.",
        s.redis_reads,
    );
    m.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_label_values_are_escaped() {
        let mut m = Writer(String::new());
        m.family("x_total", "counter", "a \\ b\nc \"q\"");
        m.sample("x_total", &[("k", "a\\b\"c\nd"), ("j", "plain")], 7);
        assert_eq!(
            m.0,
            "# HELP x_total a \\\\ b\\nc \"q\"\n# TYPE x_total counter\n\
             x_total{k=\"a\\\\b\\\"c\\nd\",j=\"plain\"} 7\n"
        );
    }
}
