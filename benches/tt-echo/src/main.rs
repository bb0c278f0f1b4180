//! Baseline WebSocket echo server for `benches/compare.sh`: tokio + tokio-tungstenite on a
//! `current_thread` runtime, so it competes on one core like pushwire's single-threaded loop.
//!
//! `tt-echo --addr HOST:PORT` echoes every text and binary message unchanged (messages up to
//! 16 MiB, no compression). Pings are answered and closes echoed by tungstenite itself.
//! Written the way the tokio-tungstenite examples write an echo server: the read half is
//! forwarded into the write half, which flushes whenever no further input is ready.

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The largest message (and frame) accepted, as in pushwire's echo example.
const MAX_MESSAGE: usize = 16 << 20;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = parse_addr();
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tt-echo: cannot bind {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("tt-echo: listening on {addr}");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream));
            }
            // Out of fds and the like: keep serving the connections we have.
            Err(e) => {
                eprintln!("tt-echo: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve(stream: TcpStream) {
    // Echo is latency-bound per message; do not let Nagle hold small replies back.
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    let (write, read) = ws.split();
    // Errors (peer vanished, protocol fault) just end this connection.
    let _ = read
        .try_filter(|msg| future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

fn parse_addr() -> String {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next(),
            _ => {
                eprintln!("usage: tt-echo --addr HOST:PORT");
                std::process::exit(2);
            }
        }
    }
    addr.unwrap_or_else(|| {
        eprintln!("usage: tt-echo --addr HOST:PORT");
        std::process::exit(2);
    })
}
