use super::*;

fn bulk(b: &[u8]) -> Value {
    Value::BulkString(b.to_vec())
}

#[test]
fn keys_share_one_hash_tag_per_topic() {
    let k = Keys::default();
    assert_eq!(k.seq("news"), "pushwire:{news}:seq");
    assert_eq!(k.stream("news"), "pushwire:{news}:events");
    assert_eq!(k.channel("news"), "pushwire:{news}");
    assert_eq!(k.topic_of_channel(b"pushwire:{news}"), Some("news"));
    for other in [
        &b"pushwire:news"[..],
        b"other:{news}",
        b"pushwire:{news",
        b"pushwire:{\xff}",
    ] {
        assert_eq!(k.topic_of_channel(other), None, "{other:?}");
    }
    let k = Keys::new("app1:");
    assert_eq!(k.channel("t"), "app1:{t}");
    assert_eq!(k.topic_of_channel(b"pushwire:{t}"), None);
}

#[test]
fn the_script_sha_is_sha1_of_its_text() {
    let sha = script_sha1();
    assert_eq!(sha.len(), 40);
    assert!(sha
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    assert_eq!(sha, script_sha1());
}

#[test]
fn publish_commands_exactly() {
    let k = Keys::default();
    let p = Publish {
        topic: "t",
        event: Some("greet"),
        data: b"hi",
        json: false,
        published_ms: 1700000000123,
        max_events: 1000,
    };
    let sha = script_sha1();
    let want = format!(
        "*15\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n4\r\n$16\r\npushwire:{{t}}:seq\r\n\
         $19\r\npushwire:{{t}}:events\r\n$18\r\npushwire:{{t}}:hooks\r\n$18\r\npushwire:hooks:out\r\n\
         $4\r\n1000\r\n$5\r\ngreet\r\n$1\r\n1\r\n$2\r\nhi\r\n\
         $13\r\n1700000000123\r\n$12\r\npushwire:{{t}}\r\n$1\r\nt\r\n$18\r\npushwire:hooks:new\r\n"
    );
    assert_eq!(
        String::from_utf8(publish_command(&k, &p, false).to_bytes()).unwrap(),
        want
    );
    // No event name: an empty name and the flag 0.
    let none = Publish { event: None, ..p };
    let bytes = publish_command(&k, &none, true).to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("*15\r\n$4\r\nEVAL\r\n"), "{text}");
    assert!(text.contains("$0\r\n\r\n$1\r\n0\r\n$2\r\nhi\r\n"), "{text}");
    assert!(text.contains(PUBLISH_SCRIPT));
    // A JSON event: the kind is 2 without a name, 3 with one.
    let json = Publish { json: true, ..none };
    let text = String::from_utf8(publish_command(&k, &json, false).to_bytes()).unwrap();
    assert!(text.contains("$0\r\n\r\n$1\r\n2\r\n$2\r\nhi\r\n"), "{text}");
    let named = Publish { json: true, ..p };
    let text = String::from_utf8(publish_command(&k, &named, false).to_bytes()).unwrap();
    assert!(
        text.contains("$5\r\ngreet\r\n$1\r\n3\r\n$2\r\nhi\r\n"),
        "{text}"
    );
}

#[test]
fn kind_flags_round_trip() {
    for named in [false, true] {
        for json in [false, true] {
            let flag = kind_flag(named, json);
            assert_eq!(parse_kind_flag(flag.as_bytes()), (named, json), "{flag}");
        }
    }
    // What older servers wrote ("0"/"1") reads the same; anything else is plain text.
    assert_eq!(parse_kind_flag(b"1"), (true, false));
    assert_eq!(parse_kind_flag(b"x"), (false, false));
    assert_eq!(parse_kind_flag(b""), (false, false));
}

#[test]
fn publish_replies() {
    assert_eq!(parse_publish_reply(&Value::Integer(17)), Ok(17));
    assert_eq!(
        parse_publish_reply(&Value::Error(b"NOSCRIPT No matching script.".to_vec())),
        Err(BackplaneError::NoScript)
    );
    assert_eq!(
        parse_publish_reply(&Value::Error(b"OOM command not allowed".to_vec())),
        Err(BackplaneError::Redis("OOM command not allowed".into()))
    );
    for bad in [
        Value::Integer(0),
        Value::Integer(-3),
        bulk(b"5"),
        Value::NullBulk,
    ] {
        assert!(
            matches!(parse_publish_reply(&bad), Err(BackplaneError::Shape(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn payloads_round_trip_and_bad_ones_are_named() {
    let cases = [
        Announced {
            id: 1796181760108698,
            published_ms: 1796181760108,
            event: Some("greet".into()),
            data: b"hello world".to_vec(),
            json: false,
        },
        Announced {
            id: 5,
            published_ms: 0,
            event: None,
            data: b"- 3 tricky\r\n\0".to_vec(),
            json: false,
        },
        Announced {
            id: 6,
            published_ms: 1,
            event: Some(String::new()),
            data: Vec::new(),
            json: false,
        },
        Announced {
            id: 7,
            published_ms: 1796181760109,
            event: None,
            data: br#"{"msg":"hi"}"#.to_vec(),
            json: true,
        },
        Announced {
            id: 8,
            published_ms: 2,
            event: Some("up".into()),
            data: b"[1,2]".to_vec(),
            json: true,
        },
    ];
    for a in &cases {
        let bytes = a.encode();
        assert_eq!(Announced::decode(&bytes).as_ref(), Ok(a), "{bytes:?}");
    }
    assert_eq!(
        cases[0].encode(),
        b"1796181760108698 1796181760108 5 greethello world"
    );
    assert_eq!(cases[3].encode(), br#"7 1796181760109j - {"msg":"hi"}"#);
    assert_eq!(cases[4].encode(), b"8 2j 2 up[1,2]");
    assert_eq!(cases[1].encode(), b"5 0 - - 3 tricky\r\n\0");
    for (bad, why) in [
        (&b""[..], "id"),
        (b"12", "id"),
        (b"x 1 - d", "id"),
        (b"0 1 - d", "id"),
        (b"1 t - d", "published time"),
        (b"1 2 9 ab", "event longer than the payload"),
        (b"1 2 x ab", "event length"),
        (b"1 2 1 \xffd", "event name is not UTF-8"),
        (b"99999999999999999999999 2 - d", "id"),
    ] {
        assert_eq!(
            Announced::decode(bad),
            Err(BackplaneError::Payload(why)),
            "{bad:?}"
        );
    }
}

#[test]
fn range_commands_and_replies() {
    let k = Keys::default();
    assert_eq!(
        range_command(&k, "t", 41, 100).to_bytes(),
        b"*6\r\n$6\r\nXRANGE\r\n$19\r\npushwire:{t}:events\r\n$5\r\n(0-41\r\n$1\r\n+\r\n$5\r\nCOUNT\r\n$3\r\n100\r\n"
    );
    let entry = |id: &[u8], fields: &[&[u8]]| {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    };
    let reply = Value::Array(vec![
        entry(b"0-42", &[b"e", b"greet", b"d", b"hi", b"t", b"1700"]),
        entry(b"0-43", &[b"d", b"", b"t", b"1701", b"x", b"ignored"]),
        entry(b"0-44", &[b"d", b"{}", b"t", b"1702", b"j", b"1"]),
    ]);
    assert_eq!(
        parse_range(&reply),
        Ok(vec![
            Announced {
                id: 42,
                published_ms: 1700,
                event: Some("greet".into()),
                data: b"hi".to_vec(),
                json: false,
            },
            Announced {
                id: 43,
                published_ms: 1701,
                event: None,
                data: Vec::new(),
                json: false,
            },
            Announced {
                id: 44,
                published_ms: 1702,
                event: None,
                data: b"{}".to_vec(),
                json: true,
            },
        ])
    );
    assert_eq!(parse_range(&Value::Array(vec![])), Ok(vec![]));
    assert_eq!(parse_range(&Value::NullArray), Ok(vec![]));
    let bad = [
        Value::Integer(3),
        Value::Array(vec![Value::Integer(1)]),
        Value::Array(vec![entry(b"5-1", &[b"d", b"x"])]),
        Value::Array(vec![entry(b"0-0", &[b"d", b"x"])]),
        Value::Array(vec![entry(b"0-1", &[b"d"])]),
        Value::Array(vec![entry(b"0-1", &[b"t", b"soon"])]),
        Value::Array(vec![entry(b"0-1", &[b"e", b"\xff"])]),
    ];
    for b in bad {
        assert!(
            matches!(parse_range(&b), Err(BackplaneError::Shape(_))),
            "{b:?}"
        );
    }
    assert_eq!(
        parse_range(&Value::Error(b"WRONGTYPE x".to_vec())),
        Err(BackplaneError::Redis("WRONGTYPE x".into()))
    );
}

#[test]
fn the_cursor_passes_live_events_in_order_once() {
    let mut c = Cursor::new();
    assert_eq!(c.offer(100), Offer::Deliver);
    c.delivered(100);
    assert_eq!(c.offer(101), Offer::Deliver);
    c.delivered(101);
    assert_eq!(c.offer(101), Offer::Duplicate);
    assert_eq!(c.offer(50), Offer::Duplicate);
    // 102 and 103 were missed: read the stream after 101 first.
    assert_eq!(c.offer(104), Offer::CatchUp { after: 101 });
    for id in [102, 103, 104] {
        assert_eq!(c.offer(id), Offer::Deliver);
        c.delivered(id);
    }
    // Redis lost its data: the counter restarted from its clock, far ahead; the catch-up
    // found nothing, so the node skips to it and clients see the gap.
    assert_eq!(
        c.offer(1_800_000_000_000_000),
        Offer::CatchUp { after: 104 }
    );
    c.skip_to(1_800_000_000_000_000);
    assert_eq!(c.offer(1_800_000_000_000_001), Offer::Deliver);
    // Never backwards.
    c.delivered(7);
    assert_eq!(c.last(), Some(1_800_000_000_000_000));
    assert_eq!(Cursor::after(9).offer(10), Offer::Deliver);
}
