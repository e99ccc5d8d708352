//! `[sources.NAME.tls]`: TLS for a listener, with rustls.
//!
//! rustls uses the ring provider, handed to each server configuration and never installed
//! process-wide, so that nothing else in the process (or a library) changes what it gets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to start and finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first byte of every TLS connection: a handshake record (RFC 8446 §5.1).
pub(super) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// `tls = { … }` of a listening source.
///
/// The syslog source's first names (`cert`, `key`, `client_ca`) are accepted too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the server certificate, then its intermediates.
    #[serde(alias = "cert")]
    pub cert_file: PathBuf,
    /// PEM file with the certificate's private key (PKCS #8, PKCS #1 or SEC1).
    #[serde(alias = "key")]
    pub key_file: PathBuf,
    /// PEM file with CA certificates: when set, clients must present a certificate one of
    /// them signed.
    #[serde(default, alias = "client_ca")]
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Reads the certificate files and builds the acceptor; an error names the file and the
    /// key that points at it.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        let certs = read_certificates(&self.cert_file, "cert_file")?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| format!("tls.key_file = {:?}: {e}", self.key_file))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = match &self.ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in read_certificates(path, "ca_file")? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("tls.ca_file = {path:?}: {e}"))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .build()
                .map_err(|e| format!("tls.ca_file = {path:?}: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "tls: the certificate {:?} and the key {:?} do not go together: {e}",
                self.cert_file, self.key_file
            )
        })?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The certificates of the PEM file at `path`, at least one.
fn read_certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls.{key} = {path:?}: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.{key} = {path:?}: no PEM CERTIFICATE in the file"
        ));
    }
    Ok(certs)
}
