//! TLS settings: what a TLS listener serves, and what `https://` webhooks trust.
//!
//! pushwire speaks TLS 1.3 (RFC 8446) and TLS 1.2 (RFC 5246) through rustls, on the same
//! single-threaded loop as everything else; the protocols above never see the difference.
//!
//! * **Serving** ([`ServerTls`], [`Server::listen_tls`](crate::Server::listen_tls)): a
//!   certificate chain and its private key in PEM (the key as PKCS#8, SEC1 or PKCS#1),
//!   or a resolver picking a certificate by the client's SNI name (RFC 6066 §3). ALPN
//!   (RFC 7301) offers `http/1.1` only: a client that insists on `h2` gets the
//!   `no_application_protocol` alert.
//! * **Webhooks** ([`ClientTls`], [`Config::webhook_tls`](crate::Config::webhook_tls)):
//!   the receiver's chain is verified against the Mozilla root set compiled in from
//!   `webpki-roots` (no file system or OS store needed), plus any PEM roots added, and
//!   against the URL's host: a DNS name against the certificate's DNS names, an IP literal
//!   against its IP addresses (RFC 9525 §6). The name also goes out as SNI (never for an
//!   IP literal, RFC 6066 §3).
//!
//! # On the wire
//!
//! Every TLS byte travels in records: a 5-byte header (content type: 22 handshake, 21
//! alert, 23 application data; the legacy version `03 03` or `03 01`; a 16-bit length of at
//! most 2^14 + 256) and the payload. A client opens with a ClientHello, so the first byte
//! a TLS port sees is `0x16`; plaintext HTTP sent there (`G` of `GET` is `0x47`) is not a
//! record, and the connection ends with a `decode_error` alert. The other way round, a
//! ClientHello sent to a plaintext port is not an HTTP request line and gets a 400.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The largest PEM file read (a certificate chain of a few certificates is a few KiB).
const MAX_PEM_BYTES: u64 = 1 << 20;

/// A TLS setting that could not be loaded: which file or item, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    /// The file (or "certificate", "private key" for in-memory PEM).
    pub what: String,
    /// What is wrong with it.
    pub cause: String,
}

impl TlsError {
    fn new(what: impl Into<String>, cause: impl fmt::Display) -> TlsError {
        TlsError {
            what: what.into(),
            cause: cause.to_string(),
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.cause)
    }
}

impl std::error::Error for TlsError {}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file of at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| TlsError::new(&what, e))?;
    let mut data = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| TlsError::new(&what, e))?;
    if data.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::new(what, "larger than 1 MiB: not a PEM file"));
    }
    Ok(data)
}

/// Every `CERTIFICATE` block of `pem`; at least one.
fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(what, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::new(what, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The first private key of `pem` (PKCS#8, SEC1 or PKCS#1).
fn key(what: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::new(
            what,
            "no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block found",
        ),
        e => TlsError::new(what, format!("bad PEM: {e}")),
    })
}

/// What a TLS listener presents: built from PEM, or a rustls configuration of your own.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("alpn", &self.config.alpn_protocols)
            .finish()
    }
}

impl ServerTls {
    /// One certificate chain (leaf first) and its private key, both PEM text.
    pub fn from_pem(chain: &[u8], key_pem: &[u8]) -> Result<ServerTls, TlsError> {
        Self::load("certificate", chain, "private key", key_pem)
    }

    /// Like [`from_pem`](Self::from_pem), reading the two files; an error names the file.
    pub fn from_pem_files(
        chain: impl AsRef<Path>,
        key_file: impl AsRef<Path>,
    ) -> Result<ServerTls, TlsError> {
        let (chain, key_file) = (chain.as_ref(), key_file.as_ref());
        let (c, k) = (read_pem(chain)?, read_pem(key_file)?);
        Self::load(
            &chain.display().to_string(),
            &c,
            &key_file.display().to_string(),
            &k,
        )
    }

    fn load(
        cert_what: &str,
        chain: &[u8],
        key_what: &str,
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        let chain = certs(cert_what, chain)?;
        let key = key(key_what, key_pem)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new("TLS", e))?
            .with_no_client_auth();
        let config = builder.with_single_cert(chain, key).map_err(|e| {
            TlsError::new(
                key_what,
                format!("cannot be used with the certificate: {e}"),
            )
        })?;
        Ok(Self::finish(config))
    }

    /// Picks the certificate per connection, e.g. by the SNI name
    /// (`ClientHello::server_name`).
    pub fn with_resolver(resolver: Arc<dyn rustls::server::ResolvesServerCert>) -> ServerTls {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        Self::finish(config)
    }

    /// A rustls configuration of your own, used as it is (set its ALPN list yourself).
    pub fn from_config(config: Arc<rustls::ServerConfig>) -> ServerTls {
        ServerTls { config }
    }

    fn finish(mut config: rustls::ServerConfig) -> ServerTls {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        ServerTls {
            config: Arc::new(config),
        }
    }

    /// A new server-side session.
    pub(crate) fn session(&self) -> Result<rustls::Connection, rustls::Error> {
        rustls::ServerConnection::new(self.config.clone()).map(rustls::Connection::Server)
    }
}

/// What `https://` webhooks trust: the Mozilla roots (from `webpki-roots`) and any PEM
/// roots added, e.g. a private CA. There is no "accept any certificate" setting; a rustls
/// configuration of your own ([`from_config`](Self::from_config)) is the way out.
#[derive(Clone, Default)]
pub struct ClientTls {
    extra: Vec<CertificateDer<'static>>,
    no_webpki: bool,
    config: Option<Arc<rustls::ClientConfig>>,
    /// Where the added roots came from (for the log).
    sources: Vec<PathBuf>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("extra_roots", &self.extra.len())
            .field("webpki_roots", &!self.no_webpki)
            .field("sources", &self.sources)
            .field("own_config", &self.config.is_some())
            .finish()
    }
}

impl ClientTls {
    /// The Mozilla roots only.
    pub fn new() -> ClientTls {
        ClientTls::default()
    }

    /// Adds every certificate of `pem` as a trusted root.
    pub fn add_ca_pem(mut self, pem: &[u8]) -> Result<ClientTls, TlsError> {
        self.extra.extend(certs("CA certificate", pem)?);
        Ok(self)
    }

    /// Adds every certificate of the PEM file `path` as a trusted root.
    pub fn add_ca_file(mut self, path: impl AsRef<Path>) -> Result<ClientTls, TlsError> {
        let path = path.as_ref();
        let pem = read_pem(path)?;
        self.extra.extend(certs(&path.display().to_string(), &pem)?);
        self.sources.push(path.to_owned());
        Ok(self)
    }

    /// Trusts only the added roots, not the Mozilla set.
    pub fn without_webpki_roots(mut self) -> ClientTls {
        self.no_webpki = true;
        self
    }

    /// A rustls configuration of your own, used as it is.
    pub fn from_config(config: Arc<rustls::ClientConfig>) -> ClientTls {
        ClientTls {
            config: Some(config),
            ..ClientTls::default()
        }
    }

    /// The rustls configuration (built once, on the first `https://` delivery, so a hub
    /// that never sends one does not hold the root store).
    pub(crate) fn build(&self) -> Arc<rustls::ClientConfig> {
        if let Some(c) = &self.config {
            return c.clone();
        }
        let mut roots = rustls::RootCertStore::empty();
        if !self.no_webpki {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let (added, bad) = roots.add_parsable_certificates(self.extra.iter().cloned());
        if bad > 0 {
            log::warn!("webhook TLS: {bad} added root certificates could not be used");
        }
        log::debug!("webhook TLS: {} roots ({added} added)", roots.len());
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// The cause of a failed session as a [`CloseReason`](crate::CloseReason) carries it.
pub(crate) fn cause(e: &rustls::Error) -> crate::proto::server::TlsFailure {
    use crate::proto::server::TlsFailure as F;
    use rustls::Error as E;
    match e {
        E::InvalidMessage(_) => F::NotTls,
        E::InvalidCertificate(_) => F::Certificate,
        E::DecryptError => F::Decrypt,
        E::PeerSentOversizedRecord => F::OversizedRecord,
        E::AlertReceived(_) => F::PeerAlert,
        E::PeerIncompatible(_) => F::Incompatible,
        E::NoApplicationProtocol => F::NoAlpn,
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            F::UnexpectedMessage
        }
        E::PeerMisbehaved(_) => F::Misbehaved,
        _ => F::Other,
    }
}

/// A short cause for a failed session, certificate problems by name: what a closing log
/// line or a webhook outcome says.
pub(crate) fn failure(e: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e else {
        return cause(e).as_str();
    };
    match c {
        C::Expired | C::ExpiredContext { .. } => "certificate expired",
        C::NotValidYet | C::NotValidYetContext { .. } => "certificate not valid yet",
        C::UnknownIssuer => "certificate has an unknown issuer (no trusted root)",
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "certificate name mismatch (not valid for the host)"
        }
        C::Revoked => "certificate revoked",
        C::BadSignature => "certificate has a bad signature",
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => "certificate is not for TLS servers",
        _ => "invalid certificate",
    }
}
