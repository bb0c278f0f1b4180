//! The library API over real loopback sockets: a test application, a `Handle` used from
//! another thread, deferred answers, timers and graceful stop.

mod util;

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use pushwire::{App, CloseInfo, Config, ConnId, Ctx, Reply, Request, Response, Server, TimerId};
use util::*;

#[derive(Default)]
struct TestApp {
    later: Vec<ConnId>,
    closed: usize,
}

impl App for TestApp {
    fn on_request(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply {
        match req.path() {
            "/later" => {
                // Answer after a timer: the request waits, nothing blocks.
                self.later.push(conn);
                cx.set_timer(Duration::from_millis(50), self.later.len() as u64 - 1);
                Reply::Later
            }
            "/last" => {
                let last = cx.last_id("t");
                Response::text(200, last.to_string()).into()
            }
            "/stop" => {
                cx.stop();
                Response::text(200, "stopping").into()
            }
            _ => Response::text(404, "").into(),
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx<'_>, _t: TimerId, tag: u64) {
        let conn = self.later[tag as usize];
        assert!(cx.respond(conn, Response::text(200, format!("later {tag}"))));
        // A second answer to the same request is refused.
        assert!(!cx.respond(conn, Response::text(200, "again")));
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _info: &CloseInfo) {
        self.closed += 1;
    }
}

fn spawn(
    config: Config,
) -> (
    std::net::SocketAddr,
    pushwire::Handle,
    thread::JoinHandle<usize>,
) {
    let (tx, rx) = mpsc::channel();
    let th = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config, TestApp::default()).unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
        server.app().closed
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, th)
}

#[test]
fn handle_publishes_from_another_thread() {
    let (addr, handle, th) = spawn(Config::new());
    let last_id = |handle: &pushwire::Handle| {
        let (tx, rx) = mpsc::channel();
        assert!(handle.run(move |cx| tx.send(cx.last_id("t")).unwrap()));
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    };
    assert_eq!(last_id(&handle), 0, "an unknown topic");
    // One event first, to learn where this topic's ids start.
    assert!(handle.publish("t", None, "first"));
    let first = last_id(&handle);
    assert!(first > 0);
    let publishers: Vec<_> = (0..4)
        .map(|_| {
            let h = handle.clone();
            thread::spawn(move || {
                for i in 0..250 {
                    assert!(h.publish("t", None, &format!("m{i}")));
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    // Commands are handled in order, so a request made after they were all sent and a
    // round trip through the loop sees all 1,000, each with the next id.
    assert_eq!(last_id(&handle), first + 1000);
    assert_eq!(get(addr, "/last").text(), (first + 1000).to_string());
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| tx.send(cx.events("t", first, 2000)).unwrap());
    let page = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(!page.gap && !page.more);
    assert_eq!(page.next, first + 1000);
    let ids: Vec<u64> = page.events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (first + 1..=first + 1000).collect::<Vec<_>>());
    assert!(handle.stop());
    th.join().unwrap();
    assert!(
        !handle.publish("t", None, "after stop"),
        "a stopped server takes no commands"
    );
}

#[test]
fn later_answers_keep_pipelined_order() {
    let (addr, handle, th) = spawn(Config::new());
    let mut s = connect(addr);
    s.write_all(b"GET /later HTTP/1.1\r\nHost: t\r\n\r\nGET /last HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        read_response(&mut s, &mut buf, false).unwrap().text(),
        "later 0"
    );
    assert_eq!(read_response(&mut s, &mut buf, false).unwrap().text(), "0");
    handle.stop();
    th.join().unwrap();
}

#[test]
fn graceful_stop_flushes_and_closes_everything() {
    let (addr, _handle, th) = spawn(Config::new());
    let mut idle: Vec<_> = (0..20).map(|_| connect(addr)).collect();
    for s in idle.iter_mut() {
        s.write_all(b"GET /last HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(
            read_response(s, &mut Vec::new(), false).unwrap().status,
            200
        );
    }
    let r = get(addr, "/stop");
    assert_eq!(r.text(), "stopping");
    assert_eq!(r.header("connection"), Some("close"));
    for s in idle.iter_mut() {
        assert!(is_closed(s));
    }
    let closed = th.join().unwrap();
    assert_eq!(closed, 21, "on_close once per connection");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener is gone"
    );
}
