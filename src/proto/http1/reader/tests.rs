use super::*;

/// What a driver saw after feeding a whole input: the requests, the error that ended the
/// connection (if any), the bytes left unconsumed and whether the reader was idle.
#[derive(Debug, PartialEq)]
struct Run {
    requests: Vec<Request>,
    error: Option<HttpError>,
    leftover: usize,
    idle: bool,
}

/// Feeds `input` in pieces ending at `ends`, like the driver: append, then call `advance`
/// with the whole unconsumed buffer, drain what was consumed, repeat while requests come.
fn drive(input: &[u8], ends: &[usize], limits: &Limits, out: &mut Vec<u8>) -> Run {
    let mut reader = RequestReader::new();
    let mut buf = Vec::new();
    let mut requests = Vec::new();
    let mut start = 0;
    for &end in ends.iter().chain([input.len()].iter()) {
        buf.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            match reader.advance(&buf, limits, out) {
                Ok((n, req)) => {
                    assert!(n <= buf.len());
                    buf.drain(..n);
                    match req {
                        Some(r) => requests.push(r),
                        None => break,
                    }
                }
                Err(e) => {
                    // sticky
                    assert_eq!(reader.advance(&buf, limits, out), Err(e));
                    // where the error shows depends on the split: leftover is not compared
                    return Run {
                        requests,
                        error: Some(e),
                        leftover: 0,
                        idle: false,
                    };
                }
            }
        }
    }
    Run {
        requests,
        error: None,
        leftover: buf.len(),
        idle: reader.is_idle(),
    }
}

/// The run over the whole input, after checking that byte-by-byte and every single split
/// point give exactly the same.
fn check(input: &[u8], limits: &Limits) -> Run {
    let whole = drive(input, &[], limits, &mut Vec::new());
    let bytewise: Vec<usize> = (1..input.len()).collect();
    let show = String::from_utf8_lossy(input);
    assert_eq!(
        drive(input, &bytewise, limits, &mut Vec::new()),
        whole,
        "byte by byte: {show:?}"
    );
    for split in 1..input.len() {
        let got = drive(input, &[split], limits, &mut Vec::new());
        assert_eq!(got, whole, "split at {split}: {show:?}");
    }
    whole
}

/// (method, target, body) of each request, or the error status.
fn summary(run: &Run) -> Result<Vec<(String, String, String)>, u16> {
    if let Some(e) = run.error {
        return Err(e.status);
    }
    Ok(run
        .requests
        .iter()
        .map(|r| {
            (
                r.method.clone(),
                r.target.clone(),
                String::from_utf8_lossy(&r.body).into(),
            )
        })
        .collect())
}

fn one(method: &str, target: &str, body: &str) -> Result<Vec<(String, String, String)>, u16> {
    Ok(vec![(method.into(), target.into(), body.into())])
}

fn small() -> Limits {
    Limits {
        max_head_bytes: 96,
        max_headers: 4,
        max_body_bytes: 16,
    }
}

#[test]
fn request_table() {
    type Want = Result<Vec<(String, String, String)>, u16>;
    let table: Vec<(&[u8], Want)> = vec![
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", one("GET", "/", "")),
        (b"GET /x?y=1 HTTP/1.0\r\n\r\n", one("GET", "/x?y=1", "")),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", one("GET", "/", "")),
        (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", one("POST", "/p", "hello")),
        (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", one("POST", "/p", "hello")),
        (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", one("POST", "/p", "hello")),
        (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", one("POST", "/p", "")),
        (b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", one("POST", "/p", "abc")),
        (b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n", one("POST", "/p", "abc")),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", one("OPTIONS", "*", "")),
        (b"GET http://example.com/a?b HTTP/1.1\r\nHost: x\r\n\r\n", one("GET", "/a?b", "")),
        (b"GET HTTP://example.com:8080 HTTP/1.1\r\nHost: x\r\n\r\n", one("GET", "/", "")),
        (b"GET https://[::1]?q HTTP/1.1\r\nHost: x\r\n\r\n", one("GET", "/?q", "")),
        (b"GET http://example.com/ HTTP/1.0\r\n\r\n", one("GET", "/", "")),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", one("GET", "/", "")),
        (b"get / HTTP/1.1\r\nHost: a\r\n\r\n", one("get", "/", "")),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\n\r\n", one("GET", "/", "")),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: \xff\xfe\r\n\r\n", one("GET", "/", "")),
        // incomplete: no requests, no error
        (b"GET / HTTP/1.1\r\nHost: a\r\n", Ok(vec![])),
        (b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel", Ok(vec![])),
        // malformed head
        (b"GET / HTTP/1.1\nHost: a\n\n", Err(400)),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", Err(400)),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\n X-A: b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", Err(400)),
        // targets
        (b"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http:///a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http://:80/a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET http://u@h/a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET ftp://h/a HTTP/1.1\r\nHost: a\r\n\r\n", Err(400)),
        // Host (RFC 9112 §3.2)
        (b"GET / HTTP/1.1\r\n\r\n", Err(400)),
        (b"GET http://h/ HTTP/1.1\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Err(400)),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Err(400)),
        // versions
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", Err(505)),
        (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", Err(505)),
        (b"GET / HTTP/0.9\r\n\r\n", Err(505)),
        (b"GET / HTTP/3.0\r\n\r\n", Err(505)),
        (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET / HTTP/2\r\nHost: a\r\n\r\n", Err(400)),
        (b"GET /\r\n\r\n", Err(400)),
        // Content-Length
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\nhello", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", Err(400)),
        // Transfer-Encoding
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Err(501)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: x-custom\r\nTransfer-Encoding: chunked\r\n\r\n", Err(501)),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Err(400)),
        // chunked body errors
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", Err(400)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n", Err(400)),
        // Expect (RFC 9110 §10.1.1)
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\nContent-Length: 1\r\n\r\nx", Err(417)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", Err(417)),
    ];
    for (input, want) in table {
        let run = check(input, &Limits::default());
        assert_eq!(summary(&run), want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn absolute_form_replaces_host() {
    let run = check(
        b"GET http://example.com:81/a HTTP/1.1\r\nX: 1\r\nHost: other\r\n\r\n",
        &Limits::default(),
    );
    assert_eq!(run.requests[0].header("host"), Some(&b"example.com:81"[..]));
    assert_eq!(run.requests[0].headers_named("host").count(), 1);
    let run = check(
        b"GET http://example.com/a HTTP/1.0\r\n\r\n",
        &Limits::default(),
    );
    assert_eq!(run.requests[0].header("host"), Some(&b"example.com"[..]));
}

#[test]
fn limits() {
    let l = small();
    let table: Vec<(&[u8], Result<usize, u16>)> = vec![
        // 96 bytes of head exactly: allowed
        (b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n", Ok(1)),
        (b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: a\r\n\r\n", Err(431)),
        // not terminated, but already too large
        (b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Err(431)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\n\r\n", Ok(1)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n\r\n", Err(431)),
        (b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\n", Err(431)),
        // body limit 16
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n\r\n0123456789abcdef", Ok(1)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n", Err(413)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", Ok(1)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\n", Err(413)),
        // trailers are bounded by the head limits
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", Ok(1)),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", Err(431)),
    ];
    for (input, want) in table {
        let run = check(input, &l);
        let got = match run.error {
            Some(e) => Err(e.status),
            None => Ok(run.requests.len()),
        };
        assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn long_trailer_section() {
    let mut input =
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: ".to_vec();
    input.extend_from_slice(&[b'x'; 100]);
    input.extend_from_slice(b"\r\n\r\n");
    assert_eq!(check(&input, &small()).error.map(|e| e.status), Some(431));
}

#[test]
fn pipelined_three_requests() {
    let input: &[u8] = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n\
        POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
        POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxy\r\n0\r\nT: v\r\n\r\n";
    let run = check(input, &Limits::default());
    assert_eq!(
        summary(&run),
        Ok(vec![
            ("GET".into(), "/one".into(), "".into()),
            ("POST".into(), "/two".into(), "abc".into()),
            ("POST".into(), "/three".into(), "xy".into()),
        ])
    );
    assert_eq!(
        run.requests[2].trailers,
        vec![Header {
            name: "T".into(),
            value: b"v".to_vec()
        }]
    );
    assert!(run.idle);
    assert_eq!(run.leftover, 0);

    // one call consumes exactly one request
    let mut reader = RequestReader::new();
    let mut out = Vec::new();
    let l = Limits::default();
    let (n1, r1) = reader.advance(input, &l, &mut out).unwrap();
    assert_eq!((n1, r1.unwrap().target.as_str()), (30, "/one"));
    let (n2, r2) = reader.advance(&input[n1..], &l, &mut out).unwrap();
    assert_eq!((n2, r2.unwrap().target.as_str()), (53, "/two"));
    let (n3, r3) = reader.advance(&input[n1 + n2..], &l, &mut out).unwrap();
    assert_eq!(
        (n1 + n2 + n3, r3.unwrap().target.as_str()),
        (input.len(), "/three")
    );
    assert_eq!(reader.advance(b"", &l, &mut out), Ok((0, None)));
    assert!(out.is_empty());
}

#[test]
fn get_without_framing_has_no_body() {
    // The bytes after a bodyless GET are the next request, not its body.
    let run = check(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        &Limits::default(),
    );
    assert_eq!(summary(&run).map(|v| v.len()), Ok(2));
    let run = check(
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nhello",
        &Limits::default(),
    );
    assert_eq!(
        (summary(&run).map(|v| v.len()), run.leftover, run.idle),
        (Ok(1), 5, false)
    );
}

#[test]
fn partial_head_is_not_consumed_and_not_idle() {
    let mut reader = RequestReader::new();
    let mut out = Vec::new();
    let l = Limits::default();
    assert!(reader.is_idle());
    assert_eq!(reader.advance(b"", &l, &mut out), Ok((0, None)));
    assert!(reader.is_idle());
    assert_eq!(reader.advance(b"\r\n\r", &l, &mut out), Ok((2, None)));
    assert!(reader.is_idle());
    assert_eq!(reader.advance(b"\rGE", &l, &mut out), Ok((0, None)));
    assert!(!reader.is_idle());
    let full = b"\rGET / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nx";
    assert_eq!(
        reader.advance(full, &l, &mut out).map_err(|e| e.status),
        Err(400)
    );

    let mut reader = RequestReader::new();
    let head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(reader.advance(&head[..10], &l, &mut out), Ok((0, None)));
    assert!(!reader.is_idle());
    let mut buf = head.to_vec();
    buf.push(b'x');
    // head and the body byte that arrived are consumed; the request is not complete
    assert_eq!(reader.advance(&buf, &l, &mut out), Ok((buf.len(), None)));
    assert!(!reader.is_idle());
    let (n, req) = reader.advance(b"yGET", &l, &mut out).unwrap();
    assert_eq!((n, req.unwrap().body), (1, b"xy".to_vec()));
    assert!(reader.is_idle());
}

#[test]
fn hundred_continue() {
    let l = Limits {
        max_body_bytes: 10,
        ..Limits::default()
    };
    let cases: Vec<(&[u8], &[u8])> = vec![
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", CONTINUE),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n", CONTINUE),
        // body already arriving, or none expected, or HTTP/1.0, or too large: no 100
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nh", b""),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", b""),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", b""),
        (b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", b""),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n", b""),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", b""),
    ];
    for (input, want) in cases {
        let mut out = Vec::new();
        let _ = drive(input, &[], &l, &mut out);
        assert_eq!(out, want, "{:?}", String::from_utf8_lossy(input));
    }
    // sent once, even when the body then trickles in byte by byte
    let input =
        b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello";
    let mut out = Vec::new();
    let ends: Vec<usize> = (1..input.len()).collect();
    let run = drive(input, &ends, &l, &mut out);
    assert_eq!((out.as_slice(), run.requests.len()), (CONTINUE, 1));
    // 413 comes before any 100 Continue
    let mut out = Vec::new();
    let mut reader = RequestReader::new();
    let big = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n";
    assert_eq!(
        reader.advance(big, &l, &mut out).map_err(|e| e.status),
        Err(413)
    );
    assert!(out.is_empty());
}

#[test]
fn request_fields() {
    let input = b"PUT /t/x?a=1 HTTP/1.1\r\nHost: h\r\nX-Multi: a\r\nx-multi: b\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
    let run = check(input, &Limits::default());
    let r = &run.requests[0];
    assert_eq!(r.version, Version::Http11);
    assert_eq!(r.path(), "/t/x");
    assert_eq!(r.query_param("a").as_deref(), Some("1"));
    assert_eq!(r.headers.len(), 5);
    assert_eq!(
        r.headers[1],
        Header {
            name: "X-Multi".into(),
            value: b"a".to_vec()
        }
    );
    assert_eq!(r.headers_named("X-MULTI").count(), 2);
    assert!(!r.keep_alive());
    assert!(r.trailers.is_empty());
}
