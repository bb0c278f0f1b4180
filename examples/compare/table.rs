//! The figures of one mechanism, and the table they make (aligned text or markdown).

use crate::subs::Got;
use crate::wire::Counts;

/// One row of the table.
pub struct Row {
    pub name: &'static str,
    /// Publish-to-receive latencies of the steady phase, in nanoseconds, sorted.
    pub latencies: Vec<u64>,
    /// Events the steady phase published.
    pub events: u64,
    /// The subscriber's traffic during the steady phase.
    pub steady: Counts,
    pub idle_bytes: Option<f64>,
    /// Events of the drop phase never received, and received twice.
    pub missed: u64,
    pub duplicates: u64,
    /// From coming back to holding every event published while away.
    pub resume_ns: Option<u64>,
    pub resumes_with: &'static str,
}

/// The sorted latencies of the events with `seq` in `range`, and how many of those seqs
/// were never received and received more than once.
pub fn latencies(got: &[Got], range: std::ops::Range<u64>) -> (Vec<u64>, u64, u64) {
    let mut seen = vec![0u32; (range.end - range.start) as usize];
    let mut lat = Vec::new();
    for g in got.iter().filter(|g| range.contains(&g.seq)) {
        let n = &mut seen[(g.seq - range.start) as usize];
        *n += 1;
        if *n == 1 {
            lat.push(g.recv_ns.saturating_sub(g.sent_ns));
        }
    }
    lat.sort_unstable();
    let missed = seen.iter().filter(|&&n| n == 0).count() as u64;
    let dups = seen.iter().map(|&n| u64::from(n.saturating_sub(1))).sum();
    (lat, missed, dups)
}

fn pct(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn ms(ns: Option<u64>) -> String {
    match ns {
        Some(ns) if ns >= 100_000_000 => format!("{:.0}", ns as f64 / 1e6),
        Some(ns) => format!("{:.2}", ns as f64 / 1e6),
        None => "-".into(),
    }
}

fn per(n: u64, events: u64, digits: usize) -> String {
    if events == 0 {
        return "-".into();
    }
    format!("{:.*}", digits, n as f64 / events as f64)
}

pub const HEADER: [&str; 11] = [
    "mechanism",
    "p50 ms",
    "p99 ms",
    "bytes/ev down",
    "bytes/ev up",
    "requests/ev",
    "conns/ev",
    "idle B/sub",
    "missed",
    "resume ms",
    "resumes with",
];

impl Row {
    pub fn cells(&self) -> [String; 11] {
        let missed = match self.duplicates {
            0 => self.missed.to_string(),
            d => format!("{} ({d} twice)", self.missed),
        };
        [
            self.name.to_string(),
            ms(pct(&self.latencies, 0.50)),
            ms(pct(&self.latencies, 0.99)),
            per(self.steady.down, self.events, 0),
            per(self.steady.up, self.events, 0),
            per(self.steady.requests, self.events, 3),
            per(self.steady.connections, self.events, 3),
            self.idle_bytes.map_or("-".into(), |b| format!("{b:.0}")),
            missed,
            ms(self.resume_ns),
            self.resumes_with.to_string(),
        ]
    }
}

/// The rows as a table: columns aligned with spaces, or a markdown table.
pub fn render(rows: &[Row], markdown: bool) -> String {
    let cells: Vec<[String; 11]> = rows.iter().map(Row::cells).collect();
    let mut out = String::new();
    if markdown {
        let line = |c: &[String]| format!("| {} |\n", c.join(" | "));
        out += &line(&HEADER.map(String::from));
        out += &line(&HEADER.map(|h| {
            if h == "mechanism" || h == "resumes with" {
                "---".into()
            } else {
                "---:".into()
            }
        }));
        for c in &cells {
            out += &line(c);
        }
        return out;
    }
    let mut width = HEADER.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.len());
        }
    }
    let line = |c: &[String]| {
        let mut l = String::new();
        for (i, (s, w)) in c.iter().zip(width).enumerate() {
            let last = i + 1 == c.len();
            match i {
                0 => l += &format!("{s:<w$}"),
                _ if last => l += &format!("  {s}"),
                _ => l += &format!("  {s:>w$}"),
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out += &line(&HEADER.map(String::from));
    for c in &cells {
        out += &line(c);
    }
    out
}
