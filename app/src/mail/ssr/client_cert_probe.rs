//! Whether a server asked for a client certificate. Some TLS stacks (Python's asyncio among
//! them) hang up without an alert when a client sends none, which looks like any other failed
//! handshake. One more handshake, with a resolver that only notes the server's
//! `CertificateRequest`, tells the two apart.

use super::{MailConfig, SmtpTarget};
use crate::smtp_settings::types::TlsMode;
use rustls::{
    ClientConfig, RootCertStore, SignatureScheme,
    client::ResolvesClientCert,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
    sign::CertifiedKey,
};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

#[derive(Debug, Default)]
struct Noted(AtomicBool);

impl ResolvesClientCert for Noted {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.store(true, Ordering::Relaxed);
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// True when the server sent a `CertificateRequest` in a handshake made like the delivery's
/// (same address, TLS mode and trusted roots), within the step timeout.
pub async fn asks_for_client_certificate(target: &SmtpTarget, config: &MailConfig, addresses: &[SocketAddr]) -> bool {
    let noted = Arc::new(Noted::default());
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(pem) = &config.ca_pem {
        roots.add_parsable_certificates(CertificateDer::pem_slice_iter(pem).filter_map(Result::ok));
    }
    roots.add_parsable_certificates(target.trust.roots.iter().cloned());
    let Ok(builder) = ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
    else {
        return false;
    };
    let tls = Arc::new(builder.with_root_certificates(roots).with_client_cert_resolver(noted.clone()));
    let Ok(name) = ServerName::try_from(target.host.to_string()) else {
        return false;
    };
    let starttls = target.tls.mode == TlsMode::StartTls;
    let probe = async move {
        let mut stream = TcpStream::connect(addresses).await.ok()?;
        if starttls {
            plain_starttls(&mut stream).await?;
        }
        let _ = tokio_rustls::TlsConnector::from(tls).connect(name, stream).await;
        Some(())
    };
    let _ = tokio::time::timeout(config.step_timeout, probe).await;
    noted.0.load(Ordering::Relaxed)
}

/// Greeting, EHLO and STARTTLS in plain text, up to the server's go-ahead.
async fn plain_starttls(stream: &mut TcpStream) -> Option<()> {
    let mut reader = BufReader::new(stream);
    let reply = async |reader: &mut BufReader<&mut TcpStream>| -> Option<String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(line);
            }
        }
    };
    reply(&mut reader).await?.starts_with("220").then_some(())?;
    reader.get_mut().write_all(b"EHLO mailroom.localhost\r\n").await.ok()?;
    reply(&mut reader).await?.starts_with("250").then_some(())?;
    reader.get_mut().write_all(b"STARTTLS\r\n").await.ok()?;
    reply(&mut reader).await?.starts_with("220").then_some(())
}
