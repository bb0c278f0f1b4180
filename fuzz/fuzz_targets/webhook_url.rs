//! `webhook::Url::parse` on arbitrary `http://` and `https://` text: never panics, refuses exactly what its rules
//! refuse for length and characters, and an accepted URL keeps its invariants (the path
//! starts with `/` and carries no fragment, the port is never 0, a name is lowercase LDH
//! labels of at most 253 characters that does not end in a number, an IPv4 host is the
//! dotted quad written in the input), upper-casing its scheme and host changes nothing, and
//! it displays to a string that parses back to an equal `Url` and displays the same again
//! (a fixed point; checked while the display fits in `MAX_URL_LEN`, see below).
//!
//! Input: the URL bytes. Bytes that are not UTF-8 are parsed after a lossy conversion
//! (the U+FFFD must be refused as a non-ASCII character).
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use pushwire::proto::webhook::url::{MAX_HOST_LEN, MAX_URL_LEN};
use pushwire::proto::webhook::{Host, Url, UrlError};

fn check(text: &str) {
    let got = Url::parse(text);
    // The first two checks are about the whole input, before any structure.
    if text.len() > MAX_URL_LEN {
        assert_eq!(got, Err(UrlError::TooLong));
        return;
    }
    let bad = text.bytes().position(|b| b <= b' ' || b >= 0x7F);
    if let Some(at) = bad {
        assert_eq!(got, Err(UrlError::BadChar(at)));
        return;
    }
    let url = match got {
        Ok(url) => url,
        // Normalizing adds at most a `/` and an IPv4-mapped address's dotted form: an
        // input that close to the limit may normalize past it.
        Err(UrlError::TooLong) if text.len() + 24 > MAX_URL_LEN => return,
        Err(UrlError::TooLong | UrlError::BadChar(_)) => panic!("{text:?}: {got:?}"),
        Err(_) => return,
    };
    let lower = text.to_ascii_lowercase();
    // `http://` or `https://`, and `tls` says which.
    assert_eq!(lower.starts_with("https://"), url.tls, "{text:?}");
    assert!(url.tls || lower.starts_with("http://"), "{text:?}");
    let scheme = if url.tls { "https" } else { "http" };
    let prefix = scheme.len() + 3;
    let default_port = if url.tls { 443 } else { 80 };

    // The path: origin-form, no fragment, a suffix of the input (after a `/` was added).
    let pq = &url.path_and_query;
    assert!(pq.starts_with('/'), "{text:?} -> {pq:?}");
    assert!(!pq.contains('#'), "{text:?} -> {pq:?}");
    let before_fragment = text.split('#').next().unwrap_or("");
    assert!(
        before_fragment.ends_with(pq.as_str())
            || (pq.starts_with("/?") || pq == "/") && before_fragment.ends_with(&pq[1..]),
        "{text:?} -> {pq:?}"
    );
    // The `/` was added exactly when the input's path did not start with one.
    let tail = if before_fragment.ends_with(pq.as_str()) {
        pq.len()
    } else {
        pq.len() - 1
    };
    let authority = &before_fragment[prefix..before_fragment.len() - tail];
    assert!(!authority.contains(['@', '\\', '/', '?']), "{text:?}");

    assert_ne!(url.port, 0, "{text:?}");
    match &url.host {
        Host::Name(name) => {
            assert!(!name.is_empty() && name.len() <= MAX_HOST_LEN, "{text:?}");
            assert_eq!(*name, name.to_ascii_lowercase(), "{text:?}");
            assert!(lower.contains(name.as_str()), "{text:?}");
            for label in name.split('.') {
                assert!((1..=63).contains(&label.len()), "{text:?}: {label:?}");
                assert!(!label.starts_with('-') && !label.ends_with('-'), "{text:?}");
                assert!(
                    label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    "{text:?}"
                );
            }
            // Not something a resolver could read as a number.
            let last = name.rsplit('.').next().unwrap_or(name);
            assert!(!last.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
            assert!(name.parse::<IpAddr>().is_err(), "{text:?}");
            assert_eq!(url.socket_addr(), None);
        }
        Host::Ip(ip) => {
            if let IpAddr::V4(v4) = ip {
                // Exactly the dotted quad of the input (a trailing dot allowed).
                let host = authority.split(':').next().unwrap_or("");
                assert_eq!(host.strip_suffix('.').unwrap_or(host), v4.to_string());
            } else {
                assert!(authority.starts_with('['), "{text:?}");
            }
            assert_eq!(
                url.socket_addr(),
                Some(std::net::SocketAddr::new(*ip, url.port))
            );
        }
    }
    let hh = url.host_header();
    assert_eq!(
        hh.ends_with(&format!(":{}", url.port)),
        url.port != default_port
    );
    let origin = format!("{}:{}", url.host, url.port);
    if url.tls {
        assert_eq!(url.origin_key(), format!("https://{origin}"));
    } else {
        assert_eq!(url.origin_key(), origin);
    }

    // Display is a fixed point of parsing.
    let shown = url.to_string();
    assert_eq!(shown, format!("{scheme}://{hh}{pq}"));
    // (The normalized form must fit the length limit too, so this holds at the limit.)
    assert!(shown.len() <= MAX_URL_LEN, "{text:?} -> {shown:?}");
    let again = Url::parse(&shown).unwrap_or_else(|e| panic!("{text:?} -> {shown:?}: {e}"));
    assert_eq!(again, url, "{text:?} -> {shown:?}");
    assert_eq!(again.to_string(), shown);
    // Only the scheme and the host are case-insensitive: upper-casing them changes nothing.
    let upper = format!(
        "{}://{}{}",
        scheme.to_ascii_uppercase(),
        authority.to_ascii_uppercase(),
        &text[prefix + authority.len()..]
    );
    if let Ok(u) = Url::parse(&upper) {
        assert_eq!(u, url, "{text:?} vs {upper:?}");
    } else {
        panic!("{text:?} accepted, {upper:?} refused");
    }
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => check(text),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
