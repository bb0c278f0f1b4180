//! The raw HTTP/1.1 keep-alive client the publishers, the prober and the recovery checks
//! use: one `std::net::TcpStream` per connection, prebuilt requests, responses read up to
//! their Content-Length.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One request's read or write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest response we read.
const MAX_RESPONSE: usize = 1 << 20;

pub struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Result<Conn, String> {
        let e = |e: io::Error| format!("connect {addr}: {e}");
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(e)?;
        s.set_nodelay(true).map_err(e)?;
        s.set_read_timeout(Some(IO_TIMEOUT)).map_err(e)?;
        s.set_write_timeout(Some(IO_TIMEOUT)).map_err(e)?;
        Ok(Conn {
            s,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one request (whole, prebuilt) and reads its response: status and body. The
    /// response must carry a Content-Length and nothing may follow it.
    pub fn request(&mut self, req: &[u8]) -> Result<(u16, &[u8]), String> {
        self.s.write_all(req).map_err(|e| format!("write: {e}"))?;
        self.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let n = match self.s.read(&mut chunk) {
                Ok(0) => return Err("the hub closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read: {e}")),
            };
            self.buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(head)) => {
                    let status = resp.code.unwrap_or(0);
                    let len = resp
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| {
                            std::str::from_utf8(h.value)
                                .ok()?
                                .trim()
                                .parse::<usize>()
                                .ok()
                        })
                        .ok_or("a response without Content-Length")?;
                    if self.buf.len() > head + len {
                        return Err("bytes after the response".into());
                    }
                    if self.buf.len() == head + len {
                        return Ok((status, &self.buf[head..]));
                    }
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => return Err(format!("bad response: {e}")),
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err("response too long".into());
            }
        }
    }
}

pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

pub fn post_request(topic: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST /topics/{topic} HTTP/1.1\r\nHost: bench\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut c = Conn::open(addr)?;
    let (status, body) = c
        .request(&get_request(path))
        .map_err(|e| format!("GET {path}: {e}"))?;
    Ok((status, body.to_vec()))
}
