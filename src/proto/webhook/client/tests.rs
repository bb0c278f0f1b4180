use super::*;
use crate::proto::webhook::{Action, Engine, EngineConfig, Secret, Url};

const REQ: &[u8] = b"POST /hook HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Length: 2\r\n\r\n{}";
const OK: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// Real attempt ids come from an engine.
fn attempts(n: usize) -> Vec<AttemptId> {
    let mut e = Engine::new(EngineConfig {
        max_in_flight_per_endpoint: n,
        ..EngineConfig::default()
    });
    let secret = Secret::from_bytes(&[7; 32]).unwrap();
    let ep = e.add_endpoint(Url::parse("http://127.0.0.1:9/hook").unwrap(), secret);
    let t = Instant::now();
    for i in 0..n {
        e.enqueue(ep, format!("msg_{i}").into(), b"{}"[..].into(), t);
    }
    std::iter::from_fn(|| match e.poll_action(t)? {
        Action::Attempt { attempt, .. } => Some(attempt),
        _ => None,
    })
    .collect()
}

fn job(attempt: AttemptId, started: Instant) -> HookJob {
    HookJob::new(attempt, REQ.into(), started)
}

/// A connection to which `job` was fully written at `t`.
fn written(job: HookJob, t: Instant) -> ClientConn {
    let mut c = ClientConn::connect(job, t, ClientConfig::default());
    c.on_connected();
    let n = c.pending().len();
    c.wrote(n);
    c
}

/// A pooled (idle) connection after one exchange at `t`.
fn pooled(attempt: AttemptId, t: Instant) -> ClientConn {
    let mut c = written(job(attempt, t), t);
    let ev = c.on_read(OK, t, 0).unwrap();
    assert!(matches!(ev, ClientEvent::Response { reusable: true, .. }));
    assert!(c.is_idle());
    c
}

fn response(attempt: AttemptId, status: u16, reusable: bool) -> ClientEvent {
    ClientEvent::Response {
        attempt,
        status,
        retry_after: None,
        reusable,
    }
}

fn io(attempt: AttemptId, why: &str) -> Option<ClientEvent> {
    Some(ClientEvent::Failed {
        attempt,
        result: AttemptResult::Io(why.into()),
    })
}

#[test]
fn encode_builds_the_signed_request() {
    let a = attempts(1)[0];
    let url = Url::parse("http://127.0.0.1:9/hook").unwrap();
    let secret = Secret::from_bytes(&[7; 32]).unwrap();
    let t = Instant::now();
    let j = HookJob::encode(a, &url, &secret, "msg_1", 1_700_000_000, b"{}", t).unwrap();
    let text = std::str::from_utf8(j.request()).unwrap();
    assert!(text.starts_with("POST /hook HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("\r\nwebhook-id: msg_1\r\n"), "{text}");
    assert!(
        text.contains("\r\nwebhook-timestamp: 1700000000\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    assert_eq!((j.attempt(), j.started(), j.needs_fresh()), (a, t, false));
}

#[test]
fn the_request_is_written_in_pieces() {
    let a = attempts(1)[0];
    let t = Instant::now();
    let mut c = ClientConn::connect(job(a, t), t, ClientConfig::default());
    assert_eq!(c.phase(), ClientPhase::Connecting);
    assert!(c.wants_write() && c.wants_read());
    assert_eq!(
        c.pending(),
        b"",
        "nothing to write before the connect completes"
    );
    c.on_connected();
    assert_eq!(c.phase(), ClientPhase::Writing);
    assert_eq!(c.pending(), REQ);
    c.wrote(5);
    assert_eq!(c.pending(), &REQ[5..]);
    assert_eq!(&c.pending()[..4], b"/hoo");
    c.wrote(REQ.len() - 6);
    assert_eq!(c.pending(), b"}");
    assert!(c.wants_write());
    c.wrote(1);
    assert_eq!(c.pending(), b"");
    assert!(!c.wants_write() && c.wants_read());
    assert_eq!(c.phase(), ClientPhase::Reading);
    c.wrote(3); // a confused driver changes nothing
    assert_eq!(c.phase(), ClientPhase::Reading);
}

#[test]
fn a_response_byte_by_byte_equals_one_read() {
    let resp: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nRetry-After: 7\r\n\
                        Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let a = attempts(1)[0];
    let t = Instant::now();
    let expect = ClientEvent::Response {
        attempt: a,
        status: 503,
        retry_after: Some(Duration::from_secs(7)),
        reusable: true,
    };
    let mut whole = written(job(a, t), t);
    assert_eq!(whole.on_read(resp, t, 0), Some(expect.clone()));
    let mut drip = written(job(a, t), t);
    for (i, b) in resp.iter().enumerate() {
        let ev = drip.on_read(std::slice::from_ref(b), t, 0);
        if i + 1 < resp.len() {
            assert_eq!(ev, None, "at byte {i}");
        } else {
            assert_eq!(ev, Some(expect.clone()));
        }
    }
    for c in [whole, drip] {
        assert!(c.is_idle());
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(30)));
    }
    assert_eq!(
        expect.attempt_result(),
        Some((
            a,
            AttemptResult::Status {
                code: 503,
                retry_after: Some(Duration::from_secs(7))
            }
        ))
    );
}

#[test]
fn retry_after_as_an_http_date_uses_the_given_clock() {
    let a = attempts(1)[0];
    let t = Instant::now();
    let mut c = written(job(a, t), t);
    let resp = b"HTTP/1.1 429 Slow Down\r\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
                 Content-Length: 0\r\n\r\n";
    let ev = c.on_read(resp, t, 784_111_767).unwrap();
    let ClientEvent::Response { retry_after, .. } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(retry_after, Some(Duration::from_secs(10)));
}

#[test]
fn keep_alive_reuse() {
    let ids = attempts(2);
    let t = Instant::now();
    let mut c = pooled(ids[0], t);
    assert_eq!(c.pending(), b"");
    assert!(!c.wants_write() && c.wants_read(), "idle watches for EOF");
    let t2 = t + Duration::from_secs(2);
    c.send(job(ids[1], t2)).unwrap();
    assert_eq!(c.phase(), ClientPhase::Writing);
    assert_eq!(c.pending(), REQ);
    assert_eq!(c.poll_timeout(), Some(t2 + Duration::from_secs(15)));
    c.wrote(REQ.len());
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(c.on_read(resp, t2, 0), Some(response(ids[1], 200, true)));
    assert!(c.is_idle());
    // Only an idle connection takes a job.
    let mut busy = written(job(ids[0], t), t);
    assert!(busy.send(job(ids[1], t)).is_err());
}

#[test]
fn connection_close_and_friends_are_not_reusable() {
    let a = attempts(1)[0];
    let t = Instant::now();
    for resp in [
        &b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"[..],
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        // Bytes after the response: the connection is out of step.
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n",
    ] {
        let mut c = written(job(a, t), t);
        assert_eq!(c.on_read(resp, t, 0), Some(response(a, 200, false)));
        assert!(c.is_closed() && !c.wants_read() && !c.wants_write());
        assert_eq!(c.poll_timeout(), None);
    }
    // HTTP/1.0 asking for keep-alive may be kept.
    let mut c = written(job(a, t), t);
    let resp = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(c.on_read(resp, t, 0), Some(response(a, 200, true)));
    // A body delimited by the close completes at EOF, and the connection is done.
    let mut c = written(job(a, t), t);
    assert_eq!(c.on_read(b"HTTP/1.1 200 OK\r\n\r\npartial", t, 0), None);
    assert_eq!(c.on_eof(t, 0), Some(response(a, 200, false)));
    assert!(c.is_closed());
}

#[test]
fn an_early_answer_stops_the_write_and_is_not_reusable() {
    let a = attempts(1)[0];
    let t = Instant::now();
    let mut c = ClientConn::connect(job(a, t), t, ClientConfig::default());
    c.on_connected();
    c.wrote(10);
    let resp = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(c.on_read(&resp[..4], t, 0), None);
    assert_eq!(c.phase(), ClientPhase::Reading);
    assert!(
        !c.wants_write(),
        "no more request bytes after an answer began"
    );
    assert_eq!(c.pending(), b"");
    assert_eq!(c.on_read(&resp[4..], t, 0), Some(response(a, 413, false)));
    assert!(c.is_closed());
}

#[test]
fn a_stale_pooled_connection_retries_once_on_a_fresh_one() {
    let ids = attempts(2);
    let t = Instant::now();
    // EOF right after the request went out.
    let mut c = pooled(ids[0], t);
    c.send(job(ids[1], t)).unwrap();
    c.wrote(REQ.len());
    let Some(ClientEvent::RetryFresh(retry)) = c.on_eof(t, 0) else {
        panic!("expected a retry")
    };
    assert!(c.is_closed());
    assert_eq!((retry.attempt(), retry.request()), (ids[1], REQ));
    assert!(retry.needs_fresh());
    // An error while writing, too.
    let mut c = pooled(ids[0], t);
    c.send(job(ids[1], t)).unwrap();
    c.wrote(3);
    let ev = c.on_error("write: broken pipe".into());
    assert!(matches!(ev, Some(ClientEvent::RetryFresh(_))), "{ev:?}");
    // The retried job never goes on a pooled connection...
    let mut other = pooled(ids[0], t);
    let retry = other.send(retry).unwrap_err();
    // ...and fails for real when its fresh connection fails the same way.
    let mut fresh = ClientConn::connect(retry, t, ClientConfig::default());
    fresh.on_connected();
    fresh.wrote(REQ.len());
    let why = "connection closed before a complete response";
    assert_eq!(fresh.on_eof(t, 0), io(ids[1], why));
    // A fresh connection does not retry, nor a reused one that got response bytes.
    assert_eq!(written(job(ids[1], t), t).on_eof(t, 0), io(ids[1], why));
    let mut c = pooled(ids[0], t);
    c.send(job(ids[1], t)).unwrap();
    c.wrote(REQ.len());
    assert_eq!(c.on_read(b"HTTP/1.1 2", t, 0), None);
    assert_eq!(c.on_eof(t, 0), io(ids[1], why));
    // A timeout on a reused connection is a timeout, not a stale connection.
    let mut c = pooled(ids[0], t);
    c.send(job(ids[1], t)).unwrap();
    let ev = c.handle_timeout(t + Duration::from_secs(15));
    assert_eq!(
        ev,
        Some(ClientEvent::Failed {
            attempt: ids[1],
            result: AttemptResult::Timeout
        })
    );
}

#[test]
fn connect_timeout_versus_attempt_timeout() {
    let a = attempts(1)[0];
    let t = Instant::now();
    let s = Duration::from_secs;
    // Connect started with the attempt: the connect timeout (5 s) comes first.
    let mut c = ClientConn::connect(job(a, t), t, ClientConfig::default());
    assert_eq!(c.poll_timeout(), Some(t + s(5)));
    assert_eq!(c.handle_timeout(t + s(4)), None);
    assert_eq!(c.phase(), ClientPhase::Connecting);
    let ev = c.handle_timeout(t + s(5)).expect("the connect timeout");
    assert_eq!(
        ev.attempt_result(),
        Some((a, AttemptResult::ConnectFailed("connect timeout".into())))
    );
    let ClientEvent::ConnectFailed { job: back, .. } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(back.attempt(), a, "the job comes back for the next address");
    assert!(c.is_closed());
    // The name lookup took 12 s of the 15: the attempt timeout comes first.
    let mut c = ClientConn::connect(job(a, t), t + s(12), ClientConfig::default());
    assert_eq!(c.poll_timeout(), Some(t + s(15)));
    let timeout = Some(ClientEvent::Failed {
        attempt: a,
        result: AttemptResult::Timeout,
    });
    assert_eq!(c.handle_timeout(t + s(15)), timeout);
    // Once connected only the attempt timeout counts.
    let mut c = ClientConn::connect(job(a, t), t, ClientConfig::default());
    c.on_connected();
    assert_eq!(c.poll_timeout(), Some(t + s(15)));
    assert_eq!(c.handle_timeout(t + s(6)), None);
    c.wrote(REQ.len());
    assert_eq!(c.poll_timeout(), Some(t + s(15)));
    assert_eq!(c.handle_timeout(t + s(15)), timeout);
    assert_eq!(c.handle_timeout(t + s(16)), None, "reported once");
}

#[test]
fn the_idle_timeout_closes_a_pooled_connection() {
    let a = attempts(1)[0];
    let t = Instant::now();
    let mut c = pooled(a, t);
    assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(30)));
    assert_eq!(c.handle_timeout(t + Duration::from_secs(29)), None);
    assert_eq!(
        c.handle_timeout(t + Duration::from_secs(30)),
        Some(ClientEvent::Closed("idle timeout"))
    );
    assert!(c.is_closed());
    // The receiver closing it, or sending anything, ends it too.
    let mut c = pooled(a, t);
    assert!(matches!(c.on_eof(t, 0), Some(ClientEvent::Closed(_))));
    let mut c = pooled(a, t);
    assert!(matches!(
        c.on_read(b"x", t, 0),
        Some(ClientEvent::Closed(_))
    ));
    let mut c = pooled(a, t);
    assert_eq!(
        c.abort("server stopped"),
        Some(ClientEvent::Closed("closed by us"))
    );
}

#[test]
fn eof_before_a_complete_response() {
    let a = attempts(1)[0];
    let t = Instant::now();
    let why = "connection closed before a complete response";
    for part in [
        &b""[..],
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ] {
        let mut c = written(job(a, t), t);
        assert_eq!(c.on_read(part, t, 0), None);
        assert_eq!(c.on_eof(t, 0), io(a, why), "{part:?}");
        assert!(c.is_closed());
    }
    let mut c = ClientConn::connect(job(a, t), t, ClientConfig::default());
    assert_eq!(c.on_eof(t, 0), io(a, "connection closed while connecting"));
}

#[test]
fn bad_responses_and_socket_errors_fail_the_attempt() {
    let a = attempts(1)[0];
    let t = Instant::now();
    for bad in [
        &b"HTTP/1.1 abc OK\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let mut c = written(job(a, t), t);
        let ev = c.on_read(bad, t, 0);
        let Some(ClientEvent::Failed {
            result: AttemptResult::Io(why),
            ..
        }) = ev
        else {
            panic!("{bad:?}: {ev:?}")
        };
        assert!(why.starts_with("bad response: "), "{why}");
        assert!(c.is_closed());
    }
    let mut c = ClientConn::connect(job(a, t), t, ClientConfig::default());
    let ev = c.on_error("127.0.0.1:9: connection refused".into());
    assert!(
        matches!(&ev, Some(ClientEvent::ConnectFailed { job, why })
            if job.attempt() == a && why == "127.0.0.1:9: connection refused"),
        "{ev:?}"
    );
    assert!(c.is_closed());
    let mut c = written(job(a, t), t);
    assert_eq!(c.on_error("read: reset".into()), io(a, "read: reset"));
    assert_eq!(
        c.on_error("again".into()),
        None,
        "closed: nothing more to say"
    );
    let mut c = written(job(a, t), t);
    assert_eq!(c.abort("server stopped"), io(a, "server stopped"));
}
