//! Opening an authenticated IMAP session: implicit TLS, STARTTLS or plain, over tokio.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::ImapError;
use crate::config::{ImapAuth, Security};

/// Any byte stream a session can run over (plain TCP or TLS).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Stream for T {}

pub type Session = async_imap::Session<Box<dyn Stream>>;

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub ca_file: Option<PathBuf>,
    pub auth: ImapAuth,
    pub user: String,
    pub password: String,
}

/// No step of connecting and logging in may take longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn connect(endpoint: &Endpoint) -> Result<Session, ImapError> {
    tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(endpoint))
        .await
        .map_err(|_| ImapError::Timeout("connecting and logging in"))?
}

async fn connect_inner(endpoint: &Endpoint) -> Result<Session, ImapError> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
    tcp.set_nodelay(true)?;
    let client = match endpoint.security {
        Security::Plain => greeted(Box::new(tcp) as Box<dyn Stream>).await?,
        Security::Tls => greeted(Box::new(tls(endpoint, tcp).await?) as Box<dyn Stream>).await?,
        Security::Starttls => {
            let mut client = greeted(tcp).await?;
            client.run_command_and_check_ok("STARTTLS", None).await?;
            let tcp = client.into_inner();
            // No greeting after STARTTLS: the session goes on over TLS.
            async_imap::Client::new(Box::new(tls(endpoint, tcp).await?) as Box<dyn Stream>)
        }
    };
    let refused = |(e, _): (async_imap::error::Error, _)| ImapError::Login(e.to_string());
    match endpoint.auth {
        ImapAuth::Login => client
            .login(&endpoint.user, &endpoint.password)
            .await
            .map_err(refused),
        ImapAuth::Plain => {
            let plain = SaslPlain {
                user: &endpoint.user,
                password: &endpoint.password,
            };
            client.authenticate("PLAIN", plain).await.map_err(refused)
        }
    }
}

/// SASL PLAIN (RFC 4616): no authorization identity, the user, the password.
struct SaslPlain<'a> {
    user: &'a str,
    password: &'a str,
}

impl async_imap::Authenticator for SaslPlain<'_> {
    type Response = Vec<u8>;

    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        format!("\0{}\0{}", self.user, self.password).into_bytes()
    }
}

/// A client whose server greeting has been read (async-imap leaves that to us).
async fn greeted<S: Stream>(stream: S) -> Result<async_imap::Client<S>, ImapError> {
    let mut client = async_imap::Client::new(stream);
    client.read_response().await?.ok_or_else(|| {
        ImapError::Protocol("the server closed the connection before its greeting".into())
    })?;
    Ok(client)
}

async fn tls(
    endpoint: &Endpoint,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ImapError> {
    let config = tls_config(endpoint.ca_file.as_ref())?;
    let name = ServerName::try_from(endpoint.host.clone()).map_err(|_| {
        ImapError::Tls(format!(
            "{:?} is not a valid TLS server name",
            endpoint.host
        ))
    })?;
    // A handshake failure (an unknown issuer, a wrong name) is a TLS problem for the
    // admin to fix, not a network hiccup: say so.
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ImapError::Tls(format!("handshake with {} failed: {e}", endpoint.host)))
}

/// The system's trusted roots, plus `ca_file` if given.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<ClientConfig, ImapError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(file) = ca_file {
        let certs = CertificateDer::pem_file_iter(file)
            .map_err(|e| ImapError::Tls(format!("cannot read ca_file {}: {e}", file.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| ImapError::Tls(format!("ca_file {}: {e}", file.display())))?;
            roots
                .add(cert)
                .map_err(|e| ImapError::Tls(format!("ca_file {}: {e}", file.display())))?;
        }
    }
    // One crypto provider, named explicitly: no ambiguity if another enters the tree.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use async_imap::Authenticator;

    use super::SaslPlain;

    #[test]
    fn sasl_plain_sends_user_and_password_without_authorization_identity() {
        let mut plain = SaslPlain {
            user: "support@example.test",
            password: "s3cret",
        };
        assert_eq!(plain.process(b""), b"\0support@example.test\0s3cret");
    }
}
