//! TLS with rustls, with certificate verifiers that follow libpq's `sslmode`
//! semantics (tokio-postgres knows only disable/prefer/require and no root or client
//! certificates).

use crate::db::connection::options::{ConnectOptions, RootCert, SslMode};
use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How the server certificate is checked, per libpq's sslmode.
pub(super) enum Verification {
    /// prefer, or require without a root certificate file.
    None,
    /// verify-ca, or require with a root certificate file: chain only.
    Chain(RootCertStore),
    /// verify-full: chain and host name.
    Full(RootCertStore),
}

pub(super) fn make_tls(opts: &ConnectOptions) -> Result<MakeRustlsConnect, String> {
    let verification = match opts.ssl_mode {
        SslMode::Disable | SslMode::Prefer => Verification::None,
        // libpq: with a root certificate file present, require acts as verify-ca.
        SslMode::Require => load_roots(&opts.ssl_root_cert, opts.ssl_mode)?
            .map_or(Verification::None, Verification::Chain),
        SslMode::VerifyCa => Verification::Chain(required_roots(opts)?),
        SslMode::VerifyFull => Verification::Full(required_roots(opts)?),
    };
    // An explicit provider: the process-wide default may be unset or differ.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let webpki = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("TLS setup failed: {e}"))
    };
    let builder = match verification {
        Verification::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider.clone()))),
        Verification::Chain(roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(VerifyChainOnly(webpki(roots)?))),
        Verification::Full(roots) => builder.with_webpki_verifier(webpki(roots)?),
    };
    let mut config = match load_client_cert(opts)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("could not use the client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    // Required by servers for sslnegotiation=direct, harmless otherwise.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeRustlsConnect::new(config))
}

pub(super) fn required_roots(opts: &ConnectOptions) -> Result<RootCertStore, String> {
    load_roots(&opts.ssl_root_cert, opts.ssl_mode)?.ok_or_else(|| match &opts.ssl_root_cert {
        RootCert::File(p) => format!(
            "root certificate file \"{}\" does not exist; either provide the file or change \
             sslmode to disable server certificate verification",
            p.display()
        ),
        _ => format!(
            "could not find a home directory to locate the root certificate file; give \
             sslrootcert or change sslmode (now {})",
            opts.ssl_mode
        ),
    })
}

/// `Ok(None)` when there is no root certificate file to use.
pub(super) fn load_roots(root: &RootCert, mode: SslMode) -> Result<Option<RootCertStore>, String> {
    match root {
        RootCert::System => Ok(Some(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })),
        RootCert::Unset => Ok(None),
        RootCert::File(path) if !path.exists() => Ok(None),
        RootCert::File(path) => {
            let certs = read_certs(path, "root certificate")?;
            let mut store = RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "no usable certificate in root certificate file \"{}\" (sslmode={mode})",
                    path.display()
                ));
            }
            Ok(Some(store))
        }
    }
}

pub(super) fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = fs::File::open(path)
        .map_err(|e| format!("could not read {what} file \"{}\": {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("could not parse {what} file \"{}\": {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no PEM certificate in {what} file \"{}\"",
            path.display()
        ));
    }
    Ok(certs)
}

pub(super) type ClientIdentity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// libpq: a missing client certificate file just means no client certificate;
/// a certificate without its key is an error.
pub(super) fn load_client_cert(opts: &ConnectOptions) -> Result<Option<ClientIdentity>, String> {
    let Some(cert_path) = opts.ssl_cert.as_deref().filter(|p| p.exists()) else {
        return Ok(None);
    };
    let certs = read_certs(cert_path, "client certificate")?;
    let key_path = opts
        .ssl_key
        .as_deref()
        .filter(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "certificate present, but not private key file \"{}\"",
                opts.ssl_key
                    .as_deref()
                    .map_or_else(|| "sslkey".into(), |p| p.display().to_string())
            )
        })?;
    let file = fs::File::open(key_path).map_err(|e| {
        format!(
            "could not read private key file \"{}\": {e}",
            key_path.display()
        )
    })?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| {
            format!(
                "could not parse private key file \"{}\": {e}",
                key_path.display()
            )
        })?
        .ok_or_else(|| format!("no private key in file \"{}\"", key_path.display()))?;
    Ok(Some((certs, key)))
}

/// sslmode=prefer/require without a CA: encrypt, but accept any certificate
/// (libpq does the same). Handshake signatures are still checked.
#[derive(Debug)]
pub(super) struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// sslmode=verify-ca: full WebPKI verification except the host name.
/// WebPkiServerVerifier checks the chain (validity, issuer, usage) before
/// the name, so a name mismatch means everything else already passed.
#[derive(Debug)]
pub(super) struct VerifyChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for VerifyChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
