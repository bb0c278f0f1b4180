use super::*;

fn e(at: usize, cause: Cause) -> Result<(), JsonError> {
    Err(JsonError { at, cause })
}

#[test]
fn accepts_every_kind_of_value() {
    let table: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "10",
        "1234567890",
        "0.5",
        "-0.0",
        "1.25e10",
        "1E+2",
        "1e-2",
        "0e0",
        "-12.5E-07",
        "123456789012345678901234567890",
        "true",
        "false",
        "null",
        "\"\"",
        "\"hi\"",
        r#""\" \\ \/ \b \f \n \r \t""#,
        r#""\u0000\u00e9\uFFFF\uabCD""#,
        r#""\ud83d\ude00""#,
        r#""\uDBFF\uDFFF""#,
        "\"é€😀 \u{7f}\"",
        "[]",
        "{}",
        "[1]",
        "[1,2,3]",
        r#"{"a":1}"#,
        r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
        r#"{"":""}"#,
        r#"{"a":1,"a":2}"#,
        " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } } \n",
        "[[[[]]]]",
        "[{},[],\"\",0,{\"x\":[{}]}]",
        " 7 ",
    ];
    for text in table {
        assert_eq!(check(text.as_bytes()), Ok(()), "{text:?}");
    }
}

#[test]
fn refuses_with_cause_and_position() {
    use Cause::*;
    let table: &[(&[u8], Result<(), JsonError>)] = &[
        (b"", e(0, UnexpectedEnd)),
        (b"   ", e(3, UnexpectedEnd)),
        (b"{\"msg\" 1}", e(7, ExpectedColon)),
        (b"{\"a\":1,}", e(7, ExpectedName)),
        (b"[1,]", e(3, ExpectedValue)),
        (b"[1,,2]", e(3, ExpectedValue)),
        (b"[,1]", e(1, ExpectedValue)),
        (b"[1 2]", e(3, ExpectedCommaOrBracket)),
        (b"{\"a\":1 \"b\":2}", e(7, ExpectedCommaOrBrace)),
        (b"{\"a\":1]", e(6, ExpectedCommaOrBrace)),
        (b"[1}", e(2, ExpectedCommaOrBracket)),
        (b"{a:1}", e(1, ExpectedName)),
        (b"{1:1}", e(1, ExpectedName)),
        (b"{\"a\"}", e(4, ExpectedColon)),
        (b"{\"a\":}", e(5, ExpectedValue)),
        (b"[", e(1, UnexpectedEnd)),
        (b"{", e(1, UnexpectedEnd)),
        (b"{\"a\"", e(4, UnexpectedEnd)),
        (b"{\"a\":", e(5, UnexpectedEnd)),
        (b"[1", e(2, UnexpectedEnd)),
        (b"[1,", e(3, UnexpectedEnd)),
        (b"\"abc", e(4, UnexpectedEnd)),
        (b"1 2", e(2, TrailingCharacters)),
        (b"{}x", e(2, TrailingCharacters)),
        (b"[]]", e(2, TrailingCharacters)),
        (b"{}{}", e(2, TrailingCharacters)),
        (b"nul", e(3, UnexpectedEnd)),
        (b"nulL", e(3, BadLiteral)),
        (b"True", e(0, ExpectedValue)),
        (b"tru e", e(3, BadLiteral)),
        (b"falsey", e(5, TrailingCharacters)),
        (b"NaN", e(0, ExpectedValue)),
        (b"Infinity", e(0, ExpectedValue)),
        (b"-Infinity", e(1, ExpectedDigit)),
        (b"undefined", e(0, ExpectedValue)),
        (b"'a'", e(0, ExpectedValue)),
        // Numbers (RFC 8259 §6).
        (b"01", e(0, LeadingZero)),
        (b"-01", e(1, LeadingZero)),
        (b"00", e(0, LeadingZero)),
        (b"+1", e(0, ExpectedValue)),
        (b"-", e(1, UnexpectedEnd)),
        (b"- 1", e(1, ExpectedDigit)),
        (b".5", e(0, ExpectedValue)),
        (b"1.", e(2, UnexpectedEnd)),
        (b"1.e5", e(2, ExpectedDigit)),
        (b"1e", e(2, UnexpectedEnd)),
        (b"1e+", e(3, UnexpectedEnd)),
        (b"1e+x", e(3, ExpectedDigit)),
        (b"1.5.5", e(3, TrailingCharacters)),
        (b"0x10", e(1, TrailingCharacters)),
        (b"[1.]", e(3, ExpectedDigit)),
        // Strings (RFC 8259 §7).
        (b"\"a\nb\"", e(2, ControlCharacter)),
        (b"\"\t\"", e(1, ControlCharacter)),
        (b"\"\x00\"", e(1, ControlCharacter)),
        (b"\"\\x\"", e(2, BadEscape)),
        (b"\"\\'\"", e(2, BadEscape)),
        (b"\"\\", e(2, UnexpectedEnd)),
        (b"\"\\u12\"", e(5, BadUnicodeEscape)),
        (b"\"\\u12", e(5, UnexpectedEnd)),
        (b"\"\\uZZZZ\"", e(3, BadUnicodeEscape)),
        (b"\"\\U0041\"", e(2, BadEscape)),
        // Lone surrogates (a choice: see the module docs).
        (b"\"\\ud800\"", e(1, LoneSurrogate)),
        (b"\"\\udc00\"", e(1, LoneSurrogate)),
        (b"\"x\\udfff\\ud800\"", e(2, LoneSurrogate)),
        (b"\"\\ud800\\u0041\"", e(1, LoneSurrogate)),
        (b"\"\\ud800\\ud800\"", e(1, LoneSurrogate)),
        (b"\"\\ud800x\"", e(1, LoneSurrogate)),
        (b"\"\\ud800\\u00\"", e(11, BadUnicodeEscape)),
        // Whitespace is only the four RFC characters.
        (b"\x0c1", e(0, ExpectedValue)),
        (b"1\x0b", e(1, TrailingCharacters)),
        ("\u{a0}1".as_bytes(), e(0, ExpectedValue)),
        // Comments are not JSON.
        (b"[1 /* c */]", e(3, ExpectedCommaOrBracket)),
        (b"// c\n1", e(0, ExpectedValue)),
        // Encoding (RFC 8259 §8.1).
        (b"\"\xff\"", e(1, InvalidUtf8)),
        (b"[\"\xc3\"]", e(2, InvalidUtf8)),
        ("\u{feff}1".as_bytes(), e(0, ByteOrderMark)),
    ];
    for (text, want) in table {
        assert_eq!(check(text), *want, "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn messages_name_cause_and_position() {
    let table: &[(&[u8], &str)] = &[
        (b"{\"msg\" 1}", "invalid JSON at byte 7: expected ':'"),
        (b"[1,]", "invalid JSON at byte 3: expected a value"),
        (b"", "invalid JSON at byte 0: unexpected end of input"),
        (b"01", "invalid JSON at byte 0: leading zero in a number"),
        (
            b"\"\\ud800\"",
            "invalid JSON at byte 1: unpaired surrogate in a \\u escape",
        ),
    ];
    for (text, want) in table {
        assert_eq!(check(text).unwrap_err().to_string(), *want);
    }
    let deep = "[".repeat(65) + &"]".repeat(65);
    assert_eq!(
        check(deep.as_bytes()).unwrap_err().to_string(),
        "JSON nested deeper than 64 (at byte 64)"
    );
    let small = Limits {
        max_bytes: 3,
        ..Limits::default()
    };
    assert_eq!(
        check_with(b"[1,2]", small).unwrap_err().to_string(),
        "JSON larger than 3 bytes"
    );
    assert_eq!(check_with(b"[1]", small), Ok(()));
}

#[test]
fn depth_limit_is_exact() {
    for max in [0usize, 1, 2, 63, 64, 65, 127, 128, 129, 200, 1000] {
        let lim = Limits {
            max_depth: max,
            max_bytes: usize::MAX,
        };
        for depth in [max.saturating_sub(1), max, max + 1] {
            // Alternate arrays and objects, so the stack's bits are exercised.
            let mut text = String::new();
            for d in 0..depth {
                text.push_str(if d % 3 == 1 { "{\"k\":" } else { "[" });
            }
            text.push('0');
            for d in (0..depth).rev() {
                text.push(if d % 3 == 1 { '}' } else { ']' });
            }
            let got = check_with(text.as_bytes(), lim);
            if depth <= max {
                assert_eq!(got, Ok(()), "depth {depth} max {max}");
            } else {
                let err = got.unwrap_err();
                assert_eq!(err.cause, Cause::TooDeep(max), "depth {depth} max {max}");
            }
        }
    }
    // A scalar has depth 0: accepted with max_depth 0; `[]` is not.
    let zero = Limits {
        max_depth: 0,
        max_bytes: usize::MAX,
    };
    assert_eq!(check_with(b"1", zero), Ok(()));
    assert_eq!(check_with(b"[]", zero), e(0, Cause::TooDeep(0)));
    // Siblings do not add depth.
    let wide = format!("[{}0]", "[],".repeat(10_000));
    assert_eq!(
        check_with(
            wide.as_bytes(),
            Limits {
                max_depth: 2,
                ..Limits::default()
            }
        ),
        Ok(())
    );
}

#[test]
fn closing_the_wrong_kind_is_refused_at_depth() {
    // The stack must remember which kind each level is, past the inline words too.
    let mut text = "[".repeat(150);
    text.push('{');
    text.push_str(&"]".repeat(151));
    let lim = Limits {
        max_depth: 1000,
        max_bytes: usize::MAX,
    };
    assert_eq!(
        check_with(text.as_bytes(), lim),
        e(151, Cause::ExpectedName)
    );
    let mut text = "[".repeat(150);
    text.push_str("{\"a\":[1]]");
    assert_eq!(
        check_with(text.as_bytes(), lim),
        e(158, Cause::ExpectedCommaOrBrace)
    );
}

#[test]
fn every_prefix_of_a_valid_text_is_refused_or_a_valid_scalar() {
    let text = br#"{"a":[1,-2.5e3,true,null,"x\u00e9\ud83d\ude00"],"b":{}}"#;
    assert_eq!(check(text), Ok(()));
    for n in 0..text.len() {
        let got = check(&text[..n]);
        let err = got.unwrap_err();
        assert!(err.at <= n, "prefix {n}: {err:?}");
        assert_eq!(err.cause, Cause::UnexpectedEnd, "prefix {n}");
    }
}

/// A ~100 KB realistic document, for the throughput figure.
fn realistic_doc() -> String {
    let mut s = String::from("{\"events\":[");
    let mut i = 0;
    while s.len() < 100_000 {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            concat!(
                "{{\"id\":{},\"user\":{{\"name\":\"user {}\",\"email\":\"u{}@example.com\",",
                "\"tags\":[\"a\",\"b\\n\",\"caf\u{e9}\"]}},\"score\":-{}.25e-3,",
                "\"ok\":true,\"note\":null,\"text\":\"Lorem ipsum dolor sit amet, ",
                "\\\"quoted\\\" \\u00e9 \\ud83d\\ude00\"}}"
            ),
            i, i, i, i
        ));
        i += 1;
    }
    s.push_str("]}");
    s
}

#[test]
fn realistic_document_is_valid() {
    let doc = realistic_doc();
    assert!(doc.len() >= 100_000);
    assert_eq!(check(doc.as_bytes()), Ok(()));
}

/// `cargo test --release --lib proto::json::check::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput() {
    let doc = realistic_doc();
    let rounds = 2000;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        assert!(check(std::hint::black_box(doc.as_bytes())).is_ok());
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (doc.len() * rounds) as f64 / 1e6;
    println!(
        "json check: {} bytes x {rounds} in {secs:.3} s = {:.0} MB/s",
        doc.len(),
        mb / secs
    );
}
