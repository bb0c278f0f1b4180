use super::*;

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn simple(s: &str) -> Value {
    Value::SimpleString(s.as_bytes().to_vec())
}

/// Feeds `pieces` one after the other the way a connection does (a buffer of what is not
/// consumed yet), collecting every reply until the input ends or an error comes.
fn feed(limits: Limits, pieces: &[&[u8]]) -> (Vec<Value>, Option<RespError>, usize) {
    let mut parser = Parser::new(limits);
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match parser.advance(&buf) {
                Ok((used, value)) => {
                    assert!(used <= buf.len());
                    buf.drain(..used);
                    match value {
                        Some(v) => replies.push(v),
                        None => break,
                    }
                }
                Err(e) => return (replies, Some(e), buf.len()),
            }
        }
    }
    (replies, None, buf.len())
}

/// The input whole, split in two at every offset, and byte by byte: the same outcome.
fn all_splits(limits: Limits, input: &[u8]) -> (Vec<Value>, Option<RespError>) {
    let (replies, error, _) = feed(limits, &[input]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        let (r, e, _) = feed(limits, &[a, b]);
        assert_eq!((&r, &e), (&replies, &error), "split at {at} of {input:?}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let (r, e, _) = feed(limits, &bytes);
    assert_eq!((&r, &e), (&replies, &error), "byte by byte: {input:?}");
    (replies, error)
}

fn one(input: &[u8]) -> Value {
    let (mut replies, error) = all_splits(Limits::default(), input);
    assert_eq!(error, None, "{input:?}");
    assert_eq!(replies.len(), 1, "{input:?}");
    replies.remove(0)
}

fn refused(limits: Limits, input: &[u8]) -> RespError {
    let (_, error) = all_splits(limits, input);
    error.unwrap_or_else(|| panic!("accepted {input:?}"))
}

#[test]
fn every_type_whole_and_split_at_every_byte() {
    let table: Vec<(&[u8], Value)> = vec![
        (b"+OK\r\n", simple("OK")),
        (b"+\r\n", simple("")),
        (
            b"-ERR unknown command 'asdf'\r\n",
            Value::Error(b"ERR unknown command 'asdf'".to_vec()),
        ),
        (b":0\r\n", Value::Integer(0)),
        (b":+1000\r\n", Value::Integer(1000)),
        (b":-9223372036854775808\r\n", Value::Integer(i64::MIN)),
        (b":9223372036854775807\r\n", Value::Integer(i64::MAX)),
        (b"$5\r\nhello\r\n", bulk("hello")),
        (b"$0\r\n\r\n", bulk("")),
        (b"$4\r\na\r\nb\r\n", bulk("a\r\nb")),
        (b"$-1\r\n", Value::NullBulk),
        (b"*-1\r\n", Value::NullArray),
        (b"*0\r\n", Value::Array(vec![])),
        (
            b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n",
            Value::Array(vec![bulk("hello"), bulk("world")]),
        ),
        (
            b"*2\r\n*3\r\n:1\r\n:2\r\n:3\r\n*2\r\n+Hello\r\n-World\r\n",
            Value::Array(vec![
                Value::Array(vec![
                    Value::Integer(1),
                    Value::Integer(2),
                    Value::Integer(3),
                ]),
                Value::Array(vec![simple("Hello"), Value::Error(b"World".to_vec())]),
            ]),
        ),
        (
            b"*3\r\n$5\r\nhello\r\n$-1\r\n$5\r\nworld\r\n",
            Value::Array(vec![bulk("hello"), Value::NullBulk, bulk("world")]),
        ),
        (b"_\r\n", Value::Null),
        (b"#t\r\n", Value::Boolean(true)),
        (b"#f\r\n", Value::Boolean(false)),
        (b",1.23\r\n", Value::Double(1.23)),
        (b",10\r\n", Value::Double(10.0)),
        (b",-1.5e-3\r\n", Value::Double(-1.5e-3)),
        (b",+2E+2\r\n", Value::Double(200.0)),
        (b",1e999\r\n", Value::Double(f64::INFINITY)),
        (b",inf\r\n", Value::Double(f64::INFINITY)),
        (b",-inf\r\n", Value::Double(f64::NEG_INFINITY)),
        (b",nan\r\n", Value::Double(f64::NAN)),
        (
            b"(3492890328409238509324850943850943825024385\r\n",
            Value::BigNumber(b"3492890328409238509324850943850943825024385".to_vec()),
        ),
        (b"(-1\r\n", Value::BigNumber(b"-1".to_vec())),
        (
            b"!21\r\nSYNTAX invalid syntax\r\n",
            Value::BulkError(b"SYNTAX invalid syntax".to_vec()),
        ),
        (b"!0\r\n\r\n", Value::BulkError(vec![])),
        (
            b"=15\r\ntxt:Some string\r\n",
            Value::Verbatim {
                format: *b"txt",
                text: b"Some string".to_vec(),
            },
        ),
        (
            b"=4\r\nmkd:\r\n",
            Value::Verbatim {
                format: *b"mkd",
                text: vec![],
            },
        ),
        (
            b"%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
            Value::Map(vec![
                (simple("first"), Value::Integer(1)),
                (simple("second"), Value::Integer(2)),
            ]),
        ),
        (b"%0\r\n", Value::Map(vec![])),
        (
            b"~3\r\n+orange\r\n+apple\r\n#t\r\n",
            Value::Set(vec![
                simple("orange"),
                simple("apple"),
                Value::Boolean(true),
            ]),
        ),
        (
            b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n",
            Value::Push(vec![bulk("message"), bulk("news"), bulk("hi")]),
        ),
        (b">0\r\n", Value::Push(vec![])),
    ];
    for (bytes, value) in &table {
        assert_eq!(&one(bytes), value, "{bytes:?}");
        // And the encoder writes the same value back so that it parses equal.
        assert_eq!(&one(&value.to_bytes()), value);
    }
    // All of them pipelined in one stream.
    let stream: Vec<u8> = table.iter().flat_map(|(b, _)| b.iter().copied()).collect();
    let (replies, error) = all_splits(Limits::default(), &stream);
    assert_eq!(error, None);
    let expected: Vec<Value> = table.into_iter().map(|(_, v)| v).collect();
    assert_eq!(replies, expected);
}

#[test]
fn consumed_counts_stop_at_the_end_of_each_reply() {
    let mut p = Parser::default();
    let buf = b"+OK\r\n:12\r\n$3\r\nab";
    assert_eq!(p.advance(buf).unwrap(), (5, Some(simple("OK"))));
    assert_eq!(p.advance(&buf[5..]).unwrap(), (5, Some(Value::Integer(12))));
    // The bulk header and the data that is there are consumed; the reply is not done.
    assert_eq!(p.advance(&buf[10..]).unwrap(), (6, None));
    assert!(p.is_mid_reply());
    assert_eq!(p.advance(b"c\r").unwrap(), (2, None));
    assert_eq!(p.advance(b"\n+x").unwrap(), (1, Some(bulk("abc"))));
    assert!(!p.is_mid_reply());
    // A partial line is not consumed; its scan is remembered.
    assert_eq!(p.advance(b"+x").unwrap(), (0, None));
    assert!(p.is_mid_reply());
    assert_eq!(p.scan, 2);
    assert_eq!(p.advance(b"+xy\r").unwrap(), (0, None));
    assert_eq!(p.scan, 3, "resumes at the CR");
    assert_eq!(p.advance(b"+xy\r\n").unwrap(), (5, Some(simple("xy"))));
    assert_eq!(p.advance(b"").unwrap(), (0, None));
    assert_eq!(
        parse(b":1\r\n:2\r\n", &Limits::default()).unwrap(),
        Some((Value::Integer(1), 4))
    );
    assert_eq!(parse(b"*2\r\n:1\r\n", &Limits::default()).unwrap(), None);
}

#[test]
fn attributes_are_read_and_dropped() {
    // The specification's examples.
    let mget = b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n\
                 *2\r\n:2039123\r\n:9543892\r\n";
    assert_eq!(
        one(mget),
        Value::Array(vec![Value::Integer(2039123), Value::Integer(9543892)])
    );
    let inside = b"*3\r\n:1\r\n:2\r\n|1\r\n+ttl\r\n:3600\r\n:3\r\n";
    assert_eq!(
        one(inside),
        Value::Array(vec![
            Value::Integer(1),
            Value::Integer(2),
            Value::Integer(3)
        ])
    );
    // Empty, nested, and before a push.
    assert_eq!(one(b"|0\r\n+OK\r\n"), simple("OK"));
    assert_eq!(
        one(b"|1\r\n|1\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n"),
        Value::Integer(5)
    );
    assert_eq!(
        one(b"|1\r\n:1\r\n:2\r\n>1\r\n:3\r\n"),
        Value::Push(vec![Value::Integer(3)])
    );
    // The bytes consumed include the attribute.
    let mut p = Parser::default();
    assert_eq!(
        p.advance(b"|1\r\n:1\r\n:2\r\n:3\r\n+next\r\n").unwrap(),
        (16, Some(Value::Integer(3)))
    );
}

#[test]
fn malformed_input_is_an_error_naming_the_cause() {
    let l = Limits::default();
    let table: &[(&[u8], RespError)] = &[
        (b"GET / HTTP/1.1\r\n", RespError::UnknownType(b'G')),
        (b"\r\n", RespError::UnknownType(b'\r')),
        (b"*1\r\n.\r\n", RespError::UnknownType(b'.')),
        (b"+OK\n", RespError::BadLineEnding),
        (b"+OK\rX\r\n", RespError::BadLineEnding),
        (b"+O\nK\r\n", RespError::BadLineEnding),
        (b"$3\r\nabcd\r\n", RespError::MissingTerminator),
        (b"$3\r\nab\r\n", RespError::MissingTerminator),
        (b"$3\r\nabc\rX", RespError::MissingTerminator),
        (b":\r\n", RespError::BadInteger),
        (b":-\r\n", RespError::BadInteger),
        (b":1.5\r\n", RespError::BadInteger),
        (b": 1\r\n", RespError::BadInteger),
        (b":9223372036854775808\r\n", RespError::BadInteger),
        (b":00000000000000000001\r\n", RespError::BadInteger),
        (b"$\r\n", RespError::BadLength),
        (b"$+3\r\nabc\r\n", RespError::BadLength),
        (b"$-2\r\n", RespError::BadLength),
        (b"$99999999999999999999\r\n", RespError::BadLength),
        (b"*-2\r\n", RespError::BadLength),
        (b"%-1\r\n", RespError::BadLength),
        (b"~-1\r\n", RespError::BadLength),
        (b"!-1\r\n", RespError::BadLength),
        (b"* 1\r\n", RespError::BadLength),
        (b",\r\n", RespError::BadDouble),
        (b",1.\r\n", RespError::BadDouble),
        (b",.5\r\n", RespError::BadDouble),
        (b",1e\r\n", RespError::BadDouble),
        (b",Infinity\r\n", RespError::BadDouble),
        (b",NaN\r\n", RespError::BadDouble),
        (b",+inf\r\n", RespError::BadDouble),
        (b",0x10\r\n", RespError::BadDouble),
        (b",1_0\r\n", RespError::BadDouble),
        (b"#\r\n", RespError::BadBoolean),
        (b"#true\r\n", RespError::BadBoolean),
        (b"(\r\n", RespError::BadBigNumber),
        (b"(1.5\r\n", RespError::BadBigNumber),
        (b"(-\r\n", RespError::BadBigNumber),
        (b"_x\r\n", RespError::BadNull),
        (b"=3\r\ntxt\r\n", RespError::BadVerbatim),
        (b"=5\r\ntxt-x\r\n", RespError::BadVerbatim),
        (b"$?\r\n;4\r\nHell\r\n;0\r\n", RespError::Streamed),
        (b"*?\r\n:1\r\n.\r\n", RespError::Streamed),
        (b"%?\r\n", RespError::Streamed),
        (b"*1\r\n>1\r\n:1\r\n", RespError::NestedPush),
        (b"%1\r\n>0\r\n:1\r\n", RespError::NestedPush),
        (b"|1\r\n>0\r\n:1\r\n:1\r\n", RespError::NestedPush),
    ];
    for (bytes, error) in table {
        assert_eq!(&refused(l, bytes), error, "{bytes:?}");
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn a_reply_before_the_error_comes_out_and_the_error_sticks() {
    let (replies, error) = all_splits(Limits::default(), b"+OK\r\n:1\r\n+bad\n+OK\r\n");
    assert_eq!(replies, vec![simple("OK"), Value::Integer(1)]);
    assert_eq!(error, Some(RespError::BadLineEnding));
    let mut p = Parser::default();
    assert_eq!(p.advance(b"?"), Err(RespError::UnknownType(b'?')));
    assert_eq!(p.advance(b"+OK\r\n"), Err(RespError::UnknownType(b'?')));
}

fn small() -> Limits {
    Limits {
        max_bulk_len: 8,
        max_depth: 3,
        max_elements: 4,
        max_reply_bytes: 64,
        max_line_len: 10,
    }
}

#[test]
fn limits_at_and_over_the_edge() {
    let l = small();
    // Bulk length: 8 is fine, 9 is refused as soon as it is announced.
    assert_eq!(
        all_splits(l, b"$8\r\n12345678\r\n").0,
        vec![bulk("12345678")]
    );
    assert_eq!(
        refused(l, b"$9\r\n"),
        RespError::BulkTooLong { len: 9, limit: 8 }
    );
    assert_eq!(
        refused(l, b"!9\r\n"),
        RespError::BulkTooLong { len: 9, limit: 8 }
    );
    assert_eq!(
        refused(l, b"=9\r\n"),
        RespError::BulkTooLong { len: 9, limit: 8 }
    );
    // Elements: 4 fine, 5 refused at the count, whatever the aggregate.
    assert_eq!(all_splits(l, b"*4\r\n_\r\n_\r\n_\r\n_\r\n").1, None);
    for kind in [b'*', b'~', b'>', b'%', b'|'] {
        let input = [kind, b'5', b'\r', b'\n'];
        assert_eq!(
            refused(l, &input),
            RespError::TooManyElements { len: 5, limit: 4 }
        );
    }
    // Depth: three nested aggregates are fine, a fourth is refused (attributes count).
    assert_eq!(
        all_splits(l, b"*1\r\n*1\r\n*0\r\n").0,
        vec![Value::Array(vec![Value::Array(vec![Value::Array(vec![])])])]
    );
    assert_eq!(
        refused(l, b"*1\r\n*1\r\n*1\r\n*0\r\n"),
        RespError::TooDeep { limit: 3 }
    );
    assert_eq!(
        refused(l, b"*1\r\n%1\r\n|1\r\n*0\r\n"),
        RespError::TooDeep { limit: 3 }
    );
    // A line of 10 bytes (the type byte included) is fine; 11 are refused before any
    // CRLF arrives.
    assert_eq!(all_splits(l, b"+012345678\r\n").0.len(), 1);
    assert_eq!(
        refused(l, b"+0123456789"),
        RespError::LineTooLong { limit: 10 }
    );
    assert_eq!(all_splits(l, b"+012345678").1, None);
    // The CR of a line too long is out of the window: still too long.
    assert_eq!(
        refused(l, b"+0123456789\r\n"),
        RespError::LineTooLong { limit: 10 }
    );
    // Reply size: a bulk counts its whole length when announced. 4 + 4 × 14 = 60 bytes
    // fit in 64 and not in 59, refused at the fourth `$8` line.
    let full = [&b"*4\r\n"[..], &b"$8\r\n12345678\r\n".repeat(4)].concat();
    assert_eq!(full.len(), 60);
    assert_eq!(all_splits(l, &full).1, None);
    let tight = Limits {
        max_reply_bytes: 59,
        ..l
    };
    assert_eq!(
        refused(tight, &full[..50]),
        RespError::ReplyTooLarge { limit: 59 }
    );
    assert_eq!(feed(tight, &[&full[..45]]).1, None);
    // The count starts again with each reply.
    let two: Vec<u8> = [&full[..], &full[..]].concat();
    assert_eq!(all_splits(l, &two).0.len(), 2);
}

#[test]
fn default_limits() {
    let l = Limits::default();
    assert_eq!(
        (
            l.max_bulk_len,
            l.max_depth,
            l.max_elements,
            l.max_reply_bytes,
            l.max_line_len
        ),
        (64 << 20, 32, 1_048_576, 128 << 20, 65_536)
    );
    // 32 levels are fine, 33 are not.
    let deep = |n: usize| [b"*1\r\n".repeat(n - 1), b"*0\r\n".to_vec()].concat();
    assert!(parse(&deep(32), &l).unwrap().is_some());
    assert_eq!(parse(&deep(33), &l), Err(RespError::TooDeep { limit: 32 }));
}

#[test]
fn nothing_is_allocated_from_an_announced_size() {
    let mut p = Parser::default();
    // 64 MiB announced, 3 bytes there: 3 bytes held.
    assert_eq!(p.advance(b"$67108864\r\nabc").unwrap(), (14, None));
    let State::Data { data, left, .. } = &p.state else {
        panic!("{:?}", p.state)
    };
    assert_eq!((data.len(), *left), (3, 67_108_861));
    assert!(data.capacity() < 64, "{}", data.capacity());
    // A million elements announced, one there.
    let mut p = Parser::default();
    assert_eq!(p.advance(b"*1048576\r\n:1\r\n").unwrap(), (14, None));
    let Items::Array(items) = &p.stack[0].items else {
        panic!()
    };
    assert!(items.capacity() <= 4, "{}", items.capacity());
    // Growth never passes the announced size.
    let mut p = Parser::default();
    let mut buf = b"$100\r\n".to_vec();
    buf.extend_from_slice(&[b'x'; 60]);
    assert_eq!(p.advance(&buf).unwrap().1, None);
    assert_eq!(p.advance(&[b'x'; 39]).unwrap().1, None);
    let State::Data { data, .. } = &p.state else {
        panic!()
    };
    assert_eq!((data.len(), data.capacity()), (99, 100));
}

#[test]
fn a_long_line_dripping_in_is_scanned_once() {
    let mut p = Parser::default();
    let mut buf = b"+".to_vec();
    for i in 0..60_000 {
        buf.push(b'a' + (i % 26) as u8);
        assert_eq!(p.advance(&buf).unwrap(), (0, None));
        assert_eq!(p.scan, buf.len());
    }
    buf.extend_from_slice(b"\r\n");
    let (used, value) = p.advance(&buf).unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(value.unwrap().as_bytes().unwrap().len(), 60_000);
}

#[test]
fn a_large_reply_in_small_reads_is_linear() {
    // 20,000 elements of 50 bytes each, fed 7 bytes at a time.
    let mut input = b"*20000\r\n".to_vec();
    for i in 0..20_000 {
        Value::BulkString(format!("{i:050}").into_bytes()).encode(&mut input);
    }
    let pieces: Vec<&[u8]> = input.chunks(7).collect();
    let (replies, error, left) = feed(Limits::default(), &pieces);
    assert_eq!((replies.len(), error, left), (1, None, 0));
    let Value::Array(items) = &replies[0] else {
        panic!()
    };
    assert_eq!(items.len(), 20_000);
    assert_eq!(
        items[19_999],
        Value::BulkString(format!("{:050}", 19_999).into_bytes())
    );
}
