//! Redis server URLs: `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`.
//!
//! The scheme is the one registered with IANA for Redis (the provisional `redis` URI
//! scheme), in the form Redis clients commonly accept:
//!
//! * the scheme is `redis` (case-insensitive). `rediss` (Redis over TLS) is refused with
//!   its own reason: pushwire's Redis client speaks plain TCP only;
//! * the userinfo is `:PASSWORD` (the `default` user, `AUTH password`) or
//!   `USER:PASSWORD` (an ACL user, `AUTH user password`). Both are percent-decoded
//!   (RFC 3986 §2.1), so any byte can be written, and `/`, `?`, `#` must be (`%2F`, `%3F`,
//!   `%23`); a raw `@` in the password is tolerated (the last `@` ends the userinfo). A
//!   user without a password, and an empty password, are refused: `AUTH` needs one;
//! * the host follows the webhook URLs' rules ([`crate::proto::webhook::url`]): an IPv4
//!   dotted quad, an IPv6 literal in brackets, or a DNS name (lowercased);
//! * the port is 1..=65535, 6379 when absent or empty;
//! * the path is empty, `/`, or `/DB`, the database number for `SELECT` (0 when absent);
//! * query parameters and fragments are refused: none is understood, and a silently
//!   ignored setting is worse than an error;
//! * no spaces, control characters or non-ASCII bytes anywhere (percent-encode them).
//!
//! [`RedisUrl`]'s `Display` and `Debug` never show the password: `***` stands in for it.

use std::fmt;
use std::net::SocketAddr;

use crate::proto::webhook::url::{Host, Url, UrlError};

/// The port of a URL that names none.
pub const DEFAULT_PORT: u16 = 6379;

/// The longest URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// A password, kept out of logs: its `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// A password of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Password {
        Password(bytes.into())
    }

    /// The password itself, for the `AUTH` command.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Credentials for `AUTH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The ACL user; `None` authenticates as the `default` user (`AUTH password`, which
    /// also works with Redis before 6.0 and its `requirepass`).
    pub username: Option<Vec<u8>>,
    /// The password.
    pub password: Password,
}

/// A parsed `redis://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Where to connect.
    pub host: Host,
    /// The TCP port (6379 unless the URL names one).
    pub port: u16,
    /// The database to `SELECT` (0, the default database, needs no command).
    pub db: u32,
    /// The credentials, if the URL has them.
    pub auth: Option<Auth>,
}

/// Why a Redis URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrlError {
    /// Longer than [`MAX_URL_LEN`].
    TooLong,
    /// A space, control character or non-ASCII byte at this byte offset.
    BadChar(usize),
    /// No `scheme://` at the start.
    MissingScheme,
    /// `rediss://`: TLS to Redis is not supported.
    TlsUnsupported,
    /// A scheme other than `redis` and `rediss` (`unix://` sockets are not supported).
    UnsupportedScheme,
    /// `?...` after the host or database.
    QueryUnsupported,
    /// `#...` after the host or database.
    Fragment,
    /// A raw `/`, `?` or `#` in the user name or password.
    UserInfoDelimiter,
    /// `user@host`: a user name needs a password.
    MissingPassword,
    /// `:@host` or `user:@host`.
    EmptyPassword,
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// The host is not valid (the webhook URL rules say why).
    BadHost(UrlError),
    /// The port is not a number in 1..=65535.
    BadPort,
    /// The path is not `/` followed by a database number.
    BadDb,
}

impl fmt::Display for RedisUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisUrlError::TooLong => write!(f, "Redis URL is longer than {MAX_URL_LEN} bytes"),
            RedisUrlError::BadChar(at) => write!(
                f,
                "Redis URL contains a space, control or non-ASCII character at byte {at} \
                 (percent-encode it)"
            ),
            RedisUrlError::MissingScheme => write!(f, "Redis URL must start with redis://"),
            RedisUrlError::TlsUnsupported => write!(
                f,
                "TLS to Redis is not supported (rediss://): use redis:// on a trusted network \
                 or through a TLS tunnel"
            ),
            RedisUrlError::UnsupportedScheme => write!(f, "only redis:// URLs are supported"),
            RedisUrlError::QueryUnsupported => write!(
                f,
                "Redis URL query parameters are not supported (give the database as /DB; \
                 a '?' in a password must be written %3F)"
            ),
            RedisUrlError::Fragment => write!(
                f,
                "Redis URL must not have a #fragment (a '#' in a password must be written %23)"
            ),
            RedisUrlError::UserInfoDelimiter => write!(
                f,
                "'/', '?' and '#' in a Redis user name or password must be percent-encoded \
                 (%2F, %3F, %23)"
            ),
            RedisUrlError::MissingPassword => {
                write!(
                    f,
                    "Redis URL has a user name but no password (user:password@)"
                )
            }
            RedisUrlError::EmptyPassword => write!(f, "Redis URL has an empty password"),
            RedisUrlError::BadPercent => {
                write!(f, "'%' in a Redis URL must be followed by two hex digits")
            }
            RedisUrlError::BadHost(e) => write!(f, "Redis URL: {e}"),
            RedisUrlError::BadPort => write!(f, "Redis port must be a number from 1 to 65535"),
            RedisUrlError::BadDb => {
                write!(f, "Redis URL path must be /DB, a database number")
            }
        }
    }
}

impl std::error::Error for RedisUrlError {}

impl RedisUrl {
    /// Parses and validates a Redis URL; see the module docs for the rules.
    pub fn parse(text: &str) -> Result<RedisUrl, RedisUrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(RedisUrlError::TooLong);
        }
        if let Some(at) = text.bytes().position(|b| b <= b' ' || b >= 0x7F) {
            return Err(RedisUrlError::BadChar(at));
        }
        let (scheme, rest) = text.split_once("://").ok_or(RedisUrlError::MissingScheme)?;
        if scheme.eq_ignore_ascii_case("rediss") {
            return Err(RedisUrlError::TlsUnsupported);
        }
        if !scheme.eq_ignore_ascii_case("redis") {
            return Err(RedisUrlError::UnsupportedScheme);
        }
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let auth = userinfo.map(parse_userinfo).transpose()?;
        if rest.contains('#') {
            return Err(RedisUrlError::Fragment);
        }
        if rest.contains('?') {
            return Err(RedisUrlError::QueryUnsupported);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => parse_port(p)?,
        };
        // The host rules are the webhook URLs'; a host alone is a valid `http` URL.
        let host = Url::parse(&format!("http://{host}/"))
            .map_err(RedisUrlError::BadHost)?
            .host;
        let db = match path {
            "" | "/" => 0,
            _ => parse_db(&path[1..])?,
        };
        Ok(RedisUrl {
            host,
            port,
            db,
            auth,
        })
    }

    /// The address to connect to when the host is an IP literal (no resolution needed).
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for RedisUrl {
    /// The normalized URL, port and database always shown, the password as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("redis://")?;
        if let Some(auth) = &self.auth {
            if let Some(user) = &auth.username {
                for &b in user {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        write!(f, "{}", char::from(b))?;
                    } else {
                        write!(f, "%{b:02X}")?;
                    }
                }
            }
            f.write_str(":***@")?;
        }
        // The host shows IPv6 literals in brackets.
        write!(f, "{}:{}/{}", self.host, self.port, self.db)
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = RedisUrlError;
    fn from_str(s: &str) -> Result<RedisUrl, RedisUrlError> {
        RedisUrl::parse(s)
    }
}

/// `[USER]:PASSWORD`, percent-decoded.
fn parse_userinfo(text: &str) -> Result<Auth, RedisUrlError> {
    if text.contains(['/', '?', '#']) {
        return Err(RedisUrlError::UserInfoDelimiter);
    }
    let (user, password) = text.split_once(':').ok_or(RedisUrlError::MissingPassword)?;
    let password = percent_decode(password)?;
    if password.is_empty() {
        return Err(RedisUrlError::EmptyPassword);
    }
    let username = match user {
        "" => None,
        _ => Some(percent_decode(user)?),
    };
    Ok(Auth {
        username,
        password: Password(password),
    })
}

/// RFC 3986 §2.1: `%` and two hex digits stand for one byte.
fn percent_decode(text: &str) -> Result<Vec<u8>, RedisUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(RedisUrlError::BadPercent)?;
            let hex = std::str::from_utf8(hex).map_err(|_| RedisUrlError::BadPercent)?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return Err(RedisUrlError::BadPercent);
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| RedisUrlError::BadPercent)?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Splits `host[:port]` or `[v6][:port]`; the host part keeps its brackets.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), RedisUrlError> {
    if authority.starts_with('[') {
        let bad = RedisUrlError::BadHost(UrlError::BadIpv6);
        let close = authority.find(']').ok_or(bad.clone())?;
        let (host, after) = authority.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => after.strip_prefix(':').map(|p| (host, Some(p))).ok_or(bad),
        };
    }
    Ok(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn parse_port(text: &str) -> Result<u16, RedisUrlError> {
    if text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RedisUrlError::BadPort);
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(RedisUrlError::BadPort),
        Ok(port) => Ok(port),
    }
}

/// A database number: digits only, at most `i32::MAX` (what `SELECT` takes).
fn parse_db(text: &str) -> Result<u32, RedisUrlError> {
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RedisUrlError::BadDb);
    }
    match text.parse::<u32>() {
        Ok(db) if db <= i32::MAX as u32 => Ok(db),
        _ => Err(RedisUrlError::BadDb),
    }
}

#[cfg(test)]
mod tests;
