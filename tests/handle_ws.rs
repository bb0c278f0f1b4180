//! A `Handle` on another thread drives WebSocket connections: text, binary, ping, close.

mod util;

use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::{App, CloseInfo, Config, ConnId, Ctx, Reply, Request, Server, WsAccept};
use util::*;

struct Opened {
    ids: Arc<Mutex<Vec<ConnId>>>,
    closed: Arc<Mutex<Vec<Option<u16>>>>,
}

impl App for Opened {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Reply::WebSocket(WsAccept::new())
    }
    fn on_ws_open(&mut self, _cx: &mut Ctx<'_>, conn: ConnId) {
        self.ids.lock().unwrap().push(conn);
    }
    fn on_close(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, info: &CloseInfo) {
        self.closed.lock().unwrap().push(info.ws_code);
    }
}

#[test]
fn handle_sends_pings_and_closes_websockets() {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let closed = Arc::new(Mutex::new(Vec::new()));
    let (i2, c2) = (ids.clone(), closed.clone());
    let (tx, rx) = mpsc::channel();
    let th = thread::spawn(move || {
        let mut server = Server::bind(
            "127.0.0.1:0",
            Config::new(),
            Opened {
                ids: i2,
                closed: c2,
            },
        )
        .unwrap();
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    let mut c = WsClient::open(addr, "/", "");
    let deadline = Instant::now() + Duration::from_secs(5);
    while ids.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    let id = ids.lock().unwrap()[0];
    // A code that may not be sent is refused, and nothing is sent.
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| tx.send(cx.close_ws(id, 1005, "")).unwrap());
    assert!(!rx.recv().unwrap());
    let h = handle.clone();
    thread::spawn(move || {
        assert!(h.send_text(id, "from another thread"));
        assert!(h.send_binary(id, &[0, 1, 2]));
        assert!(h.ping(id, b"you there?"));
        assert!(h.close_ws(id, 4000, "bye"));
    })
    .join()
    .unwrap();
    assert_eq!(
        c.recv().unwrap(),
        WsFrame {
            fin: true,
            opcode: 1,
            payload: b"from another thread".to_vec()
        }
    );
    assert_eq!(
        c.recv().unwrap(),
        WsFrame {
            fin: true,
            opcode: 2,
            payload: vec![0, 1, 2]
        }
    );
    assert_eq!(
        c.recv().unwrap(),
        WsFrame {
            fin: true,
            opcode: 9,
            payload: b"you there?".to_vec()
        }
    );
    let close = c.recv().unwrap();
    assert_eq!(close.opcode, 8);
    assert_eq!(&close.payload[..2], &4000u16.to_be_bytes());
    assert_eq!(&close.payload[2..], b"bye");
    // Answer the close: the server then closes TCP and reports the code.
    c.send_frame(true, 8, &4000u16.to_be_bytes());
    assert!(is_closed(&mut c.s));
    let deadline = Instant::now() + Duration::from_secs(5);
    while closed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline);
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*closed.lock().unwrap(), vec![Some(4000)]);
    // Sending to a closed connection is refused quietly (the id refers to nothing now).
    let (tx, rx) = mpsc::channel();
    handle.run(move |cx| tx.send(cx.send_text(id, "late")).unwrap());
    assert!(!rx.recv().unwrap());
    handle.stop();
    th.join().unwrap();
}
