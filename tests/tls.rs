//! Issue 12: TLS on the same loop. Servers run in-process on loopback with certificates
//! from test CAs made with the `openssl` CLI (`util/certs.rs`); clients are rustls over
//! `std::net::TcpStream`, raw sockets for the bad input, and a second pushwire server as the
//! https webhook receiver.
//!
//! Nothing asserts how long something took; waits are bounded by deadlines.
#![cfg(feature = "tls")]

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::proto::server::TlsFailure;
use pushwire::proto::webhook::{verify, Outcome, Schedule, Secret, DEFAULT_TOLERANCE};
use pushwire::tls::{ClientTls, ServerTls};
use pushwire::{
    App, CloseInfo, CloseReason, Config, ConnId, Ctx, Handle, Reply, Request, Response, Server,
    WebhookOutcome, WsConnect,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

// ---- certificates ---------------------------------------------------------------------

#[path = "util/certs.rs"]
mod certs;

use certs::{Ca, Leaf};

impl Ca {
    /// A rustls client trusting only this CA.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.cert.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }
}

fn server_tls(leaf: &Leaf) -> ServerTls {
    ServerTls::from_pem(leaf.chain.as_bytes(), leaf.key.as_bytes()).unwrap()
}

// ---- the application under test -------------------------------------------------------

/// What the test app saw.
#[derive(Default)]
struct Seen {
    closes: Vec<(ConnId, CloseInfo)>,
    outcomes: Vec<WebhookOutcome>,
    /// Webhook deliveries received: (connection, verified, body, request target).
    hooks: Vec<(ConnId, bool, String, String)>,
    /// Whether each request came over TLS.
    requests: Vec<(String, bool)>,
}

/// Answers `GET /hello`, receives `POST /hook` (verifying with `secrets`), records closes
/// and webhook outcomes.
struct TestApp {
    seen: Arc<Mutex<Seen>>,
    secrets: Arc<Mutex<Vec<Secret>>>,
}

impl App for TestApp {
    fn on_request(&mut self, cx: &mut Ctx<'_>, conn: ConnId, req: &Request) -> Reply {
        let tls = cx.is_tls(conn);
        let mut seen = self.seen.lock().unwrap();
        seen.requests.push((req.path().to_owned(), tls));
        match (req.method.as_str(), req.path()) {
            ("GET", "/hello") => Response::text(200, format!("hello tls={tls}\n")).into(),
            ("POST", "/hook") => {
                let h =
                    |n: &str| String::from_utf8_lossy(req.header(n).unwrap_or(b"")).into_owned();
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let ok = verify(
                    &self.secrets.lock().unwrap(),
                    &h("webhook-id"),
                    &h("webhook-timestamp"),
                    &h("webhook-signature"),
                    &req.body,
                    now,
                    DEFAULT_TOLERANCE,
                )
                .is_ok();
                let body = String::from_utf8_lossy(&req.body).into_owned();
                seen.hooks.push((conn, ok, body, req.target.clone()));
                Response::text(200, "ok\n").into()
            }
            _ => Response::text(404, "not found\n").into(),
        }
    }

    fn on_close(&mut self, _cx: &mut Ctx<'_>, conn: ConnId, info: &CloseInfo) {
        self.seen.lock().unwrap().closes.push((conn, *info));
    }

    fn on_webhook(&mut self, _cx: &mut Ctx<'_>, outcome: &WebhookOutcome) {
        self.seen.lock().unwrap().outcomes.push(outcome.clone());
    }
}

/// A server running on its own thread: a plain and a TLS listener.
struct Running {
    plain: SocketAddr,
    tls: SocketAddr,
    handle: Handle,
    seen: Arc<Mutex<Seen>>,
    secrets: Arc<Mutex<Vec<Secret>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(config: Config, tls: ServerTls) -> Running {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let secrets = Arc::new(Mutex::new(Vec::new()));
    let app = TestApp {
        seen: seen.clone(),
        secrets: secrets.clone(),
    };
    let (tx, rx) = mpsc::channel();
    let thread = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config, app).unwrap();
        let tls_addr = server.listen_tls("127.0.0.1:0", tls).unwrap();
        tx.send((server.local_addr(), tls_addr, server.handle()))
            .unwrap();
        server.run().unwrap();
    });
    let (plain, tls, handle) = rx.recv().unwrap();
    Running {
        plain,
        tls,
        handle,
        seen,
        secrets,
        thread: Some(thread),
    }
}

impl Running {
    /// Waits until `cond` holds for what the app saw (at most `secs`).
    fn wait(&self, secs: u64, cond: impl Fn(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if cond(&self.seen.lock().unwrap()) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Registers a webhook for topic "t"; returns its secret.
    fn add_webhook(&self, url: &str) -> Result<String, String> {
        let (tx, rx) = mpsc::channel();
        let url = url.to_owned();
        self.handle.run(move |cx| {
            let r = cx.add_webhook("t", &url, None).map(|c| c.secret);
            tx.send(r.map_err(|e| e.to_string())).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    fn close_reasons(&self) -> Vec<CloseReason> {
        let seen = self.seen.lock().unwrap();
        seen.closes.iter().map(|(_, c)| c.reason).collect()
    }
}

fn config() -> Config {
    Config::new()
}

// ---- a TLS client ---------------------------------------------------------------------

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, name: &str, client: Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(client, name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends `GET path` and reads one response with a Content-Length body.
fn get(s: &mut impl ReadWrite, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    read_response(s)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn read_response(s: &mut impl Read) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut hdrs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hdrs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(&buf) {
            let len: usize = r
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap_or(0);
            let code = r.code.unwrap();
            while buf.len() < n + len {
                let k = s.read(&mut chunk).unwrap();
                assert!(k > 0, "eof inside a body");
                buf.extend_from_slice(&chunk[..k]);
            }
            return (code, String::from_utf8_lossy(&buf[n..n + len]).into_owned());
        }
        let k = s.read(&mut chunk).unwrap();
        assert!(
            k > 0,
            "eof before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..k]);
    }
}

/// Reads until EOF (or a reset), at most 10 s: everything the server sent.
fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("no end of stream: {e} (read {} bytes)", all.len()),
        }
    }
}

/// The bytes a rustls client sends first: a whole ClientHello record.
fn client_hello(ca: &Ca) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(ca.client(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// A fatal TLS alert record: content type 21, then version, length 2, level 2 (fatal).
fn is_fatal_alert(bytes: &[u8]) -> bool {
    bytes.len() >= 7 && bytes[0] == 21 && bytes[1] == 3 && bytes[3..5] == [0, 2] && bytes[5] == 2
}

// ---- serving --------------------------------------------------------------------------

#[test]
fn https_requests_on_a_kept_alive_connection_with_alpn() {
    let ca = Ca::new("pushwire test CA");
    let srv = run(config(), server_tls(&ca.localhost()));
    let mut s = tls_connect(srv.tls, "localhost", ca.client());
    for _ in 0..3 {
        assert_eq!(get(&mut s, "/hello"), (200, "hello tls=true\n".into()));
    }
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // The plain listener serves the same routes, in plaintext.
    let mut p = TcpStream::connect(srv.plain).unwrap();
    p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(get(&mut p, "/hello"), (200, "hello tls=false\n".into()));
    // An IP-literal name is verified against the IP SAN.
    let mut s = tls_connect(srv.tls, "127.0.0.1", ca.client());
    assert_eq!(get(&mut s, "/hello").0, 200);
}

#[test]
fn a_large_response_crosses_many_records() {
    // 3 MiB through the TLS writer: more than rustls buffers at once (64 KiB), so the
    // writable-interest path and the byte-exact reassembly are exercised.
    struct Big;
    impl App for Big {
        fn on_request(&mut self, _: &mut Ctx<'_>, _: ConnId, _: &Request) -> Reply {
            let body: String = (0..3 << 20)
                .map(|i| (b'a' + (i % 26) as u8) as char)
                .collect();
            Response::text(200, body).into()
        }
    }
    let ca = Ca::new("ca");
    let (tx, rx) = mpsc::channel();
    let tls = server_tls(&ca.localhost());
    thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", config(), Big).unwrap();
        tx.send((
            server.listen_tls("127.0.0.1:0", tls).unwrap(),
            server.handle(),
        ))
        .unwrap();
        server.run().unwrap();
    });
    let (addr, handle) = rx.recv().unwrap();
    let mut s = tls_connect(addr, "localhost", ca.client());
    // Read slowly at first so the server's socket fills and it must wait for writable.
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    thread::sleep(Duration::from_millis(300));
    let (code, body) = read_response(&mut s);
    assert_eq!(code, 200);
    assert_eq!(body.len(), 3 << 20);
    assert!(body
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'a' + (i % 26) as u8));
    handle.stop();
}

#[test]
fn plaintext_http_to_the_tls_port_gets_an_alert_and_is_closed() {
    let ca = Ca::new("ca");
    let srv = run(config(), server_tls(&ca.localhost()));
    let mut s = TcpStream::connect(srv.tls).unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let got = read_to_end(&mut s);
    assert!(is_fatal_alert(&got), "{got:?}");
    assert!(srv.wait(5, |s| s.closes.len() == 1));
    match srv.close_reasons()[0] {
        CloseReason::Tls(why) => {
            assert_eq!(why, TlsFailure::NotTls);
            assert!(why.to_string().contains("not TLS"), "{why}");
        }
        r => panic!("{r:?}"),
    }
    // The others are not affected.
    let mut t = tls_connect(srv.tls, "localhost", ca.client());
    assert_eq!(get(&mut t, "/hello").0, 200);
    assert!(srv.seen.lock().unwrap().requests.len() == 1);
}

#[test]
fn a_truncated_client_hello_then_eof_is_closed() {
    let ca = Ca::new("ca");
    let srv = run(config(), server_tls(&ca.localhost()));
    let hello = client_hello(&ca);
    assert_eq!(hello[0], 22, "a handshake record");
    let mut s = TcpStream::connect(srv.tls).unwrap();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_end(&mut s).is_empty(), "nothing is answered");
    assert!(srv.wait(5, |s| s.closes.len() == 1));
    assert!(srv.seen.lock().unwrap().requests.is_empty());
}

#[test]
fn a_stalled_handshake_is_closed_at_the_header_timeout() {
    let ca = Ca::new("ca");
    let srv = run(
        config().header_timeout(Duration::from_secs(1)),
        server_tls(&ca.localhost()),
    );
    let hello = client_hello(&ca);
    // One connection sends nothing at all; one stops halfway through its ClientHello.
    let mut silent = TcpStream::connect(srv.tls).unwrap();
    let mut half = TcpStream::connect(srv.tls).unwrap();
    half.write_all(&hello[..10]).unwrap();
    // Meanwhile a well-behaved client is served.
    let mut ok = tls_connect(srv.tls, "localhost", ca.client());
    assert_eq!(get(&mut ok, "/hello").0, 200);
    let started = Instant::now();
    assert!(read_to_end(&mut silent).is_empty());
    assert!(read_to_end(&mut half).is_empty());
    println!("stalled handshakes closed after {:?}", started.elapsed());
    assert!(srv.wait(5, |s| s.closes.len() >= 2));
    let reasons = srv.close_reasons();
    let timeouts = reasons
        .iter()
        .filter(|r| **r == CloseReason::HeaderTimeout)
        .count();
    assert_eq!(timeouts, 2, "{reasons:?}");
}

#[test]
fn garbage_after_the_handshake_gets_an_alert_and_is_closed() {
    let ca = Ca::new("ca");
    let srv = run(config(), server_tls(&ca.localhost()));
    let mut s = tls_connect(srv.tls, "localhost", ca.client());
    assert_eq!(get(&mut s, "/hello").0, 200);
    // An application-data record whose contents are not a valid encryption.
    let mut junk = vec![23, 3, 3, 0, 64];
    junk.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    let tcp = s.get_mut();
    tcp.write_all(&junk).unwrap();
    let got = read_to_end(tcp);
    // The alert itself is encrypted (TLS 1.3), so only its record type is visible.
    assert!(!got.is_empty() && got[0] == 23, "{got:?}");
    assert!(srv.wait(5, |s| s.closes.len() == 1));
    match srv.close_reasons()[0] {
        CloseReason::Tls(why) => assert_eq!(why, TlsFailure::Decrypt),
        r => panic!("{r:?}"),
    }
}

#[test]
fn a_tls_client_on_the_plain_port_gets_400_and_is_closed() {
    let ca = Ca::new("ca");
    let srv = run(config(), server_tls(&ca.localhost()));
    let mut s = TcpStream::connect(srv.plain).unwrap();
    s.write_all(&client_hello(&ca)).unwrap();
    let got = read_to_end(&mut s);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(srv.wait(5, |s| s.closes.len() == 1));
}

#[test]
fn many_bad_tls_connections_cost_the_good_ones_nothing() {
    let ca = Ca::new("ca");
    let srv = run(config(), server_tls(&ca.localhost()));
    let hello = client_hello(&ca);
    let mut bad = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(srv.tls).unwrap();
        match i % 3 {
            0 => s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap(),
            1 => s.write_all(&hello[..hello.len() - 1]).unwrap(),
            _ => s.write_all(&[22, 3, 1, 0xff, 0xff, 1, 0, 0]).unwrap(),
        }
        bad.push(s);
    }
    let mut ok = tls_connect(srv.tls, "localhost", ca.client());
    for _ in 0..20 {
        assert_eq!(get(&mut ok, "/hello").0, 200);
    }
    drop(bad);
    assert!(srv.wait(10, |s| s.closes.len() >= 200));
}

// ---- loading certificates -------------------------------------------------------------

#[test]
fn key_and_certificate_errors_name_the_file_and_the_cause() {
    let dir = std::env::temp_dir().join(format!("pushwire-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("ca");
    let leaf = ca.localhost();
    let other = ca.localhost();
    let w = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let (cert, key) = (w("cert.pem", &leaf.chain), w("key.pem", &leaf.key));
    let other_key = w("other-key.pem", &other.key);
    let junk = w("junk.pem", "not pem at all\n");
    let missing = dir.join("missing.pem");
    assert!(ServerTls::from_pem_files(&cert, &key).is_ok());
    let err = |c: &std::path::Path, k: &std::path::Path| {
        ServerTls::from_pem_files(c, k).unwrap_err().to_string()
    };
    let e = err(&missing, &key);
    assert!(
        e.starts_with(&missing.display().to_string()) && e.contains("No such file"),
        "{e}"
    );
    let e = err(&cert, &missing);
    assert!(e.starts_with(&missing.display().to_string()), "{e}");
    let e = err(&junk, &key);
    assert!(
        e.starts_with(&junk.display().to_string()) && e.contains("no CERTIFICATE"),
        "{e}"
    );
    let e = err(&cert, &junk);
    assert!(
        e.starts_with(&junk.display().to_string()) && e.contains("PRIVATE KEY"),
        "{e}"
    );
    // A key that is not the certificate's.
    let e = err(&cert, &other_key);
    assert!(e.starts_with(&other_key.display().to_string()), "{e}");
    assert!(e.contains("cannot be used with the certificate"), "{e}");
    // The key in the certificate file's place and the other way round.
    let e = err(&key, &cert);
    assert!(e.starts_with(&key.display().to_string()), "{e}");
    // A file over the 1 MiB cap is refused before it is parsed; one just under is read.
    let mut big = leaf.chain.clone();
    big.push_str(&"#".repeat((1 << 20) - big.len()));
    let at_cap = w("at-cap.pem", &big);
    assert!(ServerTls::from_pem_files(&at_cap, &key).is_ok());
    big.push('#');
    let over = w("over-cap.pem", &big);
    let e = err(&over, &key);
    assert!(
        e.starts_with(&over.display().to_string()) && e.contains("larger than 1 MiB"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_load_as_pkcs8_sec1_and_pkcs1() {
    // openssl writes the other two encodings of the same kinds of keys.
    let dir = std::env::temp_dir().join(format!("pushwire-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("the openssl command");
        assert!(out.status.success(), "openssl {args:?}: {:?}", out);
    };
    let conf = "[req]\ndistinguished_name=dn\n[dn]\n";
    std::fs::write(dir.join("req.cnf"), conf).unwrap();
    for (kind, keygen) in [
        (
            "sec1",
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "sec1.pem",
            ],
        ),
        (
            "pkcs1",
            vec!["genrsa", "-traditional", "-out", "pkcs1.pem", "2048"],
        ),
    ] {
        openssl(&keygen);
        let key = format!("{kind}.pem");
        let cert = format!("{kind}-cert.pem");
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            &key,
            "-out",
            &cert,
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-config",
            "req.cnf",
            "-addext",
            "subjectAltName=DNS:localhost",
        ]);
        let text = std::fs::read_to_string(dir.join(&key)).unwrap();
        let label = if kind == "sec1" {
            "EC PRIVATE KEY"
        } else {
            "RSA PRIVATE KEY"
        };
        assert!(text.contains(label), "{kind}: {text}");
        ServerTls::from_pem_files(dir.join(&cert), dir.join(&key))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    // `openssl req -newkey` (util/certs.rs) writes PKCS#8.
    let leaf = Ca::new("ca").localhost();
    assert!(leaf.key.contains("BEGIN PRIVATE KEY"));
    server_tls(&leaf);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- https webhooks -------------------------------------------------------------------

fn fast() -> Schedule {
    Schedule::from_secs(&[0.0, 0.05, 0.05]).unwrap()
}

/// A sender trusting `ca` (and the Mozilla roots), delivering to loopback, one message
/// in flight per endpoint (so they arrive in order).
fn sender(ca: &Ca) -> Running {
    let roots = ClientTls::new().add_ca_pem(ca.pem().as_bytes()).unwrap();
    let config = config()
        .webhook_allow_private(true)
        .webhook_max_in_flight(1)
        .webhook_schedule(fast())
        .webhook_tls(roots);
    // The sender's own TLS listener is not used here.
    run(config, server_tls(&ca.localhost()))
}

fn publish(h: &Handle, n: usize) {
    for i in 0..n {
        assert!(h.publish("t", None, &format!("event {i}")));
    }
}

#[test]
fn https_webhooks_are_signed_verified_and_pooled() {
    let ca = Ca::new("ca");
    let receiver = run(config(), server_tls(&ca.localhost()));
    let sender = sender(&ca);
    for url in [
        format!("https://127.0.0.1:{}/hook?by=ip", receiver.tls.port()),
        format!("https://localhost:{}/hook?by=name", receiver.tls.port()),
    ] {
        let secret = sender.add_webhook(&url).unwrap();
        receiver
            .secrets
            .lock()
            .unwrap()
            .push(Secret::parse(&secret).unwrap());
    }
    publish(&sender.handle, 20);
    assert!(sender.wait(20, |s| s.outcomes.len() == 40), "40 outcomes");
    for o in &sender.seen.lock().unwrap().outcomes {
        assert!(
            matches!(o.outcome, Outcome::Delivered { attempts: 1, .. }),
            "{o:?}"
        );
    }
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.hooks.len(), 40);
    assert!(seen.hooks.iter().all(|h| h.1), "every delivery verifies");
    assert!(seen.requests.iter().all(|(_, tls)| *tls), "all over TLS");
    let conns: std::collections::HashSet<_> = seen.hooks.iter().map(|h| h.0).collect();
    println!("40 https deliveries over {} connections", conns.len());
    assert!(
        conns.len() <= 4,
        "connections are reused: {} for 40",
        conns.len()
    );
    // In order per endpoint (one in flight at a time).
    for by in ["/hook?by=ip", "/hook?by=name"] {
        let bodies: Vec<_> = seen
            .hooks
            .iter()
            .filter(|h| h.3 == by)
            .map(|h| &h.2)
            .collect();
        assert_eq!(bodies.len(), 20, "{by}");
        for (i, b) in bodies.iter().enumerate() {
            assert!(b.contains(&format!("\"event {i}\"")), "{by} #{i}: {b}");
        }
    }
}

/// The receiver's log: what it saw, for a certificate the sender must refuse.
fn refused_delivery(leaf: Leaf, ca: &Ca, host: &str, cause: &str) {
    let receiver = run(config(), server_tls(&leaf));
    let sender = sender(ca);
    let url = format!("https://{host}:{}/hook", receiver.tls.port());
    sender.add_webhook(&url).unwrap();
    publish(&sender.handle, 1);
    assert!(sender.wait(20, |s| s.outcomes.len() == 1), "an outcome");
    match &sender.seen.lock().unwrap().outcomes[0].outcome {
        Outcome::Failed { attempts, error } => {
            assert!(error.contains(cause), "{error}");
            assert!(*attempts > 1, "retried on the schedule: {error}");
        }
        o => panic!("{o:?}"),
    }
    let seen = receiver.seen.lock().unwrap();
    assert!(seen.requests.is_empty(), "the receiver got no request");
    // The receiver saw each attempt's handshake end (on the sender's alert).
    assert!(seen.closes.len() > 1, "{:?}", seen.closes);
}

#[test]
fn an_expired_receiver_certificate_gets_nothing() {
    let ca = Ca::new("ca");
    let leaf = ca.leaf(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], true);
    refused_delivery(leaf, &ca, "localhost", "certificate expired");
}

#[test]
fn a_receiver_certificate_for_another_name_gets_nothing() {
    let ca = Ca::new("ca");
    let leaf = ca.leaf(&["other.example"], &[], false);
    refused_delivery(leaf, &ca, "localhost", "name mismatch");
    // An IP literal is checked against IP SANs: a DNS-only certificate does not match.
    let leaf = ca.leaf(&["localhost"], &[], false);
    refused_delivery(leaf, &ca, "127.0.0.1", "name mismatch");
}

#[test]
fn a_receiver_certificate_from_an_unknown_issuer_gets_nothing() {
    let trusted = Ca::new("trusted");
    let stranger = Ca::new("stranger");
    refused_delivery(
        stranger.localhost(),
        &trusted,
        "localhost",
        "unknown issuer",
    );
}

#[test]
fn a_receiver_that_never_answers_the_handshake_times_out_in_the_connect_timeout() {
    let ca = Ca::new("ca");
    // Accepts TCP and then says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h2 = held.clone();
    thread::spawn(move || {
        for s in silent.incoming().flatten() {
            h2.lock().unwrap().push(s);
        }
    });
    let roots = ClientTls::new().add_ca_pem(ca.pem().as_bytes()).unwrap();
    let config = config()
        .webhook_allow_private(true)
        .webhook_schedule(fast())
        .webhook_connect_timeout(Duration::from_millis(300))
        .webhook_tls(roots);
    let sender = run(config, server_tls(&ca.localhost()));
    sender
        .add_webhook(&format!("https://127.0.0.1:{port}/hook"))
        .unwrap();
    publish(&sender.handle, 1);
    assert!(sender.wait(20, |s| s.outcomes.len() == 1));
    let outcome = sender.seen.lock().unwrap().outcomes[0].outcome.clone();
    match &outcome {
        Outcome::Failed { attempts, error } => {
            assert!(*attempts > 1, "{error}");
            assert!(error.contains("connect timeout"), "{error}");
            assert_eq!(
                held.lock().unwrap().len(),
                *attempts as usize,
                "each attempt connected"
            );
        }
        o => panic!("{o:?}"),
    }
}

// ---- the hub's flags ------------------------------------------------------------------

/// Runs the hub with `args` and expects it to stop at once: (exit code, stderr).
fn hub_fails(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(util::example_bin("hub"))
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the hub");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_hub_refuses_bad_tls_files_naming_them() {
    let dir = std::env::temp_dir().join(format!("pushwire-hub-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let leaf = Ca::new("ca").localhost();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &leaf.chain).unwrap();
    std::fs::write(&key, &leaf.key).unwrap();
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let missing = dir.join("nope.pem");
    let missing = missing.to_str().unwrap();
    let tls = |c: &str, k: &str| {
        hub_fails(&["--tls-addr", "127.0.0.1:0", "--tls-cert", c, "--tls-key", k])
    };
    let (code, err) = tls(cert, missing);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(missing) && err.contains("No such file"),
        "{err}"
    );
    let (code, err) = tls(key, key);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(key) && err.contains("no CERTIFICATE"), "{err}");
    let (code, err) = tls(cert, cert);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(cert) && err.contains("PRIVATE KEY"), "{err}");
    let (code, err) = hub_fails(&["--tls-addr", "127.0.0.1:0", "--tls-cert", cert]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("go together"), "{err}");
    let (code, err) = hub_fails(&["--webhook-ca", missing]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--webhook-ca") && err.contains(missing),
        "{err}"
    );
    let (code, err) = hub_fails(&["--webhook-ca", key]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no CERTIFICATE"), "{err}");
    assert!(!err.contains("panicked"));
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- wss:// from pushwire's WebSocket client ------------------------------------------

/// Accepts every WebSocket and echoes its messages.
struct WsEcho;

impl App for WsEcho {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Reply::WebSocket(pushwire::WsAccept::new())
    }
    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: pushwire::Message<'_>) {
        if let pushwire::Message::Text(t) = msg {
            cx.send_text(conn, t);
        }
    }
}

/// What a dialing app saw: opened, echoed text, failures.
#[derive(Default)]
struct Dialed {
    opened: bool,
    texts: Vec<String>,
    failed: Option<String>,
    closed: Option<CloseInfo>,
}

/// Sends "hello wss" (and a compressible 10 KiB text) once open, records the echoes.
struct Dialer(Arc<Mutex<Dialed>>);

impl App for Dialer {
    fn on_request(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _req: &Request) -> Reply {
        Response::text(404, "").into()
    }
    fn on_ws_open(&mut self, cx: &mut Ctx<'_>, conn: ConnId) {
        self.0.lock().unwrap().opened = true;
        cx.send_text(conn, "hello wss");
        cx.send_text(conn, &"tls and deflate ".repeat(640));
    }
    fn on_ws_message(&mut self, cx: &mut Ctx<'_>, conn: ConnId, msg: pushwire::Message<'_>) {
        if let pushwire::Message::Text(t) = msg {
            let mut d = self.0.lock().unwrap();
            d.texts.push(t.to_owned());
            if d.texts.len() == 2 {
                cx.close_ws(conn, 1000, "done");
            }
        }
    }
    fn on_close(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, info: &CloseInfo) {
        self.0.lock().unwrap().closed = Some(*info);
    }
    fn on_ws_connect_failed(&mut self, _cx: &mut Ctx<'_>, _conn: ConnId, _url: &str, why: &str) {
        self.0.lock().unwrap().failed = Some(why.to_owned());
    }
}

/// Runs an echo server with `leaf` on TLS and dials `wss://HOST:PORT/` to it from another
/// loop trusting `ca`; returns what the dialer saw once it is done (or after 10 s).
fn dial_wss(leaf: &Leaf, ca: &Ca, host: &str) -> Dialed {
    let (tx, rx) = mpsc::channel();
    let tls = server_tls(leaf);
    let echo = thread::spawn(move || {
        let mut server = Server::bind("127.0.0.1:0", Config::new(), WsEcho).unwrap();
        let addr = server.listen_tls("127.0.0.1:0", tls).unwrap();
        tx.send((addr, server.handle())).unwrap();
        server.run().unwrap();
    });
    let (addr, echo_handle) = rx.recv().unwrap();
    let seen = Arc::new(Mutex::new(Dialed::default()));
    let client_tls = ClientTls::new()
        .without_webpki_roots()
        .add_ca_pem(ca.pem().as_bytes())
        .unwrap();
    let app = Dialer(seen.clone());
    let (tx, rx) = mpsc::channel();
    let dialer = thread::spawn(move || {
        let config = Config::new().webhook_tls(client_tls);
        let mut server = Server::bind("127.0.0.1:0", config, app).unwrap();
        tx.send(server.handle()).unwrap();
        server.run().unwrap();
    });
    let handle = rx.recv().unwrap();
    let url = format!("wss://{host}:{}/", addr.port());
    handle.connect_ws(&url, &WsConnect::new()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let d = seen.lock().unwrap();
        if d.failed.is_some() || d.closed.is_some() {
            break;
        }
        drop(d);
        thread::sleep(Duration::from_millis(20));
    }
    handle.stop();
    echo_handle.stop();
    dialer.join().unwrap();
    echo.join().unwrap();
    Arc::try_unwrap(seen)
        .ok()
        .map(|m| m.into_inner().unwrap())
        .unwrap()
}

#[test]
fn the_websocket_client_speaks_wss_verified_against_the_roots() {
    let ca = Ca::new("wss test CA");
    for host in ["127.0.0.1", "localhost"] {
        let d = dial_wss(&ca.localhost(), &ca, host);
        assert_eq!(d.failed, None, "{host}");
        assert!(d.opened);
        assert_eq!(d.texts[0], "hello wss");
        assert_eq!(d.texts[1], "tls and deflate ".repeat(640));
        let closed = d.closed.expect("closed");
        assert_eq!(closed.ws_code, Some(1000));
    }
    // A certificate for another name, or from another CA: the dial fails, naming why.
    let other = Ca::new("someone else");
    let cases = [
        (
            ca.leaf(&["example.org"], &[], false),
            &ca,
            "not valid for the host",
        ),
        (other.localhost(), &ca, "unknown issuer"),
        (
            ca.leaf(&["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)], true),
            &ca,
            "expired",
        ),
    ];
    for (leaf, trusted, cause) in cases {
        let d = dial_wss(&leaf, trusted, "localhost");
        assert!(!d.opened);
        let why = d.failed.expect("the dial failed");
        assert!(why.contains(cause), "{why:?} should say {cause:?}");
    }
}
