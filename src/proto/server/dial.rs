//! A connection the application dialed: the client side of a WebSocket (RFC 6455 §4.1),
//! from the request to the `101`, then the same [`Mode::Ws`] as an accepted WebSocket, in
//! the client role (masked frames, §5.3) and with the permessage-deflate parameters the
//! server chose (RFC 7692 §7.1), its directions swapped.
//!
//! ```text
//!   dial: request queued --(101 checked)--> WebSocket (client role) --> as accepted ones
//!     \--(connect timeout, refused, bad answer, EOF)--> over: the dial failed
//! ```
//!
//! The driver opens the socket (and TLS), draws the 16-byte nonce and the 32-byte seed of
//! the masking keys, and hands every byte read to [`ServerConn::read_dial`] until it says
//! the WebSocket is open. One deadline covers the TCP connect, TLS and the handshake. A
//! dial that ends before the `101` is reported by [`ServerConn::dial_failure`].

use std::time::Duration;

use super::{CloseReason, Deadline, Env, Mode, ServerConn};
use crate::proto::ws::client::{self, Accepted, ClientOffer, OfferError, WsUrl};
use crate::proto::ws::extensions::DeflateParams;
use crate::proto::ws::{self, MaskKeys, WsLimits};

/// What to dial: the URL and the offer.
#[derive(Debug, Clone)]
pub struct DialSpec {
    /// Where.
    pub url: WsUrl,
    /// Subprotocols offered, in order of preference.
    pub protocols: Vec<String>,
    /// Extra request header fields (e.g. `Origin`, `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Offer permessage-deflate (`client_max_window_bits`, both directions without context
    /// takeover asked for nothing: the server picks).
    pub deflate: bool,
    /// The limits of the messages received once open.
    pub limits: WsLimits,
    /// Connect, TLS and the handshake together must be done within this.
    pub timeout: Duration,
}

/// A dial in progress.
#[derive(Debug)]
pub(super) struct Dial {
    url: String,
    expected_accept: String,
    protocols: Vec<String>,
    deflate: Option<DeflateParams>,
    limits: WsLimits,
    seed: [u8; 32],
    /// Why it failed, once it has.
    failure: Option<String>,
}

impl Dial {
    fn offer<'a>(&self, protocols: &'a [&'a str]) -> ClientOffer<'a> {
        ClientOffer {
            protocols,
            deflate: self.deflate,
            headers: &[],
        }
    }
}

/// The permessage-deflate offer: the client can take any window the server asks for.
fn deflate_offer() -> DeflateParams {
    DeflateParams {
        client_max_window_bits: Some(None),
        ..DeflateParams::default()
    }
}

impl ServerConn {
    /// A connection dialed to `spec.url`: the upgrade request with the nonce `key` is
    /// queued at once (it goes out when the socket connects) and the deadline runs.
    /// `seed` keys the client's masking. `Err` when the offer cannot be written.
    pub fn dial(
        spec: &DialSpec,
        key: [u8; 16],
        seed: [u8; 32],
        env: &mut Env<'_>,
    ) -> Result<ServerConn, OfferError> {
        let protocols: Vec<&str> = spec.protocols.iter().map(String::as_str).collect();
        let headers: Vec<(&str, &str)> = spec
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let deflate = spec.deflate.then(deflate_offer);
        let offer = ClientOffer {
            protocols: &protocols,
            deflate,
            headers: &headers,
        };
        let mut request = Vec::with_capacity(256);
        let expected_accept = client::write_request(&mut request, &spec.url, &key, &offer)?;
        log::debug!("ws dial {}: {} request bytes", spec.url, request.len());
        env.out.push_slice(&request);
        let mut c = ServerConn::new(env);
        c.mode = Mode::Dialing(Box::new(Dial {
            url: spec.url.to_string(),
            expected_accept,
            protocols: spec.protocols.clone(),
            deflate,
            limits: spec.limits,
            seed,
            failure: None,
        }));
        c.set_timer(env, Deadline::Dial, spec.timeout);
        Ok(c)
    }

    /// True while this is a dial whose WebSocket is not open yet.
    pub fn dialing(&self) -> bool {
        matches!(self.mode, Mode::Dialing(_))
    }

    /// The URL of a dial in progress.
    pub fn dial_url(&self) -> Option<&str> {
        match &self.mode {
            Mode::Dialing(d) => Some(&d.url),
            _ => None,
        }
    }

    /// Why a dial failed: its handshake error, or what ended the connection before the
    /// `101`. `None` for a connection that is not a failed dial.
    pub fn dial_failure(&self) -> Option<String> {
        let Mode::Dialing(d) = &self.mode else {
            return None;
        };
        let why = self.done?;
        Some(match &d.failure {
            Some(f) => f.clone(),
            None if why == CloseReason::PeerClosed || why == CloseReason::NoCloseFrame => {
                "the server closed the connection before the handshake answer".into()
            }
            None if why == CloseReason::Finished => "closed before it opened".into(),
            None => match why {
                CloseReason::ReadError(k) | CloseReason::WriteError(k) => {
                    format!("connection failed: {k}")
                }
                _ => why.to_string(),
            },
        })
    }

    /// Reads the handshake answer from `buf`: how many bytes it took and whether the
    /// WebSocket is now open (the rest of `buf` is then WebSocket input). `(0, false)`:
    /// more input is needed. A refused answer ends the connection
    /// ([`CloseReason::HandshakeFailed`], the cause in [`dial_failure`](Self::dial_failure)).
    /// A compressor of its own (context takeover) works at `env.codec`'s level; the
    /// keepalive Ping starts to run from `env.now`.
    pub fn read_dial(&mut self, buf: &[u8], env: &mut Env<'_>) -> (usize, bool) {
        let level = env.codec.level();
        let Mode::Dialing(d) = &mut self.mode else {
            return (0, false);
        };
        if self.done.is_some() {
            return (buf.len(), false);
        }
        let names: Vec<&str> = d.protocols.iter().map(String::as_str).collect();
        let answer = client::read_response(buf, &d.expected_accept, &d.offer(&names));
        let accepted = match answer {
            Ok(None) => return (0, false),
            Ok(Some(a)) => a,
            Err(e) => {
                log::debug!("ws dial {}: {e}", d.url);
                d.failure = Some(e.to_string());
                self.done = Some(CloseReason::HandshakeFailed);
                self.timer = None;
                return (buf.len(), false);
            }
        };
        let Accepted {
            protocol,
            deflate,
            head_len,
        } = accepted;
        log::debug!(
            "ws dial {}: open (protocol {protocol:?}, deflate {deflate:?})",
            d.url
        );
        let mut recv = ws::Receiver::client(d.limits);
        let mut send = ws::Sender::client(MaskKeys::new(d.seed));
        if let Some(a) = deflate {
            // The server's compressor is what we inflate; ours is the client's window.
            recv = recv.with_deflate(!a.server_no_context_takeover, a.server_window_bits);
            send =
                send.with_deflate_level(a.client_window_bits, !a.client_no_context_takeover, level);
        }
        self.mode = Mode::Ws {
            recv: Some(Box::new(recv)),
            send,
        };
        self.arm_ping(env);
        (head_len, true)
    }
}
