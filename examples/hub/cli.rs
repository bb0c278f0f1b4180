//! The hub's command line and environment, from one table ([`FLAGS`]): `--help`, the
//! `PUSHWIRE_*` variables and the parsing all read it, so a new flag is one row.
//!
//! Every flag `--some-flag` can also be set as `PUSHWIRE_SOME_FLAG` (upper-cased, dashes
//! to underscores); a flag on the command line wins over its variable. A repeatable flag
//! (`--allow-origin`, `--webhook-ca`, `--upstream`) takes a list in its variable,
//! separated by commas or whitespace, and given on the command line it replaces the
//! variable's list. A switch (`--no-deflate`) takes `1`/`true`/`0`/`false`. An empty
//! variable counts as unset. `PUSHWIRE_LOG` is the log level, not a flag.
//!
//! Errors name the flag (or variable) and the value, on one line, exit 2.

use std::time::Duration;

use pushwire::proto::resp::RedisUrl;
use pushwire::proto::webhook::Schedule;
use pushwire::{Config, Fsync};

use crate::access::Policy;
use crate::tls::TlsArgs;
use crate::{batch, upstream};

/// Everything the flags set.
pub struct Options {
    pub addr: String,
    pub config: Config,
    pub policy: Policy,
    pub upstreams: upstream::Upstreams,
    pub max_batch: usize,
    pub tls: TlsArgs,
    pub stop_timeout: Duration,
}

/// What one flag's value does to the options (the error says what was expected).
type Apply = fn(&mut Options, &str) -> Result<(), String>;

/// One flag: its name without `--`, its value's name (empty: a switch), its default as
/// `--help` shows it (empty: none), its one line of help, whether it repeats, what it does.
pub struct Flag {
    pub name: &'static str,
    pub value: &'static str,
    pub default: &'static str,
    pub help: &'static str,
    pub repeat: bool,
    pub apply: Apply,
}

const fn flag(
    name: &'static str,
    value: &'static str,
    default: &'static str,
    help: &'static str,
    apply: Apply,
) -> Flag {
    Flag {
        name,
        value,
        default,
        help,
        repeat: false,
        apply,
    }
}

const fn many(name: &'static str, value: &'static str, help: &'static str, apply: Apply) -> Flag {
    Flag {
        name,
        value,
        default: "",
        help,
        repeat: true,
        apply,
    }
}

fn num(v: &str) -> Result<u64, String> {
    v.parse::<u64>()
        .map_err(|_| format!("expected a number, got {v:?}"))
}

fn size(v: &str) -> Result<usize, String> {
    num(v).map(|n| n as usize)
}

fn secs(v: &str) -> Result<Duration, String> {
    num(v).map(Duration::from_secs)
}

/// Seconds with a fraction, strictly between 0 and `max`.
fn frac_secs(v: &str, max: f64) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s > 0.0 && s < max => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "expected seconds above 0 and below {max}, got {v:?}"
        )),
    }
}

/// Applies a `Config` setter.
fn cfg(o: &mut Options, f: impl FnOnce(Config) -> Config) -> Result<(), String> {
    o.config = f(std::mem::take(&mut o.config));
    Ok(())
}

fn tls(o: &mut Options, flag: &str, v: &str) -> Result<(), String> {
    o.tls.take(flag, || v.to_owned());
    Ok(())
}

/// Every flag of the hub, in `--help` order. `(section)` rows start a group.
pub const FLAGS: &[Flag] = &[
    flag(
        "addr",
        "HOST:PORT",
        "127.0.0.1:8080",
        "listen address (HTTP, WebSocket, SSE, long-poll)",
        |o, v| {
            o.addr = v.to_owned();
            Ok(())
        },
    ),
    flag(
        "max-connections",
        "N",
        "10000",
        "most open connections; more are closed at once",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.max_connections(n))
        },
    ),
    flag(
        "header-timeout",
        "SECS",
        "10",
        "time a client has to send a whole request",
        |o, v| {
            let d = secs(v)?;
            cfg(o, |c| c.header_timeout(d))
        },
    ),
    flag(
        "idle-timeout",
        "SECS",
        "60",
        "idle keep-alive connections are closed after this",
        |o, v| {
            let d = secs(v)?;
            cfg(o, |c| c.idle_timeout(d))
        },
    ),
    flag(
        "stop-timeout",
        "SECS",
        "5",
        "on SIGINT/SIGTERM, wait this long for clients and webhooks",
        |o, v| {
            let d = secs(v)?;
            o.stop_timeout = d;
            cfg(o, |c| c.stop_timeout(d))
        },
    ),
    flag(
        "history-events",
        "N",
        "1000",
        "events kept per topic",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.history_events(n))
        },
    ),
    flag(
        "history-bytes",
        "N",
        "1048576",
        "bytes kept per topic (the newest event always stays)",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.history_bytes(n))
        },
    ),
    flag(
        "history-total-bytes",
        "N",
        "268435456",
        "bytes kept across all topics",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.history_total_bytes(n))
        },
    ),
    flag(
        "max-topics",
        "N",
        "10000",
        "most topics; publishing to a new one fails beyond",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.max_topics(n))
        },
    ),
    flag(
        "topic-ttl",
        "SECS",
        "3600",
        "an unused topic is dropped after this (0: never)",
        |o, v| {
            let d = secs(v)?;
            cfg(o, |c| c.topic_ttl(d))
        },
    ),
    flag(
        "max-batch",
        "N",
        "1000",
        "most lines in one NDJSON batch publish",
        |o, v| {
            o.max_batch = size(v)?.max(1);
            Ok(())
        },
    ),
    flag(
        "ws-ping-interval",
        "SECS",
        "30",
        "ping a WebSocket peer silent for this long (0: never)",
        |o, v| {
            let d = match v.parse::<f64>() {
                Ok(0.0) => None,
                Ok(s) if s > 0.0 && s < 86_400.0 => Some(Duration::from_secs_f64(s)),
                _ => return Err(format!("expected seconds, 0 to 86400, got {v:?}")),
            };
            cfg(o, |c| c.ws_ping_interval(d))
        },
    ),
    flag(
        "ws-ping-timeout",
        "SECS",
        "30",
        "close (1001) a WebSocket that sends nothing this long after our ping",
        |o, v| {
            let d = frac_secs(v, 86_400.0)?;
            cfg(o, |c| c.ws_ping_timeout(d))
        },
    ),
    flag(
        "sse-heartbeat",
        "SECS",
        "15",
        "heartbeat comment interval on idle SSE streams",
        |o, v| {
            let d = frac_secs(v, 86_400.0)?;
            cfg(o, |c| c.sse_heartbeat(d))
        },
    ),
    flag(
        "sse-retry",
        "MS",
        "",
        "retry: field sent at the start of each SSE stream",
        |o, v| {
            let n = num(v)?;
            cfg(o, |c| c.sse_retry(Some(n)))
        },
    ),
    flag(
        "no-deflate",
        "",
        "",
        "refuse WebSocket permessage-deflate",
        |o, _| cfg(o, |c| c.ws_deflate(false)),
    ),
    many(
        "allow-origin",
        "ORIGIN",
        "accept WebSocket/CORS requests from this origin only (* = any)",
        |o, v| {
            o.policy.allow_origin(v.to_owned());
            Ok(())
        },
    ),
    flag(
        "publish-token",
        "T",
        "",
        "bearer token required to publish",
        |o, v| {
            o.policy.publish = Some(v.to_owned());
            Ok(())
        },
    ),
    flag(
        "subscribe-token",
        "T",
        "",
        "bearer token required to subscribe and read",
        |o, v| {
            o.policy.subscribe = Some(v.to_owned());
            Ok(())
        },
    ),
    flag(
        "admin-token",
        "T",
        "",
        "bearer token required to manage webhooks and read /stats",
        |o, v| {
            o.policy.admin = Some(v.to_owned());
            Ok(())
        },
    ),
    flag(
        "data-dir",
        "DIR",
        "",
        "keep history, webhooks and their outbox in DIR (default: memory)",
        |o, v| cfg(o, |c| c.data_dir(v)),
    ),
    flag(
        "fsync",
        "always|interval",
        "always",
        "with --data-dir: fsync every publish, or once a second",
        |o, v| {
            let mode = match v {
                "always" => Fsync::Always,
                "interval" => Fsync::Interval,
                _ => return Err(format!("expected always or interval, got {v:?}")),
            };
            cfg(o, |c| c.fsync(mode))
        },
    ),
    flag(
        "webhook-schedule",
        "S1,S2,...",
        "0,5,300,1800,7200,18000,36000,36000",
        "delays in seconds before each webhook attempt",
        |o, v| {
            let secs: Result<Vec<f64>, _> = v.split(',').map(|s| s.trim().parse::<f64>()).collect();
            let schedule = secs.ok().and_then(|s| Schedule::from_secs(&s).ok());
            let schedule =
                schedule.ok_or_else(|| format!("expected seconds like 0,5,300, got {v:?}"))?;
            cfg(o, |c| c.webhook_schedule(schedule))
        },
    ),
    flag(
        "webhook-timeout",
        "SECS",
        "15",
        "time one webhook attempt may take",
        |o, v| {
            let d = frac_secs(v, 3600.0)?;
            cfg(o, |c| c.webhook_timeout(d))
        },
    ),
    flag(
        "webhook-allow-private",
        "",
        "",
        "allow loopback and private-network webhook targets",
        |o, _| cfg(o, |c| c.webhook_allow_private(true)),
    ),
    flag(
        "webhook-queue-bytes",
        "N",
        "16777216",
        "webhook body bytes held per endpoint",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.webhook_queue_bytes(n))
        },
    ),
    flag(
        "webhook-total-bytes",
        "N",
        "268435456",
        "webhook body bytes held for all endpoints",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.webhook_total_bytes(n))
        },
    ),
    flag(
        "webhook-max-per-topic",
        "N",
        "16",
        "most webhooks registered on one topic",
        |o, v| {
            let n = size(v)?;
            cfg(o, |c| c.webhook_max_per_topic(n))
        },
    ),
    flag(
        "tls-addr",
        "HOST:PORT",
        "",
        "also serve every route over TLS here (with --tls-cert, --tls-key)",
        |o, v| tls(o, "--tls-addr", v),
    ),
    flag(
        "tls-cert",
        "FILE",
        "",
        "PEM certificate chain for --tls-addr",
        |o, v| tls(o, "--tls-cert", v),
    ),
    flag(
        "tls-key",
        "FILE",
        "",
        "PEM private key for --tls-addr",
        |o, v| tls(o, "--tls-key", v),
    ),
    many(
        "webhook-ca",
        "FILE",
        "extra PEM roots for https:// webhook receivers",
        |o, v| tls(o, "--webhook-ca", v),
    ),
    flag(
        "redis",
        "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]",
        "",
        "share topics with other hubs through this Redis",
        |o, v| {
            let url = RedisUrl::parse(v).map_err(|e| e.to_string())?;
            cfg(o, |c| c.redis(url))
        },
    ),
    flag(
        "redis-prefix",
        "P",
        "pushwire:",
        "prefix of the Redis keys and channels",
        |o, v| cfg(o, |c| c.redis_prefix(v.to_owned())),
    ),
    flag(
        "redis-claim-timeout",
        "SECS",
        "30",
        "a silent hub's webhook messages are taken over after this",
        |o, v| {
            let d = secs(v)?;
            cfg(o, |c| c.redis_claim_timeout(d))
        },
    ),
    many(
        "upstream",
        "TOPIC=ws://HOST:PORT/PATH",
        "publish an upstream WebSocket feed's messages to TOPIC",
        |o, v| {
            let (topic, url) = upstream::parse(v)?;
            o.upstreams.add(topic, url);
            Ok(())
        },
    ),
];

/// The environment variable of `flag`.
pub fn env_name(flag: &Flag) -> String {
    format!("PUSHWIRE_{}", flag.name.to_uppercase().replace('-', "_"))
}

/// The `--help` text.
pub fn help() -> String {
    let mut s = format!(
        "pushwire hub {}: one publish reaches WebSocket, SSE, long-poll and webhook subscribers\n\n\
         usage: hub [OPTIONS]\n\n\
         Every option can also come from the environment: --history-events 500 is\n\
         PUSHWIRE_HISTORY_EVENTS=500; a switch takes 1/true/0/false; a repeatable option (...)\n\
         takes a list separated by commas or spaces. The command line wins. PUSHWIRE_LOG=\n\
         info|debug|trace sets the log level (default: warnings); wire shows the decoded\n\
         wire lines only. SIGINT/SIGTERM stop gracefully (bounded by --stop-timeout); a\n\
         second signal stops at once.\n\nOptions:\n",
        env!("CARGO_PKG_VERSION")
    );
    for f in FLAGS {
        let mut left = format!("  --{}", f.name);
        if !f.value.is_empty() {
            left = format!("{left} {}", f.value);
        }
        if f.repeat {
            left.push_str(" ...");
        }
        let mut line = if left.len() > 30 {
            format!("{left}\n{:32}{}", "", f.help)
        } else {
            format!("{left:32}{}", f.help)
        };
        if !f.default.is_empty() {
            line.push_str(&format!(" [default: {}]", f.default));
        }
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str(&format!(
        "{:32}{}\n{:32}{}\n",
        "  -h, --help", "print this help", "  -V, --version", "print the version"
    ));
    s
}

/// What the command line asks for.
pub enum Outcome {
    Run(Box<Options>),
    /// Print this on stdout and exit 0 (`--help`, `--version`).
    Print(String),
}

/// Reads the command line `args` (without the program name) and the environment `env`
/// (a lookup, so tests can pass their own). Errors are one line for stderr, exit 2.
pub fn parse(
    args: Vec<std::ffi::OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Outcome, String> {
    use lexopt::prelude::*;
    let mut given: Vec<(usize, String)> = Vec::new();
    let mut p = lexopt::Parser::from_args(args);
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        let name = match arg {
            Short('h') | Long("help") => return Ok(Outcome::Print(help())),
            Short('V') | Long("version") => {
                return Ok(Outcome::Print(format!(
                    "pushwire hub {}\n",
                    env!("CARGO_PKG_VERSION")
                )))
            }
            Long(name) => name.to_owned(),
            Short(c) => return Err(format!("unknown option -{c} (see --help)")),
            Value(v) => {
                return Err(format!(
                    "unexpected argument {:?} (see --help)",
                    v.to_string_lossy()
                ))
            }
        };
        let Some(i) = FLAGS.iter().position(|f| f.name == name) else {
            return Err(format!("unknown option --{name} (see --help)"));
        };
        let value = if FLAGS[i].value.is_empty() {
            if p.optional_value().is_some() {
                return Err(format!("--{name}: takes no value"));
            }
            String::new()
        } else {
            match p.value() {
                Ok(v) => v
                    .into_string()
                    .map_err(|v| format!("--{name}: not UTF-8: {v:?}"))?,
                Err(lexopt::Error::MissingValue { .. }) => {
                    return Err(format!("--{name}: missing value"))
                }
                Err(e) => return Err(format!("--{name}: {e}")),
            }
        };
        given.push((i, value));
    }
    let mut o = Options {
        addr: "127.0.0.1:8080".to_owned(),
        // The built-in receiver is the one webhook target allowed at the hub's own
        // address: a webhook to one of its publish routes would be a loop.
        config: Config::new().webhook_self_path(Some("/hooks/receive".into())),
        policy: Policy::default(),
        upstreams: upstream::Upstreams::default(),
        max_batch: batch::DEFAULT_MAX_BATCH,
        tls: TlsArgs::default(),
        stop_timeout: Duration::from_secs(5),
    };
    for (i, f) in FLAGS.iter().enumerate() {
        let mut from_args = given.iter().filter(|(j, _)| *j == i).peekable();
        if from_args.peek().is_some() {
            for (_, v) in from_args {
                (f.apply)(&mut o, v).map_err(|e| format!("--{}: {e}", f.name))?;
            }
            continue;
        }
        let var = env_name(f);
        let Some(v) = env(&var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let bad = |e: String| format!("{var}: {e}");
        if f.value.is_empty() {
            match v.trim() {
                "1" | "true" => (f.apply)(&mut o, "").map_err(bad)?,
                "0" | "false" => {}
                _ => return Err(bad(format!("expected 1, true, 0 or false, got {v:?}"))),
            }
        } else if f.repeat {
            for item in v.split(|c: char| c == ',' || c.is_whitespace()) {
                if !item.is_empty() {
                    (f.apply)(&mut o, item).map_err(bad)?;
                }
            }
        } else {
            (f.apply)(&mut o, &v).map_err(bad)?;
        }
    }
    Ok(Outcome::Run(Box::new(o)))
}

/// `PUSHWIRE_*` variables that are no setting (a typo would otherwise pass unnoticed).
pub fn unknown_vars() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("PUSHWIRE_") && k != "PUSHWIRE_LOG")
        .filter(|k| !FLAGS.iter().any(|f| env_name(f) == *k))
        .collect()
}
