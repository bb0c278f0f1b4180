//! A parsed request and its lookups (RFC 9110 §5 fields, §5.6.1 lists; RFC 9112 §9.3
//! persistence).

use std::borrow::Cow;

use super::{first_value, list_has_token, query, values_named, Header, Version};

/// A complete request: head, decoded body and trailers, as produced by
/// [`RequestReader`](super::RequestReader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method token, case-sensitive (`GET`, `POST`, ...).
    pub method: String,
    /// The request target in origin-form (`/path?query`), or `*` for `OPTIONS *`.
    /// An absolute-form target has been mapped to origin-form.
    pub target: String,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields in the order received.
    pub headers: Vec<Header>,
    /// The body, chunked coding removed; empty when the request had none.
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, kept apart from the header fields (RFC 9110 §6.5.1:
    /// "A recipient MUST NOT merge a trailer field into a header section unless ...").
    pub trailers: Vec<Header>,
}

impl Request {
    /// The target's path: everything before the first `?`, not percent-decoded.
    pub fn path(&self) -> &str {
        match self.target.split_once('?') {
            Some((path, _)) => path,
            None => &self.target,
        }
    }

    /// The query: everything after the first `?`, or `""` when there is none.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The decoded value of the first query parameter whose decoded name is `name`, with
    /// `application/x-www-form-urlencoded` rules (`+` is a space, `%XX` a byte). Lenient:
    /// a malformed `%` escape stays as it is and bytes that are not UTF-8 become U+FFFD, so
    /// callers that need a strict value should validate what they get.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        query::query_param(self.query(), name)
    }

    /// The value of the first header field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        first_value(&self.headers, name)
    }

    /// [`header`](Self::header) as text; `None` also when the value is not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The values of every header field called `name` (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        values_named(&self.headers, name)
    }

    /// Whether the comma-separated list field `header` (e.g. `Connection`) holds `token`,
    /// case-insensitive, across all its field lines.
    pub fn has_token(&self, header: &str, token: &str) -> bool {
        list_has_token(&self.headers, header, token)
    }

    /// Whether the connection stays open after the response (RFC 9112 §9.3): on HTTP/1.1
    /// unless `Connection: close`; on HTTP/1.0 only with `Connection: keep-alive` (and no
    /// `close`).
    pub fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self.has_token("connection", "keep-alive"),
        }
    }

    /// Whether this is a `HEAD` request (its response carries no body).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, target: &str, headers: &[(&str, &[u8])]) -> Request {
        Request {
            method: "GET".into(),
            target: target.into(),
            version,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_vec(),
                })
                .collect(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    #[test]
    fn path_and_query() {
        let table = [
            ("/", "/", ""),
            ("/a/b?x=1", "/a/b", "x=1"),
            ("/a?", "/a", ""),
            ("/a?b?c", "/a", "b?c"),
            ("*", "*", ""),
        ];
        for (target, path, query) in table {
            let r = req(Version::Http11, target, &[]);
            assert_eq!((r.path(), r.query()), (path, query), "{target}");
        }
        let r = req(Version::Http11, "/t?since=5&event=a+b", &[]);
        assert_eq!(r.query_param("event").as_deref(), Some("a b"));
        assert_eq!(r.query_param("since").as_deref(), Some("5"));
        assert_eq!(r.query_param("none"), None);
    }

    #[test]
    fn header_lookups() {
        let r = req(
            Version::Http11,
            "/",
            &[
                ("Host", b"x"),
                ("Accept", b"a"),
                ("accept", b"b"),
                ("X-Bin", b"\xff"),
                ("Connection", b"Upgrade, keep-alive"),
                ("CONNECTION", b"x"),
            ],
        );
        assert_eq!(r.header("ACCEPT"), Some(&b"a"[..]));
        assert_eq!(r.header_str("host"), Some("x"));
        assert_eq!(r.header("missing"), None);
        assert_eq!(r.header("x-bin"), Some(&b"\xff"[..]));
        assert_eq!(r.header_str("x-bin"), None);
        assert_eq!(
            r.headers_named("Accept").collect::<Vec<_>>(),
            vec![&b"a"[..], b"b"]
        );
        assert!(r.has_token("connection", "upgrade"));
        assert!(r.has_token("Connection", "X"));
        assert!(!r.has_token("connection", "close"));
        assert!(!r.has_token("connection", "keep"));
    }

    #[test]
    fn keep_alive_table() {
        type Fields<'a> = &'a [(&'a str, &'a [u8])];
        let table: &[(Version, Fields, bool)] = &[
            (Version::Http11, &[], true),
            (Version::Http11, &[("Connection", b"close")], false),
            (Version::Http11, &[("Connection", b"Upgrade, Close")], false),
            (Version::Http11, &[("Connection", b"keep-alive")], true),
            (Version::Http10, &[], false),
            (Version::Http10, &[("Connection", b"Keep-Alive")], true),
            (
                Version::Http10,
                &[("Connection", b"keep-alive"), ("Connection", b"close")],
                false,
            ),
        ];
        for (v, h, want) in table {
            assert_eq!(req(*v, "/", h).keep_alive(), *want, "{v:?} {h:?}");
        }
        let mut r = req(Version::Http11, "/", &[]);
        assert!(!r.is_head());
        r.method = "HEAD".into();
        assert!(r.is_head());
    }
}
