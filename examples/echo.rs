//! A WebSocket echo server: the Autobahn TestSuite's testee.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001
//! cargo run --release --example echo -- --addr 127.0.0.1:9001 \
//!     --tls-addr 127.0.0.1:9443 --tls-cert cert.pem --tls-key key.pem
//! ```
//!
//! Every text and binary message comes back unchanged; messages up to 16 MiB. With the
//! `--tls-*` flags it also serves `wss://` on the TLS address (same loop, same code).

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
    let (mut tls_addr, mut cert, mut key) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--addr", Some(v)) => addr = v,
            ("--tls-addr", Some(v)) => tls_addr = Some(v),
            ("--tls-cert", Some(v)) => cert = Some(v),
            ("--tls-key", Some(v)) => key = Some(v),
            _ => {
                eprintln!(
                    "usage: echo [--addr HOST:PORT] [--tls-addr HOST:PORT --tls-cert FILE --tls-key FILE]"
                );
                std::process::exit(2);
            }
        }
    }
    let config = Config::new()
        .ws_max_message(16 << 20)
        .ws_max_frame(16 << 20);
    let partial = [tls_addr.is_some(), cert.is_some(), key.is_some()];
    if partial.contains(&true) && partial.contains(&false) {
        eprintln!("echo: --tls-addr, --tls-cert and --tls-key go together");
        std::process::exit(2);
    }
    let mut server = Server::bind(addr.as_str(), config, Echo)?;
    println!("pushwire echo listening on ws://{}", server.local_addr());
    if let (Some(tls_addr), Some(cert), Some(key)) = (tls_addr, cert, key) {
        listen_tls(&mut server, &tls_addr, &cert, &key)?;
    }
    server.run()
}

/// Adds the `wss://` listener.
#[cfg(feature = "tls")]
fn listen_tls(server: &mut Server<Echo>, addr: &str, cert: &str, key: &str) -> std::io::Result<()> {
    let tls = pushwire::tls::ServerTls::from_pem_files(cert, key)?;
    let bound = server.listen_tls(addr, tls)?;
    println!("pushwire echo listening on wss://{bound}");
    Ok(())
}

/// Without the `tls` feature there is no `wss://`.
#[cfg(not(feature = "tls"))]
fn listen_tls(_: &mut Server<Echo>, _: &str, _: &str, _: &str) -> std::io::Result<()> {
    Err(std::io::Error::other("built without the `tls` feature"))
}
