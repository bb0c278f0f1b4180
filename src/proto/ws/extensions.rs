//! `Sec-WebSocket-Extensions` and the permessage-deflate negotiation, pure (RFC 6455 §9.1,
//! RFC 7692 §5 and §7.1).
//!
//! # On the wire
//!
//! ```text
//! Sec-WebSocket-Extensions = extension-list
//! extension-list = 1#extension                      ; several fields are one comma list
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" ( token | quoted-string ) ]   ; a quoted value, unescaped,
//!                                                             ; must be a token too
//! ```
//!
//! A client lists its offers in order of preference; permessage-deflate's parameters are
//! `server_no_context_takeover` and `client_no_context_takeover` (no value),
//! `server_max_window_bits=N` (8-15) and `client_max_window_bits[=N]` (no value: "I can
//! take a smaller window"). An offer with an unknown parameter, a parameter twice, or a bad
//! value is **declined** (RFC 7692 §5: the server tries the next one), never a failed
//! handshake; a field that does not parse at all declines every offer.
//!
//! The server accepts the first offer it can honour ([`negotiate`]) and answers with exactly
//! the parameters chosen ([`Agreed::response`]). Its policy by default asks for no context
//! takeover both ways (RFC 7692 §7.1.1.1 and §7.1.1.2 let a server add both), so that no
//! compression state lives per connection. Windows below 9 bits cannot be made by zlib's
//! raw deflate: an offer that *requires* 8 (`server_max_window_bits=8`) is declined, and so
//! is `client_max_window_bits=8`: the server's answer may not name a larger window than the
//! client's limit (RFC 7692 §7.1.2.2), and pushwire does not answer with 8.
//!
//! The client side checks the server's answer against what it offered
//! ([`check_response`]): an extension it did not offer, a parameter twice, or a value
//! outside what it allowed fails the handshake (RFC 6455 §4.1, RFC 7692 §5).
//!
//! This is the first piece of permessage-deflate: the handshake does not call it yet, so
//! the server still answers every offer with no extension.

use std::fmt;

/// The extension's registered name.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// The smallest window zlib's raw deflate can use.
pub const MIN_WINDOW_BITS: u8 = 9;
/// The largest window (32 KiB), the default.
pub const MAX_WINDOW_BITS: u8 = 15;

/// One extension of the list: its name and its parameters, values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, as sent (compared case-insensitively).
    pub name: String,
    /// `(name, value)` pairs in order; `None` for a parameter without a value.
    pub params: Vec<(String, Option<String>)>,
}

/// Why a field did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// An element of the list is empty or does not start with a token.
    MissingName,
    /// A parameter has no name, or its name is not a token.
    BadParam,
    /// A value is neither a token nor a quoted string whose content is a token.
    BadValue,
    /// A quoted string does not end.
    Unterminated,
    /// The field is longer than [`MAX_FIELD`] or lists more than [`MAX_EXTENSIONS`].
    TooLong,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::MissingName => "an extension without a name",
            ParseError::BadParam => "a parameter without a valid name",
            ParseError::BadValue => "a parameter value that is not a token",
            ParseError::Unterminated => "a quoted string that does not end",
            ParseError::TooLong => "too long a list of extensions",
        })
    }
}

/// The longest field value looked at (an honest client sends well under 200 bytes).
pub const MAX_FIELD: usize = 4096;
/// The most extensions (offers) looked at in one request.
pub const MAX_EXTENSIONS: usize = 32;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Splits `field` (every `Sec-WebSocket-Extensions` value joined with `,`) into its
/// extensions.
pub fn parse(field: &str) -> Result<Vec<Extension>, ParseError> {
    if field.len() > MAX_FIELD {
        return Err(ParseError::TooLong);
    }
    let b = field.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && is_tchar(b[*i]) {
            *i += 1;
        }
        &field[start..*i]
    };
    loop {
        skip_ws(&mut i);
        if i < b.len() && b[i] == b',' {
            // An empty element (`a, , b`): allowed by the list rule, skipped.
            i += 1;
            continue;
        }
        if i == b.len() {
            break;
        }
        let name = token(&mut i);
        if name.is_empty() {
            return Err(ParseError::MissingName);
        }
        let mut ext = Extension {
            name: name.to_owned(),
            params: Vec::new(),
        };
        loop {
            skip_ws(&mut i);
            if i == b.len() || b[i] == b',' {
                break;
            }
            if b[i] != b';' {
                return Err(ParseError::BadParam);
            }
            i += 1;
            skip_ws(&mut i);
            let pname = token(&mut i);
            if pname.is_empty() {
                return Err(ParseError::BadParam);
            }
            skip_ws(&mut i);
            let mut value = None;
            if i < b.len() && b[i] == b'=' {
                i += 1;
                skip_ws(&mut i);
                let v = if i < b.len() && b[i] == b'"' {
                    i += 1;
                    let mut v = String::new();
                    loop {
                        match b.get(i) {
                            None => return Err(ParseError::Unterminated),
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(b'\\') => {
                                let c = *b.get(i + 1).ok_or(ParseError::Unterminated)?;
                                v.push(char::from(c));
                                i += 2;
                            }
                            Some(&c) => {
                                v.push(char::from(c));
                                i += 1;
                            }
                        }
                    }
                    v
                } else {
                    token(&mut i).to_owned()
                };
                if !is_token(&v) {
                    return Err(ParseError::BadValue);
                }
                value = Some(v);
            }
            ext.params.push((pname.to_owned(), value));
        }
        out.push(ext);
        if out.len() > MAX_EXTENSIONS {
            return Err(ParseError::TooLong);
        }
    }
    Ok(out)
}

/// A permessage-deflate offer (or answer) read from its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateParams {
    /// `server_no_context_takeover`.
    pub server_no_context_takeover: bool,
    /// `client_no_context_takeover`.
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N`.
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits` (`Some(None)`: without a value).
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Why a permessage-deflate parameter list is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// A parameter permessage-deflate does not define.
    Unknown(String),
    /// A parameter given twice.
    Duplicate(String),
    /// A value where none belongs, none where one must be, or a number out of 8-15.
    BadValue(String),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Unknown(p) => write!(f, "unknown parameter {p}"),
            ParamError::Duplicate(p) => write!(f, "parameter {p} given twice"),
            ParamError::BadValue(p) => write!(f, "bad value for {p}"),
        }
    }
}

fn window_bits(name: &str, v: &str) -> Result<u8, ParamError> {
    // RFC 7692 §7.1.2: 1*DIGIT without leading zeros, 8 to 15.
    let ok = !v.is_empty() && v.len() <= 2 && v.bytes().all(|c| c.is_ascii_digit());
    match ok.then(|| v.parse::<u8>().ok()).flatten() {
        Some(n @ 8..=15) if !v.starts_with('0') => Ok(n),
        _ => Err(ParamError::BadValue(name.into())),
    }
}

impl DeflateParams {
    /// Reads the parameters of one permessage-deflate extension.
    pub fn from_params(params: &[(String, Option<String>)]) -> Result<DeflateParams, ParamError> {
        let mut p = DeflateParams::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in params {
            let key = name.to_ascii_lowercase();
            if seen.contains(&key) {
                return Err(ParamError::Duplicate(key));
            }
            seen.push(key.clone());
            match (key.as_str(), value.as_deref()) {
                ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
                ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
                ("server_max_window_bits", Some(v)) => {
                    p.server_max_window_bits = Some(window_bits(&key, v)?)
                }
                ("client_max_window_bits", None) => p.client_max_window_bits = Some(None),
                ("client_max_window_bits", Some(v)) => {
                    p.client_max_window_bits = Some(Some(window_bits(&key, v)?))
                }
                (
                    "server_no_context_takeover"
                    | "client_no_context_takeover"
                    | "server_max_window_bits",
                    _,
                ) => return Err(ParamError::BadValue(key)),
                _ => return Err(ParamError::Unknown(key)),
            }
        }
        Ok(p)
    }
}

/// What the server is willing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerPolicy {
    /// Keep the compression context between messages when the client allows it (memory
    /// per connection). Off by default: both `no_context_takeover` parameters are sent.
    pub context_takeover: bool,
}

/// The permessage-deflate settings both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server compresses with this window (and the client inflates with it).
    pub server_window_bits: u8,
    /// The client compresses with this window (and the server inflates with it).
    pub client_window_bits: u8,
    /// Say `server_max_window_bits` in the answer (the client asked for it).
    say_server_bits: bool,
    /// Say `client_max_window_bits` in the answer (the client allowed it).
    say_client_bits: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value of the 101: exactly the parameters chosen.
    pub fn response(&self) -> String {
        let mut out = String::from(PERMESSAGE_DEFLATE);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.say_server_bits {
            out.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        if self.say_client_bits {
            out.push_str(&format!(
                "; client_max_window_bits={}",
                self.client_window_bits
            ));
        }
        out
    }
}

/// The server's choice among the client's offers in `field` (every
/// `Sec-WebSocket-Extensions` value joined with `,`): the first permessage-deflate offer it
/// can honour, or `None` (no extension; the handshake goes on without it).
pub fn negotiate(field: &str, policy: ServerPolicy) -> Option<Agreed> {
    let offers = parse(field).ok()?;
    offers
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        .find_map(|e| accept(&DeflateParams::from_params(&e.params).ok()?, policy))
}

fn accept(offer: &DeflateParams, policy: ServerPolicy) -> Option<Agreed> {
    // The server's window: what the client requires, which zlib must be able to do.
    let server_window_bits = match offer.server_max_window_bits {
        Some(n) if n < MIN_WINDOW_BITS => return None,
        Some(n) => n,
        None => MAX_WINDOW_BITS,
    };
    // The client's window: the client may be told a smaller one only if it said it can
    // take one; a value it gave is its own limit, echoed in the answer (RFC 7692 §7.1.2.2:
    // at most the offered value). 8 is declined: zlib cannot make such a window, and an
    // answer of 8 would promise one. (Leaving the parameter out of the answer would also
    // be valid; declining keeps the answer exact.)
    let (client_window_bits, say_client_bits) = match offer.client_max_window_bits {
        Some(Some(n)) if n < MIN_WINDOW_BITS => return None,
        Some(Some(n)) => (n, true),
        Some(None) => (MAX_WINDOW_BITS, false),
        None => (MAX_WINDOW_BITS, false),
    };
    let no_takeover = !policy.context_takeover;
    Some(Agreed {
        server_no_context_takeover: offer.server_no_context_takeover || no_takeover,
        client_no_context_takeover: offer.client_no_context_takeover || no_takeover,
        server_window_bits,
        client_window_bits,
        say_server_bits: offer.server_max_window_bits.is_some(),
        say_client_bits,
    })
}

/// Why a client refuses the server's extension answer (the handshake then fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// The field does not parse.
    Parse(ParseError),
    /// An extension the client did not offer, or more than one.
    NotOffered(String),
    /// A permessage-deflate parameter the client cannot accept.
    Param(ParamError),
    /// `client_max_window_bits` in the answer when the offer did not allow it, or a window
    /// larger than the offer's limit.
    Window(&'static str),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Parse(e) => write!(f, "Sec-WebSocket-Extensions: {e}"),
            ResponseError::NotOffered(e) => write!(f, "extension {e} was not offered"),
            ResponseError::Param(e) => write!(f, "permessage-deflate: {e}"),
            ResponseError::Window(e) => write!(f, "permessage-deflate: {e}"),
        }
    }
}

/// The client's check of the server's answer `field` to its one permessage-deflate offer
/// `offered`: `Ok(None)` when the server took no extension, `Ok(Some(agreed))` when it
/// took it with parameters the offer allows.
pub fn check_response(
    field: &str,
    offered: &DeflateParams,
) -> Result<Option<Agreed>, ResponseError> {
    let exts = parse(field).map_err(ResponseError::Parse)?;
    let mut exts = exts.into_iter();
    let Some(ext) = exts.next() else {
        return Ok(None);
    };
    if !ext.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
        return Err(ResponseError::NotOffered(ext.name));
    }
    if let Some(more) = exts.next() {
        return Err(ResponseError::NotOffered(more.name));
    }
    let p = DeflateParams::from_params(&ext.params).map_err(ResponseError::Param)?;
    let client_window_bits = match (p.client_max_window_bits, offered.client_max_window_bits) {
        (None, _) => offered
            .client_max_window_bits
            .flatten()
            .unwrap_or(MAX_WINDOW_BITS),
        (Some(_), None) => return Err(ResponseError::Window("client_max_window_bits not offered")),
        (Some(None), Some(_)) => {
            return Err(ResponseError::Window(
                "client_max_window_bits needs a value",
            ))
        }
        (Some(Some(n)), Some(limit)) => {
            if limit.is_some_and(|l| n > l) {
                return Err(ResponseError::Window("client window above the offer's"));
            }
            if n < MIN_WINDOW_BITS {
                return Err(ResponseError::Window("a client window below 9 bits"));
            }
            n
        }
    };
    let server_window_bits = match (p.server_max_window_bits, offered.server_max_window_bits) {
        (Some(n), Some(limit)) if n > limit => {
            return Err(ResponseError::Window("server window above the offer's"))
        }
        (None, Some(_)) => {
            return Err(ResponseError::Window(
                "server_max_window_bits asked for, not answered",
            ))
        }
        (Some(n), _) => n,
        (None, None) => MAX_WINDOW_BITS,
    };
    if offered.server_no_context_takeover && !p.server_no_context_takeover {
        return Err(ResponseError::Window(
            "server_no_context_takeover asked for, not answered",
        ));
    }
    Ok(Some(Agreed {
        server_no_context_takeover: p.server_no_context_takeover,
        client_no_context_takeover: p.client_no_context_takeover,
        server_window_bits,
        client_window_bits,
        say_server_bits: p.server_max_window_bits.is_some(),
        say_client_bits: p.client_max_window_bits.is_some(),
    }))
}

#[cfg(test)]
mod tests;
