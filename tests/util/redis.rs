//! A real `redis-server` for the loopback tests (Debian's package; each test starts its own
//! on a free port, in its own directory), and a tiny client to ask it things.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use pushwire::proto::resp::{Command, Limits, Parser, Value};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// The longest any wait for the server may take.
const WAIT: Duration = Duration::from_secs(15);

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A `redis-server` of its own on 127.0.0.1, killed (and its directory removed) on drop.
/// Without `aof` nothing is persisted (a restart loses everything); with it every write is
/// in the append-only file before Redis answers (`--appendfsync always`).
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    aof: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    pub fn start_with(aof: bool) -> RedisServer {
        assert!(
            Path::new(REDIS_SERVER).is_file(),
            "{REDIS_SERVER} is missing: these tests need a real Redis (install Debian's \
             redis-server package: `apt-get install redis-server`; CI does)"
        );
        let n: u64 = rand::random();
        let dir = std::env::temp_dir().join(format!("pushwire-bp-redis-{n:x}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut s = RedisServer {
            child: None,
            port: free_port(),
            dir,
            aof,
        };
        s.restart();
        s
    }

    /// Starts the server (again) on its port and waits until it answers `PING`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is running");
        let mut cmd = Process::new(REDIS_SERVER);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"]);
        if self.aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().expect("redis-server runs"));
        let end = Instant::now() + WAIT;
        loop {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            assert!(exited.is_none(), "redis-server exited: {exited:?}");
            if let Ok(v) = self.try_cmd(&["PING"]) {
                if v.as_bytes() == Some(b"PONG") {
                    return;
                }
            }
            assert!(Instant::now() < end, "redis-server does not answer PING");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no shutdown save, connections reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// One command on a connection of its own; its reply.
    pub fn try_cmd(&self, args: &[&str]) -> Result<Value, String> {
        let mut s = TcpStream::connect(self.addr()).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut cmd = Command::new(args[0]);
        for a in &args[1..] {
            cmd.push(a);
        }
        s.write_all(&cmd.to_bytes()).map_err(|e| e.to_string())?;
        let mut parser = Parser::new(Limits::default());
        let mut buf = Vec::new();
        let mut tmp = [0u8; 16384];
        loop {
            let (used, v) = parser.advance(&buf).map_err(|e| format!("{e:?}"))?;
            buf.drain(..used);
            if let Some(v) = v {
                return Ok(v);
            }
            match s.read(&mut tmp) {
                Ok(0) => return Err("redis closed the connection".into()),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Value {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    pub fn int(&self, args: &[&str]) -> i64 {
        let v = self.cmd(args);
        v.as_integer()
            .unwrap_or_else(|| panic!("redis {args:?}: not an integer: {v:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
