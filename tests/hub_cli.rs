//! Issue 16: the hub's command line as a person meets it: `--help` on stdout with every
//! flag, `--version`, one-line errors naming the flag and the value (exit 2), a port in use
//! (exit 1), and `PUSHWIRE_*` variables with the command line winning over them.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

fn hub(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(util::example_bin("hub"));
    cmd.args(args).env_remove("PUSHWIRE_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hub")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_flag_on_stdout() {
    let o = hub(&["--help"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8(o.stdout).unwrap();
    let src = include_str!("../examples/hub/cli.rs");
    // Every row of the table (`flag(` or `many(` and then its name, maybe on the next
    // line) is in the help.
    let mut n = 0;
    let rows = src.split("flag(").chain(src.split("many(")).skip(1);
    for part in rows {
        let name = part
            .trim_start()
            .strip_prefix('"')
            .and_then(|p| p.split('"').next());
        if let Some(name) = name.filter(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '-')) {
            assert!(
                out.contains(&format!("  --{name}")),
                "--{name} missing:\n{out}"
            );
            n += 1;
        }
    }
    assert!(n >= 30, "{n} flags found");
    for flag in [
        "--addr HOST:PORT",
        "--stop-timeout SECS",
        "--upstream",
        "--webhook-ca FILE ...",
    ] {
        assert!(out.contains(flag), "{flag}:\n{out}");
    }
    assert!(out.contains("[default: 127.0.0.1:8080]"), "{out}");
    assert!(out.contains("PUSHWIRE_HISTORY_EVENTS"), "{out}");
    assert!(o.stderr.is_empty());
}

#[test]
fn version() {
    let o = hub(&["--version"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let want = format!("pushwire hub {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), want);
}

#[test]
fn bad_arguments_get_one_line_and_exit_2() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case<'_>] = &[
        (
            &["--port", "1"],
            &[],
            "pushwire hub: unknown option --port (see --help)\n",
        ),
        (
            &["--history-events", "abc"],
            &[],
            "pushwire hub: --history-events: expected a number, got \"abc\"\n",
        ),
        (&["--addr"], &[], "pushwire hub: --addr: missing value\n"),
        (
            &["--no-deflate=1"],
            &[],
            "pushwire hub: --no-deflate: takes no value\n",
        ),
        (
            &[],
            &[("PUSHWIRE_HISTORY_EVENTS", "abc")],
            "pushwire hub: PUSHWIRE_HISTORY_EVENTS: expected a number, got \"abc\"\n",
        ),
        (
            &[],
            &[("PUSHWIRE_NO_DEFLATE", "yes")],
            "pushwire hub: PUSHWIRE_NO_DEFLATE: expected 1, true, 0 or false, got \"yes\"\n",
        ),
        (
            &["--fsync", "sometimes"],
            &[],
            "pushwire hub: --fsync: expected always or interval, got \"sometimes\"\n",
        ),
    ];
    for (args, env, want) in cases {
        let o = hub(args, env);
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}");
        assert_eq!(stderr(&o), *want, "{args:?} {env:?}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn a_port_in_use_is_named_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let o = hub(&["--addr", &addr], &[]);
    assert_eq!(o.status.code(), Some(1));
    let want = format!("pushwire hub: cannot listen on {addr}: address already in use\n");
    assert_eq!(stderr(&o), want);
}

/// Starts the hub with `args` and `env`, returns its listening address and kills it.
fn listening(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(util::example_bin("hub"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn the_environment_sets_flags_and_the_command_line_wins() {
    let free = |_: ()| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (a, b) = (free(()), free(()));
    let line = listening(&[], &[("PUSHWIRE_ADDR", &a)]);
    assert_eq!(line, format!("pushwire hub listening on http://{a}\n"));
    let line = listening(&["--addr", &b], &[("PUSHWIRE_ADDR", &a)]);
    assert_eq!(line, format!("pushwire hub listening on http://{b}\n"));
    // A setting of the library through the environment: the history keeps 2 events.
    let mut child = Command::new(util::example_bin("hub"))
        .args(["--addr", "127.0.0.1:0"])
        .env("PUSHWIRE_HISTORY_EVENTS", "2")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit("//").next().unwrap().parse().unwrap();
    for i in 0..3 {
        assert_eq!(util::post(addr, "/topics/t", &format!("e{i}")).status, 201);
    }
    let events = util::get(addr, "/topics/t/events?since=0").text();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !events.contains("\"e0\"") && events.contains("\"e2\""),
        "{events}"
    );
}
