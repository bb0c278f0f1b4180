//! A WebSocket echo server: the Autobahn TestSuite's testee.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001
//! ```
//!
//! Every text and binary message comes back unchanged; messages up to 16 MiB.

use pushwire::{App, Config, ConnId, Ctx, Message, Reply, Request, Response, Server, WsAccept};

struct Echo;

impl App for Echo {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, req: &Request) -> Reply {
        if req.header("upgrade").is_some() {
            Reply::WebSocket(WsAccept::new())
        } else {
            Response::text(200, "pushwire echo: connect with a WebSocket client\n").into()
        }
    }

    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        match msg {
            Message::Text(t) => cx.send_text(conn, t),
            Message::Binary(b) => cx.send_binary(conn, b),
        };
    }
}

fn main() -> std::io::Result<()> {
    let mut addr = "127.0.0.1:9001".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = v,
            _ => {
                eprintln!("usage: echo [--addr HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    let config = Config::new()
        .ws_max_message(16 << 20)
        .ws_max_frame(16 << 20);
    let mut server = Server::bind(addr.as_str(), config, Echo)?;
    println!("pushwire echo listening on ws://{}", server.local_addr());
    server.run()
}
