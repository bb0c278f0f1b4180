//! Access tokens: where a request carries one, and comparing it without leaking its bytes
//! through timing.
//!
//! A client presents a token as `Authorization: Bearer <token>` (RFC 6750 §2.1), or, when
//! it cannot set headers (a browser's `EventSource` or `WebSocket`), as the `token` query
//! parameter (RFC 6750 §2.3, with the name `token` rather than `access_token`). The
//! header wins when both are present. The application decides what a token allows; the
//! hub's `--publish-token`, `--subscribe-token` and `--admin-token` are one such policy.
//!
//! ```
//! use pushwire::proto::auth::{check_token, Access};
//! use pushwire::proto::http1::{Header, Request, Version};
//!
//! let req = |target: &str, auth: Option<&str>| Request {
//!     method: "GET".into(),
//!     target: target.into(),
//!     version: Version::Http11,
//!     headers: auth
//!         .map(|v| Header { name: "Authorization".into(), value: v.into() })
//!         .into_iter()
//!         .collect(),
//!     body: Vec::new(),
//!     trailers: Vec::new(),
//! };
//! let sse = req("/topics/t/sse?token=s3cret", None);
//! assert_eq!(check_token(&sse, Some("s3cret")), Access::Allowed);
//! assert_eq!(check_token(&sse, Some("other")), Access::Wrong);
//! assert_eq!(check_token(&req("/x", None), Some("s3cret")), Access::Missing);
//! assert_eq!(check_token(&req("/x", Some("Bearer s3cret")), Some("s3cret")), Access::Allowed);
//! assert_eq!(check_token(&req("/x", None), None), Access::Allowed);
//! ```

use super::http1::Request;

/// The longest token looked at; longer ones are refused as wrong without being compared.
pub const MAX_TOKEN_LEN: usize = 1024;

/// What a request's token allows, given the token expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token is required, or the right one was given.
    Allowed,
    /// A token is required and none was given: answer 401 with `WWW-Authenticate: Bearer`.
    Missing,
    /// A token was given and it is not the one expected: answer 403.
    Wrong,
}

/// The token a request carries: `Authorization: Bearer <token>` (the scheme matched
/// without case, then one or more spaces; an empty token counts as none), else the
/// `token` query parameter (percent-decoded). `None` when there is neither.
pub fn request_token(req: &Request) -> Option<String> {
    if let Some(value) = req.header_str("authorization") {
        if let Some(t) = bearer(value) {
            return Some(t.to_owned());
        }
    }
    let q = req.query_param("token")?;
    (!q.is_empty()).then(|| q.into_owned())
}

/// The token of an `Authorization` header value with the `Bearer` scheme (a `token68`).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    token68(token).then_some(token)
}

/// Whether `t` is a `token68` (RFC 9110 §11.2): `1*( ALPHA / DIGIT / "-" / "." / "_" /
/// "~" / "+" / "/" ) *"="`.
fn token68(t: &str) -> bool {
    let body = t.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Whether `given` equals `expected`, in time that does not depend on where they differ
/// or on their lengths: both are hashed with SHA-256 and the digests compared with
/// `subtle`'s constant-time equality, so response times do not tell an attacker how much
/// of a guess was right, nor how long the token is. Tokens longer than [`MAX_TOKEN_LEN`]
/// are never equal.
pub fn token_eq(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    if given.len() > MAX_TOKEN_LEN || expected.len() > MAX_TOKEN_LEN {
        return false;
    }
    let (g, e) = (Sha256::digest(given), Sha256::digest(expected));
    g.as_slice().ct_eq(e.as_slice()).into()
}

/// Checks the token of `req` against `expected` (`None`: nothing required).
pub fn check_token(req: &Request, expected: Option<&str>) -> Access {
    let Some(expected) = expected else {
        return Access::Allowed;
    };
    match request_token(req) {
        None => Access::Missing,
        Some(t) if token_eq(&t, expected) => Access::Allowed,
        Some(_) => Access::Wrong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc"), Some("abc"));
        assert_eq!(bearer("BEARER abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer a b"), None);
        assert_eq!(bearer("Bearer abc+/~._-=="), Some("abc+/~._-=="));
        for bad in [
            "Bearer a\tb",
            "Bearer \"x\"",
            "Bearer a,b=c",
            "Bearer été",
            "Bearer ==",
        ] {
            assert_eq!(bearer(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn token_comparison() {
        assert!(token_eq("s3cret", "s3cret"));
        assert!(!token_eq("s3cre", "s3cret"));
        assert!(!token_eq("s3crets", "s3cret"));
        assert!(!token_eq("", "s3cret"));
        assert!(!token_eq("s3creT", "s3cret"));
        assert!(token_eq("", ""));
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert!(!token_eq(&long, &long));
    }
}
