//! Memory per idle connection: what N kept-alive, quiet connections cost the server.
//!
//! ```text
//! cargo build --release --example hub
//! cargo bench -p pushwire-benches --bench idle_conns -- [--conns 10000] [--port 19201]
//!     [--settle-ms 1000] [--no-baseline] [--tls | --no-tls | --deflate] [--base-hub PATH]
//!     [--tls-state-conns 1000]
//! ```
//!
//! Starts the hub (`target/release/examples/hub`, or the binary named by `PUSHWIRE_HUB`) as
//! `hub --addr 127.0.0.1:PORT`, reads its `VmRSS` from `/proc/PID/status`, opens `--conns`
//! connections that each complete one `GET /healthz` (HTTP/1.1, kept alive) so the server
//! has really parsed and answered a request on every one, waits `--settle-ms`, checks the
//! server closed none of them, reads `VmRSS` again and prints
//!
//! ```text
//! idle_conns target=pushwire-hub conns=10000 rss_before_kib=.. rss_after_kib=.. bytes_per_conn=..
//! ```
//!
//! For scale it then does the same with the tokio-tungstenite baseline
//! (`benches/tt-echo/target/release/tt-echo`, or `TT_ECHO`), each connection idle after a
//! WebSocket handshake, if that binary exists and `--no-baseline` is not given. The two are
//! not the same work (an HTTP keep-alive connection against an open WebSocket), so compare
//! them with that in mind.
//!
//! **TLS** (with the default `tls` feature): the same hub is started again with a TLS
//! listener (`--tls-addr`, a CA and leaf certificate made with rcgen in a temporary
//! directory), and each connection completes a full TLS handshake (rustls client, no
//! resumption, ALPN `http/1.1`, the chain verified against that CA) and one `GET /healthz`
//! over it, kept alive: `target=pushwire-hub-tls`. Then
//!
//! ```text
//! idle_conns tls_adds plain_bytes_per_conn=.. tls_bytes_per_conn=.. tls_adds_bytes_per_conn=..
//! ```
//!
//! is what TLS costs an idle connection, and `idle_conns tls_state` lines break that down
//! without the hub: rustls server sessions configured like `ServerTls::from_pem` (same
//! provider, versions, ALPN, tickets) are driven in memory against clients, through the
//! handshake and one request and answer, and the heap they still hold is counted by a
//! counting global allocator, with the sizes of the allocations that remain (also with
//! no tickets, and with clients that get AES-128-GCM or ChaCha20-Poly1305 negotiated). `--tls` runs
//! only the plaintext and TLS `GET /healthz` passes (and that breakdown); `--no-tls` skips
//! TLS. Built without the feature, the TLS parts say they are unavailable.
//!
//! **permessage-deflate** (RFC 7692): the same hub again, each connection an idle WebSocket
//! subscribed to a topic (`/topics/idle/ws`) whose handshake offered
//! `Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits` and was answered
//! with permessage-deflate and both `no_context_takeover` parameters (checked):
//! `target=pushwire-hub-ws-deflate`. Then
//!
//! ```text
//! idle_conns ws_deflate conns=.. plain_bytes_per_conn=.. deflate_bytes_per_conn=.. deflate_adds_bytes_per_conn=..
//! ```
//!
//! against the plain `-ws` target of the same run. Without context takeover a connection
//! holds no compression state (the loop's one `Codec` is shared, and made only when
//! something is compressed), so the two should be equal. The hub has no flag for context
//! takeover, so what it would cost is measured in this process with the counting allocator:
//!
//! ```text
//! idle_conns deflate_state per_loop_codec_bytes=.. takeover_per_conn_bytes=.. ...
//! ```
//!
//! where `per_loop_codec_bytes` is the heap a `deflate::Codec` holds after compressing one
//! 1 KiB event at 15 bits and inflating one (what a loop pays once, on first use), and
//! `takeover_per_conn_bytes` is what `Deflater::new(15, LEVEL, true)` plus
//! `Inflater::new(15, true)` hold after one message each (what each connection with context
//! takeover pays: `Config::ws_deflate_takeover(true)`), averaged over 100 pairs.
//! `--deflate` runs only the two WebSocket targets and this breakdown (no TLS, no
//! baseline).
//!
//! `--base-hub PATH` measures a second hub binary (e.g. one built at an older commit) with
//! the same plaintext probes in the same run (`target=base-hub...`) and prints
//! `idle_conns vs_base` ratios of the two.
//!
//! All connections come from 127.0.0.1's ephemeral ports (about 28,000 of them), which is
//! why `--conns` stops at 20,000; both processes hold one fd per connection, each under its
//! own open-files limit, which is checked first. Every step has a deadline; the servers are
//! killed at the end, also on failure. Without a hub binary it says so and exits 0, so a
//! bare `cargo bench` does not fail for want of a build.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{exit, Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

#[cfg(feature = "tls")]
#[path = "common/tls.rs"]
mod tls;

#[path = "common/quotes.rs"]
mod quotes;

const USAGE: &str = "usage: idle_conns [--conns N] [--port P] [--settle-ms MS] [--no-baseline] \
[--tls | --no-tls | --deflate] [--base-hub PATH] [--tls-state-conns N]";
const MAX_CONNS: usize = 20_000;
/// fds we keep for ourselves besides the connections (stdio, the spawned child's pipes...).
const SPARE_FDS: u64 = 64;
/// Each connect, request and response must finish within this...
const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// ...and opening all of them within this.
const OPEN_DEADLINE: Duration = Duration::from_secs(180);
/// How long a server may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// The longest response we read.
const MAX_RESPONSE: usize = 16 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct Args {
    conns: usize,
    port: u16,
    settle: Duration,
    baseline: bool,
    tls: TlsMode,
    base_hub: Option<String>,
    tls_state_conns: usize,
    /// Only the WebSocket targets, with and without permessage-deflate.
    deflate_only: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    /// Every probe, plaintext and TLS.
    Also,
    /// Only the plaintext and TLS `GET /healthz` passes.
    Only,
    /// No TLS pass.
    Off,
}

/// One server run: which binary, what each connection does, where.
struct Target {
    label: String,
    bin: String,
    probe: Probe,
    port: u16,
    /// Serve TLS on `port + 1` and connect there.
    tls: bool,
}

/// What each idle connection did before going quiet.
#[derive(Clone, Copy)]
enum Probe {
    /// One `GET /healthz`, answered 200 and kept alive.
    Healthz,
    /// The WebSocket opening handshake on this path, answered 101.
    WsHandshake(&'static str),
    /// The same, offering permessage-deflate, answered with it and no context takeover.
    WsDeflate(&'static str),
    /// A long poll on this path: sent, and left parked (no answer is expected).
    Parked(&'static str),
}

/// A server process that is killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("idle_conns: {e}\n{USAGE}");
            exit(2);
        }
    };
    // Paths relative to the repository's root: `cargo bench` runs this in benches/.
    let in_repo = |p: &str| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent();
        let root = root.expect("benches/ is in the repository");
        root.join(p).to_string_lossy().into_owned()
    };
    let hub =
        std::env::var("PUSHWIRE_HUB").unwrap_or_else(|_| in_repo("target/release/examples/hub"));
    if !std::path::Path::new(&hub).is_file() {
        eprintln!(
            "idle_conns: SKIPPED: no hub binary at {hub}; build it with \
             `cargo build --release --example hub` or set PUSHWIRE_HUB"
        );
        return;
    }
    if let Err(e) = check_fd_limit(args.conns) {
        eprintln!("idle_conns: {e}");
        exit(1);
    }
    #[cfg(feature = "tls")]
    let tls_ctx = match args.tls {
        TlsMode::Off => None,
        _ => match TlsCtx::new() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("idle_conns: TLS setup: {e}");
                exit(1);
            }
        },
    };
    #[cfg(not(feature = "tls"))]
    let tls_ctx: Option<TlsCtx> = None;
    #[cfg(not(feature = "tls"))]
    if args.tls != TlsMode::Off {
        eprintln!("idle_conns: TLS unavailable: built without the `tls` feature");
    }

    let only_healthz = args.tls == TlsMode::Only;
    let deflate_only = args.deflate_only;
    let mut targets = Vec::new();
    let add_plain = |targets: &mut Vec<Target>, prefix: &str, bin: &str, port: u16| {
        let probes = [
            ("", Probe::Healthz),
            // The same hub, each connection an idle WebSocket subscribed to a topic.
            ("-ws", Probe::WsHandshake("/topics/idle/ws")),
            // ...and each connection a parked long poll.
            (
                "-parked",
                Probe::Parked("/topics/idle/poll?since=0&timeout=120"),
            ),
            // ...and each an idle WebSocket with permessage-deflate.
            ("-ws-deflate", Probe::WsDeflate("/topics/idle/ws")),
        ];
        for (k, (suffix, probe)) in probes.into_iter().enumerate() {
            if only_healthz && k > 0 {
                break;
            }
            if deflate_only && !matches!(probe, Probe::WsHandshake(_) | Probe::WsDeflate(_)) {
                continue;
            }
            targets.push(Target {
                label: format!("{prefix}{suffix}"),
                bin: bin.to_string(),
                probe,
                port: port.wrapping_add([0, 2, 3, 10][k]),
                tls: false,
            });
        }
    };
    add_plain(&mut targets, "pushwire-hub", &hub, args.port);
    if tls_ctx.is_some() {
        targets.push(Target {
            label: "pushwire-hub-tls".into(),
            bin: hub.clone(),
            probe: Probe::Healthz,
            port: args.port.wrapping_add(4),
            tls: true,
        });
    }
    if let Some(base) = &args.base_hub {
        if !std::path::Path::new(base).is_file() {
            eprintln!("idle_conns: no base hub binary at {base}");
            exit(2);
        }
        add_plain(&mut targets, "base-hub", base, args.port.wrapping_add(6));
    }
    let tt = std::env::var("TT_ECHO")
        .unwrap_or_else(|_| in_repo("benches/tt-echo/target/release/tt-echo"));
    if args.baseline && !only_healthz && !deflate_only && std::path::Path::new(&tt).is_file() {
        targets.push(Target {
            label: "tokio-tungstenite".into(),
            bin: tt,
            probe: Probe::WsHandshake("/"),
            port: args.port.wrapping_add(1),
            tls: false,
        });
    } else if args.baseline && !only_healthz && !deflate_only {
        eprintln!(
            "idle_conns: no baseline: {tt} not built (cd benches/tt-echo && cargo build --release)"
        );
    }

    if !only_healthz {
        if let Err(e) = deflate_state::report(deflate_state::PAIRS) {
            eprintln!("idle_conns: deflate_state: {e}");
            exit(1);
        }
    }
    #[cfg(feature = "tls")]
    if tls_ctx.is_some() {
        if let Err(e) = tls_state::report(args.tls_state_conns) {
            eprintln!("idle_conns: tls_state: {e}");
            exit(1);
        }
    }

    let mut per_conn_of = std::collections::HashMap::new();
    for t in &targets {
        match measure(t, &args, tls_ctx.as_ref()) {
            Ok(m) => {
                let per_conn = (m.after as i64 - m.before as i64) * 1024 / args.conns as i64;
                per_conn_of.insert(t.label.clone(), per_conn);
                println!(
                    "idle_conns target={} conns={} rss_before_kib={} \
                     rss_after_kib={} bytes_per_conn={per_conn} \
                     idle_cpu_ms={} (over {:?}){}",
                    t.label, args.conns, m.before, m.after, m.idle_cpu_ms, args.settle, m.note
                );
            }
            Err(e) => {
                eprintln!("idle_conns: {} ({}): {e}", t.label, t.bin);
                exit(1);
            }
        }
    }
    if let (Some(plain), Some(tls)) = (
        per_conn_of.get("pushwire-hub"),
        per_conn_of.get("pushwire-hub-tls"),
    ) {
        println!(
            "idle_conns tls_adds conns={} plain_bytes_per_conn={plain} tls_bytes_per_conn={tls} \
             tls_adds_bytes_per_conn={}",
            args.conns,
            tls - plain
        );
    }
    if let (Some(plain), Some(deflate)) = (
        per_conn_of.get("pushwire-hub-ws"),
        per_conn_of.get("pushwire-hub-ws-deflate"),
    ) {
        println!(
            "idle_conns ws_deflate conns={} plain_bytes_per_conn={plain} \
             deflate_bytes_per_conn={deflate} deflate_adds_bytes_per_conn={}",
            args.conns,
            deflate - plain
        );
    }
    for (suffix, probe) in [
        ("", "healthz"),
        ("-ws", "ws"),
        ("-parked", "parked"),
        ("-ws-deflate", "ws_deflate"),
    ] {
        let (Some(head), Some(base)) = (
            per_conn_of.get(&format!("pushwire-hub{suffix}")),
            per_conn_of.get(&format!("base-hub{suffix}")),
        ) else {
            continue;
        };
        let ratio = if *base > 0 {
            format!("{:.3}", *head as f64 / *base as f64)
        } else {
            "na".into()
        };
        println!(
            "idle_conns vs_base probe={probe} head_bytes_per_conn={head} \
             base_bytes_per_conn={base} ratio={ratio}"
        );
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        conns: 10_000,
        port: 19201,
        settle: Duration::from_millis(1000),
        baseline: true,
        tls: TlsMode::Also,
        base_hub: None,
        tls_state_conns: 1000,
        deflate_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            // `cargo bench` passes `--bench` to every harness-less bench.
            "--bench" => continue,
            "--no-baseline" => {
                a.baseline = false;
                continue;
            }
            "--tls" => {
                a.tls = TlsMode::Only;
                continue;
            }
            "--no-tls" => {
                a.tls = TlsMode::Off;
                continue;
            }
            "--deflate" => {
                a.tls = TlsMode::Off;
                a.baseline = false;
                a.deflate_only = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value:?}");
        match flag.as_str() {
            "--conns" => a.conns = value.parse().map_err(|_| bad())?,
            "--port" => a.port = value.parse().map_err(|_| bad())?,
            "--base-hub" => a.base_hub = Some(value.clone()),
            "--tls-state-conns" => a.tls_state_conns = value.parse().map_err(|_| bad())?,
            "--settle-ms" => {
                let ms: u64 = value.parse().map_err(|_| bad())?;
                a.settle = Duration::from_millis(ms.min(60_000));
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if !(1..=MAX_CONNS).contains(&a.conns) {
        return Err(format!("--conns must be 1..={MAX_CONNS}"));
    }
    if !(1..=MAX_CONNS).contains(&a.tls_state_conns) {
        return Err(format!("--tls-state-conns must be 1..={MAX_CONNS}"));
    }
    Ok(a)
}

/// Both we and the server (which inherits our limit) need one fd per connection.
fn check_fd_limit(conns: usize) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").map_err(|e| e.to_string())?;
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < conns as u64 + SPARE_FDS => Err(format!(
            "open-files limit {soft} is too low for {conns} connections; lower --conns"
        )),
        _ => Ok(()),
    }
}

/// What one server run measured.
struct Measured {
    /// VmRSS in KiB before and after the connections were opened.
    before: u64,
    after: u64,
    /// CPU time (ms) the server used during one settle period while holding them all.
    idle_cpu_ms: u64,
    /// Extra words for the report line (what TLS negotiated).
    note: String,
}

/// Starts the target's server, loads it with idle connections and measures it.
fn measure(t: &Target, args: &Args, tls: Option<&TlsCtx>) -> Result<Measured, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], t.port));
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], t.port.wrapping_add(1)));
    let tls = if t.tls {
        Some(tls.ok_or("TLS target without TLS")?)
    } else {
        None
    };
    let target_addr = if tls.is_some() { tls_addr } else { addr };
    for a in [addr, target_addr] {
        if TcpStream::connect_timeout(&a, STEP_TIMEOUT).is_ok() {
            return Err(format!("something already listens on {a}"));
        }
    }
    let mut cmd = Command::new(&t.bin);
    cmd.arg("--addr").arg(addr.to_string());
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        cmd.arg("--tls-addr")
            .arg(tls_addr.to_string())
            .arg("--tls-cert")
            .arg(&tls.certs.chain)
            .arg("--tls-key")
            .arg(&tls.certs.key);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut server = Server(child);
    let pid = server.0.id();
    wait_listening(&mut server, target_addr)?;

    // One request first, so whatever the server sets up lazily is in the "before" figure.
    let first = open_one(target_addr, t.probe, tls, Instant::now() + STEP_TIMEOUT)
        .map_err(|e| format!("probe: {e}"))?;
    let note = first.describe();
    drop(first);
    sleep(args.settle);
    let before = vm_rss_kib(pid)?;

    let deadline = Instant::now() + OPEN_DEADLINE;
    let mut conns = Vec::with_capacity(args.conns);
    for n in 0..args.conns {
        let s =
            open_one(target_addr, t.probe, tls, deadline).map_err(|e| format!("conn {n}: {e}"))?;
        conns.push(s);
    }
    sleep(args.settle);
    let cpu_start = cpu_ms(pid)?;
    sleep(args.settle);
    let idle_cpu_ms = cpu_ms(pid)? - cpu_start;
    if let Ok(Some(status)) = server.0.try_wait() {
        return Err(format!(
            "server exited ({status}) while holding the connections"
        ));
    }
    let after = vm_rss_kib(pid)?;
    let closed = count_closed(&conns)?;
    if closed > 0 {
        return Err(format!(
            "the server closed {closed} of {} connections while they were idle",
            conns.len()
        ));
    }
    drop(conns);
    drop(server);
    Ok(Measured {
        before,
        after,
        idle_cpu_ms,
        note,
    })
}

/// User plus system CPU time of `pid` in milliseconds, from /proc/PID/stat.
fn cpu_ms(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("reading /proc/{pid}/stat: {e}"))?;
    // Fields after the command name (which may contain spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    match (ticks(11), ticks(12)) {
        // USER_HZ is 100 on Linux.
        (Some(u), Some(s)) => Ok((u + s) * 10),
        _ => Err(format!("bad /proc/{pid}/stat")),
    }
}

fn wait_listening(server: &mut Server, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!("server exited at start ({status})"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "server does not listen on {addr} after {START_DEADLINE:?}"
            ));
        }
        sleep(Duration::from_millis(50));
    }
}

/// A client connection: plain TCP or a rustls session over it.
enum IdleConn {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl IdleConn {
    fn tcp(&self) -> &TcpStream {
        match self {
            IdleConn::Plain(s) => s,
            #[cfg(feature = "tls")]
            IdleConn::Tls(s) => s.get_ref(),
        }
    }

    /// What the session negotiated (empty for plain TCP).
    fn describe(&self) -> String {
        match self {
            IdleConn::Plain(_) => String::new(),
            #[cfg(feature = "tls")]
            IdleConn::Tls(s) => format!(" tls={}", tls::describe(&s.conn)),
        }
    }
}

impl Read for IdleConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            IdleConn::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            IdleConn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for IdleConn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            IdleConn::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            IdleConn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            IdleConn::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            IdleConn::Tls(s) => s.flush(),
        }
    }
}

/// The TLS pass's certificates (in a temporary directory) and client settings.
#[cfg(feature = "tls")]
struct TlsCtx {
    certs: tls::Certs,
    client: std::sync::Arc<rustls::ClientConfig>,
}

#[cfg(feature = "tls")]
impl TlsCtx {
    fn new() -> Result<TlsCtx, String> {
        let certs = tls::Certs::temp("idle-conns")?;
        let client = tls::client_config(certs.ca_der.clone())?;
        Ok(TlsCtx { certs, client })
    }
}

/// Without the `tls` feature there is no TLS pass.
#[cfg(not(feature = "tls"))]
enum TlsCtx {}

/// A connection that has done `probe` (over TLS with `tls`) and now sits idle.
fn open_one(
    addr: SocketAddr,
    probe: Probe,
    tls: Option<&TlsCtx>,
    deadline: Instant,
) -> Result<IdleConn, String> {
    let left = || {
        let d = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_default();
        if d.is_zero() {
            Err("deadline passed".to_string())
        } else {
            Ok(d.min(STEP_TIMEOUT))
        }
    };
    let tcp = TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("connect: {e}"))?;
    tcp.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    // Also bounds the TLS handshake, which the first write drives.
    tcp.set_read_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    let mut s = match tls {
        None => IdleConn::Plain(tcp),
        #[cfg(feature = "tls")]
        Some(t) => IdleConn::Tls(Box::new(rustls::StreamOwned::new(
            tls::client_session(&t.client)?,
            tcp,
        ))),
        #[cfg(not(feature = "tls"))]
        Some(t) => match *t {},
    };
    let key = BASE64.encode(*b"pushwire-idle-16");
    let req = match probe {
        Probe::Healthz => format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        Probe::Parked(path) => format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
        Probe::WsHandshake(path) => format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
        Probe::WsDeflate(path) => format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ),
    };
    s.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    if let Probe::Parked(_) = probe {
        // Parked: nothing comes back until an event or the timeout.
        return Ok(s);
    }

    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut head_len = None;
    loop {
        if let Some(head) = head_len {
            if response_done(&buf, head, probe, &key)? {
                return Ok(s);
            }
        }
        if buf.len() >= MAX_RESPONSE {
            return Err(format!("response longer than {MAX_RESPONSE} bytes"));
        }
        s.tcp()
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let k = match s.read(&mut chunk) {
            Ok(0) => return Err("server closed the connection after the request".into()),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        buf.extend_from_slice(&chunk[..k]);
        if head_len.is_none() {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => head_len = Some(n),
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(format!("bad response head: {e}")),
            }
        }
    }
}

/// Checks the response whose head is `buf[..head]`; true once all of it is in `buf`.
fn response_done(buf: &[u8], head: usize, probe: Probe, key: &str) -> Result<bool, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    resp.parse(buf)
        .map_err(|e| format!("bad response head: {e}"))?;
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let body = &buf[head..];
    match probe {
        Probe::WsHandshake(_) | Probe::WsDeflate(_) => {
            if resp.code != Some(101) {
                return Err(format!("status {:?}, want 101", resp.code));
            }
            let mut sha = Sha1::new();
            sha.update(key.as_bytes());
            sha.update(WS_GUID.as_bytes());
            let want = BASE64.encode(sha.finalize()).to_ascii_lowercase();
            if header("sec-websocket-accept") != Some(want) {
                return Err("wrong or missing Sec-WebSocket-Accept".into());
            }
            let ext = header("sec-websocket-extensions");
            match (probe, ext) {
                (Probe::WsHandshake(_), Some(e)) => {
                    return Err(format!("an extension we did not offer: {e}"))
                }
                (Probe::WsDeflate(_), None) => {
                    return Err("permessage-deflate offered but not accepted".into())
                }
                (Probe::WsDeflate(_), Some(e)) => {
                    let params: Vec<&str> = e.split(';').map(str::trim).collect();
                    if params.first() != Some(&"permessage-deflate")
                        || !params.contains(&"server_no_context_takeover")
                        || !params.contains(&"client_no_context_takeover")
                    {
                        return Err(format!(
                            "permessage-deflate answered with context takeover or not at \
                             all: {e}"
                        ));
                    }
                }
                _ => {}
            }
            Ok(true)
        }
        Probe::Parked(_) => Err("a parked poll was answered".into()),
        Probe::Healthz => {
            if resp.code != Some(200) {
                return Err(format!("GET /healthz: status {:?}, want 200", resp.code));
            }
            if header("connection").is_some_and(|v| v.split(',').any(|t| t.trim() == "close")) {
                return Err("GET /healthz: server answered Connection: close".into());
            }
            if let Some(len) = header("content-length") {
                let len: usize = len.parse().map_err(|_| "bad Content-Length".to_string())?;
                return match body.len().cmp(&len) {
                    std::cmp::Ordering::Less => Ok(false),
                    std::cmp::Ordering::Equal => Ok(true),
                    std::cmp::Ordering::Greater => Err("bytes after the response body".into()),
                };
            }
            if header("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
                // A short body: done when the last chunk and an empty trailer have come.
                return Ok(body.ends_with(b"0\r\n\r\n"));
            }
            Err("GET /healthz: response has no length, so the connection cannot stay open".into())
        }
    }
}

/// How many of the connections the server has closed (EOF or reset is readable at once).
/// For TLS a byte may also be a record (an alert, a key update): as unexpected.
fn count_closed(conns: &[IdleConn]) -> Result<usize, String> {
    let mut closed = 0;
    let mut byte = [0u8; 1];
    for c in conns {
        let s = c.tcp();
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        match s.peek(&mut byte) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Ok(0) | Err(_) => closed += 1,
            Ok(_) => return Err("server sent bytes on an idle connection".into()),
        }
    }
    Ok(closed)
}

/// The resident set size of `pid` in KiB, from /proc/PID/status.
fn vm_rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// A global allocator that keeps the live heap bytes and, per 16-byte size class, the live
/// allocation count: what the TLS and deflate breakdowns read. It only counts (relaxed
/// atomics) and hands everything to the system allocator.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

    /// Size classes of 16 bytes up to this; larger allocations share the last class.
    pub const CLASS_LIMIT: usize = 16 * 1024;
    pub const CLASSES: usize = CLASS_LIMIT / 16 + 1;

    pub static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO: AtomicIsize = AtomicIsize::new(0);
    pub static LIVE_BY_CLASS: [AtomicIsize; CLASSES] = [ZERO; CLASSES];

    /// The class of an allocation of `size` bytes: sizes 1..=16 are class 1, 17..=32 class 2.
    pub fn class(size: usize) -> usize {
        size.div_ceil(16).min(CLASSES - 1)
    }

    fn note(size: usize, sign: isize) {
        LIVE_BYTES.fetch_add(sign * size as isize, Relaxed);
        LIVE_BY_CLASS[class(size)].fetch_add(sign, Relaxed);
    }

    pub struct Counting;

    // SAFETY: every call goes to `System` with the caller's arguments; the counters have no
    // effect on the memory handed out.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc(layout);
            if !p.is_null() {
                note(layout.size(), 1);
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = System.alloc_zeroed(layout);
            if !p.is_null() {
                note(layout.size(), 1);
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout);
            note(layout.size(), -1);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = System.realloc(ptr, layout, new_size);
            if !p.is_null() {
                note(layout.size(), -1);
                note(new_size, 1);
            }
            p
        }
    }

    /// The counters now.
    pub fn snapshot() -> (isize, Vec<isize>) {
        (
            LIVE_BYTES.load(Relaxed),
            LIVE_BY_CLASS.iter().map(|c| c.load(Relaxed)).collect(),
        )
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// What permessage-deflate state costs on the heap, measured in this process with the
/// counting allocator: the loop's shared `Codec` (once per loop) and, with context
/// takeover, a connection's own compressor and decompressor (zlib-rs allocates through
/// Rust's global allocator, flate2's `rust-allocator`, so all of it is counted).
mod deflate_state {
    use pushwire::proto::ws::deflate::{Codec, Deflater, Inflater, LEVEL};

    use super::{counting, quotes};

    fn live() -> isize {
        counting::snapshot().0
    }

    /// Takeover pairs made and averaged: each holds about 420 KB, so 100 are 42 MB.
    pub const PAIRS: usize = 100;

    /// Prints the `deflate_state` line; `n` takeover pairs are averaged.
    pub fn report(n: usize) -> Result<(), String> {
        // A 1 KiB event of quote JSON, as the hub would send it.
        let message = quotes::event(1_764_620_000_123_456, &quotes::quotes(1, 900));
        let mut packed = Vec::new();
        Deflater::new(15, LEVEL, false).compress(&message, &mut packed);
        let mut out = Vec::with_capacity(4096);

        // The loop's Codec: made empty, then one compress at 15 bits and one inflate.
        let before = live();
        let mut codec = Codec::new();
        let empty = live() - before;
        let z = codec.compress(15, &message).len();
        codec.trim();
        let after_compress = live() - before;
        codec
            .inflater()
            .inflate(&packed, 1 << 20, &mut out)
            .map_err(|e| e.to_string())?;
        if out != message {
            return Err("the codec's inflater did not give the message back".into());
        }
        let codec_bytes = live() - before;
        drop(codec);

        // Context takeover: each connection's own pair, after one message each way.
        // The vectors that keep them are made first, so their own bytes are not counted.
        let mut pairs = Vec::with_capacity(n);
        let mut scratch = Vec::with_capacity(4096);
        let (mut ds, mut is) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let before = live();
        for _ in 0..n {
            let mut d = Deflater::new(15, LEVEL, true);
            let mut i = Inflater::new(15, true);
            scratch.clear();
            d.compress(&message, &mut scratch);
            out.clear();
            i.inflate(&packed, 1 << 20, &mut out)
                .map_err(|e| e.to_string())?;
            pairs.push((Box::new(d), Box::new(i)));
        }
        let pair_bytes = (live() - before) as f64 / n as f64;
        drop(pairs);
        // The two halves on their own.
        let before = live();
        for _ in 0..n {
            let mut d = Deflater::new(15, LEVEL, true);
            scratch.clear();
            d.compress(&message, &mut scratch);
            ds.push(Box::new(d));
        }
        let deflater_bytes = (live() - before) as f64 / n as f64;
        drop(ds);
        let before = live();
        for _ in 0..n {
            let mut i = Inflater::new(15, true);
            out.clear();
            i.inflate(&packed, 1 << 20, &mut out)
                .map_err(|e| e.to_string())?;
            is.push(Box::new(i));
        }
        let inflater_bytes = (live() - before) as f64 / n as f64;
        drop(is);
        println!(
            "idle_conns deflate_state per_loop_codec_bytes={codec_bytes} \
             takeover_per_conn_bytes={pair_bytes:.0} (deflater={deflater_bytes:.0} \
             inflater={inflater_bytes:.0}, pairs={n}; codec empty={empty} \
             after_one_compress={after_compress}; message={} compressed={z} level={LEVEL} \
             window_bits=15)",
            message.len()
        );
        Ok(())
    }
}

/// What a rustls server session holds on the heap, per connection, at each step of an idle
/// TLS connection's life, measured in this process (no hub, no sockets: the records move
/// through memory). The server configuration mirrors what `ServerTls::from_pem` builds:
/// ring provider, the safe default versions, no client auth, one certificate chain, ALPN
/// `http/1.1`, rustls's defaults otherwise (TLS 1.3 tickets: 2, kept in rustls's
/// 256-entry in-memory session cache, shared by all connections).
#[cfg(feature = "tls")]
mod tls_state {
    use std::io::{Read, Write};
    use std::mem::size_of;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::Connection;

    use super::counting;
    use super::tls;

    /// How far each server session is taken before its heap is counted.
    #[derive(Clone, Copy)]
    enum Step {
        /// `ServerConnection::new` only.
        New,
        /// The handshake done and its last flight (and the tickets) sent.
        Handshake,
        /// Then one `GET /healthz` read and answered: an idle keep-alive connection.
        Request,
    }

    /// A healthz answer of about the hub's size.
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; charset=utf-8\r\n\
        content-length: 3\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\nok\n";
    const REQUEST: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    fn server_config(
        certs: &tls::Certs,
        tickets: usize,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let chain = CertificateDer::pem_file_iter(&certs.chain)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("chain: {e}"))?;
        let key = PrivateKeyDer::from_pem_file(&certs.key).map_err(|e| format!("key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.send_tls13_tickets = tickets;
        Ok(Arc::new(config))
    }

    /// Moves every record `from` has queued into `to`, processing them as they arrive.
    fn transfer(
        from: &mut Connection,
        to: &mut Connection,
        wire: &mut Vec<u8>,
    ) -> Result<(), String> {
        while from.wants_write() {
            wire.clear();
            from.write_tls(wire).map_err(|e| e.to_string())?;
            let mut rest = &wire[..];
            while !rest.is_empty() {
                to.read_tls(&mut rest).map_err(|e| e.to_string())?;
                to.process_new_packets().map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Reads all the plaintext `c` holds (a server reading a request, a client its answer).
    fn drain(c: &mut Connection) -> Result<usize, String> {
        let mut buf = [0u8; 4096];
        let mut total = 0;
        loop {
            match c.reader().read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Takes `n` server sessions to `step`, drops the clients and returns the heap bytes
    /// per server session and the per-session count of live allocations in each size class
    /// (what the sessions hold, plus 1/n of whatever is shared, e.g. the session cache).
    fn held(
        n: usize,
        server: &Arc<rustls::ServerConfig>,
        client: &Arc<rustls::ClientConfig>,
        step: Step,
        negotiated: &mut String,
    ) -> Result<(f64, Vec<f64>), String> {
        let mut wire = Vec::with_capacity(64 * 1024);
        let mut servers: Vec<Connection> = Vec::with_capacity(n);
        // The clients are made and dropped inside the window, so what they held nets out;
        // what stays is the servers' and what is shared (the session cache).
        let (bytes0, classes0) = counting::snapshot();
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(Connection::Client(tls::client_session(client)?));
        }
        for c in clients.iter_mut() {
            let mut s = Connection::Server(
                rustls::ServerConnection::new(server.clone()).map_err(|e| e.to_string())?,
            );
            if !matches!(step, Step::New) {
                let mut rounds = 0;
                while c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write()
                {
                    transfer(c, &mut s, &mut wire)?;
                    transfer(&mut s, c, &mut wire)?;
                    rounds += 1;
                    if rounds > 10 {
                        return Err("the in-memory handshake does not finish".into());
                    }
                }
                drain(c)?;
                if negotiated.is_empty() {
                    *negotiated = tls::describe(&s);
                }
            }
            if matches!(step, Step::Request) {
                c.writer().write_all(REQUEST).map_err(|e| e.to_string())?;
                transfer(c, &mut s, &mut wire)?;
                if drain(&mut s)? != REQUEST.len() {
                    return Err("the server did not read the whole request".into());
                }
                s.writer().write_all(RESPONSE).map_err(|e| e.to_string())?;
                transfer(&mut s, c, &mut wire)?;
                if drain(c)? != RESPONSE.len() {
                    return Err("the client did not read the whole answer".into());
                }
            }
            servers.push(s);
        }
        drop(clients);
        let (bytes1, classes1) = counting::snapshot();
        let per = |a: isize, b: isize| (b - a) as f64 / n as f64;
        let classes = classes0
            .iter()
            .zip(&classes1)
            .map(|(&a, &b)| per(a, b))
            .collect();
        // The sessions' own structs are in `servers`, allocated before the window.
        let bytes = per(bytes0, bytes1);
        drop(servers);
        Ok((bytes, classes))
    }

    /// `le4096x1.00 le96x2.00 ...`: the size classes that hold at least half an allocation
    /// per session, largest first.
    fn describe_classes(classes: &[f64]) -> String {
        let mut parts = Vec::new();
        for (i, &count) in classes.iter().enumerate().rev() {
            if count.abs() >= 0.5 {
                let upto = if i == counting::CLASSES - 1 {
                    format!("gt{}", counting::CLASS_LIMIT)
                } else {
                    format!("le{}", i * 16)
                };
                parts.push(format!("{upto}x{count:.2}"));
            }
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }

    /// Prints the breakdown lines.
    pub fn report(n: usize) -> Result<(), String> {
        let certs = tls::Certs::temp("tls-state")?;
        let client = tls::client_config(certs.ca_der.clone())?;
        // pushwire's `Tls` is the session, an `Option<rustls::Error>` and a bool, boxed.
        println!(
            "idle_conns tls_state size_of_connection={} size_of_server_connection={} \
             size_of_option_error={} size_of_pushwire_tls_box_approx={}",
            size_of::<Connection>(),
            size_of::<rustls::ServerConnection>(),
            size_of::<Option<rustls::Error>>(),
            size_of::<(Connection, Option<rustls::Error>, bool)>(),
        );
        use rustls::CipherSuite as S;
        // The last two: what the cipher suite changes (a client preferring AES-128-GCM, as
        // browsers do, or ChaCha20-Poly1305, whose keys are small).
        for (label, tickets, step, suite) in [
            ("new", 2, Step::New, None),
            ("handshake", 2, Step::Handshake, None),
            ("request", 2, Step::Request, None),
            ("request_no_tickets", 0, Step::Request, None),
            (
                "request_aes128",
                2,
                Step::Request,
                Some(S::TLS13_AES_128_GCM_SHA256),
            ),
            (
                "request_chacha20",
                2,
                Step::Request,
                Some(S::TLS13_CHACHA20_POLY1305_SHA256),
            ),
        ] {
            let config = server_config(&certs, tickets)?;
            let client = match suite {
                None => client.clone(),
                Some(s) => tls::client_config_offering(certs.ca_der.clone(), Some(s))?,
            };
            let mut negotiated = String::new();
            let (bytes, classes) = held(n, &config, &client, step, &mut negotiated)?;
            let tls = if negotiated.is_empty() {
                String::new()
            } else {
                format!(" tls={negotiated}")
            };
            println!(
                "idle_conns tls_state step={label} sessions={n} tls13_tickets={tickets} \
                 heap_bytes_per_session={bytes:.0} live_allocs_by_size={}{tls}",
                describe_classes(&classes)
            );
        }
        Ok(())
    }
}
