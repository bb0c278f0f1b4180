//! Issue 15: webhook client sockets are registered once (both directions, edge-triggered)
//! and read only what an edge announced; responses that arrive in pieces, or that take
//! several full reads, must still be read whole, on the same pooled connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::proto::webhook::{Outcome, Schedule};
use pushwire::{
    App, Config, ConnId, Ctx, Handle, Reply, Request, Response, Server, WebhookOutcome,
};

/// Records webhook outcomes.
struct HookApp(Arc<Mutex<Vec<WebhookOutcome>>>);

impl App for HookApp {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Response::text(404, "").into()
    }

    fn on_webhook(&mut self, _cx: &mut Ctx<'_>, outcome: &WebhookOutcome) {
        self.0.lock().unwrap().push(outcome.clone());
    }
}

/// A receiver answering every request with `pieces`, written `gap` apart; it counts the
/// connections it accepted.
fn receiver(pieces: Vec<Vec<u8>>, gap: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a2 = accepted.clone();
    let pieces = Arc::new(pieces);
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { break };
            a2.fetch_add(1, Ordering::SeqCst);
            let pieces = pieces.clone();
            thread::spawn(move || serve(s, &pieces, gap));
        }
    });
    (addr, accepted)
}

fn serve(mut s: TcpStream, pieces: &[Vec<u8>], gap: Duration) {
    s.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        // One request: the head, then its Content-Length body.
        let used = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut hdrs);
            if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                let len: usize = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |h| {
                        std::str::from_utf8(h.value).unwrap().parse().unwrap()
                    });
                if buf.len() >= n + len {
                    break n + len;
                }
            }
            match s.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&tmp[..k]),
            }
        };
        buf.drain(..used);
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                thread::sleep(gap);
            }
            if s.write_all(piece).is_err() {
                return;
            }
        }
    }
}

/// Runs a hub with one webhook to `addr`, publishes `n` events one at a time (at most one
/// delivery in flight), and returns the outcomes.
fn deliver(addr: SocketAddr, n: usize) -> Vec<WebhookOutcome> {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let o2 = outcomes.clone();
    let (tx, rx) = mpsc::channel::<Handle>();
    let config = Config::new()
        .webhook_allow_private(true)
        .webhook_schedule(Schedule::from_secs(&[]).unwrap())
        .webhook_max_in_flight(1);
    let t = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config, HookApp(o2)).unwrap();
        tx.send(server.handle()).unwrap();
        server.run().unwrap();
    });
    let handle = rx.recv().unwrap();
    let url = format!("http://{addr}/hook");
    let (done_tx, done_rx) = mpsc::channel();
    handle.run(move |cx| {
        cx.add_webhook("t", &url, None).unwrap();
        for i in 0..n {
            cx.publish("t", None, &format!("e{i}")).unwrap();
        }
        done_tx.send(()).unwrap();
    });
    done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while outcomes.lock().unwrap().len() < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
    t.join().unwrap();
    let got = outcomes.lock().unwrap().clone();
    got
}

fn all_delivered_first_time(outcomes: &[WebhookOutcome], n: usize) {
    assert_eq!(outcomes.len(), n, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.outcome, Outcome::Delivered { attempts: 1, .. })),
        "{outcomes:?}"
    );
}

#[test]
fn a_response_in_pieces_is_read_edge_by_edge_on_one_connection() {
    // Short reads (each piece) end a read pass; the next piece must come as a new edge.
    let pieces = ["HTTP/1.1 200 OK\r\nContent-", "Length: 2\r\n\r\n", "o", "k"];
    let pieces = pieces.iter().map(|p| p.as_bytes().to_vec()).collect();
    let (addr, accepted) = receiver(pieces, Duration::from_millis(20));
    all_delivered_first_time(&deliver(addr, 5), 5);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection is reused"
    );
}

#[test]
fn a_response_larger_than_one_read_is_read_whole_and_reused() {
    // 100 KB of body: several reads fill the whole buffer before the response ends.
    let body = vec![b'x'; 100_000];
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);
    let (addr, accepted) = receiver(vec![response], Duration::ZERO);
    all_delivered_first_time(&deliver(addr, 5), 5);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection is reused"
    );
}

#[test]
fn a_response_of_exactly_one_read_buffer_does_not_stall_the_next() {
    // Head and body filling exactly 16 KiB: the read is full, so the socket is not known
    // to be empty; the next delivery on the pooled connection must still complete.
    let head_len = "HTTP/1.1 200 OK\r\nContent-Length: 16347\r\n\r\n".len();
    let body = vec![b'y'; 16 * 1024 - head_len];
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(&body);
    assert_eq!(response.len(), 16 * 1024);
    let (addr, accepted) = receiver(vec![response], Duration::ZERO);
    all_delivered_first_time(&deliver(addr, 5), 5);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection is reused"
    );
}
