//! [`TestCa`]: a fresh certificate authority per test, issuing server certificates, for the
//! TLS paths of the tests (a service's HTTPS listener, the SMTP relay's STARTTLS, a JWKS
//! fetched over TLS). Nothing is shared between tests: a client trusting one test's CA does
//! not trust another's, which is what the "wrong CA" cases rely on.

use std::path::{Path, PathBuf};

/// A CA generated on the spot (rcgen, ECDSA P-256).
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where [`TestCa::write`] put the files.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestCa {
    pub fn new() -> Self {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Comptoir test CA");
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's certificate, what a client is given to trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses, e.g. `localhost`,
    /// `127.0.0.1`), signed by this CA.
    pub fn issue(&self, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("server params")
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Issues a certificate for `names` and writes it, its key and this CA's certificate into
    /// `dir` (`<stem>.crt`, `<stem>.key`, `<stem>-ca.pem`).
    pub fn write(&self, dir: &Path, stem: &str, names: &[&str]) -> IssuedFiles {
        let issued = self.issue(names);
        let files = IssuedFiles {
            ca_file: dir.join(format!("{stem}-ca.pem")),
            cert_file: dir.join(format!("{stem}.crt")),
            key_file: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.ca_file, &self.pem).expect("write CA");
        std::fs::write(&files.cert_file, issued.cert_pem).expect("write certificate");
        std::fs::write(&files.key_file, issued.key_pem).expect("write key");
        files
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}
