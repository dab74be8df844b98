//! rustls connector for tokio-postgres.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
// PEM parsing from rustls-pki-types (re-exported by rustls), the documented successor of the
// unmaintained rustls-pemfile (RUSTSEC-2025-0134).
use rustls::pki_types::pem::PemObject;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

pub(crate) fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, StoreError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| StoreError::Tls(format!("cannot read {}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert
                    .map_err(|e| StoreError::Tls(format!("bad PEM in {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| StoreError::Tls(format!("bad certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(StoreError::Tls(format!(
                    "no certificate found in {}",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
