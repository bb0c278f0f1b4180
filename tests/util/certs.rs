//! Test certificates made with the `openssl` command-line tool (CI installs it): CAs and the
//! leaf certificates they sign, with EC P-256 keys in PKCS#8 PEM.
//!
//! Each certificate is made by two `openssl` runs (`req -new -newkey`, then `ca`, which,
//! unlike `x509 -req` before OpenSSL 3.4, takes any validity period, also one in the past)
//! in a directory of its own under the temp dir, named by the test process and a counter,
//! removed once the PEM is read: the certificates live in memory only. A CA is made once
//! per test process and name; every leaf is new.
//!
//! Included with `#[path]` by the tests that need it (not from `mod.rs`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// A test CA that signs leaves: its certificate and key, in PEM.
#[derive(Clone)]
pub struct Ca {
    pub cert: String,
    key: String,
}

/// A leaf certificate chain (the leaf, then its CA) and key, in PEM.
pub struct Leaf {
    pub chain: String,
    pub key: String,
}

/// Validity of a CA and of a leaf that is valid now (the whole range, as rcgen's defaults
/// were, so no clock needs reading).
const VALID: (&str, &str) = ("20000101000000Z", "20991231235959Z");
/// Validity of an expired leaf.
const EXPIRED: (&str, &str) = ("20200101000000Z", "20210101000000Z");

impl Ca {
    /// The CA named `name` (its subject's CN): made at the first call per test process.
    pub fn new(name: &str) -> Ca {
        static MADE: Mutex<Option<HashMap<String, Ca>>> = Mutex::new(None);
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        let made = made.get_or_insert_with(HashMap::new);
        if let Some(ca) = made.get(name) {
            return ca.clone();
        }
        let (cert, key) = issue(name, None, "v3_ca", "", VALID);
        let ca = Ca { cert, key };
        made.insert(name.to_owned(), ca.clone());
        ca
    }

    /// The CA's certificate in PEM.
    pub fn pem(&self) -> String {
        self.cert.clone()
    }

    /// A new leaf for `dns` names and `ips` (its CN: the first name, else "ip"), valid now
    /// unless `expired` (then 2020-01-01 to 2021-01-01), with a new key.
    pub fn leaf(&self, dns: &[&str], ips: &[IpAddr], expired: bool) -> Leaf {
        let san: Vec<String> = (dns.iter().map(|d| format!("DNS:{d}")))
            .chain(ips.iter().map(|ip| format!("IP:{ip}")))
            .collect();
        let cn = dns.first().copied().unwrap_or("ip");
        let dates = if expired { EXPIRED } else { VALID };
        let (cert, key) = issue(cn, Some(self), "leaf", &san.join(","), dates);
        Leaf {
            chain: cert + &self.cert,
            key,
        }
    }

    /// A new leaf for `localhost` and 127.0.0.1.
    pub fn localhost(&self) -> Leaf {
        let ip = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
        self.leaf(&["localhost"], &[ip], false)
    }
}

/// The configuration every run reads: `[leaf]` carries `san`.
fn config(san: &str) -> String {
    let san = if san.is_empty() {
        String::new()
    } else {
        format!("subjectAltName = {san}\n")
    };
    format!(
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         [dn]\n\
         CN = unused\n\
         [ca]\n\
         default_ca = test_ca\n\
         [test_ca]\n\
         database = index.txt\n\
         new_certs_dir = .\n\
         rand_serial = yes\n\
         default_md = sha256\n\
         policy = any_name\n\
         unique_subject = no\n\
         copy_extensions = none\n\
         email_in_dn = no\n\
         [any_name]\n\
         commonName = supplied\n\
         [v3_ca]\n\
         basicConstraints = critical, CA:TRUE\n\
         keyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n\
         [leaf]\n\
         basicConstraints = critical, CA:FALSE\n\
         keyUsage = critical, digitalSignature\n\
         extendedKeyUsage = serverAuth\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid\n\
         {san}"
    )
}

/// A new P-256 key and a certificate for it with subject CN `cn`, the extensions of
/// config section `ext` (a leaf's with `san`, e.g. `DNS:localhost,IP:127.0.0.1`) and
/// validity `dates`, signed by `issuer` (else by itself): (certificate, key) in PEM.
fn issue(
    cn: &str,
    issuer: Option<&Ca>,
    ext: &str,
    san: &str,
    dates: (&str, &str),
) -> (String, String) {
    let dir = WorkDir::new();
    let d = &dir.0;
    std::fs::write(d.join("openssl.cnf"), config(san)).unwrap();
    std::fs::write(d.join("index.txt"), "").unwrap();
    let subj = format!("/CN={cn}");
    let mut req = words("req -new -config openssl.cnf -out req.csr -nodes -keyout key.pem");
    req.extend(words("-newkey ec -pkeyopt ec_paramgen_curve:P-256"));
    req.extend(["-subj", &subj]);
    openssl(d, &req);
    let mut ca = words("ca -batch -config openssl.cnf -notext -in req.csr -out cert.pem");
    let opts = format!(
        "-extensions {ext} -startdate {} -enddate {}",
        dates.0, dates.1
    );
    ca.extend(words(&opts));
    match issuer {
        Some(issuer) => {
            std::fs::write(d.join("ca.pem"), &issuer.cert).unwrap();
            std::fs::write(d.join("ca-key.pem"), &issuer.key).unwrap();
            ca.extend(["-cert", "ca.pem", "-keyfile", "ca-key.pem"]);
        }
        None => ca.extend(["-selfsign", "-keyfile", "key.pem"]),
    }
    openssl(d, &ca);
    let read = |name: &str| std::fs::read_to_string(d.join(name)).unwrap();
    (read("cert.pem"), read("key.pem"))
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Runs `openssl ARGS` in `dir`; panics with its output unless it succeeds.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new empty directory under the temp dir, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> WorkDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("pushwire-certs-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        // Left over by an earlier process with the same id.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        WorkDir(dir)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
