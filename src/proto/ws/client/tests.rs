use super::*;
use crate::proto::ws::extensions::{negotiate, ParamError, ServerPolicy};
use crate::proto::ws::handshake::validate_request;

/// RFC 6455 §1.3: the nonce whose base64 is `dGhlIHNhbXBsZSBub25jZQ==`.
const NONCE: &[u8; 16] = b"the sample nonce";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn url(text: &str) -> WsUrl {
    WsUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn request(url_text: &str, offer: &ClientOffer<'_>) -> (String, String) {
    let mut out = Vec::new();
    let accept = write_request(&mut out, &url(url_text), NONCE, offer).unwrap();
    (String::from_utf8(out).unwrap(), accept)
}

/// A 101 with the accept value for [`NONCE`] and `extra` header lines (each ending CRLF).
fn answer(extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
    )
}

const DEFLATE: DeflateParams = DeflateParams {
    server_no_context_takeover: false,
    client_no_context_takeover: false,
    server_max_window_bits: None,
    client_max_window_bits: Some(None),
};

const CHAT: ClientOffer<'static> = ClientOffer {
    protocols: &["chat", "superchat"],
    deflate: Some(DEFLATE),
    headers: &[],
};

#[test]
fn autobahn_request_bytes() {
    let (req, accept) = request(
        "ws://127.0.0.1:9001/runCase?case=3&agent=pushwire",
        &ClientOffer::default(),
    );
    assert_eq!(
        req,
        "GET /runCase?case=3&agent=pushwire HTTP/1.1\r\n\
         Host: 127.0.0.1:9001\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(accept, ACCEPT);
}

#[test]
fn offer_request_bytes() {
    let offer = ClientOffer {
        headers: &[
            ("Origin", "http://example.com"),
            ("Authorization", "Bearer x"),
        ],
        ..CHAT
    };
    let (req, _) = request("wss://server.example.com/chat", &offer);
    assert_eq!(
        req,
        "GET /chat HTTP/1.1\r\n\
         Host: server.example.com\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat, superchat\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
         Origin: http://example.com\r\n\
         Authorization: Bearer x\r\n\r\n"
    );
}

#[test]
fn deflate_offers_render_every_parameter() {
    let all = DeflateParams {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(10),
        client_max_window_bits: Some(Some(12)),
    };
    assert_eq!(
        render_deflate(&all),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=12"
    );
    assert_eq!(
        render_deflate(&DeflateParams::default()),
        "permessage-deflate"
    );
    // What is rendered parses back to the same offer.
    let parsed = extensions::parse(&render_deflate(&all)).unwrap();
    assert_eq!(DeflateParams::from_params(&parsed[0].params), Ok(all));
}

#[test]
fn urls_parse() {
    let cases: [(&str, bool, &str, u16, &str, &str); 13] = [
        (
            "ws://example.com",
            false,
            "example.com",
            80,
            "/",
            "example.com",
        ),
        (
            "wss://example.com",
            true,
            "example.com",
            443,
            "/",
            "example.com",
        ),
        (
            "WS://Example.COM:80/a?b",
            false,
            "example.com",
            80,
            "/a?b",
            "example.com",
        ),
        ("WsS://h:443/", true, "h", 443, "/", "h"),
        ("ws://h:443", false, "h", 443, "/", "h:443"),
        ("wss://h:80", true, "h", 80, "/", "h:80"),
        ("ws://[::1]:8080/x", false, "::1", 8080, "/x", "[::1]:8080"),
        ("wss://[0:0::1]", true, "::1", 443, "/", "[::1]"),
        ("ws://h?x=1", false, "h", 80, "/?x=1", "h"),
        ("ws://h/p?", false, "h", 80, "/p", "h"),
        ("ws://h:/p", false, "h", 80, "/p", "h"),
        (
            "ws://h/a%23b/?q=%20&r",
            false,
            "h",
            80,
            "/a%23b/?q=%20&r",
            "h",
        ),
        (
            "ws://127.0.0.1:9001/runCase?case=3&agent=pushwire",
            false,
            "127.0.0.1",
            9001,
            "/runCase?case=3&agent=pushwire",
            "127.0.0.1:9001",
        ),
    ];
    for (text, secure, host, port, resource, host_header) in cases {
        let u = url(text);
        let want = WsUrl {
            secure,
            host: host.into(),
            port,
            resource: resource.into(),
        };
        assert_eq!(u, want, "{text}");
        assert_eq!(u.host_header(), host_header, "{text}");
        // The normalized form parses back to the same URL.
        assert_eq!(WsUrl::parse(&u.to_string()), Ok(u), "{text}");
    }
    assert_eq!(url("WSS://[::1]:9/x?y").to_string(), "wss://[::1]:9/x?y");
}

#[test]
fn urls_refused() {
    let cases = [
        ("http://h/", UrlError::Scheme),
        ("h/x", UrlError::Scheme),
        ("ws:/h", UrlError::Scheme),
        ("wss:h", UrlError::Scheme),
        ("ws://h/#f", UrlError::Fragment),
        ("ws://h#", UrlError::Fragment),
        ("ws://h:0", UrlError::BadPort),
        ("ws://h:65536/", UrlError::BadPort),
        ("ws://h:8a", UrlError::BadPort),
        ("ws://h:-1", UrlError::BadPort),
        ("ws://h:+80", UrlError::BadPort),
        ("ws://h:1:2", UrlError::BadPort),
        ("ws://", UrlError::EmptyHost),
        ("ws:///x", UrlError::EmptyHost),
        ("ws://:80/x", UrlError::EmptyHost),
        ("ws://?q", UrlError::EmptyHost),
        ("ws://u@h/", UrlError::UserInfo),
        ("ws://u:p@h/", UrlError::UserInfo),
        ("ws://h x/", UrlError::BadChar(6)),
        ("ws://h/\u{e9}", UrlError::BadChar(7)),
        ("ws://h/\r\nX: y", UrlError::BadChar(7)),
        ("ws://h/\x7f", UrlError::BadChar(7)),
        ("ws://[::1/x", UrlError::BadIpv6),
        ("ws://[::1]x", UrlError::BadIpv6),
        ("ws://[fe80::1%25eth0]/", UrlError::BadIpv6),
        ("ws://[zz]/", UrlError::BadIpv6),
        ("ws://[]/", UrlError::BadIpv6),
        ("ws://h%41/", UrlError::BadHost),
        ("ws://a\\b/", UrlError::BadHost),
        ("ws://a<b/", UrlError::BadHost),
        ("ws://a]b/", UrlError::BadHost),
    ];
    for (text, err) in cases {
        assert_eq!(WsUrl::parse(text), Err(err), "{text:?}");
    }
    let longest = format!("ws://h/{}", "a".repeat(MAX_URL_LEN - 7));
    assert_eq!(url(&longest).resource.len(), MAX_URL_LEN - 6);
    assert_eq!(WsUrl::parse(&format!("{longest}a")), Err(UrlError::TooLong));
    let messages = [
        (UrlError::Scheme, "URL must start with ws:// or wss://"),
        (UrlError::Fragment, "URL has a fragment (escape '#' as %23)"),
        (UrlError::BadPort, "port must be a number from 1 to 65535"),
        (UrlError::EmptyHost, "URL has no host"),
        (UrlError::TooLong, "URL is longer than 2048 bytes"),
        (
            UrlError::BadChar(7),
            "URL has a space, control or non-ASCII byte at 7",
        ),
    ];
    for (err, text) in messages {
        assert_eq!(err.to_string(), text);
    }
}

#[test]
fn offers_refused_and_nothing_written() {
    let d = |server, client| DeflateParams {
        server_max_window_bits: server,
        client_max_window_bits: client,
        ..DeflateParams::default()
    };
    let cases: Vec<(ClientOffer<'static>, OfferError)> = vec![
        (
            ClientOffer {
                protocols: &["a b"],
                ..ClientOffer::default()
            },
            OfferError::BadProtocol("a b".into()),
        ),
        (
            ClientOffer {
                protocols: &[""],
                ..ClientOffer::default()
            },
            OfferError::BadProtocol("".into()),
        ),
        (
            ClientOffer {
                protocols: &["a,b"],
                ..ClientOffer::default()
            },
            OfferError::BadProtocol("a,b".into()),
        ),
        (
            ClientOffer {
                protocols: &["a", "b", "a"],
                ..ClientOffer::default()
            },
            OfferError::DuplicateProtocol("a".into()),
        ),
        (
            ClientOffer {
                headers: &[("X Y", "1")],
                ..ClientOffer::default()
            },
            OfferError::BadHeaderName("X Y".into()),
        ),
        (
            ClientOffer {
                headers: &[("X:Y", "1")],
                ..ClientOffer::default()
            },
            OfferError::BadHeaderName("X:Y".into()),
        ),
        (
            ClientOffer {
                headers: &[("", "1")],
                ..ClientOffer::default()
            },
            OfferError::BadHeaderName("".into()),
        ),
        (
            ClientOffer {
                headers: &[("Cookie", "a=b\r\nX-Evil: 1")],
                ..ClientOffer::default()
            },
            OfferError::BadHeaderValue("Cookie".into()),
        ),
        (
            ClientOffer {
                headers: &[("Cookie", "a\nb")],
                ..ClientOffer::default()
            },
            OfferError::BadHeaderValue("Cookie".into()),
        ),
        (
            ClientOffer {
                headers: &[("Cookie", "a\0b")],
                ..ClientOffer::default()
            },
            OfferError::BadHeaderValue("Cookie".into()),
        ),
        (
            ClientOffer {
                headers: &[("host", "elsewhere")],
                ..ClientOffer::default()
            },
            OfferError::ReservedHeader("host".into()),
        ),
        (
            ClientOffer {
                headers: &[("SEC-WEBSOCKET-KEY", "x")],
                ..ClientOffer::default()
            },
            OfferError::ReservedHeader("SEC-WEBSOCKET-KEY".into()),
        ),
        (
            ClientOffer {
                headers: &[("Content-Length", "3")],
                ..ClientOffer::default()
            },
            OfferError::ReservedHeader("Content-Length".into()),
        ),
        (
            ClientOffer {
                deflate: Some(d(Some(8), None)),
                ..ClientOffer::default()
            },
            OfferError::BadWindow("server_max_window_bits"),
        ),
        (
            ClientOffer {
                deflate: Some(d(None, Some(Some(16)))),
                ..ClientOffer::default()
            },
            OfferError::BadWindow("client_max_window_bits"),
        ),
    ];
    for (offer, err) in cases {
        assert_eq!(check_offer(&offer), Err(err.clone()), "{offer:?}");
        let mut out = b"kept".to_vec();
        let got = write_request(&mut out, &url("ws://h/"), NONCE, &offer);
        assert_eq!(got, Err(err));
        assert_eq!(out, b"kept");
    }
    // A tab in a value, and obs-text, are field content.
    let fine = ClientOffer {
        headers: &[("X-A", "a\tb"), ("X-B", "caf\u{e9}")],
        ..CHAT
    };
    assert_eq!(check_offer(&fine), Ok(()));
    // A URL built by hand is checked too.
    let hand = |host: &str, port, resource: &str| WsUrl {
        secure: false,
        host: host.into(),
        port,
        resource: resource.into(),
    };
    for bad in [
        hand("h", 80, "/x\r\nX-Evil: 1"),
        hand("h", 80, "x"),
        hand("h", 80, "/a b"),
        hand("h\r\nX: y", 80, "/"),
        hand("", 80, "/"),
        hand("h", 0, "/"),
    ] {
        let mut out = Vec::new();
        let got = write_request(&mut out, &bad, NONCE, &ClientOffer::default());
        assert_eq!(got, Err(OfferError::BadUrl), "{bad:?}");
        assert!(out.is_empty());
    }
    let (req, _) = request("ws://[::1]/", &ClientOffer::default());
    assert!(req.contains("\r\nHost: [::1]\r\n"));
    assert_eq!(
        OfferError::BadHeaderValue("Cookie".into()).to_string(),
        "a control character in the value of Cookie"
    );
}

#[test]
fn a_plain_answer_is_accepted() {
    let resp = answer("");
    let got = read_response(resp.as_bytes(), ACCEPT, &ClientOffer::default());
    assert_eq!(
        got,
        Ok(Some(Accepted {
            protocol: None,
            deflate: None,
            head_len: resp.len(),
        }))
    );
    // The same with the offer of a subprotocol and deflate: the server may take neither.
    let got = read_response(resp.as_bytes(), ACCEPT, &CHAT)
        .unwrap()
        .unwrap();
    assert_eq!((got.protocol, got.deflate), (None, None));
}

#[test]
fn every_prefix_is_incomplete_and_frames_after_the_head_are_left() {
    let resp = answer(
        "Sec-WebSocket-Protocol: chat\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n",
    );
    let mut bytes = resp.clone().into_bytes();
    for end in 0..bytes.len() {
        assert_eq!(
            read_response(&bytes[..end], ACCEPT, &CHAT),
            Ok(None),
            "{end}"
        );
    }
    let whole = read_response(&bytes, ACCEPT, &CHAT).unwrap().unwrap();
    assert_eq!(whole.head_len, resp.len());
    assert_eq!(whole.protocol.as_deref(), Some("chat"));
    // A text frame "hello" from the server, in the same read.
    bytes.extend_from_slice(b"\x81\x05hello");
    let with_frame = read_response(&bytes, ACCEPT, &CHAT).unwrap().unwrap();
    assert_eq!(with_frame, whole);
    assert_eq!(&bytes[with_frame.head_len..], b"\x81\x05hello");
}

#[test]
fn lenient_forms_are_accepted() {
    let resp = "HTTP/1.1 101 OK\r\n\
                upgrade: WebSocket\r\n\
                connection: keep-alive\r\n\
                CONNECTION: x, Upgrade\r\n\
                sec-websocket-accept:   s3pPLMBiTxaQ9kYGzzhZRbK+xOo=  \r\n\
                Upgrade: websocket\r\n\
                sec-websocket-protocol:  superchat \r\n\
                Sec-WebSocket-Extensions: \r\n\
                X-Other: whatever\r\n\r\n";
    let got = read_response(resp.as_bytes(), ACCEPT, &CHAT)
        .unwrap()
        .unwrap();
    assert_eq!(got.protocol.as_deref(), Some("superchat"));
    assert_eq!(got.deflate, None);
    // An empty extensions field names no extension, even when none was offered.
    let resp = answer("Sec-WebSocket-Extensions: ,\r\n");
    let got = read_response(resp.as_bytes(), ACCEPT, &ClientOffer::default());
    assert!(matches!(got, Ok(Some(Accepted { deflate: None, .. }))));
}

#[test]
fn a_deflate_answer_is_agreed() {
    let resp = answer(
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
         client_max_window_bits=10\r\n",
    );
    let got = read_response(resp.as_bytes(), ACCEPT, &CHAT)
        .unwrap()
        .unwrap();
    let a = got.deflate.unwrap();
    assert!(a.server_no_context_takeover && !a.client_no_context_takeover);
    assert_eq!((a.server_window_bits, a.client_window_bits), (15, 10));
    // The parameters may come on a second field line: one list.
    let resp = answer(
        "Sec-WebSocket-Extensions: permessage-deflate\r\n\
         Sec-WebSocket-Extensions: x-other\r\n",
    );
    assert_eq!(
        read_response(resp.as_bytes(), ACCEPT, &CHAT),
        Err(ClientHandshakeError::ExtensionNotOffered("x-other".into()))
    );
}

#[test]
fn refusals() {
    use ClientHandshakeError as E;
    let none = ClientOffer::default();
    let only_chat = ClientOffer {
        protocols: &["chat"],
        ..none
    };
    let mut many = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    many.push_str(&"X-A: b\r\n".repeat(MAX_RESPONSE_HEADERS + 1));
    let cases: Vec<(String, ClientOffer<'_>, E, &str)> = vec![
        (
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".into(),
            none,
            E::Status(403, "Forbidden".into()),
            "server answered 403 Forbidden, not 101",
        ),
        (
            "HTTP/1.1 200 \r\n\r\n".into(),
            none,
            E::Status(200, "".into()),
            "server answered 200, not 101",
        ),
        (
            "HTTP/1.1 302 Found\r\nLocation: ws://elsewhere/\r\n\r\n".into(),
            none,
            E::Status(302, "Found".into()),
            "server answered 302 Found, not 101",
        ),
        (
            answer("").replace("HTTP/1.1", "HTTP/1.0"),
            none,
            E::Http10,
            "server answered 101 over HTTP/1.0",
        ),
        (
            answer("").replace("Upgrade: websocket\r\n", ""),
            none,
            E::Upgrade,
            "response lacks Upgrade: websocket",
        ),
        (
            answer("").replace("Upgrade: websocket", "Upgrade: h2c"),
            none,
            E::Upgrade,
            "response lacks Upgrade: websocket",
        ),
        (
            answer("").replace("Upgrade: websocket", "Upgrade: websocket, h2c"),
            none,
            E::Upgrade,
            "response lacks Upgrade: websocket",
        ),
        (
            answer("").replace("Upgrade: websocket", "Upgrade: websocket/13"),
            none,
            E::Upgrade,
            "response lacks Upgrade: websocket",
        ),
        (
            answer("").replace("Connection: Upgrade\r\n", ""),
            none,
            E::Connection,
            "response lacks Connection: upgrade",
        ),
        (
            answer("").replace("Connection: Upgrade", "Connection: keep-alive"),
            none,
            E::Connection,
            "response lacks Connection: upgrade",
        ),
        (
            answer("").replace(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n"), ""),
            none,
            E::MissingAccept,
            "response lacks Sec-WebSocket-Accept",
        ),
        (
            answer("").replace(ACCEPT, "dGhlIHNhbXBsZSBub25jZQ=="),
            none,
            E::AcceptMismatch,
            "Sec-WebSocket-Accept does not match the key",
        ),
        (
            answer(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
            none,
            E::Repeated("Sec-WebSocket-Accept"),
            "Sec-WebSocket-Accept appears more than once",
        ),
        (
            answer("Sec-WebSocket-Protocol: chat\r\n"),
            none,
            E::ProtocolNotOffered("chat".into()),
            "subprotocol not offered: chat",
        ),
        (
            answer("Sec-WebSocket-Protocol: Chat\r\n"),
            only_chat,
            E::ProtocolNotOffered("Chat".into()),
            "subprotocol not offered: Chat",
        ),
        (
            answer("Sec-WebSocket-Protocol: chat, superchat\r\n"),
            CHAT,
            E::ProtocolNotOffered("chat, superchat".into()),
            "subprotocol not offered: chat, superchat",
        ),
        (
            answer("Sec-WebSocket-Protocol:\r\n"),
            only_chat,
            E::ProtocolNotOffered("".into()),
            "subprotocol not offered: ",
        ),
        (
            answer("Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: chat\r\n"),
            only_chat,
            E::Repeated("Sec-WebSocket-Protocol"),
            "Sec-WebSocket-Protocol appears more than once",
        ),
        (
            answer("Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            none,
            E::ExtensionNotOffered("permessage-deflate".into()),
            "extension not offered: permessage-deflate",
        ),
        (
            answer("Sec-WebSocket-Extensions: x-foo; a=1\r\n"),
            CHAT,
            E::ExtensionNotOffered("x-foo".into()),
            "extension not offered: x-foo",
        ),
        (
            answer("Sec-WebSocket-Extensions: permessage-deflate, permessage-deflate\r\n"),
            CHAT,
            E::ExtensionNotOffered("permessage-deflate".into()),
            "extension not offered: permessage-deflate",
        ),
        (
            answer("Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n"),
            CHAT,
            E::Extension(ResponseError::Param(ParamError::Unknown("bogus".into()))),
            "extension answer refused: permessage-deflate: unknown parameter bogus",
        ),
        (
            answer("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=8\r\n"),
            CHAT,
            E::Extension(ResponseError::Window("a client window below 9 bits")),
            "extension answer refused: permessage-deflate: a client window below 9 bits",
        ),
        (
            answer("Sec-WebSocket-Extensions: ;x\r\n"),
            none,
            E::Extension(ResponseError::Parse(extensions::ParseError::MissingName)),
            "extension answer refused: Sec-WebSocket-Extensions: an extension without a name",
        ),
        (
            "HTTP/1.1 1o1 Switching\r\n\r\n".into(),
            none,
            E::Malformed("invalid response status".into()),
            "malformed response: invalid response status",
        ),
        (
            "SSH-2.0-OpenSSH_9.6\r\n\r\n".into(),
            none,
            E::Malformed("invalid HTTP version".into()),
            "malformed response: invalid HTTP version",
        ),
        (
            answer("Bad Name: x\r\n"),
            none,
            E::Malformed("invalid header name".into()),
            "malformed response: invalid header name",
        ),
        (many, none, E::TooManyHeaders, "more than 64 header fields"),
    ];
    for (resp, offer, err, text) in cases {
        let got = read_response(resp.as_bytes(), ACCEPT, &offer);
        assert_eq!(got, Err(err.clone()), "{resp:?}");
        assert_eq!(err.to_string(), text);
    }
    // A field value that is not UTF-8 (obs-text).
    let mut resp = answer("Sec-WebSocket-Extensions: permessage-deflate; x=?\r\n").into_bytes();
    let at = resp.iter().position(|&b| b == b'?').unwrap();
    resp[at] = 0xFF;
    assert_eq!(
        read_response(&resp, ACCEPT, &CHAT),
        Err(E::Malformed("non-ASCII Sec-WebSocket-Extensions".into()))
    );
}

#[test]
fn the_head_is_bounded() {
    // A head of exactly MAX_RESPONSE_HEAD bytes is read; one byte more is refused, and so
    // is any unfinished head that long.
    let base = answer("X-Pad: \r\n");
    let pad = "a".repeat(MAX_RESPONSE_HEAD - base.len());
    let exact = answer(&format!("X-Pad: {pad}\r\n"));
    assert_eq!(exact.len(), MAX_RESPONSE_HEAD);
    let got = read_response(exact.as_bytes(), ACCEPT, &ClientOffer::default());
    assert_eq!(got.unwrap().unwrap().head_len, MAX_RESPONSE_HEAD);
    let over = answer(&format!("X-Pad: {pad}a\r\n"));
    assert_eq!(
        read_response(over.as_bytes(), ACCEPT, &ClientOffer::default()),
        Err(ClientHandshakeError::HeadTooLarge)
    );
    let unfinished = &over.as_bytes()[..MAX_RESPONSE_HEAD];
    assert_eq!(
        read_response(unfinished, ACCEPT, &ClientOffer::default()),
        Err(ClientHandshakeError::HeadTooLarge)
    );
    assert_eq!(
        ClientHandshakeError::HeadTooLarge.to_string(),
        "response head too large (> 16384 bytes)"
    );
    let short = &over.as_bytes()[..MAX_RESPONSE_HEAD - 1];
    assert_eq!(
        read_response(short, ACCEPT, &ClientOffer::default()),
        Ok(None)
    );
}

/// The request goes through the server's side of this crate (validate_request and
/// negotiate); the 101 is built by hand from what they decided.
#[test]
fn round_trip_with_the_server_side() {
    let (req, accept) = request("ws://localhost:9001/chat", &CHAT);
    let mut fields = [httparse::EMPTY_HEADER; 16];
    let mut parsed = httparse::Request::new(&mut fields);
    assert!(parsed.parse(req.as_bytes()).unwrap().is_complete());
    assert_eq!(parsed.path, Some("/chat"));
    let headers: Vec<(&str, &[u8])> = parsed.headers.iter().map(|h| (h.name, h.value)).collect();
    let hs = validate_request("GET", headers.iter().copied()).unwrap();
    assert_eq!(hs.protocols, ["chat", "superchat"]);
    let ext_field = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| std::str::from_utf8(v).unwrap())
        .unwrap();
    let agreed = negotiate(ext_field, ServerPolicy::default()).unwrap();
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {}\r\n\
         Sec-WebSocket-Extensions: {}\r\n\r\n",
        accept_key(hs.key),
        hs.protocols[1],
        agreed.response()
    );
    let got = read_response(resp.as_bytes(), &accept, &CHAT)
        .unwrap()
        .unwrap();
    assert_eq!(got.protocol.as_deref(), Some("superchat"));
    let a = got.deflate.unwrap();
    assert_eq!(
        (a.server_window_bits, a.client_window_bits),
        (agreed.server_window_bits, agreed.client_window_bits)
    );
    assert_eq!(
        (a.server_no_context_takeover, a.client_no_context_takeover),
        (true, true)
    );
    assert_eq!(got.head_len, resp.len());
}
