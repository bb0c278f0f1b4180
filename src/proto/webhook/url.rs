//! Webhook target URLs: a deliberately small parser for
//! `http[s]://host[:port][/path][?query]`.
//!
//! Only what a webhook sender needs from RFC 3986 (URI generic syntax) and RFC 9110 §4.2.1
//! and §4.2.2 (the `http` and `https` schemes) is accepted, and everything else is refused
//! with a clear reason at registration time, long before a connection is made:
//!
//! * the scheme is `http` or `https` (case-insensitive, RFC 3986 §3.1); `https` means TLS
//!   to the host, verified against the host's name (a build without pushwire's `tls`
//!   feature refuses it at registration);
//! * no userinfo: RFC 9110 §4.2.4 says "A sender MUST NOT generate the userinfo
//!   subcomponent (and its "@" delimiter) when an "http" or "https" URI reference is
//!   generated within a message as a target URI", and `user@host` is a classic way to make
//!   a URL look like it points elsewhere;
//! * the host is an IPv4 dotted quad, a bracketed IPv6 literal (RFC 3986 §3.2.2, no zone
//!   ids), or a DNS name of letter-digit-hyphen labels (RFC 1123 §2.1), lowercased, at most
//!   253 characters. Hosts that *look* numeric but are not a dotted quad (`2130706433`,
//!   `0x7f.1`, `127.1`) are refused: resolvers disagree on what they mean;
//! * the port is 1..=65535; when absent or empty, 80 for `http` and 443 for `https`
//!   (RFC 3986 §3.2.3, RFC 9110 §4.2.2);
//! * an empty path becomes `/` (RFC 9110 §4.2.1 and RFC 9112 §3.2.1: "If the target URI's
//!   path component is empty, the client MUST send "/" as the path within the
//!   origin-form"); the fragment is dropped (it is never sent, RFC 9110 §7.1);
//! * no spaces, control characters or non-ASCII bytes anywhere (percent-encode them).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// The longest host name accepted (RFC 1035 §2.3.4, in its dotted text form).
pub const MAX_HOST_LEN: usize = 253;

/// A parsed `http://` or `https://` webhook target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`: TLS, verified against [`host`](Self::host).
    pub tls: bool,
    /// Where to connect.
    pub host: Host,
    /// The TCP port (80, or 443 for `https`, unless the URL names one).
    pub port: u16,
    /// The request target in origin-form: starts with `/`, may carry `?query`.
    pub path_and_query: String,
}

/// The host part of a [`Url`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal: connect to it directly (after the SSRF check).
    Ip(IpAddr),
    /// A lowercase DNS name: resolve it off the loop, then check every address.
    Name(String),
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Longer than [`MAX_URL_LEN`].
    TooLong,
    /// A space, control character or non-ASCII byte at this byte offset.
    BadChar(usize),
    /// No `scheme://` at the start.
    MissingScheme,
    /// `https://` in a build without pushwire's `tls` feature (only registration refuses
    /// it; [`Url::parse`] accepts it).
    HttpsUnsupported,
    /// Any scheme other than `http` and `https`.
    UnsupportedScheme,
    /// `user@` or `user:password@` before the host.
    UserInfo,
    /// Nothing between `//` and the path.
    EmptyHost,
    /// The host is not a valid DNS name (the reason says which rule).
    BadHostName(&'static str),
    /// A numeric-looking host that is not a dotted-quad IPv4 address.
    BadIpv4,
    /// A bracketed IPv6 literal that does not parse (or carries a zone id).
    BadIpv6,
    /// The port is not a number in 1..=65535.
    BadPort,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::TooLong => write!(f, "URL is longer than {MAX_URL_LEN} bytes"),
            UrlError::BadChar(at) => write!(
                f,
                "URL contains a space, control or non-ASCII character at byte {at} (percent-encode it)"
            ),
            UrlError::MissingScheme => write!(f, "URL must start with http:// or https://"),
            UrlError::HttpsUnsupported => {
                write!(f, "https needs pushwire's `tls` feature, which this build lacks")
            }
            UrlError::UnsupportedScheme => write!(f, "only http:// and https:// URLs are supported"),
            UrlError::UserInfo => write!(f, "URL must not contain a user name or password"),
            UrlError::EmptyHost => write!(f, "URL has no host"),
            UrlError::BadHostName(why) => write!(f, "invalid host name: {why}"),
            UrlError::BadIpv4 => write!(f, "numeric host is not a dotted-quad IPv4 address"),
            UrlError::BadIpv6 => write!(f, "invalid IPv6 address literal"),
            UrlError::BadPort => write!(f, "port must be a number from 1 to 65535"),
        }
    }
}

impl std::error::Error for UrlError {}

impl Url {
    /// Parses and validates a webhook URL; see the module docs for the rules.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        if let Some(at) = text.bytes().position(|b| b <= b' ' || b >= 0x7F) {
            return Err(UrlError::BadChar(at));
        }
        let (scheme, rest) = text.split_once("://").ok_or(UrlError::MissingScheme)?;
        let tls = scheme.eq_ignore_ascii_case("https");
        if !tls && !scheme.eq_ignore_ascii_case("http") {
            return Err(UrlError::UnsupportedScheme);
        }
        // The fragment is never sent.
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        if authority.contains('\\') {
            // Some parsers read a backslash as a slash: refuse the ambiguity.
            return Err(UrlError::BadHostName("backslash"));
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None | Some("") => default_port(tls),
            Some(p) => parse_port(p)?,
        };
        let host = parse_host(host)?;
        let path_and_query = if path_and_query.starts_with('/') {
            path_and_query.to_owned()
        } else {
            format!("/{path_and_query}")
        };
        let url = Url {
            tls,
            host,
            port,
            path_and_query,
        };
        // The normalized form may be longer than the text (a `/` added before `?`, an
        // IPv4-mapped address shown dotted): it is what is shown and sent, so it must fit
        // the limit too, and then shows as a URL that parses back to this one.
        if url.to_string().len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        Ok(url)
    }

    /// The `Host` header value: the host, plus `:port` when the port is not the scheme's
    /// default; IPv6 literals in brackets (RFC 9110 §7.2).
    pub fn host_header(&self) -> String {
        if self.port == default_port(self.tls) {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without its query string: what listings show, since a query often
    /// carries a credential (userinfo is refused by [`Url::parse`] already).
    pub fn without_query(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host_header(), self.path())
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The path without its query.
    pub fn path(&self) -> &str {
        self.path_and_query.split('?').next().unwrap_or_default()
    }

    /// A key naming the origin (RFC 6454) for connection pooling: `host:port` for `http`,
    /// `https://host:port` for `https`, the port always present.
    pub fn origin_key(&self) -> String {
        match self.tls {
            false => format!("{}:{}", self.host, self.port),
            true => format!("https://{}:{}", self.host, self.port),
        }
    }

    /// The address to connect to when the host is an IP literal (no resolution needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Url {
    /// The normalized URL: the scheme, `://`, the host header, the path and query.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme();
        write!(
            f,
            "{scheme}://{}{}",
            self.host_header(),
            self.path_and_query
        )
    }
}

impl std::str::FromStr for Url {
    type Err = UrlError;
    fn from_str(s: &str) -> Result<Url, UrlError> {
        Url::parse(s)
    }
}

impl fmt::Display for Host {
    /// Names as they are, IPv4 dotted, IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// The port of a URL that names none.
fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
    }
}

/// Splits `host[:port]` or `[v6][:port]`; the host part keeps its brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), UrlError> {
    if authority.starts_with('[') {
        let close = authority.find(']').ok_or(UrlError::BadIpv6)?;
        let (host, after) = authority.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(UrlError::BadIpv6),
            },
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_port(text: &str) -> Result<u16, UrlError> {
    if text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(UrlError::BadPort),
        Ok(port) => Ok(port),
    }
}

fn parse_host(text: &str) -> Result<Host, UrlError> {
    if text.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(UrlError::BadIpv6)?;
        // Zone ids (`%25eth0`, RFC 6874) name an interface of *this* host: refused.
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| UrlError::BadIpv6);
    }
    // A trailing dot (fully qualified form) is dropped.
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    // "Ends in a number": the last label is all digits, or 0x-hex. Such hosts are IPv4
    // addresses or nothing (many resolvers read `127.1` or `0x7f000001` as 127.0.0.1).
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    if hex || (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) {
        // Rust's parser takes exactly four decimal octets without leading zeros.
        return name
            .parse::<Ipv4Addr>()
            .map(|ip| Host::Ip(IpAddr::V4(ip)))
            .map_err(|_| UrlError::BadIpv4);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(UrlError::BadHostName("longer than 253 characters"));
    }
    for label in name.split('.') {
        check_label(label)?;
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

/// RFC 1123 §2.1 / RFC 952 "LDH" labels: letters, digits and hyphens, 1..=63 long, not
/// starting or ending with a hyphen.
fn check_label(label: &str) -> Result<(), UrlError> {
    if label.is_empty() {
        return Err(UrlError::BadHostName("empty label"));
    }
    if label.len() > 63 {
        return Err(UrlError::BadHostName("label longer than 63 characters"));
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(UrlError::BadHostName(
            "only letters, digits, '-' and '.' are allowed (use punycode for IDNs)",
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Err(UrlError::BadHostName("a label starts or ends with '-'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> Host {
        Host::Name(n.into())
    }
    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn accepted() {
        let table: &[(&str, Host, u16, &str, &str, &str)] = &[
            // input, host, port, path, host header, origin key
            (
                "http://example.com",
                name("example.com"),
                80,
                "/",
                "example.com",
                "example.com:80",
            ),
            (
                "HTTP://Example.COM/",
                name("example.com"),
                80,
                "/",
                "example.com",
                "example.com:80",
            ),
            (
                "http://example.com.",
                name("example.com"),
                80,
                "/",
                "example.com",
                "example.com:80",
            ),
            (
                "http://a.b-c.d:8080/x/y?q=1&r=%20",
                name("a.b-c.d"),
                8080,
                "/x/y?q=1&r=%20",
                "a.b-c.d:8080",
                "a.b-c.d:8080",
            ),
            (
                "http://host?x=1",
                name("host"),
                80,
                "/?x=1",
                "host",
                "host:80",
            ),
            ("http://host:/p", name("host"), 80, "/p", "host", "host:80"),
            (
                "http://host/p#frag",
                name("host"),
                80,
                "/p",
                "host",
                "host:80",
            ),
            ("http://host#frag", name("host"), 80, "/", "host", "host:80"),
            (
                "http://localhost:65535/hooks/receive",
                name("localhost"),
                65535,
                "/hooks/receive",
                "localhost:65535",
                "localhost:65535",
            ),
            (
                "http://127.0.0.1:8080/h",
                ip("127.0.0.1"),
                8080,
                "/h",
                "127.0.0.1:8080",
                "127.0.0.1:8080",
            ),
            (
                "http://10.0.0.1",
                ip("10.0.0.1"),
                80,
                "/",
                "10.0.0.1",
                "10.0.0.1:80",
            ),
            (
                "http://[::1]:9000/a",
                ip("::1"),
                9000,
                "/a",
                "[::1]:9000",
                "[::1]:9000",
            ),
            (
                "http://[2001:DB8::1]",
                ip("2001:db8::1"),
                80,
                "/",
                "[2001:db8::1]",
                "[2001:db8::1]:80",
            ),
            (
                "http://[::ffff:10.0.0.1]/",
                ip("::ffff:10.0.0.1"),
                80,
                "/",
                "[::ffff:10.0.0.1]",
                "[::ffff:10.0.0.1]:80",
            ),
            (
                "http://x1.example/a:b@c",
                name("x1.example"),
                80,
                "/a:b@c",
                "x1.example",
                "x1.example:80",
            ),
            (
                "http://1a.example",
                name("1a.example"),
                80,
                "/",
                "1a.example",
                "1a.example:80",
            ),
        ];
        for (input, host, port, path, hh, ok) in table {
            let url = Url::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(&url.host, host, "{input}");
            assert_eq!(url.port, *port, "{input}");
            assert_eq!(url.path_and_query, *path, "{input}");
            assert_eq!(url.host_header(), *hh, "{input}");
            assert_eq!(url.origin_key(), *ok, "{input}");
            // Display round-trips through the parser
            assert_eq!(Url::parse(&url.to_string()).unwrap(), url, "{input}");
        }
        assert_eq!(
            Url::parse("http://[::1]:81").unwrap().socket_addr(),
            Some("[::1]:81".parse().unwrap())
        );
        assert_eq!(Url::parse("http://h").unwrap().socket_addr(), None);
    }

    #[test]
    fn refused() {
        let long_label = format!("http://{}.com/", "a".repeat(64));
        let long_host = format!("http://{}/", ["abcdefghi"; 26].join("."));
        // Fits as written, but not once normalized (`/` before `?`): too long.
        let q = format!("http://h?{}", "a".repeat(MAX_URL_LEN - 9));
        assert_eq!(q.len(), MAX_URL_LEN);
        assert_eq!(Url::parse(&q), Err(UrlError::TooLong));
        let long_url = format!("http://h/{}", "a".repeat(MAX_URL_LEN));
        let table: &[(&str, UrlError)] = &[
            ("ftp://example.com/", UrlError::UnsupportedScheme),
            ("httpss://example.com/", UrlError::UnsupportedScheme),
            ("https://user@example.com/", UrlError::UserInfo),
            ("https://host:0/", UrlError::BadPort),
            ("httpx://example.com/", UrlError::UnsupportedScheme),
            ("example.com/hook", UrlError::MissingScheme),
            ("http:/example.com", UrlError::MissingScheme),
            ("http://user@example.com/", UrlError::UserInfo),
            ("http://user:pw@example.com/", UrlError::UserInfo),
            ("http://@example.com/", UrlError::UserInfo),
            ("http://evil.com@127.0.0.1/", UrlError::UserInfo),
            ("http:///path", UrlError::EmptyHost),
            ("http://", UrlError::EmptyHost),
            ("http://:80/", UrlError::EmptyHost),
            ("http://./", UrlError::EmptyHost),
            ("http://host:0/", UrlError::BadPort),
            ("http://host:65536/", UrlError::BadPort),
            ("http://host:080000/", UrlError::BadPort),
            ("http://host:-1/", UrlError::BadPort),
            ("http://host:8o/", UrlError::BadPort),
            ("http://host:80:81/", UrlError::BadPort),
            ("http://[::1/", UrlError::BadIpv6),
            ("http://[::1]x/", UrlError::BadIpv6),
            ("http://[fe80::1%25eth0]/", UrlError::BadIpv6),
            ("http://[1.2.3.4]/", UrlError::BadIpv6),
            ("http://::1/", UrlError::BadPort),
            ("http://2130706433/", UrlError::BadIpv4),
            ("http://127.1/", UrlError::BadIpv4),
            ("http://0x7f.0.0.1/", UrlError::BadIpv4),
            ("http://0x7f000001/", UrlError::BadIpv4),
            ("http://010.0.0.1/", UrlError::BadIpv4),
            ("http://1.2.3.4.5/", UrlError::BadIpv4),
            ("http://256.0.0.1/", UrlError::BadIpv4),
            ("http://a.123/", UrlError::BadIpv4),
            ("http://ex ample.com/", UrlError::BadChar(9)),
            ("http://example.com/a b", UrlError::BadChar(20)),
            ("http://example.com/\t", UrlError::BadChar(19)),
            ("http://example.com/\r\nX: y", UrlError::BadChar(19)),
            ("http://exämple.com/", UrlError::BadChar(9)),
            ("http://example.com/\x7f", UrlError::BadChar(19)),
            (" http://example.com/", UrlError::BadChar(0)),
            (
                "http://ex_ample.com/",
                UrlError::BadHostName(
                    "only letters, digits, '-' and '.' are allowed (use punycode for IDNs)",
                ),
            ),
            (
                "http://ex%41mple.com/",
                UrlError::BadHostName(
                    "only letters, digits, '-' and '.' are allowed (use punycode for IDNs)",
                ),
            ),
            (
                "http://-a.com/",
                UrlError::BadHostName("a label starts or ends with '-'"),
            ),
            (
                "http://a-.com/",
                UrlError::BadHostName("a label starts or ends with '-'"),
            ),
            ("http://a..com/", UrlError::BadHostName("empty label")),
            ("http://a.com../", UrlError::BadHostName("empty label")),
            ("http://a\\b.com/", UrlError::BadHostName("backslash")),
            (
                &long_label,
                UrlError::BadHostName("label longer than 63 characters"),
            ),
            (
                &long_host,
                UrlError::BadHostName("longer than 253 characters"),
            ),
            (&long_url, UrlError::TooLong),
        ];
        for (input, want) in table {
            assert_eq!(Url::parse(input).as_ref(), Err(want), "{input:?}");
        }
        assert_eq!(
            UrlError::HttpsUnsupported.to_string(),
            "https needs pushwire's `tls` feature, which this build lacks"
        );
    }

    #[test]
    fn https_urls() {
        // input, port, host header, shown, origin key
        let table = [
            (
                "https://a.example",
                443,
                "a.example",
                "https://a.example/",
                "https://a.example:443",
            ),
            (
                "HTTPS://A.example:443/h?k=v",
                443,
                "a.example",
                "https://a.example/h?k=v",
                "https://a.example:443",
            ),
            (
                "https://a.example:80/",
                80,
                "a.example:80",
                "https://a.example:80/",
                "https://a.example:80",
            ),
            (
                "https://127.0.0.1:8443/x",
                8443,
                "127.0.0.1:8443",
                "https://127.0.0.1:8443/x",
                "https://127.0.0.1:8443",
            ),
            (
                "https://[::1]/",
                443,
                "[::1]",
                "https://[::1]/",
                "https://[::1]:443",
            ),
        ];
        for (input, port, hh, shown, ok) in table {
            let url = Url::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert!(url.tls, "{input}");
            assert_eq!(url.port, port, "{input}");
            assert_eq!(url.host_header(), hh, "{input}");
            assert_eq!(url.to_string(), shown, "{input}");
            assert_eq!(url.origin_key(), ok, "{input}");
            assert_eq!(Url::parse(&url.to_string()).unwrap(), url, "{input}");
        }
        // The same host and port over http and https are different origins.
        let plain = Url::parse("http://a.example:443/").unwrap();
        assert!(!plain.tls);
        assert_eq!(plain.host_header(), "a.example:443");
        assert_ne!(
            plain.origin_key(),
            Url::parse("https://a.example/").unwrap().origin_key()
        );
        assert_eq!(
            Url::parse("https://a.example/h?token=s")
                .unwrap()
                .without_query(),
            "https://a.example/h"
        );
    }

    #[test]
    fn without_the_query() {
        let table = [
            (
                "http://a.example/hook?token=s3cret&x=1",
                "http://a.example/hook",
                "/hook",
            ),
            (
                "http://a.example:8080?token=s",
                "http://a.example:8080/",
                "/",
            ),
            ("http://[::1]:81/p/q?", "http://[::1]:81/p/q", "/p/q"),
            ("http://a.example/p#frag?no", "http://a.example/p", "/p"),
            ("http://a.example/p", "http://a.example/p", "/p"),
        ];
        for (input, shown, path) in table {
            let url = Url::parse(input).unwrap();
            assert_eq!(url.without_query(), shown, "{input}");
            assert_eq!(url.path(), path, "{input}");
        }
    }

    #[test]
    fn host_length_limits_are_exact() {
        // 63-character labels, 253 characters in all: accepted.
        let label = "a".repeat(63);
        let host = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(host.len(), 253);
        assert!(Url::parse(&format!("http://{host}/")).is_ok());
        assert!(Url::parse(&format!("http://{host}./")).is_ok());
        assert!(Url::parse(&format!("http://{host}b/")).is_err());
    }
}
