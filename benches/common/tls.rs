//! TLS helpers shared by the benches (`#[path]`-included, not a bench of its own): a private
//! CA and a leaf certificate for `localhost` and `127.0.0.1` made with rcgen, written as PEM
//! into a temporary directory that is removed when dropped, and the rustls client settings
//! that trust only that CA.
//!
//! The leaf and the CA use ECDSA P-256 (rcgen's default), so the handshakes measured are a
//! P-256 signature on the server and two verifications on the client, with the key exchange
//! rustls's ring provider prefers (X25519).

#![allow(dead_code)] // each bench uses part of it

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};

/// The name the client asks for (SNI) and verifies; the leaf also carries `127.0.0.1`.
pub const SERVER_NAME: &str = "localhost";

/// A CA, a leaf signed by it and the leaf's key, as PEM files in `dir`.
pub struct Certs {
    pub dir: PathBuf,
    /// The leaf, then the CA (what a server presents).
    pub chain: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub ca_der: CertificateDer<'static>,
    /// Whether `dir` is ours to remove.
    owned: bool,
}

impl Drop for Certs {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Certs {
    /// Makes the certificates in a new temporary directory (removed on drop).
    pub fn temp(tag: &str) -> Result<Certs, String> {
        let dir = std::env::temp_dir().join(format!("pushwire-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut c = Certs::write(&dir)?;
        c.owned = true;
        Ok(c)
    }

    /// Makes the certificates in `dir` (created if missing, left in place):
    /// `ca.pem`, `chain.pem` (leaf then CA) and `key.pem`.
    pub fn write(dir: &Path) -> Result<Certs, String> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let err = |e: rcgen::Error| format!("rcgen: {e}");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pushwire bench CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca = ca_params.self_signed(&ca_key).map_err(err)?;

        let mut leaf_params =
            CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".to_string()])
                .map_err(err)?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(err)?;
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .map_err(err)?;

        let put = |name: &str, text: String| -> Result<PathBuf, String> {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(p)
        };
        Ok(Certs {
            dir: dir.to_owned(),
            chain: put("chain.pem", leaf.pem() + &ca.pem())?,
            key: put("key.pem", leaf_key.serialize_pem())?,
            ca: put("ca.pem", ca.pem())?,
            ca_der: ca.der().clone(),
            owned: false,
        })
    }
}

/// Reads the first certificate of the PEM file `path` (a CA to trust).
pub fn read_ca(path: &Path) -> Result<CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A client that trusts only `ca`, offers ALPN `http/1.1` like a browser, and never resumes
/// a session, so every connection is a full handshake, as N different clients would make.
pub fn client_config(ca: CertificateDer<'static>) -> Result<Arc<rustls::ClientConfig>, String> {
    client_config_offering(ca, None)
}

/// Like [`client_config`], offering only the cipher suite `only` when given (the server
/// takes the client's preference, so that is what gets negotiated).
pub fn client_config_offering(
    ca: CertificateDer<'static>,
    only: Option<rustls::CipherSuite>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(|e| format!("CA: {e}"))?;
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(only) = only {
        provider.cipher_suites.retain(|s| s.suite() == only);
    }
    let provider = Arc::new(provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A new client session for [`SERVER_NAME`].
pub fn client_session(
    config: &Arc<rustls::ClientConfig>,
) -> Result<rustls::ClientConnection, String> {
    let name = ServerName::try_from(SERVER_NAME).map_err(|e| e.to_string())?;
    rustls::ClientConnection::new(config.clone(), name).map_err(|e| format!("rustls: {e}"))
}

/// What a session negotiated, e.g. `TLSv1_3/TLS13_AES_256_GCM_SHA384`.
pub fn describe(conn: &rustls::CommonState) -> String {
    let v = conn
        .protocol_version()
        .map_or("none".to_string(), |v| format!("{v:?}"));
    let s = conn
        .negotiated_cipher_suite()
        .map_or("none".to_string(), |s| format!("{:?}", s.suite()));
    format!("{v}/{s}")
}
