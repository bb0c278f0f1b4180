//! Hub processes: starting the hub binary on a free loopback port (pinned to a core with
//! `DURBENCH_PIN=1`), waiting for its "listening on" line and timing it, killing it
//! (SIGKILL) when its `Hub` is dropped, and finding out whether the build knows
//! `--data-dir`.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Cfg, Mode};

/// A hub must print its "listening on" line within this (recovery of 1M events included).
const START_DEADLINE: Duration = Duration::from_secs(120);

/// A running hub, killed (SIGKILL) when dropped.
pub struct Hub {
    child: Child,
    pub addr: SocketAddr,
}

impl Hub {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub enum StartError {
    /// The hub exited before listening.
    Exited(ExitStatus, String),
    Other(String),
}

impl StartError {
    pub fn text(self) -> String {
        match self {
            StartError::Exited(status, log) => {
                format!("the hub exited at start ({status}); its stderr ends with:\n{log}")
            }
            StartError::Other(e) => e,
        }
    }
}

/// The last few lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

pub struct Ports(pub u16);

impl Ports {
    /// The next port nothing listens on.
    pub fn next(&mut self) -> Result<SocketAddr, String> {
        for _ in 0..100 {
            let addr = SocketAddr::from(([127, 0, 0, 1], self.0));
            self.0 = self.0.wrapping_add(1).max(1024);
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                return Ok(addr);
            }
        }
        Err("no free port found".into())
    }
}

/// Starts the hub with `args` on `addr` and waits for its "listening on" line; returns
/// the hub and the time from spawn to that line.
pub fn start_hub(
    cfg: &Cfg,
    addr: SocketAddr,
    args: &[String],
    log: &Path,
) -> Result<(Hub, Duration), StartError> {
    let log_file =
        File::create(log).map_err(|e| StartError::Other(format!("{}: {e}", log.display())))?;
    let mut cmd = Command::new(&cfg.hub);
    cmd.arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file);
    if let Some(cpu) = cfg.hub_cpu {
        // SAFETY: sched_setaffinity is async-signal-safe; the set lives on this stack.
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| StartError::Other(format!("cannot start {}: {e}", cfg.hub.display())))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let lines = stdout_lines(stdout);
    let mut hub = Hub { child, addr };
    let deadline = t0 + START_DEADLINE;
    loop {
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) if line.contains("listening on") => return Ok((hub, t0.elapsed())),
            Ok(_) => {}
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed: the hub is exiting; give it a moment to be reaped.
                let status = hub
                    .child
                    .wait()
                    .map_err(|e| StartError::Other(e.to_string()))?;
                return Err(StartError::Exited(status, log_tail(log)));
            }
        }
        if let Ok(Some(status)) = hub.child.try_wait() {
            return Err(StartError::Exited(status, log_tail(log)));
        }
        if Instant::now() >= deadline {
            return Err(StartError::Other(format!(
                "the hub printed no \"listening on\" line within {START_DEADLINE:?}"
            )));
        }
    }
}

/// The hub's stdout lines, read by a thread that drains it until EOF.
fn stdout_lines(stdout: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    rx
}

pub fn mode_args(mode: Mode, dir: &Path) -> Vec<String> {
    match mode {
        Mode::Memory => Vec::new(),
        Mode::Always | Mode::Interval => vec![
            "--data-dir".into(),
            dir.display().to_string(),
            "--fsync".into(),
            mode.name().into(),
        ],
    }
}

/// Whether this hub build knows `--data-dir` and `--fsync`: `Ok(false)` when it exits with
/// its usage line (status 2) on them.
pub fn hub_knows_data_dir(cfg: &Cfg, ports: &mut Ports) -> Result<bool, String> {
    let dir = cfg.dir.join(format!("probe-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let addr = ports.next()?;
    let log = cfg.dir.join("hub-probe.log");
    let r = start_hub(cfg, addr, &mode_args(Mode::Always, &dir), &log);
    let _ = fs::remove_dir_all(&dir);
    match r {
        Ok(_) => Ok(true),
        Err(StartError::Exited(status, log))
            if status.code() == Some(2) && log.contains("usage") =>
        {
            Ok(false)
        }
        Err(e) => Err(e.text()),
    }
}
