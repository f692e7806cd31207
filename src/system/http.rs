//! A small HTTPS GET client for the few requests modobox makes to the outside (the public
//! API): HTTP/1.1 through hyper over tokio-rustls (aws-lc-rs, the system's trusted CAs), one
//! deadline for the whole exchange and a cap on the body. Plain HTTP is accepted only towards
//! a loopback address (tests, a local proxy).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::names::HttpUrl;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: no complete answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: TLS: {reason}")]
    Tls { url: String, reason: String },
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: the answer is larger than {max} bytes")]
    TooLarge { url: String, max: usize },
}

/// GETs `url` and returns the body of a 200 answer. Everything — name resolution, connect,
/// TLS, headers, body — shares one deadline, so a server that never answers costs `timeout`.
pub async fn get(url: &HttpUrl, timeout: Duration, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let shown = url.as_str().to_string();
    match tokio::time::timeout(timeout, get_inner(url, max_body)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            url: shown,
            secs: timeout.as_secs(),
        }),
    }
}

async fn get_inner(url: &HttpUrl, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let u = url.as_url();
    let shown = u.as_str().to_string();
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    // url keeps IPv6 hosts in brackets; connect wants them bare.
    let connect_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = TcpStream::connect((connect_host.as_str(), port))
        .await
        .map_err(|e| HttpError::Connect {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    if u.scheme() == "https" {
        let config = tls_config().map_err(|e| HttpError::Tls {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        let name = match connect_host.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(connect_host.clone()).map_err(|e| HttpError::Tls {
                url: shown.clone(),
                reason: e.to_string(),
            })?,
        };
        let tls = TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Tls {
                url: shown.clone(),
                reason: e.to_string(),
            })?;
        exchange(tls, u, &shown, max_body).await
    } else {
        exchange(tcp, u, &shown, max_body).await
    }
}

/// Why no TLS client could be set up (before any connection).
#[derive(Debug, thiserror::Error)]
enum TlsSetupError {
    #[error("no trusted CA certificate found (is ca-certificates installed?)")]
    NoTrustedCa,
    #[error(transparent)]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

fn tls_config() -> Result<Arc<ClientConfig>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    // Unreadable files in the CA directory are skipped; only an empty store is fatal.
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsSetupError::NoTrustedCa);
    }
    let config = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

async fn exchange<S>(
    stream: S,
    u: &url::Url,
    shown: &str,
    max_body: usize,
) -> Result<Vec<u8>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = |e: &dyn fmt::Display| HttpError::Protocol {
        url: shown.to_string(),
        reason: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(&e))?;
    // The connection task ends with the exchange (or with the caller's deadline).
    let driver = tokio::spawn(conn);
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let authority = match u.port() {
        Some(p) => format!("{}:{p}", u.host_str().unwrap_or_default()),
        None => u.host_str().unwrap_or_default().to_string(),
    };
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(
            hyper::header::USER_AGENT,
            concat!("modobox/", env!("CARGO_PKG_VERSION")),
        )
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| protocol(&e))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| protocol(&e))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HttpError::Status {
                url: shown.to_string(),
                status,
            });
        }
        let too_large = || HttpError::TooLarge {
            url: shown.to_string(),
            max: max_body,
        };
        if let Some(len) = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > max_body as u64 {
                return Err(too_large());
            }
        }
        match Limited::new(response.into_body(), max_body).collect().await {
            Ok(body) => Ok(body.to_bytes().to_vec()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) => Err(HttpError::Protocol {
                url: shown.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(HttpUrl::parse("public_api.url", "https://api.modoboa.org/1/").is_ok());
        assert!(HttpUrl::parse("public_api.url", "http://127.0.0.1:8080/").is_ok());
        assert!(HttpUrl::parse("public_api.url", "http://[::1]:8080/").is_ok());
        let e = HttpUrl::parse("public_api.url", "http://api.modoboa.org/1/").unwrap_err();
        assert_eq!(e.field, "public_api.url");
        assert!(e.rule.contains("loopback"), "{e}");
        assert!(HttpUrl::parse("public_api.url", "ftp://example.com/").is_err());
        assert!(HttpUrl::parse("public_api.url", "not a url").is_err());
        assert!(HttpUrl::parse("public_api.url", "https://u:p@example.com/").is_err());
    }

    #[test]
    fn join_treats_the_base_as_a_directory() {
        let u = HttpUrl::parse("u", "https://api.modoboa.org/1").unwrap();
        assert_eq!(
            u.join_dir("versions/").unwrap().as_str(),
            "https://api.modoboa.org/1/versions/"
        );
        let u = HttpUrl::parse("u", "https://api.modoboa.org/1/").unwrap();
        assert_eq!(
            u.join_dir("versions/").unwrap().as_str(),
            "https://api.modoboa.org/1/versions/"
        );
    }
}
