//! Where permessage-deflate starts to pay, and at which level: the figures behind
//! `deflate::MIN_COMPRESSED` and `deflate::LEVEL`.
//!
//! ```text
//! cargo bench -p pushwire-benches --bench deflate_threshold [-- --reps 5 --seeds 64]
//! ```
//!
//! Pure CPU work in this process, no sockets: pushwire's own `Deflater` (zlib-rs through
//! flate2), made as the server makes the loop's shared one, `Deflater::new(15, level, false)`,
//! so every `compress` starts from an empty window and ends with the reset that no context
//! takeover needs.
//!
//! **Table 0, fixed costs**: an empty and a 16-byte message compressed at windows of 9, 12
//! and 15 bits and levels 1 and `LEVEL`, flate2's `Compress::reset` alone (what each
//! message without context takeover ends with), and the inflate of a 16-byte message.
//!
//! **Table 1, small messages**: for each total message size from 16 to 256 bytes, `--seeds`
//! different messages of that size (exactly, but for a few `json` ones the escaping leaves a
//! byte or two short; sizes and compressed sizes are means), of three
//! kinds:
//!
//! - `text`: an event as the hub sends it, `{"id":1764620000123456,"event":null,"data":"..."}`
//!   (the id as the hub makes them: the clock in microseconds), the data chat-like text
//!   (`ana joined #general 4711, ...`);
//! - `json`: the same event whose data is a JSON body (quote objects, see
//!   `benches/common/quotes.rs`), escaped into the string as the hub does;
//! - `bare`: the quote JSON alone, what an application's `Ctx::send_text` would send (the
//!   only kind below the event wrapper's 46 bytes).
//!
//! Per row: the plain frame (header + payload), the raw DEFLATE size at `LEVEL` (6) and at
//! level 1 (the §7.2.1 tail removed, as sent), the bytes a compressed frame saves against
//! the plain one (header included; the server sends a message plain when compressing does
//! not shrink it, so a row never saves less than 0 per message: `shrunk` is the share of
//! messages that did), and the time per `compress` call at both levels against the time to
//! write the plain frame (`write_frame`, what every message costs anyway). Times are the
//! median of `--reps` repetitions, in CPU time of the thread (`CLOCK_THREAD_CPUTIME_ID`),
//! so time the shared machine gave to other processes is not counted.
//!
//! **Table 2, large messages**: 1 KiB and 64 KiB of quote JSON (and the 1 KiB as the hub's
//! escaped event), at levels 1, 3, 6 and 9: compressed size, ratio, compress and inflate
//! throughput (MB/s of uncompressed bytes, median of `--reps`).
//!
//! Then `deflate_threshold verdict ...` lines: the smallest size from which on every kind's
//! mean saving at `LEVEL` reaches 5 %, 10 % and 20 % of the frame, and level 1 against
//! `LEVEL` at 1 KiB and 64 KiB (bytes and speed). `benches/DEFLATE-FIGURES.md` has a run.

use std::hint::black_box;
use std::process::exit;

use pushwire::proto::ws::deflate::{Deflater, Inflater, LEVEL, MIN_COMPRESSED};
use pushwire::proto::ws::frame::write_frame;
use pushwire::proto::ws::OpCode;

#[path = "common/quotes.rs"]
mod quotes;

/// A hub-like event id: the clock in microseconds.
const ID: u64 = 1_764_620_000_123_456;
const SIZES: [usize; 17] = [
    16, 24, 32, 40, 48, 56, 64, 72, 80, 96, 112, 128, 144, 160, 192, 224, 256,
];
/// Work per timed repetition: about this many input bytes, within the call bounds below.
const REP_BYTES: usize = 2 << 20;
const MIN_CALLS: usize = 64;
const MAX_CALLS: usize = 20_000;

struct Args {
    reps: usize,
    seeds: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args { reps: 5, seeds: 64 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: usize = value
            .parse()
            .map_err(|_| format!("bad value for {flag}: {value:?}"))?;
        match flag.as_str() {
            "--reps" if (1..=51).contains(&n) => a.reps = n,
            "--seeds" if (1..=1024).contains(&n) => a.seeds = n,
            _ => return Err(format!("bad argument {flag} {value}")),
        }
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("deflate_threshold: {e}\nusage: deflate_threshold [--reps N] [--seeds N]");
            exit(2);
        }
    };
    println!(
        "deflate_threshold LEVEL={LEVEL} MIN_COMPRESSED={MIN_COMPRESSED} window_bits=15 \
         seeds={} reps={} (sizes in bytes, times in ns per call, medians)",
        args.seeds, args.reps
    );
    fixed_costs(&args);
    let rows = small_table(&args);
    let large = large_table(&args);
    println!();
    for share in [0.05, 0.10, 0.20] {
        match threshold(&rows, share) {
            Some((size, kind)) => println!(
                "deflate_threshold verdict: from {size} bytes on every kind saves >= {:.0}% \
                 of the frame at level {LEVEL} (the least at {size}: {kind}); \
                 MIN_COMPRESSED={MIN_COMPRESSED}",
                share * 100.0
            ),
            None => println!(
                "deflate_threshold verdict: no size up to 256 from which on every kind \
                 saves {:.0}%",
                share * 100.0
            ),
        }
    }
    for (name, l1, l6) in large {
        println!(
            "deflate_threshold verdict {name}: level 1 makes {:.3}x the bytes of level \
             {LEVEL} and compresses {:.2}x as fast",
            l1.out as f64 / l6.out as f64,
            l1.mbps / l6.mbps
        );
    }
}

/// CPU time of the calling thread in ns: unlike the wall clock it does not count the time
/// other processes had the core (the machine these run on is shared).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The median of `reps` timings (thread CPU time) of `f` run `calls` times, per call, in ns.
fn time_per_call(reps: usize, calls: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut per = Vec::with_capacity(reps);
    // One untimed pass first: caches, the allocator, the lazy parts of zlib-rs.
    for i in 0..calls.min(256) {
        f(i);
    }
    for _ in 0..reps {
        let t = thread_cpu_ns();
        for i in 0..calls {
            f(i);
        }
        per.push((thread_cpu_ns() - t) as f64 / calls as f64);
    }
    per.sort_by(|a, b| a.total_cmp(b));
    per[per.len() / 2]
}

fn calls_for(size: usize) -> usize {
    (REP_BYTES / size.max(1)).clamp(MIN_CALLS, MAX_CALLS)
}

/// A frame header's length for a server frame of `len` payload bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// `total` bytes of message of `kind` from `seed` (as close as the escaping allows).
fn message(kind: &str, seed: u64, total: usize) -> Option<Vec<u8>> {
    let overhead = quotes::event_overhead(ID);
    match kind {
        "bare" => Some(quotes::quotes(seed, total)),
        "text" if total >= overhead + 2 => {
            Some(quotes::event(ID, &quotes::text(seed, total - overhead)))
        }
        "json" if total >= overhead + 2 => {
            // The longest JSON whose escaped form fits, exact in nearly every case.
            let room = total - overhead;
            (2..=room)
                .rev()
                .map(|l| quotes::quotes(seed, l))
                .find(|d| quotes::escape(d).len() <= room)
                .map(|d| quotes::event(ID, &d))
        }
        _ => None,
    }
}

fn compress_len(d: &mut Deflater, m: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    d.compress(m, out);
    out.len()
}

/// Table 0: what a compress and an inflate cost whatever the message, mostly the reset that
/// no context takeover does after each message (zlib-rs clears its hash table).
fn fixed_costs(args: &Args) {
    println!();
    println!(
        "{:<30} {:>5} {:>5} {:>8}",
        "fixed cost per call", "bits", "level", "ns"
    );
    let mut out = Vec::with_capacity(1024);
    let tiny = quotes::quotes(7, 16);
    for bits in [9u8, 12, 15] {
        for level in [1u32, LEVEL] {
            let mut d = Deflater::new(bits, level, false);
            let ns = time_per_call(args.reps, 20_000, |_| {
                out.clear();
                d.compress(black_box(b""), &mut out);
                black_box(&out);
            });
            println!(
                "{:<30} {bits:>5} {level:>5} {ns:>8.0}",
                "compress(empty message)"
            );
            let ns = time_per_call(args.reps, 20_000, |_| {
                out.clear();
                d.compress(black_box(&tiny), &mut out);
                black_box(&out);
            });
            println!(
                "{:<30} {bits:>5} {level:>5} {ns:>8.0}",
                "compress(16-byte message)"
            );
            let mut c = flate2::Compress::new_with_window_bits(
                flate2::Compression::new(level),
                false,
                bits,
            );
            let ns = time_per_call(args.reps, 20_000, |_| {
                c.reset();
                black_box(&c);
            });
            println!(
                "{:<30} {bits:>5} {level:>5} {ns:>8.0}",
                "flate2 Compress::reset alone"
            );
        }
    }
    let mut inf = Inflater::new(15, false);
    let mut packed = Vec::new();
    Deflater::new(15, LEVEL, false).compress(&tiny, &mut packed);
    let ns = time_per_call(args.reps, 20_000, |_| {
        out.clear();
        inf.inflate(black_box(&packed), 1 << 20, &mut out)
            .expect("inflates");
        black_box(&out);
    });
    println!(
        "{:<30} {:>5} {:>5} {ns:>8.0}",
        "inflate(16-byte message)", 15, "-"
    );
}

/// One row of table 1.
struct Row {
    kind: &'static str,
    total: usize,
    /// Mean saving at `LEVEL` as a share of the plain frame.
    saved6_share: f64,
}

fn small_table(args: &Args) -> Vec<Row> {
    println!();
    println!(
        "{:<5} {:>5} {:>6} {:>6} {:>6} {:>11} {:>11} {:>7} {:>8} {:>8} {:>8}",
        "kind",
        "total",
        "frame",
        "z6",
        "z1",
        "saved6",
        "saved1",
        "shrunk6",
        "ns6",
        "ns1",
        "frame_ns"
    );
    let mut rows = Vec::new();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut back = Vec::with_capacity(64 * 1024);
    let mut d6 = Deflater::new(15, LEVEL, false);
    let mut d1 = Deflater::new(15, 1, false);
    let mut inf = Inflater::new(15, false);
    for kind in ["bare", "text", "json"] {
        for &total in &SIZES {
            let msgs: Vec<Vec<u8>> = (0..args.seeds as u64)
                .filter_map(|s| message(kind, 1000 + s, total))
                .collect();
            if msgs.is_empty() {
                continue;
            }
            let n = msgs.len() as f64;
            let raw: f64 = msgs.iter().map(|m| m.len() as f64).sum::<f64>() / n;
            let frame_of = |len: usize| (header_len(len) + len) as f64;
            let plain: f64 = msgs.iter().map(|m| frame_of(m.len())).sum::<f64>() / n;
            let (mut z6, mut z1, mut s6, mut s1, mut shrunk6) = (0.0, 0.0, 0.0, 0.0, 0);
            for m in &msgs {
                let a = compress_len(&mut d6, m, &mut out);
                // Every message inflates back (the measured bytes are real DEFLATE).
                back.clear();
                inf.inflate(&out, m.len(), &mut back)
                    .expect("inflates back");
                assert_eq!(&back, m, "round trip");
                let b = compress_len(&mut d1, m, &mut out);
                z6 += a as f64;
                z1 += b as f64;
                let pf = frame_of(m.len());
                // The server sends it plain when compressing does not shrink the payload.
                let saved = |z: usize| if z < m.len() { pf - frame_of(z) } else { 0.0 };
                s6 += saved(a);
                s1 += saved(b);
                shrunk6 += usize::from(a < m.len());
            }
            let (z6, z1, s6, s1) = (z6 / n, z1 / n, s6 / n, s1 / n);
            let calls = calls_for(total);
            let k = msgs.len();
            let ns6 = time_per_call(args.reps, calls, |i| {
                out.clear();
                d6.compress(black_box(&msgs[i % k]), &mut out);
                black_box(&out);
            });
            let ns1 = time_per_call(args.reps, calls, |i| {
                out.clear();
                d1.compress(black_box(&msgs[i % k]), &mut out);
                black_box(&out);
            });
            let frame_ns = time_per_call(args.reps, calls, |i| {
                out.clear();
                write_frame(&mut out, 0, OpCode::Text, None, black_box(&msgs[i % k]));
                black_box(&out);
            });
            println!(
                "{kind:<5} {raw:>5.0} {plain:>6.1} {z6:>6.1} {z1:>6.1} {:>11} {:>11} {:>6.0}% \
                 {ns6:>8.0} {ns1:>8.0} {frame_ns:>8.1}",
                format!("{s6:.1}/{:.0}%", 100.0 * s6 / plain),
                format!("{s1:.1}/{:.0}%", 100.0 * s1 / plain),
                100.0 * shrunk6 as f64 / n,
            );
            rows.push(Row {
                kind,
                total,
                saved6_share: s6 / plain,
            });
        }
    }
    rows
}

/// The smallest size from which on every kind saves at least `share` of the frame at
/// `LEVEL`, and the kind that got there last.
fn threshold(rows: &[Row], share: f64) -> Option<(usize, &'static str)> {
    let ok = |total: usize| {
        rows.iter()
            .filter(|r| r.total == total)
            .all(|r| r.saved6_share >= share)
    };
    let start = (0..SIZES.len()).find(|&i| SIZES[i..].iter().all(|&s| ok(s)))?;
    let total = SIZES[start];
    let last = rows
        .iter()
        .filter(|r| r.total == total)
        .min_by(|a, b| a.saved6_share.total_cmp(&b.saved6_share))
        .map(|r| r.kind)?;
    Some((total, last))
}

struct Large {
    out: usize,
    mbps: f64,
}

/// Table 2; returns, per message, (name, level 1, LEVEL).
fn large_table(args: &Args) -> Vec<(String, Large, Large)> {
    println!();
    println!(
        "{:<13} {:>5} {:>7} {:>7} {:>6} {:>11} {:>11} {:>9}",
        "message", "level", "in", "out", "ratio", "deflate_MBs", "inflate_MBs", "us/msg"
    );
    let seeds = args.seeds.min(16) as u64;
    let cases: Vec<(String, Vec<Vec<u8>>)> = vec![
        (
            "quotes-1KiB".into(),
            (0..seeds).map(|s| quotes::quotes(s, 1024)).collect(),
        ),
        (
            "event-1KiB".into(),
            (0..seeds)
                .filter_map(|s| message("json", s, 1024))
                .collect(),
        ),
        (
            "quotes-64KiB".into(),
            (0..seeds).map(|s| quotes::quotes(s, 64 * 1024)).collect(),
        ),
    ];
    let mut verdicts = Vec::new();
    let mut out = Vec::with_capacity(128 * 1024);
    let mut back = Vec::with_capacity(128 * 1024);
    for (name, msgs) in &cases {
        let n = msgs.len();
        let in_len = msgs.iter().map(Vec::len).sum::<usize>() / n;
        let mut by_level = Vec::new();
        let mut levels = vec![1u32, 3, 6, 9];
        if !levels.contains(&LEVEL) {
            levels.push(LEVEL);
        }
        for level in levels {
            let mut d = Deflater::new(15, level, false);
            let packed: Vec<Vec<u8>> = msgs
                .iter()
                .map(|m| {
                    let mut o = Vec::new();
                    d.compress(m, &mut o);
                    o
                })
                .collect();
            let out_len = packed.iter().map(Vec::len).sum::<usize>() / n;
            let calls = calls_for(in_len);
            let ns = time_per_call(args.reps, calls, |i| {
                out.clear();
                d.compress(black_box(&msgs[i % n]), &mut out);
                black_box(&out);
            });
            let mut inf = Inflater::new(15, false);
            for (p, m) in packed.iter().zip(msgs) {
                back.clear();
                inf.inflate(p, m.len(), &mut back).expect("inflates");
                assert_eq!(&back, m, "round trip");
            }
            let ins = time_per_call(args.reps, calls, |i| {
                back.clear();
                inf.inflate(black_box(&packed[i % n]), 1 << 20, &mut back)
                    .expect("inflates");
                black_box(&back);
            });
            let mbps = in_len as f64 / ns * 1e3;
            println!(
                "{name:<13} {level:>5} {in_len:>7} {out_len:>7} {:>6.3} {mbps:>11.1} {:>11.1} {:>9.2}",
                out_len as f64 / in_len as f64,
                in_len as f64 / ins * 1e3,
                ns / 1e3
            );
            by_level.push((level, Large { out: out_len, mbps }));
        }
        let take = |lv: u32| {
            let (_, l) = by_level.iter().find(|(l, _)| *l == lv).expect("measured");
            Large {
                out: l.out,
                mbps: l.mbps,
            }
        };
        verdicts.push((name.clone(), take(1), take(LEVEL)));
    }
    verdicts
}
