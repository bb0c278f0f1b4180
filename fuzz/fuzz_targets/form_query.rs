//! `http1::form_pairs` and `Request::query_param` on arbitrary input, against a reference
//! decoder written here from the WHATWG `application/x-www-form-urlencoded` rules (split
//! on `&`, skip empty sequences, split at the first `=`, `+` is a space, `%XX` a byte):
//!
//! - `form_pairs` never panics and gives exactly the reference's pairs, or an error exactly
//!   when the reference finds a malformed `%` escape or a name or value that is not UTF-8
//!   once decoded; one pair per non-empty `&`-sequence, so an input with neither `=` nor
//!   `&` gives no pair when empty and else one pair with an empty value (as documented);
//!   percent-encoding the pairs again and decoding that gives the same pairs;
//! - `query_param` on a `Request` with an arbitrary target never panics, is `None` without
//!   a `?`, and gives the lenient reference value of the first parameter with that decoded
//!   name (a malformed escape stays literal, bytes that are not UTF-8 become U+FFFD); when
//!   the query decodes strictly, that is the value `form_pairs` gives for the name first.
//!
//! Input: a flags byte, then `name 0xFF rest`. Flags bit 0: the target is `rest` as it is
//! (it may lack `?` or have several); else `/p?` + `rest`. Text that is not UTF-8 is
//! converted lossily where a `str` is needed; `form_pairs` gets `rest`'s bytes as they are.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pushwire::proto::http1::{form_pairs, Request, Version};

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The reference decoder; `None` (strict only) on a malformed escape.
fn decode(raw: &[u8], strict: bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = raw;
    loop {
        match rest {
            [] => return Some(out),
            [b'+', tail @ ..] => {
                out.push(b' ');
                rest = tail;
            }
            [b'%', h, l, tail @ ..] if hex(*h).is_some() && hex(*l).is_some() => {
                out.push(hex(*h).unwrap() << 4 | hex(*l).unwrap());
                rest = tail;
            }
            [b'%', ..] if strict => return None,
            [b, tail @ ..] => {
                out.push(*b);
                rest = tail;
            }
        }
    }
}

fn sequences(input: &[u8]) -> Vec<(&[u8], &[u8])> {
    input
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let eq = s.iter().position(|&b| b == b'=').unwrap_or(s.len());
            (&s[..eq], s.get(eq + 1..).unwrap_or(b""))
        })
        .collect()
}

/// The reference `form_pairs`: `None` when it must be an error.
fn reference_pairs(input: &[u8]) -> Option<Vec<(String, String)>> {
    let text = |raw| String::from_utf8(decode(raw, true)?).ok();
    sequences(input)
        .into_iter()
        .map(|(n, v)| Some((text(n)?, text(v)?)))
        .collect()
}

fn reference_param(query: &str, name: &str) -> Option<String> {
    let (_, v) = sequences(query.as_bytes())
        .into_iter()
        .find(|(n, _)| decode(n, false).unwrap() == name.as_bytes())?;
    Some(String::from_utf8_lossy(&decode(v, false).unwrap()).into_owned())
}

/// Percent-encodes everything but unreserved characters, spaces as `+`.
fn encode(s: &str, out: &mut Vec<u8>) {
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
}

fn request(target: String) -> Request {
    Request {
        method: "GET".into(),
        target,
        version: Version::Http11,
        headers: Vec::new(),
        body: Vec::new(),
        trailers: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (name, body) = match rest.iter().position(|&b| b == 0xFF) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&b""[..], rest),
    };
    let name = String::from_utf8_lossy(name);

    // form_pairs against the reference.
    let got = form_pairs(body);
    let want = reference_pairs(body);
    match (&got, &want) {
        (Ok(g), Some(w)) => assert_eq!(g, w, "{body:?}"),
        (Err(e), None) => assert_eq!(e.status, 400),
        _ => panic!("{body:?}: {got:?}, reference {want:?}"),
    }
    if let Ok(pairs) = &got {
        assert_eq!(pairs.len(), sequences(body).len());
        if !body.contains(&b'=') && !body.contains(&b'&') {
            assert!(pairs.len() <= 1);
            assert_eq!(pairs.len(), usize::from(!body.is_empty()));
            assert!(pairs.iter().all(|(_, v)| v.is_empty()));
        }
        let mut again = Vec::new();
        for (i, (n, v)) in pairs.iter().enumerate() {
            if i > 0 {
                again.push(b'&');
            }
            encode(n, &mut again);
            again.push(b'=');
            encode(v, &mut again);
        }
        // An empty name and value encode to "=", which is a sequence, so nothing is lost.
        assert_eq!(form_pairs(&again).as_ref(), Ok(pairs), "{again:?}");
    }

    // query_param on a request.
    let rest_text = String::from_utf8_lossy(body).into_owned();
    let target = if flags & 1 != 0 {
        rest_text.clone()
    } else {
        format!("/p?{rest_text}")
    };
    let req = request(target.clone());
    let query = match target.split_once('?') {
        Some((path, q)) => {
            assert_eq!(req.path(), path);
            assert_eq!(req.query(), q);
            q
        }
        None => {
            assert_eq!(req.path(), target);
            assert_eq!(req.query(), "");
            assert_eq!(req.query_param(&name), None);
            ""
        }
    };
    let value = req.query_param(&name);
    assert_eq!(
        value.as_deref(),
        reference_param(query, &name).as_deref(),
        "{query:?} {name:?}"
    );
    if let Ok(pairs) = form_pairs(query.as_bytes()) {
        let first = pairs
            .iter()
            .find(|(n, _)| *n == *name)
            .map(|(_, v)| v.as_str());
        assert_eq!(value.as_deref(), first, "{query:?} {name:?}");
    }
    // Every parameter the strict parser sees is found by name.
    if let Ok(pairs) = form_pairs(query.as_bytes()) {
        for (n, _) in pairs.iter().take(8) {
            assert!(req.query_param(n).is_some(), "{query:?} {n:?}");
        }
    }
});
