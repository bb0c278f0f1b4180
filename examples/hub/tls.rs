//! The hub's TLS flags: `--tls-addr HOST:PORT`, `--tls-cert FILE`, `--tls-key FILE` serve
//! every route over TLS as well, and `--webhook-ca FILE` (repeatable) adds roots that
//! `https://` webhook receivers are verified against, next to the Mozilla set. There is no
//! switch to accept any certificate.

use pushwire::{App, Config, Server};

/// The TLS flags as given.
#[derive(Default)]
pub struct TlsArgs {
    addr: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    cas: Vec<String>,
}

/// Fails the start with one line, exit 1.
fn fail(what: impl std::fmt::Display) -> ! {
    eprintln!("pushwire hub: {what}");
    std::process::exit(1)
}

impl TlsArgs {
    /// Takes `flag` if it is a TLS flag (reading its value with `value`).
    pub fn take(&mut self, flag: &str, value: impl FnOnce() -> String) -> bool {
        match flag {
            "--tls-addr" => self.addr = Some(value()),
            "--tls-cert" => self.cert = Some(value()),
            "--tls-key" => self.key = Some(value()),
            "--webhook-ca" => self.cas.push(value()),
            _ => return false,
        }
        true
    }

    /// Adds the `--webhook-ca` roots to `config`; a bad file ends the start, naming it.
    #[cfg(feature = "tls")]
    pub fn config(&self, config: Config) -> Config {
        let mut roots = pushwire::tls::ClientTls::new();
        for ca in &self.cas {
            roots = roots
                .add_ca_file(ca)
                .unwrap_or_else(|e| fail(format_args!("--webhook-ca {e}")));
        }
        config.webhook_tls(roots)
    }

    /// Without the `tls` feature, any TLS flag ends the start.
    #[cfg(not(feature = "tls"))]
    pub fn config(&self, config: Config) -> Config {
        let any = self.addr.is_some() || self.cert.is_some() || self.key.is_some();
        if any || !self.cas.is_empty() {
            fail("TLS flags given, but this hub was built without the `tls` feature");
        }
        config
    }

    /// Binds the TLS listener when `--tls-addr` was given; all three of `--tls-addr`,
    /// `--tls-cert` and `--tls-key` go together. Returns the bound address.
    #[cfg(feature = "tls")]
    pub fn listen<A: App>(&self, server: &mut Server<A>) -> Option<std::net::SocketAddr> {
        let (addr, cert, key) = match (&self.addr, &self.cert, &self.key) {
            (None, None, None) => return None,
            (Some(a), Some(c), Some(k)) => (a, c, k),
            _ => fail("--tls-addr, --tls-cert and --tls-key go together"),
        };
        let tls = pushwire::tls::ServerTls::from_pem_files(cert, key)
            .unwrap_or_else(|e| fail(format_args!("TLS: {e}")));
        match server.listen_tls(addr.as_str(), tls) {
            Ok(bound) => Some(bound),
            Err(e) => fail(format_args!("--tls-addr {addr}: {e}")),
        }
    }

    /// Without the `tls` feature there is no TLS listener.
    #[cfg(not(feature = "tls"))]
    pub fn listen<A: App>(&self, _server: &mut Server<A>) -> Option<std::net::SocketAddr> {
        None
    }
}
