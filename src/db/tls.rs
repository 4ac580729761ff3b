//! TLS to Postgres: what `sslmode` and `sslrootcert` of `database.url`
//! mean for a connection, as rustls (ring provider) enforces it.
//!
//! The semantics are libpq's (PostgreSQL documentation, "SSL Support";
//! `docs/configuration.md`, "database.url and TLS"):
//!
//! | `sslmode`     | TLS                           | server certificate checked                      |
//! |---------------|-------------------------------|-------------------------------------------------|
//! | `disable`     | never                         | -                                               |
//! | `prefer`      | when the server offers it     | only against `sslrootcert`, when one is given   |
//! | `require`     | always, or no connection      | only against `sslrootcert`, when one is given   |
//! | `verify-ca`   | always                        | chains to `sslrootcert`                         |
//! | `verify-full` | always                        | chains to `sslrootcert` and names the host      |
//!
//! Without a CA file, `prefer` and `require` encrypt but do not
//! authenticate the server: they protect against eavesdropping, not
//! against an active man in the middle. With `sslrootcert`, libpq checks
//! the chain in those modes too ("if a root CA file exists, the behavior of
//! sslmode=require will be the same as that of verify-ca"), and so do we.
//! Unlike libpq, `prefer` never retries in plaintext after a TLS handshake
//! that failed: a server that offers TLS and then fails it is an error.
//!
//! The CA file is read once, when a [`DbTls`] is made (startup, or
//! `scopegate check-config`); a file that is missing, unreadable or holds
//! no usable certificate is an error that names it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{DatabaseConfig, Secret, TlsMode};

/// The TLS connector: rustls, set up from the database configuration.
pub type Connector = MakeRustlsConnect;

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `sslrootcert` cannot be read or holds no usable CA certificate.
    #[error("sslrootcert {}: {reason}", path.display())]
    CaFile { path: PathBuf, reason: String },
    /// `verify-ca` / `verify-full` without a CA file (the configuration
    /// loader already refuses this; a caller that builds a [`DbTls`] by
    /// hand gets the same answer).
    #[error("sslmode={} needs sslrootcert=PATH (the CA certificate that signs the server's)", .0.as_str())]
    NoCaFile(TlsMode),
    /// The connection string itself is not usable.
    #[error("{0}")]
    Url(String),
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// How every connection to the database negotiates TLS: the `sslmode` and
/// the connector with the checks it implies. Made once from the
/// configuration and shared by the pool and every dedicated connection
/// (`crate::db::pool`, `crate::db::connect_dedicated`). Cloning is cheap.
#[derive(Clone)]
pub struct DbTls {
    mode: TlsMode,
    /// The CA file the server's certificate is checked against, if any
    /// (for `Debug` and logs).
    ca_file: Option<PathBuf>,
    connector: Connector,
}

impl std::fmt::Debug for DbTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbTls")
            .field("mode", &self.mode)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl DbTls {
    /// `mode` with `ca_file` (`sslrootcert`), read now. Reads a file:
    /// call it at startup, off the async workers.
    pub fn new(mode: TlsMode, ca_file: Option<&Path>) -> Result<DbTls, TlsError> {
        let roots = match ca_file {
            Some(path) if mode != TlsMode::Disable => Some(Arc::new(read_ca_file(path)?)),
            _ if mode.verifies() => return Err(TlsError::NoCaFile(mode)),
            _ => None,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        let config = match (mode, roots) {
            // Chain and host name: rustls's own WebPKI verifier.
            (TlsMode::VerifyFull, Some(roots)) => builder.with_root_certificates(roots),
            // The chain alone, or nothing without a CA file.
            (_, roots) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainCheck { roots, provider })),
        }
        .with_no_client_auth();
        Ok(DbTls {
            mode,
            ca_file: ca_file.map(Path::to_path_buf),
            connector: MakeRustlsConnect::new(config),
        })
    }

    /// The TLS settings of the `[database]` section.
    pub fn from_config(db: &DatabaseConfig) -> Result<DbTls, TlsError> {
        Self::new(db.tls, db.ca_file.as_deref())
    }

    /// The TLS settings written in a connection string itself (its
    /// `sslmode` and `sslrootcert`), for callers that hold a URL but no
    /// [`DatabaseConfig`] (the test harness).
    pub fn from_url(url: &Secret) -> Result<DbTls, TlsError> {
        let p = crate::config::tls_params(url.expose()).map_err(TlsError::Url)?;
        Self::new(p.mode, p.ca_file.as_deref())
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    /// Set the `sslmode` tokio-postgres enforces (TLS or not, and whether
    /// plaintext is acceptable); the connector does the certificate checks.
    pub(super) fn apply(&self, pg: &mut tokio_postgres::Config) {
        pg.ssl_mode(match self.mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
    }

    pub(super) fn connector(&self) -> Connector {
        self.connector.clone()
    }
}

/// The CA certificates of a PEM file (one or more `CERTIFICATE` blocks).
fn read_ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let fail = |reason: String| TlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not a PEM file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a usable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("holds no PEM certificate".into()));
    }
    Ok(roots)
}

/// Every mode but `verify-full` (rustls's own WebPKI verifier checks the
/// host name too):
///
/// - with `roots` (`verify-ca`, and `prefer` / `require` with
///   `sslrootcert`): the certificate must chain to one of them
///   (signatures, validity dates, the server-authentication purpose),
///   whatever names it holds;
/// - without (`prefer` and `require` without `sslrootcert`): any
///   certificate is accepted (libpq's semantics: encryption without
///   authentication).
///
/// The handshake signature is checked either way, so the session key
/// belongs to whoever holds the certificate's private key.
#[derive(Debug)]
struct ChainCheck {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.pem");
        let err = DbTls::new(TlsMode::VerifyFull, Some(&path)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("sslrootcert {}:", path.display())),
            "{msg}"
        );
        assert!(matches!(err, TlsError::CaFile { .. }));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let msg = DbTls::new(TlsMode::Require, Some(&path))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("empty.pem"), "{msg}");
        assert!(msg.contains("holds no PEM certificate"), "{msg}");
    }

    #[test]
    fn a_ca_file_with_a_broken_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.pem");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let msg = DbTls::new(TlsMode::VerifyCa, Some(&path))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("broken.pem"), "{msg}");
        assert!(msg.contains("not a usable CA certificate"), "{msg}");
    }

    #[test]
    fn verifying_modes_need_a_ca_file() {
        for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
            let msg = DbTls::new(mode, None).unwrap_err().to_string();
            assert!(msg.contains("needs sslrootcert"), "{msg}");
        }
        for mode in [TlsMode::Disable, TlsMode::Prefer, TlsMode::Require] {
            assert_eq!(DbTls::new(mode, None).unwrap().mode(), mode);
        }
    }

    #[test]
    fn disable_never_reads_the_ca_file() {
        // libpq ignores sslrootcert when TLS is off; so do we.
        let tls = DbTls::new(TlsMode::Disable, Some(Path::new("/nonexistent/ca.pem"))).unwrap();
        assert_eq!(tls.mode(), TlsMode::Disable);
    }

    #[test]
    fn the_mode_decides_what_tokio_postgres_enforces() {
        let cases = [
            (TlsMode::Disable, SslMode::Disable),
            (TlsMode::Prefer, SslMode::Prefer),
            (TlsMode::Require, SslMode::Require),
        ];
        for (mode, want) in cases {
            let mut pg = tokio_postgres::Config::new();
            // The URL's own sslmode is overridden.
            pg.ssl_mode(SslMode::Disable);
            DbTls::new(mode, None).unwrap().apply(&mut pg);
            assert_eq!(pg.get_ssl_mode(), want, "{mode:?}");
        }
    }

    #[test]
    fn from_url_reads_the_url_parameters() {
        let tls = DbTls::from_url(&Secret::new("postgres://u@h/db?sslmode=require")).unwrap();
        assert_eq!(tls.mode(), TlsMode::Require);
        let tls = DbTls::from_url(&Secret::new("host=h dbname=db")).unwrap();
        assert_eq!(tls.mode(), TlsMode::Prefer);
        let msg = DbTls::from_url(&Secret::new(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ))
        .unwrap_err()
        .to_string();
        assert!(msg.contains("/nonexistent/ca.pem"), "{msg}");
    }
}
