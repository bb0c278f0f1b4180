//! `proto::auth` on arbitrary requests:
//!
//! - `token_eq(a, b)` is `a == b` for tokens up to `MAX_TOKEN_LEN` and false beyond, also
//!   for near misses (one byte changed, one byte more or less);
//! - `bearer(v)` gives a token exactly when `v` is `Bearer` (any case), one space, then
//!   spaces around a non-empty token68 (RFC 9110 §11.2); the token is that text: never
//!   empty, never with a space;
//! - `request_token` never panics and is the first `Authorization` field's bearer token
//!   when it has one (the header wins), else the non-empty `token` query parameter;
//! - `check_token` is `Allowed` with no token expected, `Missing` exactly when there is no
//!   token, and else `Allowed` exactly when the token equals the expected one.
//!
//! Input: a flags byte, then `header 0xFF target 0xFF expected` (each converted lossily to
//! text where text is needed; the header value is also tried as raw bytes). Flags: bit 0:
//! an `Authorization` field; bit 1: its name in lowercase; bit 2: a second one after it;
//! bit 3: a `Cookie` field before it; bits 4-5: the expected token is none, the third
//! part, the token in the header, the token in the query; bit 6: the header value raw.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::auth::{bearer, check_token, request_token, token_eq, Access, MAX_TOKEN_LEN};
use pushwire::proto::http1::{Header, Request, Version};

fn reference_bearer(v: &str) -> Option<&str> {
    let scheme = v.get(..6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || v.as_bytes().get(6) != Some(&b' ') {
        return None;
    }
    let t = v[7..].trim_matches(' ');
    // token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = t.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~+/".contains(c));
    ok.then_some(t)
}

fn check_eq(a: &str, b: &str) {
    let want = a == b && a.len() <= MAX_TOKEN_LEN;
    assert_eq!(token_eq(a, b), want, "{a:?} {b:?}");
    assert_eq!(token_eq(b, a), want, "{b:?} {a:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0xFF);
    let mut next = || parts.next().unwrap_or(b"");
    let (header, target, expected) = (next(), next(), next());
    let header_text = String::from_utf8_lossy(header).into_owned();
    let target = String::from_utf8_lossy(target).into_owned();
    let expected = String::from_utf8_lossy(expected).into_owned();

    // token_eq
    check_eq(&expected, &expected);
    check_eq(&header_text, &expected);
    if let Some((i, c)) = expected.char_indices().next_back() {
        let shorter = &expected[..i];
        check_eq(shorter, &expected);
        let other = if c == 'x' { 'y' } else { 'x' };
        check_eq(&format!("{shorter}{other}"), &expected);
    }
    check_eq(&format!("{expected}x"), &expected);

    // bearer
    let b = bearer(&header_text);
    assert_eq!(b, reference_bearer(&header_text), "{header_text:?}");
    if let Some(t) = b {
        assert!(
            !t.is_empty() && !t.contains(' '),
            "{header_text:?} -> {t:?}"
        );
    }

    // request_token and check_token
    let value = if flags & 0x40 != 0 {
        header.to_vec()
    } else {
        header_text.clone().into_bytes()
    };
    let field = |name: &str, value: Vec<u8>| Header {
        name: name.into(),
        value,
    };
    let name = if flags & 2 != 0 {
        "authorization"
    } else {
        "Authorization"
    };
    let mut headers = Vec::new();
    if flags & 8 != 0 {
        headers.push(field("Cookie", b"token=cookie".to_vec()));
    }
    if flags & 1 != 0 {
        headers.push(field(name, value.clone()));
    }
    if flags & 4 != 0 {
        headers.push(field("AUTHORIZATION", b"Bearer second".to_vec()));
    }
    let req = Request {
        method: "GET".into(),
        target: target.clone(),
        version: Version::Http11,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
    };
    let got = request_token(&req);
    let first = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"));
    let from_header = first
        .and_then(|h| std::str::from_utf8(&h.value).ok())
        .and_then(reference_bearer);
    let from_query = req.query_param("token").filter(|q| !q.is_empty());
    let want = from_header
        .map(str::to_owned)
        .or(from_query.as_deref().map(str::to_owned));
    assert_eq!(got, want, "{:?} {target:?}", req.headers);
    if let Some(t) = &got {
        assert!(!t.is_empty());
    }

    assert_eq!(check_token(&req, None), Access::Allowed);
    let expected = match flags >> 4 & 3 {
        0 => None,
        1 => Some(expected),
        2 => from_header.map(str::to_owned),
        _ => from_query.map(|q| q.into_owned()),
    };
    if let Some(e) = expected {
        let access = check_token(&req, Some(&e));
        let want = match &got {
            None => Access::Missing,
            Some(t) if *t == e && e.len() <= MAX_TOKEN_LEN => Access::Allowed,
            Some(_) => Access::Wrong,
        };
        assert_eq!(access, want, "{got:?} vs {e:?}");
    }
});
