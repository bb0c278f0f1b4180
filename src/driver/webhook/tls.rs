//! `https://` webhooks: a rustls client session per connection, verified against the
//! configured roots and the URL's host, with the handshake counted as part of connecting.

use std::io;

use rustls::pki_types::ServerName;

use crate::driver::transport::Stream;
use crate::proto::webhook::Host;

/// The name the receiver's certificate must be valid for: a DNS name (also sent as SNI)
/// or an IP address (matched against the certificate's IP SANs; no SNI, RFC 6066 §3).
fn server_name(host: &Host) -> Result<ServerName<'static>, String> {
    match host {
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Name(name) => ServerName::try_from(name.clone())
            .map_err(|e| format!("tls: {name:?} is not a valid server name: {e}")),
    }
}

/// A client session for `host` over `tcp`, with `config`.
pub(crate) fn stream(
    tcp: mio::net::TcpStream,
    config: std::sync::Arc<rustls::ClientConfig>,
    host: &Host,
) -> Result<Stream, String> {
    let name = server_name(host)?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| format!("tls: {e}"))?;
    Ok(Stream::tls(tcp, rustls::Connection::Client(conn)))
}

/// Moves the handshake on: `Ok(true)` once it is complete, `Ok(false)` while it waits for
/// the socket, `Err` with the cause when it failed (a certificate that is expired, for
/// another name or from an unknown issuer; the peer closing; a protocol error).
pub(super) fn handshake(stream: &mut Stream) -> Result<bool, String> {
    match stream.handshake() {
        Ok(done) => Ok(done),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err("tls: the receiver closed the connection during the handshake".into())
        }
        Err(e) => Err(stream
            .failure_detail()
            .unwrap_or_else(|| format!("tls handshake: {e}"))),
    }
}
