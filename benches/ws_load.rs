//! WebSocket echo load generator: how many round trips per second a server sustains.
//!
//! ```text
//! cargo bench -p pushwire-benches --bench ws_load -- --addr 127.0.0.1:9001 [--conns 64]
//!     [--depth 16] [--size 64] [--secs 5] [--warmup 1] [--label NAME] [--server-pid PID]
//!     [--check full|length] [--tls-ca FILE [--tls-name NAME]]
//!     [--payload bytes|json] [--deflate]
//! cargo bench -p pushwire-benches --bench ws_load -- --self-test
//! cargo bench -p pushwire-benches --bench ws_load -- --make-certs DIR
//! ```
//!
//! One thread, one mio `Poll`. Each of `--conns` connections does the RFC 6455 opening
//! handshake (checking the `101` and `Sec-WebSocket-Accept`), then keeps `--depth` binary
//! messages of `--size` bytes in flight: each echoed message that comes back is replaced by
//! a new one. Round trips completed after `--warmup` seconds, during `--secs` seconds, are
//! counted and printed as one line:
//!
//! ```text
//! ws_load target=127.0.0.1:9001 conns=64 depth=16 size=64 secs=5 msgs_per_sec=123456 ...
//! ```
//!
//! followed by the CPU share the loader used (and the server's, given `--server-pid`), so a
//! saturated loader is visible: a figure is only about the server while `loader_cpu` stays
//! well below 1. With `--server-pid` it also prints `msgs_per_server_cpu_sec`, round trips
//! per second of CPU time the server actually got: on a machine where other work competes
//! for the server's core (`server_cpu` well below 1), that figure is the steadier one.
//!
//! The loader must not be the bottleneck, so it does almost nothing per message:
//! - Client frames MUST be masked (RFC 6455 section 5.3), but the key may be anything the
//!   client likes; a fixed key lets the whole masked frame be built once, `depth + 1` copies
//!   back to back, and every send is a slice of that buffer.
//! - The echo of that frame is also known in advance (the same payload, unmasked, with the
//!   minimal length encoding section 5.2 demands of the server), so checking a reply is
//!   comparing the received bytes with it, wherever the reads happen to split them. This
//!   checks opcode, FIN, RSV bits, no mask, length and every payload byte (`--check
//!   length` skips the payload bytes, should that comparison ever show in `loader_cpu`).
//! - `--self-test` checks the frame builders and that comparison against exact bytes.
//!
//! Anything else from the server (a close, a ping, a wrong byte, EOF) is a protocol error:
//! the loader says what it saw and exits with status 1. Every wait is bounded: connects and
//! handshakes by a deadline, the run by `--warmup + --secs`.
//!
//! **TLS** (`wss://`, with the default `tls` feature): `--tls-ca FILE` makes every
//! connection a rustls client session (full handshake, no resumption, ALPN `http/1.1`)
//! that verifies the server's chain against that CA and the name `--tls-name` (default
//! `localhost`); the line then says what was negotiated (`tls=TLSv1_3/...`). The frames
//! are the same; each write hands what is owed to rustls, which makes one record of it, and
//! each read decrypts what arrived, so the loader's own work per message grows by about
//! what the server's does: watch `loader_cpu`. `--make-certs DIR` writes a CA (`ca.pem`),
//! a leaf for `localhost` and `127.0.0.1` signed by it with its CA (`chain.pem`) and the
//! leaf's key (`key.pem`), for a server's `--tls-cert`/`--tls-key`, and exits.
//!
//! **permessage-deflate** (RFC 7692): `--deflate` offers `permessage-deflate;
//! client_max_window_bits` and requires the server to accept it with
//! `server_no_context_takeover` (pushwire's default), so every message compresses alike.
//! The client compresses its message once, as RFC 7692 §7.2.1 says, with pushwire's
//! `deflate::Deflater` at `deflate::LEVEL` and the window the server allowed (reset after
//! the message, as no context takeover allows), and frames it with RSV1 and the mask
//! (`frame::write_frame`); every send is that frame, as without `--deflate`. The expected
//! echo is learned from the server: before the connections are loaded, connection 0 sends
//! the message once and reads the answer; a compressed answer (RSV1) is inflated with
//! `deflate::Inflater` and must give the message back, a plain one must be the message.
//! That frame is then what every echo is compared with, byte for byte: the server
//! inflates every message and compresses every answer, the loader does neither per
//! message. `--payload json` sends `--size` bytes of quote JSON (`benches/common/quotes.rs`)
//! instead of the byte pattern (which hardly compresses); the line then adds `deflate=..`
//! (what was agreed), `frame_bytes`/`echo_bytes` (client and server frame sizes),
//! `payload_mb_per_sec` (message bytes echoed per second, one way) and `wire_mb_per_sec`
//! (echo frame bytes per second, one way). `benches/deflate_echo.sh` runs the echo example
//! with and without it, in the same run. Not with `--tls-ca`.
//!
//! Run without `--addr` (as a bare `cargo bench` does) it prints its usage and exits 0.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream, ToSocketAddrs};
use std::process::exit;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use pushwire::proto::ws::deflate::{Deflater, Inflater, LEVEL};
use pushwire::proto::ws::extensions::{check_response, Agreed, DeflateParams};
use pushwire::proto::ws::frame::write_frame;
use pushwire::proto::ws::OpCode;
use sha1::{Digest, Sha1};

#[path = "common/quotes.rs"]
mod quotes;

#[cfg(feature = "tls")]
#[path = "common/tls.rs"]
mod tls;

const USAGE: &str = "usage: ws_load --addr HOST:PORT [--conns N] [--depth D] [--size BYTES] \
[--secs S] [--warmup S] [--label NAME] [--server-pid PID] [--check full|length] \
[--tls-ca FILE [--tls-name NAME]] [--payload bytes|json] [--deflate]\n\
       ws_load --self-test\n\
       ws_load --make-certs DIR";

/// The GUID of RFC 6455 section 1.3, appended to the key to form the accept value.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The fixed masking key of every frame we send.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Limits that keep a mistyped argument from eating the machine.
const MAX_CONNS: usize = 10_000;
const MAX_DEPTH: usize = 1024;
const MAX_SIZE: usize = 16 << 20;
const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;
const MAX_SECS: f64 = 600.0;
/// All connects and handshakes together must be done within this.
const SETUP_DEADLINE: Duration = Duration::from_secs(20);
/// The longest HTTP response head we wait for.
const MAX_HEAD: usize = 8 * 1024;

struct Args {
    addr: String,
    label: String,
    conns: usize,
    depth: usize,
    size: usize,
    secs: f64,
    warmup: f64,
    server_pid: Option<u32>,
    check_payload: bool,
    /// `wss://`: the CA to verify against, and the name.
    tls_ca: Option<String>,
    tls_name: Option<String>,
    /// Offer permessage-deflate and compress what we send.
    deflate: bool,
    /// Quote JSON instead of the byte pattern.
    json: bool,
}

fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            eprintln!("ws_load: no --addr given, nothing to load; {USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("ws_load: {e}\n{USAGE}");
            exit(2);
        }
    };
    match run(&args) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("ws_load: {} ({}): {e}", args.label, args.addr);
            exit(1);
        }
    }
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut addr = None;
    let mut label = None;
    let (mut conns, mut depth, mut size) = (64usize, 16usize, 64usize);
    let (mut secs, mut warmup) = (5.0f64, 1.0f64);
    let mut server_pid = None;
    let mut check_payload = true;
    let (mut tls_ca, mut tls_name) = (None, None);
    let (mut deflate, mut json) = (false, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to every harness-less bench.
        if flag == "--bench" {
            continue;
        }
        if flag == "--deflate" {
            deflate = true;
            continue;
        }
        if flag == "--self-test" {
            self_test();
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |_| format!("bad value for {flag}: {value:?}");
        let badf = |_| format!("bad value for {flag}: {value:?}");
        match flag.as_str() {
            "--addr" => addr = Some(value.clone()),
            "--label" => label = Some(value.clone()),
            "--conns" => conns = value.parse().map_err(bad)?,
            "--depth" => depth = value.parse().map_err(bad)?,
            "--size" => size = value.parse().map_err(bad)?,
            "--secs" => secs = value.parse().map_err(badf)?,
            "--warmup" => warmup = value.parse().map_err(badf)?,
            "--server-pid" => server_pid = Some(value.parse().map_err(bad)?),
            "--tls-ca" => tls_ca = Some(value.clone()),
            "--tls-name" => tls_name = Some(value.clone()),
            "--make-certs" => make_certs(&value),
            "--payload" => {
                json = match value.as_str() {
                    "bytes" => false,
                    "json" => true,
                    _ => return Err(format!("--payload is bytes or json, not {value:?}")),
                }
            }
            "--check" => {
                check_payload = match value.as_str() {
                    "full" => true,
                    "length" => false,
                    _ => return Err(format!("--check is full or length, not {value:?}")),
                }
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let Some(addr) = addr else { return Ok(None) };
    if tls_name.is_some() && tls_ca.is_none() {
        return Err("--tls-name goes with --tls-ca".into());
    }
    if deflate && tls_ca.is_some() {
        return Err("--deflate is not supported with --tls-ca".into());
    }
    if json && size < 2 {
        return Err("--payload json needs --size 2 or more".into());
    }
    if !(1..=MAX_CONNS).contains(&conns) {
        return Err(format!("--conns must be 1..={MAX_CONNS}"));
    }
    if !(1..=MAX_DEPTH).contains(&depth) {
        return Err(format!("--depth must be 1..={MAX_DEPTH}"));
    }
    if size > MAX_SIZE || (depth + 1) * (size + 14) > MAX_IN_FLIGHT_BYTES {
        return Err(format!(
            "--size must be at most {MAX_SIZE} and (depth+1)*size at most {MAX_IN_FLIGHT_BYTES}"
        ));
    }
    if !(secs > 0.0 && secs <= MAX_SECS && (0.0..=MAX_SECS).contains(&warmup)) {
        return Err(format!(
            "--secs must be in (0, {MAX_SECS}], --warmup in [0, {MAX_SECS}]"
        ));
    }
    Ok(Some(Args {
        label: label.unwrap_or_else(|| addr.clone()),
        addr,
        conns,
        depth,
        size,
        secs,
        warmup,
        server_pid,
        check_payload,
        tls_ca,
        tls_name,
        deflate,
        json,
    }))
}

/// One loaded connection.
struct Conn {
    sock: TcpStream,
    /// Offset, within one frame, of the next byte to send.
    tx_off: usize,
    /// Bytes still to send (whole frames owed, minus what is sent of the current one).
    tx_owed: usize,
    /// Offset, within the expected echo frame, of the next byte to receive.
    rx_off: usize,
    /// The rustls session, for `wss://`.
    #[cfg(feature = "tls")]
    tls: Option<Box<rustls::ClientConnection>>,
}

/// `--make-certs DIR`: writes the certificates and exits.
fn make_certs(dir: &str) -> ! {
    #[cfg(feature = "tls")]
    match tls::Certs::write(std::path::Path::new(dir)) {
        Ok(c) => {
            println!(
                "ws_load: wrote {} {} {}",
                c.ca.display(),
                c.chain.display(),
                c.key.display()
            );
            exit(0)
        }
        Err(e) => {
            eprintln!("ws_load: --make-certs {dir}: {e}");
            exit(1)
        }
    }
    #[cfg(not(feature = "tls"))]
    {
        eprintln!("ws_load: --make-certs {dir}: TLS unavailable: built without the `tls` feature");
        exit(2)
    }
}

/// The client side of `wss://`: settings trusting the CA, and the name to verify.
#[cfg(feature = "tls")]
struct TlsClient {
    config: std::sync::Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
}

#[cfg(feature = "tls")]
impl TlsClient {
    fn new(args: &Args) -> Result<Option<TlsClient>, String> {
        let Some(ca) = &args.tls_ca else {
            return Ok(None);
        };
        let config = tls::client_config(tls::read_ca(std::path::Path::new(ca))?)?;
        let name = args.tls_name.as_deref().unwrap_or(tls::SERVER_NAME);
        let name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|e| format!("--tls-name {name:?}: {e}"))?;
        Ok(Some(TlsClient { config, name }))
    }

    fn session(&self) -> Result<rustls::ClientConnection, String> {
        rustls::ClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| format!("rustls: {e}"))
    }
}

/// Without the `tls` feature there is no `wss://`.
#[cfg(not(feature = "tls"))]
enum TlsClient {}

#[cfg(not(feature = "tls"))]
impl TlsClient {
    fn new(args: &Args) -> Result<Option<TlsClient>, String> {
        if args.tls_ca.is_some() || args.tls_name.is_some() {
            return Err("TLS unavailable: built without the `tls` feature".into());
        }
        Ok(None)
    }
}

fn run(args: &Args) -> Result<String, String> {
    let addr = resolve(&args.addr)?;
    let payload: Vec<u8> = if args.json {
        quotes::quotes(1, args.size)
    } else {
        (0..args.size).map(|i| (i * 31 + 7) as u8).collect()
    };
    let mut frame = masked_frame(&payload, MASK);
    let mut echo = server_frame(&payload);

    let tls_client = TlsClient::new(args)?;
    let setup_deadline = Instant::now() + SETUP_DEADLINE;
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut conns = Vec::with_capacity(args.conns);
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    let mut negotiated = String::new();
    let mut agreed: Option<Agreed> = None;
    for n in 0..args.conns {
        let ((mut std_sock, early, _session), ext) = handshake(
            addr,
            &args.addr,
            n,
            tls_client.as_ref(),
            setup_deadline,
            args.deflate,
        )?;
        if !early.is_empty() {
            return Err(format!(
                "conn {n}: server sent {} bytes before any message",
                early.len()
            ));
        }
        if n == 0 && args.deflate {
            let a = ext.ok_or("the server did not accept permessage-deflate")?;
            if !a.server_no_context_takeover {
                return Err(
                    "the server keeps its compression context (no server_no_context_takeover): \
                     its echoes differ from message to message, which this loader cannot check"
                        .into(),
                );
            }
            // Compressed once, framed with RSV1 and masked; then learn the echo.
            let mut packed = Vec::new();
            Deflater::new(a.client_window_bits, LEVEL, false).compress(&payload, &mut packed);
            frame.clear();
            write_frame(&mut frame, RSV1, OpCode::Binary, Some(MASK), &packed);
            echo = probe_echo(&mut std_sock, &frame, &payload, setup_deadline)?;
            negotiated += &format!(
                " deflate=client_bits:{},server_bits:{},level:{LEVEL}",
                a.client_window_bits, a.server_window_bits
            );
            agreed = Some(a);
        } else if n > 0 && ext != agreed {
            return Err(format!(
                "conn {n}: the server agreed {ext:?}, to conn 0 {agreed:?}"
            ));
        }
        std_sock
            .set_nonblocking(true)
            .map_err(|e| format!("set_nonblocking: {e}"))?;
        let mut sock = TcpStream::from_std(std_sock);
        poll.registry()
            .register(&mut sock, Token(n), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| format!("register: {e}"))?;
        #[cfg(feature = "tls")]
        if let (Some(session), true) = (&_session, negotiated.is_empty()) {
            negotiated = format!(" tls={}", tls::describe(session));
        }
        conns.push(Conn {
            sock,
            tx_off: 0,
            tx_owed: args.depth * frame.len(),
            rx_off: 0,
            #[cfg(feature = "tls")]
            tls: _session.map(Box::new),
        });
    }

    // `depth + 1` frames back to back: any run of up to `depth` frames starting anywhere
    // within the first one is a single slice of it.
    let batch = frame.repeat(args.depth + 1);
    let flen = frame.len();
    let checked = if args.check_payload {
        echo.len()
    } else {
        header_len(&echo)
    };
    let mut events = Events::with_capacity(1024);
    let mut rbuf = vec![0u8; (256 * 1024).max(flen.min(4 << 20))];
    let mut done: u64 = 0;
    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup);
    let end = warm_end + Duration::from_secs_f64(args.secs);
    // (time, round trips, loader cpu ns, server cpu ns) when the window opened.
    let mut window: Option<(Instant, u64, Option<u64>, Option<u64>)> = None;

    // Fill every pipe before the first poll; afterwards writes follow reads and events.
    for (n, c) in conns.iter_mut().enumerate() {
        send(c, &batch, flen).map_err(|e| format!("conn {n}: write: {e}"))?;
    }
    let (t_end, done_end) = loop {
        let now = Instant::now();
        if window.is_none() && now >= warm_end {
            window = Some((now, done, cpu_ns("self"), server_cpu_ns(args.server_pid)));
        }
        if now >= end {
            break (now, done);
        }
        let next = if window.is_none() { warm_end } else { end };
        poll.poll(&mut events, Some(next - now)).or_else(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(format!("poll: {e}"))
            }
        })?;
        for ev in events.iter() {
            let n = ev.token().0;
            let Some(c) = conns.get_mut(n) else { continue };
            if ev.is_readable() {
                let frames =
                    receive(c, &mut rbuf, &echo, checked).map_err(|e| format!("conn {n}: {e}"))?;
                done += frames as u64;
                c.tx_owed += frames * flen;
            }
            if c.tx_owed > 0 {
                send(c, &batch, flen).map_err(|e| format!("conn {n}: write: {e}"))?;
            }
        }
    };
    let cpu_end = (cpu_ns("self"), server_cpu_ns(args.server_pid));

    let Some((t0, done0, lcpu0, scpu0)) = window else {
        return Err("the run ended before the measured window opened".into());
    };
    let elapsed = (t_end - t0).as_secs_f64();
    let trips = done_end - done0;
    if trips == 0 {
        return Err("no round trip completed in the measured window".into());
    }
    let share = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", (b.saturating_sub(a)) as f64 / 1e9 / elapsed),
        _ => "na".into(),
    };
    let mut line = format!(
        "ws_load target={} conns={} depth={} size={} secs={} msgs_per_sec={:.0} loader_cpu={}",
        args.label,
        args.conns,
        args.depth,
        args.size,
        args.secs,
        trips as f64 / elapsed,
        share(lcpu0, cpu_end.0),
    );
    line += &negotiated;
    if args.deflate || args.json {
        let rate = trips as f64 / elapsed;
        line += &format!(
            " payload={} frame_bytes={flen} echo_bytes={} payload_mb_per_sec={:.1} \
             wire_mb_per_sec={:.1}",
            if args.json { "json" } else { "bytes" },
            echo.len(),
            rate * args.size as f64 / 1e6,
            rate * echo.len() as f64 / 1e6
        );
    }
    if args.server_pid.is_some() {
        line += &format!(" server_cpu={}", share(scpu0, cpu_end.1));
        // Round trips per second of server CPU time: what the server gets done with the
        // CPU it had, which holds steadier than msgs_per_sec when other work shares the core.
        if let (Some(a), Some(b)) = (scpu0, cpu_end.1) {
            let cpu = b.saturating_sub(a) as f64 / 1e9;
            if cpu > 0.0 {
                line += &format!(" msgs_per_server_cpu_sec={:.0}", trips as f64 / cpu);
            }
        }
    }
    Ok(line)
}

/// RSV1 as `write_frame` takes it: a compressed message (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// Sends `frame` once on the blocking socket and reads the server's answer: the echo every
/// later answer must equal. A compressed answer must inflate to `payload`, a plain one must
/// carry it.
fn probe_echo(
    s: &mut StdStream,
    frame: &[u8],
    payload: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "probe: no answer before the setup deadline".to_string())
    };
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    s.write_all(frame)
        .map_err(|e| format!("probe: write: {e}"))?;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if got.len() >= 2 {
            let hl = header_len(&got);
            if got.len() >= hl {
                let len = match hl {
                    4 => u16::from_be_bytes([got[2], got[3]]) as usize,
                    10 => u64::from_be_bytes(got[2..10].try_into().expect("8 bytes")) as usize,
                    _ => (got[1] & 0x7f) as usize,
                };
                if len > MAX_SIZE * 2 {
                    return Err(format!("probe: a {len}-byte answer"));
                }
                if got.len() >= hl + len {
                    if got.len() > hl + len {
                        return Err("probe: more than one frame came back".into());
                    }
                    let (b0, body) = (got[0], &got[hl..]);
                    if b0 & 0x0f != 0x2 || b0 & 0x80 == 0 || got[1] & 0x80 != 0 {
                        return Err(describe_mismatch(0, b0, &server_frame(payload)));
                    }
                    let ok = if b0 & 0x40 != 0 {
                        let mut out = Vec::new();
                        Inflater::new(15, false)
                            .inflate(body, payload.len(), &mut out)
                            .map_err(|e| format!("probe: the compressed echo: {e}"))?;
                        out == payload
                    } else {
                        body == payload
                    };
                    if !ok {
                        return Err("probe: the echo is not the message".into());
                    }
                    return Ok(got);
                }
            }
        }
        s.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match s.read(&mut chunk) {
            Ok(0) => return Err("probe: the server closed the connection".into()),
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("probe: read: {e}")),
        }
    }
}

/// Writes what `c` owes until done or the socket is full.
fn send(c: &mut Conn, batch: &[u8], flen: usize) -> io::Result<()> {
    #[cfg(feature = "tls")]
    if let Some(tls) = c.tls.as_deref_mut() {
        return send_tls(tls, &mut c.sock, &mut c.tx_off, &mut c.tx_owed, batch, flen);
    }
    while c.tx_owed > 0 {
        // In bounds: tx_off < flen and tx_owed <= depth * flen, batch is (depth+1) * flen.
        let chunk = &batch[c.tx_off..c.tx_off + c.tx_owed];
        match c.sock.write(chunk) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => {
                c.tx_owed -= k;
                c.tx_off = (c.tx_off + k) % flen;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Over TLS: hands what is owed to rustls (one record per write) and writes the records
/// until done or the socket is full. Records that did not fit stay queued in rustls and go
/// first next time (a writable event).
#[cfg(feature = "tls")]
fn send_tls(
    tls: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    tx_off: &mut usize,
    tx_owed: &mut usize,
    batch: &[u8],
    flen: usize,
) -> io::Result<()> {
    loop {
        while tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if *tx_owed == 0 {
            return Ok(());
        }
        let chunk = &batch[*tx_off..*tx_off + *tx_owed];
        // Takes what fits under rustls's buffer limit; the records are written above.
        let k = tls.writer().write(chunk)?;
        *tx_owed -= k;
        *tx_off = (*tx_off + k) % flen;
    }
}

/// Reads until the socket is drained; returns how many whole echoes arrived.
fn receive(c: &mut Conn, rbuf: &mut [u8], echo: &[u8], checked: usize) -> Result<usize, String> {
    #[cfg(feature = "tls")]
    if let Some(tls) = c.tls.as_deref_mut() {
        return receive_tls(tls, &mut c.sock, &mut c.rx_off, rbuf, echo, checked);
    }
    let mut frames = 0;
    loop {
        let k = match c.sock.read(rbuf) {
            Ok(0) => return Err("server closed the connection".into()),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(frames),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        frames += check_echo(&mut c.rx_off, &rbuf[..k], echo, checked)?;
    }
}

/// Over TLS: reads the socket until it is drained, into the first half of `rbuf`, and feeds
/// rustls from there, decrypting and checking the plaintext (into the second half) after
/// each record-sized step. Reading the socket in large pieces ourselves keeps the syscalls
/// per message down: rustls's own `read_tls` from a socket reads at most 4 KiB at a time.
#[cfg(feature = "tls")]
fn receive_tls(
    tls: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    rx_off: &mut usize,
    rbuf: &mut [u8],
    echo: &[u8],
    checked: usize,
) -> Result<usize, String> {
    let (net, plain) = rbuf.split_at_mut(rbuf.len() / 2);
    let mut frames = 0;
    loop {
        let k = match sock.read(net) {
            Ok(0) => return Err("server closed the connection".into()),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(frames),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        let mut rest = &net[..k];
        while !rest.is_empty() {
            tls.read_tls(&mut rest)
                .map_err(|e| format!("tls read: {e}"))?;
            tls.process_new_packets().map_err(|e| format!("tls: {e}"))?;
            loop {
                match tls.reader().read(plain) {
                    Ok(0) => return Err("server ended the TLS session (close_notify)".into()),
                    Ok(k) => frames += check_echo(rx_off, &plain[..k], echo, checked)?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("tls read: {e}")),
                }
            }
        }
    }
}

/// Matches `data` against the expected echo frame, continuing at `*off`; returns how many
/// frames it completed. Pure, so it does not care how reads split the stream.
/// Only the first `checked` bytes of each frame are compared (the header alone with
/// `--check length`); the rest is counted.
fn check_echo(
    off: &mut usize,
    mut data: &[u8],
    echo: &[u8],
    checked: usize,
) -> Result<usize, String> {
    let mut frames = 0;
    while !data.is_empty() {
        let want = &echo[*off..];
        let k = want.len().min(data.len());
        let c = checked.saturating_sub(*off).min(k);
        if data[..c] != want[..c] {
            let at = data[..c]
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(describe_mismatch(*off + at, data[at], echo));
        }
        data = &data[k..];
        *off += k;
        if *off == echo.len() {
            *off = 0;
            frames += 1;
        }
    }
    Ok(frames)
}

fn describe_mismatch(pos: usize, got: u8, echo: &[u8]) -> String {
    if pos == 0 {
        let what = match got & 0x0f {
            0x8 => "a close frame",
            0x9 => "a ping",
            0xa => "a pong",
            0x1 => "a text frame",
            0x0 => "a continuation frame",
            0x2 if got & 0x80 == 0 => "a fragmented message",
            0x2 => "a binary frame with RSV bits set",
            _ => "a reserved opcode",
        };
        format!("expected the echo, server sent {what} (first byte {got:#04x})")
    } else if pos == 1 && got & 0x80 != 0 {
        "server frame is masked (RFC 6455 5.1: a server MUST NOT mask)".into()
    } else if pos < header_len(echo) {
        format!(
            "echo header differs at byte {pos}: got {got:#04x}, want {:#04x}",
            echo[pos]
        )
    } else {
        format!(
            "echo payload differs at frame byte {pos}: got {got:#04x}, want {:#04x}",
            echo[pos]
        )
    }
}

fn header_len(frame: &[u8]) -> usize {
    match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    }
}

/// The length field of RFC 6455 section 5.2 in its minimal form, after the first byte.
fn push_len(out: &mut Vec<u8>, mask_bit: u8, len: usize) {
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A final binary frame carrying `payload`, masked with `mask`, as a client sends it.
fn masked_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x82];
    push_len(&mut f, 0x80, payload.len());
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The same message as an echo server must send it back: unmasked.
fn server_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82];
    push_len(&mut f, 0, payload.len());
    f.extend_from_slice(payload);
    f
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr} resolves to nothing"))
}

/// What [`handshake`] leaves: the socket, bytes that followed the response head, and the
/// TLS session over the socket (`wss://`).
#[cfg(feature = "tls")]
type Opened = (StdStream, Vec<u8>, Option<rustls::ClientConnection>);
#[cfg(not(feature = "tls"))]
type Opened = (StdStream, Vec<u8>, Option<()>);

/// Connects, does the TLS handshake when `tls` is given, then the client side of the
/// opening handshake (RFC 6455 section 4.1) on a blocking socket.
fn handshake(
    addr: SocketAddr,
    host: &str,
    n: usize,
    tls: Option<&TlsClient>,
    deadline: Instant,
    deflate: bool,
) -> Result<(Opened, Option<Agreed>), String> {
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("conn {n}: setup took longer than {SETUP_DEADLINE:?}"))
    };
    let s = StdStream::connect_timeout(&addr, left()?)
        .map_err(|e| format!("conn {n}: connect {addr}: {e}"))?;
    s.set_nodelay(true)
        .map_err(|e| format!("set_nodelay: {e}"))?;
    s.set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    // The same socket, to set its read timeout while a TLS session owns the other handle.
    let ctl = s.try_clone().map_err(|e| format!("conn {n}: {e}"))?;
    match tls {
        None => {
            let mut s = s;
            let (rest, agreed) = upgrade(&mut s, &ctl, host, n, &left, deflate)?;
            Ok(((s, rest, None), agreed))
        }
        #[cfg(feature = "tls")]
        Some(t) => {
            ctl.set_read_timeout(Some(left()?))
                .map_err(|e| e.to_string())?;
            let mut stream = rustls::StreamOwned::new(t.session()?, s);
            // The first write drives the TLS handshake (bounded by the socket's timeouts).
            let (rest, _) = upgrade(&mut stream, &ctl, host, n, &left, false)?;
            let (mut session, s) = stream.into_parts();
            // Plaintext rustls decrypted but `upgrade` did not read follows the head too.
            let mut rest = rest;
            let mut more = [0u8; 1024];
            loop {
                match session.reader().read(&mut more) {
                    Ok(0) => return Err(format!("conn {n}: server ended the TLS session")),
                    Ok(k) => rest.extend_from_slice(&more[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("conn {n}: tls: {e}")),
                }
            }
            Ok(((s, rest, Some(session)), None))
        }
        #[cfg(not(feature = "tls"))]
        Some(t) => match *t {},
    }
}

/// The opening handshake over `s` (plain or TLS); `ctl` is the socket, for read timeouts.
/// Returns any bytes that followed the response head.
fn upgrade<S: Read + Write>(
    s: &mut S,
    ctl: &StdStream,
    host: &str,
    n: usize,
    left: &dyn Fn() -> Result<Duration, String>,
    deflate: bool,
) -> Result<(Vec<u8>, Option<Agreed>), String> {
    // A key that differs per connection; it need not be random for a benchmark.
    let mut raw = *b"pushwire-load-00";
    raw[12..].copy_from_slice(&(n as u32).to_be_bytes());
    let key = BASE64.encode(raw);
    let offer = if deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    s.write_all(req.as_bytes())
        .and_then(|()| s.flush())
        .map_err(|e| format!("conn {n}: sending the handshake: {e}"))?;

    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        ctl.set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        let k = match s.read(&mut chunk) {
            Ok(0) => return Err(format!("conn {n}: server closed during the handshake")),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("conn {n}: reading the handshake: {e}")),
        };
        buf.extend_from_slice(&chunk[..k]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => {
                let agreed = check_accept(&resp, &key, deflate)
                    .map_err(|e| format!("conn {n}: handshake: {e}"))?;
                return Ok((buf[head..].to_vec(), agreed));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(format!(
                    "conn {n}: response head longer than {MAX_HEAD} bytes"
                ))
            }
            Err(e) => return Err(format!("conn {n}: bad response head: {e}")),
        }
    }
}

/// Section 4.1: "If the status code received from the server is not 101, the client handles
/// the response per HTTP procedures"; the Upgrade, Connection and Sec-WebSocket-Accept
/// checks follow; we offered no subprotocol, so none may be chosen, and an extension only
/// with `deflate` (then checked against the offer by pushwire's client-side check).
fn check_accept(
    resp: &httparse::Response,
    key: &str,
    deflate: bool,
) -> Result<Option<Agreed>, String> {
    if resp.code != Some(101) {
        return Err(format!("status {:?}, want 101", resp.code));
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err("missing Upgrade: websocket".into());
    }
    if !header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) {
        return Err("missing Connection: Upgrade".into());
    }
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    let want = BASE64.encode(sha.finalize());
    match header("sec-websocket-accept") {
        Some(got) if got == want => {}
        got => return Err(format!("Sec-WebSocket-Accept {got:?}, want {want:?}")),
    }
    if header("sec-websocket-protocol").is_some() {
        return Err("server chose a sec-websocket-protocol we did not offer".into());
    }
    match (header("sec-websocket-extensions"), deflate) {
        (None, _) => Ok(None),
        (Some(e), false) => Err(format!("server chose extensions we did not offer: {e}")),
        (Some(e), true) => {
            let offered = DeflateParams {
                client_max_window_bits: Some(None),
                ..DeflateParams::default()
            };
            check_response(&e, &offered).map_err(|err| format!("{e:?}: {err}"))
        }
    }
}

/// Nanoseconds a process has run on a CPU (first field of /proc/PID/schedstat).
fn cpu_ns(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// The same for the server: summed over all its threads, so a multi-threaded server shows
/// a share above 1.
fn server_cpu_ns(pid: Option<u32>) -> Option<u64> {
    let pid = pid?;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for t in tasks.flatten() {
        let tid = t.file_name();
        total += cpu_ns(&format!("{pid}/task/{}", tid.to_string_lossy()))?;
    }
    Some(total)
}

/// `--self-test`: the frame builders and the echo checker against exact bytes, fed whole,
/// at every split point and byte by byte. Prints a count and exits (1 on any failure).
fn self_test() -> ! {
    let (mut passed, mut failed) = (0, 0);
    let mut check = |ok: bool, what: &str| {
        if ok {
            passed += 1;
        } else {
            failed += 1;
            eprintln!("self-test FAILED: {what}");
        }
    };
    // Exact frames: RFC 6455 section 5.7's masked "Hello" (key 37 fa 21 3d) and the
    // minimal length forms at their edges.
    check(
        masked_frame(b"Hello", MASK)
            == [
                0x82, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        "masked Hello",
    );
    check(server_frame(b"Hello") == b"\x82\x05Hello", "unmasked Hello");
    for (len, head) in [
        (0usize, vec![0x82u8, 0x00]),
        (125, vec![0x82, 125]),
        (126, vec![0x82, 126, 0x00, 126]),
        (65535, vec![0x82, 126, 0xff, 0xff]),
        (65536, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let f = server_frame(&vec![0; len]);
        check(
            f.starts_with(&head) && f.len() == head.len() + len,
            "length form",
        );
        check(header_len(&f) == head.len(), "header_len");
        let m = masked_frame(&vec![0; len], MASK);
        check(
            m[1] == head[1] | 0x80 && m.len() == head.len() + 4 + len,
            "masked length form",
        );
    }
    // Two echoes in one stream, however it is split, make exactly two frames.
    for len in [0usize, 1, 5, 125, 126, 300] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        let echo = server_frame(&payload);
        let stream = echo.repeat(2);
        for checked in [echo.len(), header_len(&echo)] {
            for cut in 0..=stream.len() {
                let mut off = 0;
                let a = check_echo(&mut off, &stream[..cut], &echo, checked);
                let b = check_echo(&mut off, &stream[cut..], &echo, checked);
                check(
                    matches!((a, b), (Ok(x), Ok(y)) if x + y == 2) && off == 0,
                    "split stream",
                );
            }
            let mut off = 0;
            let n: usize = stream
                .iter()
                .map(|b| {
                    check_echo(&mut off, std::slice::from_ref(b), &echo, checked).unwrap_or(99)
                })
                .sum();
            check(n == 2 && off == 0, "byte by byte");
        }
    }
    // What must be refused: a close, a ping, a masked frame, a wrong length, a wrong byte.
    let echo = server_frame(b"Hello");
    let bad: [(&[u8], &str); 6] = [
        (b"\x88\x02\x03\xe8", "close frame"),
        (b"\x89\x00", "ping"),
        (b"\x02\x05Hello", "fragmented message"),
        (b"\x82\x85\x00\x00\x00\x00Hello", "masked"),
        (b"\x82\x04Hell", "wrong length"),
        (b"\x82\x05Hellx", "wrong payload byte"),
    ];
    for (input, what) in bad {
        let mut off = 0;
        let err = check_echo(&mut off, input, &echo, echo.len());
        check(err.is_err(), what);
    }
    // With `--check length` a wrong payload byte passes, a wrong header does not.
    let mut off = 0;
    check(
        check_echo(&mut off, b"\x82\x05Hellx", &echo, 2) == Ok(1),
        "length-only payload",
    );
    check(
        check_echo(&mut off, b"\x82\x04Hell", &echo, 2).is_err(),
        "length-only header",
    );
    println!("ws_load self-test: {passed} passed, {failed} failed");
    exit(if failed == 0 { 0 } else { 1 });
}
