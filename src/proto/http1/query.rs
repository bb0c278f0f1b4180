//! `application/x-www-form-urlencoded` decoding, for query strings and form bodies (WHATWG
//! URL Standard §5.1; the query component itself is RFC 3986 §3.4).
//!
//! The input is split on `&`, empty sequences are skipped, each sequence splits at its first
//! `=` into name and value (no `=`: the value is empty), `+` stands for a space and `%XX`
//! for the byte `XX`.

use std::borrow::Cow;

use super::HttpError;

/// Decodes `+` and `%XX`. Without `strict`, a `%` not followed by two hex digits stays as it
/// is (as the WHATWG parser does); with it, that is `None`.
fn percent_decode(raw: &[u8], strict: bool) -> Option<Cow<'_, [u8]>> {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(raw));
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(raw.get(i + 1)), hex(raw.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ if strict => return None,
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    Some(Cow::Owned(out))
}

/// The `name=value` sequences of `input`, undecoded.
fn raw_pairs(input: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    input
        .split(|&b| b == b'&')
        .filter(|s| !s.is_empty())
        .map(|s| match s.iter().position(|&b| b == b'=') {
            Some(eq) => (&s[..eq], &s[eq + 1..]),
            None => (s, &b""[..]),
        })
}

/// The decoded value of the first parameter called `name` in a query string, lenient: a
/// malformed `%` escape stays literal and bytes that are not UTF-8 become U+FFFD.
pub(crate) fn query_param<'q>(query: &'q str, name: &str) -> Option<Cow<'q, str>> {
    let (_, value) = raw_pairs(query.as_bytes())
        .find(|(n, _)| percent_decode(n, false).is_some_and(|n| *n == *name.as_bytes()))?;
    Some(match percent_decode(value, false)? {
        // The query is a `str` and undecoded parts of it are whole UTF-8 sequences.
        Cow::Borrowed(b) => String::from_utf8_lossy(b),
        Cow::Owned(v) => Cow::Owned(match String::from_utf8(v) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }),
    })
}

/// Decodes an `application/x-www-form-urlencoded` request body into its name/value pairs,
/// in order. Strict: a malformed `%` escape or a name or value that is not UTF-8 once
/// decoded is an error with status 400.
pub fn form_pairs(body: &[u8]) -> Result<Vec<(String, String)>, HttpError> {
    let decode = |raw| -> Result<String, HttpError> {
        let bytes = percent_decode(raw, true)
            .ok_or(HttpError::bad_request("bad percent-encoding in form data"))?;
        String::from_utf8(bytes.into_owned())
            .map_err(|_| HttpError::bad_request("form data is not UTF-8"))
    };
    raw_pairs(body)
        .map(|(n, v)| Ok((decode(n)?, decode(v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_table() {
        let table: &[(&str, &str, Option<&str>)] = &[
            ("a=1&b=2", "b", Some("2")),
            ("a=1&a=2", "a", Some("1")),
            ("a", "a", Some("")),
            ("a=", "a", Some("")),
            ("&&a=1&&", "a", Some("1")),
            ("a=x=y", "a", Some("x=y")),
            ("q=hello+world%21", "q", Some("hello world!")),
            ("q=%e2%82%AC", "q", Some("€")),
            ("q=€", "q", Some("€")),
            ("q=100%", "q", Some("100%")),
            ("q=%zz%4", "q", Some("%zz%4")),
            ("q=%ff", "q", Some("\u{fffd}")),
            ("my+key=v", "my key", Some("v")),
            ("my%20key=v", "my key", Some("v")),
            ("a=1", "A", None),
            ("ab=1", "a", None),
            ("", "a", None),
            ("=v", "", Some("v")),
        ];
        for (q, name, want) in table {
            assert_eq!(query_param(q, name).as_deref(), *want, "{q:?} {name:?}");
        }
        assert!(matches!(
            query_param("a=plain", "a"),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn form_pairs_table() {
        let s = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        type Pairs = Result<Vec<(String, String)>, &'static str>;
        let table: &[(&[u8], Pairs)] = &[
            (b"", Ok(vec![])),
            (
                b"a=1&b=two+words&c",
                Ok(s(&[("a", "1"), ("b", "two words"), ("c", "")])),
            ),
            (b"x=%26%3D&x=2", Ok(s(&[("x", "&="), ("x", "2")]))),
            (b"n=%C3%A9", Ok(s(&[("n", "é")]))),
            (b"n=%C3", Err("form data is not UTF-8")),
            (b"n=\xff", Err("form data is not UTF-8")),
            (b"%ff=1", Err("form data is not UTF-8")),
            (b"n=%G1", Err("bad percent-encoding in form data")),
            (b"n=%1", Err("bad percent-encoding in form data")),
        ];
        for (body, want) in table {
            let got = form_pairs(body).map_err(|e| {
                assert_eq!(e.status, 400);
                e.reason
            });
            assert_eq!(&got, want, "{body:?}");
        }
    }
}
