//! pushwire's WebSocket client as the Autobahn TestSuite's testee: every case of the
//! fuzzing server, then its reports.
//!
//! ```text
//! ../shared/autobahn/run-client-server.sh 9001 '*' '' &     # the fuzzing server
//! cargo run --release --example autobahn_client -- ws://127.0.0.1:9001
//! ```
//!
//! It asks `/getCaseCount`, runs `/runCase?case=I&agent=pushwire` for I = 1..N one after the
//! other, echoing every text and binary message (with permessage-deflate when a case
//! offers it: the client offers it on every connection and the server's case decides),
//! then `/updateReports?agent=pushwire&shutdownOnComplete=true`, and exits. Everything
//! runs on one pushwire loop ([`Ctx::connect_ws`]); the loop's listener is unused.

use pushwire::{
    App, CloseInfo, Config, ConnId, Ctx, Message, Reply, Request, Response, Server, WsConnect,
};

const AGENT: &str = "pushwire";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Count,
    Case(u32),
    Reports,
}

struct Client {
    base: String,
    step: Step,
    cases: u32,
    conn: Option<ConnId>,
}

impl Client {
    fn url(&self) -> String {
        match self.step {
            Step::Count => format!("{}/getCaseCount", self.base),
            Step::Case(i) => format!("{}/runCase?case={i}&agent={AGENT}", self.base),
            Step::Reports => format!(
                "{}/updateReports?agent={AGENT}&shutdownOnComplete=true",
                self.base
            ),
        }
    }

    fn start(&mut self, cx: &mut Ctx<'_>) {
        let opts = WsConnect::new().max_message(64 << 20);
        match cx.connect_ws(&self.url(), &opts) {
            Ok(conn) => self.conn = Some(conn),
            Err(e) => {
                eprintln!("autobahn_client: {}: {e}", self.url());
                std::process::exit(1);
            }
        }
    }

    /// The current connection is over (closed, or never opened): on to the next step.
    fn next(&mut self, cx: &mut Ctx<'_>) {
        self.conn = None;
        self.step = match self.step {
            Step::Count if self.cases == 0 => {
                eprintln!("autobahn_client: no case count from {}", self.base);
                std::process::exit(1);
            }
            Step::Count => Step::Case(1),
            Step::Case(i) if i < self.cases => Step::Case(i + 1),
            Step::Case(_) => Step::Reports,
            Step::Reports => {
                println!("autobahn_client: {} cases run, reports written", self.cases);
                cx.stop();
                return;
            }
        };
        if let Step::Case(i) = self.step {
            if i % 50 == 0 || i == self.cases {
                println!("autobahn_client: case {i}/{}", self.cases);
            }
        }
        self.start(cx);
    }
}

impl App for Client {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Response::text(404, "autobahn client\n").into()
    }

    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: Message<'_>) {
        match (self.step, msg) {
            (Step::Count, Message::Text(t)) => {
                self.cases = t.trim().parse().unwrap_or(0);
                println!("autobahn_client: {} cases", self.cases);
            }
            (Step::Case(_), Message::Text(t)) => {
                cx.send_text(conn, t);
            }
            (Step::Case(_), Message::Binary(b)) => {
                cx.send_binary(conn, b);
            }
            _ => {}
        }
    }

    fn on_close(&mut self, cx: &mut Ctx<'_>, conn: ConnId, _info: &CloseInfo) {
        if self.conn == Some(conn) {
            self.next(cx);
        }
    }

    fn on_ws_connect_failed(&mut self, cx: &mut Ctx<'_>, conn: ConnId, url: &str, why: &str) {
        if self.conn != Some(conn) {
            return;
        }
        // wstest may drop the last connection before answering: the reports are written.
        if self.step != Step::Reports {
            eprintln!("autobahn_client: {url}: {why}");
        }
        self.next(cx);
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(base), None) = (args.next(), args.next()) else {
        eprintln!("usage: autobahn_client ws://HOST:PORT");
        std::process::exit(2);
    };
    let client = Client {
        base: base.trim_end_matches('/').to_owned(),
        step: Step::Count,
        cases: 0,
        conn: None,
    };
    let config = Config::new()
        .ws_max_frame(64 << 20)
        .ws_max_message(64 << 20)
        .stop_timeout(std::time::Duration::from_secs(1));
    let mut server = Server::bind("127.0.0.1:0", config, client)?;
    server.with_ctx(|app, cx| app.start(cx));
    server.run()
}
