//! The TLS client the probes use: any certificate is accepted (the supervisor checks expiry
//! and names on its own) and the one the server presented is handed back.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::{io_reason, Clock, ProbeError};

/// Accepts any certificate (the supervisor checks expiry and names on its own) but still
/// checks the handshake signatures, so the server does hold the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls13_signature(
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

fn client_config(target: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, ProbeError> {
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls {
            target: target.to_string(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The TLS handshake (any certificate) and the certificate the server presented.
pub(super) async fn tls_handshake(
    clock: &Clock,
    tcp: TcpStream,
    name: ServerName<'static>,
    target: &str,
    alpn: &[&[u8]],
) -> Result<(TlsStream, Option<Vec<u8>>), ProbeError> {
    let connector = TlsConnector::from(client_config(target, alpn)?);
    let stream = clock
        .run("the TLS handshake", async {
            connector
                .connect(name, tcp)
                .await
                .map_err(|e| ProbeError::Tls {
                    target: target.to_string(),
                    reason: io_reason(&e),
                })
        })
        .await?;
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.as_ref().to_vec());
    Ok((stream, cert))
}

/// TLS over `tcp` to `addr`, any certificate accepted (the canary talks to this server on
/// loopback, whose certificate may be self-signed).
pub(in crate::health) async fn any_certificate(
    tcp: TcpStream,
    addr: std::net::SocketAddr,
) -> Result<TlsStream, ProbeError> {
    let clock = Clock::start(std::time::Duration::from_secs(10));
    let name = ServerName::IpAddress(addr.ip().into());
    tls_handshake(&clock, tcp, name, &addr.to_string(), &[])
        .await
        .map(|(stream, _)| stream)
}
