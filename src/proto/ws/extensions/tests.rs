use super::*;

fn ext(name: &str, params: &[(&str, Option<&str>)]) -> Extension {
    Extension {
        name: name.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect(),
    }
}

#[test]
fn lists_parse_with_params_quotes_and_empty_elements() {
    let got = parse(
        "permessage-deflate; client_max_window_bits, permessage-deflate;server_max_window_bits=\"10\" ; x=y ,, foo",
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            ext("permessage-deflate", &[("client_max_window_bits", None)]),
            ext(
                "permessage-deflate",
                &[("server_max_window_bits", Some("10")), ("x", Some("y"))]
            ),
            ext("foo", &[]),
        ]
    );
    assert_eq!(parse("").unwrap(), vec![]);
    assert_eq!(parse(" , ").unwrap(), vec![]);
    // An escaped character inside quotes is unescaped, and must leave a token.
    assert_eq!(
        parse("a; b=\"1\\0\"").unwrap(),
        vec![ext("a", &[("b", Some("10"))])]
    );
}

#[test]
fn malformed_lists_are_refused() {
    for (field, err) in [
        (";x", ParseError::MissingName),
        ("a; ", ParseError::BadParam),
        ("a; =1", ParseError::BadParam),
        ("a b", ParseError::BadParam),
        ("a; b=", ParseError::BadValue),
        ("a; b=\"x y\"", ParseError::BadValue),
        ("a; b=\"10", ParseError::Unterminated),
        ("a; b=\"1\\", ParseError::Unterminated),
        ("a; b=@", ParseError::BadValue),
    ] {
        assert_eq!(parse(field), Err(err), "{field:?}");
    }
    let long = "a,".repeat(MAX_EXTENSIONS + 1);
    assert_eq!(parse(&long), Err(ParseError::TooLong));
    assert_eq!(parse(&"a".repeat(MAX_FIELD + 1)), Err(ParseError::TooLong));
}

#[test]
fn deflate_params_are_checked() {
    let p = |params: &[(&str, Option<&str>)]| {
        DeflateParams::from_params(&ext("permessage-deflate", params).params)
    };
    assert_eq!(
        p(&[
            ("server_no_context_takeover", None),
            ("client_max_window_bits", None),
            ("server_max_window_bits", Some("12")),
        ]),
        Ok(DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: Some(12),
            client_max_window_bits: Some(None),
        })
    );
    let dup = [
        ("client_no_context_takeover", None),
        ("CLIENT_NO_CONTEXT_TAKEOVER", None),
    ];
    assert!(matches!(p(&dup), Err(ParamError::Duplicate(_))));
    assert!(matches!(
        p(&[("mystery", None)]),
        Err(ParamError::Unknown(_))
    ));
    for bad in ["7", "16", "08", "", "x", "100"] {
        let v = [("server_max_window_bits", Some(bad))];
        assert!(matches!(p(&v), Err(ParamError::BadValue(_))), "{bad}");
    }
    assert!(p(&[("server_max_window_bits", None)]).is_err());
    assert!(p(&[("server_no_context_takeover", Some("1"))]).is_err());
    assert_eq!(
        p(&[("client_max_window_bits", Some("8"))])
            .unwrap()
            .client_max_window_bits,
        Some(Some(8))
    );
}

#[test]
fn the_server_takes_the_first_offer_it_can_honour() {
    let policy = ServerPolicy::default();
    // What browsers send.
    let a = negotiate("permessage-deflate; client_max_window_bits", policy).unwrap();
    assert_eq!(
        a.response(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!((a.server_window_bits, a.client_window_bits), (15, 15));
    // A first offer with an unknown parameter and one needing 8 bits are declined.
    let field = "permessage-deflate; foo, permessage-deflate; server_max_window_bits=8, \
                 permessage-deflate; server_max_window_bits=10; client_max_window_bits=9";
    let a = negotiate(field, policy).unwrap();
    assert_eq!(
        a.response(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=9"
    );
    assert_eq!((a.server_window_bits, a.client_window_bits), (10, 9));
    // Nothing acceptable: no extension, the handshake goes on.
    assert_eq!(negotiate("x-webkit-deflate-frame", policy), None);
    assert_eq!(negotiate("permessage-deflate; a=1", policy), None);
    assert_eq!(
        negotiate("permessage-deflate; client_max_window_bits=8", policy),
        None
    );
    assert_eq!(negotiate("permessage-deflate;;", policy), None);
    // With context takeover allowed, only what the client asked for is sent.
    let keep = ServerPolicy {
        context_takeover: true,
    };
    let a = negotiate("permessage-deflate; client_no_context_takeover", keep).unwrap();
    assert_eq!(
        a.response(),
        "permessage-deflate; client_no_context_takeover"
    );
    assert!(!a.server_no_context_takeover);
}

#[test]
fn the_client_checks_the_answer_against_its_offer() {
    let offer = DeflateParams {
        client_max_window_bits: Some(None),
        ..DeflateParams::default()
    };
    assert_eq!(check_response("", &offer), Ok(None));
    let a = check_response(
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
        &offer,
    )
    .unwrap()
    .unwrap();
    assert_eq!((a.server_window_bits, a.client_window_bits), (15, 10));
    assert!(a.server_no_context_takeover && !a.client_no_context_takeover);
    let fails = [
        "x-other",
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=8",
        "permessage-deflate; bogus",
        "permessage-deflate; server_max_window_bits=99",
        "permessage-deflate; ;",
    ];
    for f in fails {
        assert!(check_response(f, &offer).is_err(), "{f}");
    }
    // Without client_max_window_bits in the offer the server may not limit the client.
    let plain = DeflateParams::default();
    assert!(check_response("permessage-deflate; client_max_window_bits=12", &plain).is_err());
    // A server window asked for must be answered, within the limit.
    let limited = DeflateParams {
        server_max_window_bits: Some(11),
        ..DeflateParams::default()
    };
    assert!(check_response("permessage-deflate", &limited).is_err());
    assert!(check_response("permessage-deflate; server_max_window_bits=12", &limited).is_err());
    let a = check_response("permessage-deflate; server_max_window_bits=9", &limited)
        .unwrap()
        .unwrap();
    assert_eq!(a.server_window_bits, 9);
}
