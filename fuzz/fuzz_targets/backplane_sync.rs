//! One topic's backplane sync driven by arbitrary Redis behaviour: subscription
//! confirmations, live messages with arbitrary ids, stream reads answered with arbitrary
//! (ascending) entries or failed, links lost. Whatever happens: it never panics, delivers
//! ids strictly ascending (each once), asks for at most one read at a time, keeps its
//! buffer within budget, and a `Live` step only ends a complete read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::backplane::sync::{Step, SyncState, TopicSync, BUFFER_BYTES};
use pushwire::proto::backplane::Announced;

fn ev(id: u64, size: usize) -> Announced {
    Announced {
        id,
        published_ms: 0,
        event: None,
        data: vec![b'x'; size],
        json: false,
    }
}

fuzz_target!(|input: &[u8]| {
    let mut s = TopicSync::new(input.first().map(|b| u64::from(*b)), 4);
    let mut out = Vec::new();
    let mut last: Option<u64> = input.first().map(|b| u64::from(*b));
    let mut read_open = false;
    let mut bytes = input.iter().skip(1).copied();
    while let Some(op) = bytes.next() {
        let arg = u64::from(bytes.next().unwrap_or(0));
        match op % 6 {
            0 => s.on_subscribed(&mut out),
            1 => s.on_message(ev(arg + 1, (op as usize) << 12), &mut out),
            2 if read_open => {
                read_open = false;
                let n = (arg % 6) as usize;
                let from = last.unwrap_or(0) + arg % 3;
                let entries = (0..n as u64).map(|k| ev(from + k + 1, 8)).collect();
                s.on_read(entries, &mut out);
            }
            3 if read_open => {
                read_open = false;
                s.on_read_failed();
            }
            // The read on the command link stays on its way.
            4 => s.on_link_down(),
            5 => s.retry(&mut out),
            _ => {}
        }
        assert!(s.buffered_bytes() <= BUFFER_BYTES);
        for step in out.drain(..) {
            match step {
                Step::Read { .. } => {
                    assert!(!read_open, "two reads at once");
                    read_open = true;
                }
                Step::Deliver(e) => {
                    assert!(last.is_none_or(|l| e.id > l), "{} after {last:?}", e.id);
                    last = Some(e.id);
                }
                Step::Live => assert_eq!(s.state(), SyncState::Live),
                Step::Create { oldest } => assert!(oldest >= 1 && last.is_none()),
            }
        }
        assert_eq!(s.last(), last);
    }
});
