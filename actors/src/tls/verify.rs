//! Peer certificate verification against the trust store, as Java's PKIX
//! trust manager does it: X.509 v3 chains go through webpki (rustls' own
//! verifier); chains with a v1/v2 certificate, which webpki refuses and Java
//! accepts, are checked by `warden_core::x509::verify` (signatures, dates, CA
//! constraints, key usage) and their handshake signatures with rustls'
//! algorithms on the leaf's public key. Host names are checked after the
//! handshake (`check_peer_host`), where the peer's address is known.

use rustls_pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use std::net::IpAddr;
use std::sync::Arc;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::client::verify_server_cert_signed_by_trust_anchor;
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use tokio_rustls::rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, RootCertStore, SignatureScheme};
use warden_core::x509::verify::{self as v, Purpose};

#[derive(Debug)]
pub struct StoreVerifier {
    anchors: Vec<Vec<u8>>,
    roots: Arc<RootCertStore>,
    /// webpki's client verifier for v3 chains; None when no anchor is one webpki reads.
    webpki_client: Option<Arc<dyn ClientCertVerifier>>,
    algs: WebPkiSupportedAlgorithms,
    mandatory: bool,
    hints: Vec<DistinguishedName>,
}

fn rejected(e: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(std::io::Error::other(e)))))
}

impl StoreVerifier {
    /// `anchors`: the trust store's certificates; `mandatory`: whether a
    /// client without a certificate is refused (ssl.clientAuth=need).
    pub fn new(anchors: &[CertificateDer<'static>], provider: &Arc<CryptoProvider>, mandatory: bool) -> Result<StoreVerifier, String> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(anchors.iter().cloned());
        let roots = Arc::new(roots);
        let webpki_client = if roots.is_empty() {
            None
        } else {
            let b = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).allow_unauthenticated();
            Some(b.build().map_err(|e| e.to_string())?)
        };
        let hints = webpki_client.as_ref().map(|w| w.root_hint_subjects().to_vec()).unwrap_or_default();
        let anchors = anchors.iter().map(|a| a.as_ref().to_vec()).collect();
        Ok(StoreVerifier { anchors, roots, webpki_client, algs: provider.signature_verification_algorithms, mandatory, hints })
    }

    /// webpki can check this chain (all v3); else our PKIX path does.
    fn webpki_can(end_entity: &CertificateDer, intermediates: &[CertificateDer]) -> bool {
        std::iter::once(end_entity).chain(intermediates).all(|c| v::is_v3(c))
    }

    fn verify_ours(&self, end_entity: &CertificateDer, intermediates: &[CertificateDer], now: UnixTime, purpose: Purpose) -> Result<(), Error> {
        let inter: Vec<&[u8]> = intermediates.iter().map(|c| c.as_ref()).collect();
        v::verify_chain(end_entity, &inter, &self.anchors, now.as_secs() as i64, purpose).map_err(rejected)
    }

    fn tls12(&self, message: &[u8], cert: &CertificateDer, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        if v::is_v3(cert) {
            return verify_tls12_signature(message, cert, dss, &self.algs);
        }
        let (alg_id, key) = v::public_key_parts(cert).map_err(rejected)?;
        let candidates = self.algs.mapping.iter().find(|(s, _)| *s == dss.scheme).map(|(_, a)| *a).unwrap_or(&[]);
        for alg in candidates.iter().filter(|a| a.public_key_alg_id().as_ref() == alg_id.as_slice()) {
            if alg.verify_signature(&key, message, dss.signature()).is_ok() {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        Err(Error::InvalidCertificate(CertificateError::BadSignature))
    }

    fn tls13(&self, message: &[u8], cert: &CertificateDer, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        if v::is_v3(cert) {
            return verify_tls13_signature(message, cert, dss, &self.algs);
        }
        let spki = v::public_key_info(cert).map_err(rejected)?;
        verify_tls13_signature_with_raw_key(message, &SubjectPublicKeyInfoDer::from(spki), dss, &self.algs)
    }
}

impl ClientCertVerifier for StoreVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }
    fn verify_client_cert(&self, end_entity: &CertificateDer, intermediates: &[CertificateDer], now: UnixTime) -> Result<ClientCertVerified, Error> {
        match &self.webpki_client {
            Some(w) if Self::webpki_can(end_entity, intermediates) => w.verify_client_cert(end_entity, intermediates, now),
            _ => self.verify_ours(end_entity, intermediates, now, Purpose::ClientAuth).map(|_| ClientCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// As a quorum client: the chain only; the host is checked after the
/// handshake against the address dialed, as ZooKeeper's `ZKTrustManager`.
impl ServerCertVerifier for StoreVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _: &ServerName,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if !self.roots.is_empty() && Self::webpki_can(end_entity, intermediates) {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, self.algs.all)?;
        } else {
            self.verify_ours(end_entity, intermediates, now, Purpose::ServerAuth)?;
        }
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, message: &[u8], cert: &CertificateDer, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(&self, message: &[u8], cert: &CertificateDer, dss: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// `ZKTrustManager.performHostVerification`: the peer's certificate must
/// match its IP address, else its host name: `name` when the address was
/// dialed by name, else the reverse DNS name of the address.
pub async fn check_peer_host(cert: Option<&CertificateDer<'_>>, ip: IpAddr, name: Option<String>) -> Result<(), String> {
    let cert = cert.ok_or("the peer presented no certificate")?;
    let by_ip = match v::verify_host(cert, &ip.to_string()) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    let name = match name {
        Some(n) => n,
        None => {
            tokio::task::spawn_blocking(move || reverse_dns(ip)).await.ok().flatten().ok_or_else(|| format!("{by_ip}; and {ip} has no reverse DNS name"))?
        }
    };
    v::verify_host(cert, &name).map_err(|e| format!("{by_ip}; {e}"))
}

/// `InetAddress.getHostName()` for an address without a name (getnameinfo).
fn reverse_dns(ip: IpAddr) -> Option<String> {
    dns_lookup::lookup_addr(&ip).ok().filter(|n| n.parse::<IpAddr>().is_err())
}

#[cfg(test)]
mod tests {
    //! Quorum TLS configs built from keytool JKS stores holding X.509 v1
    //! certificates, handshaking in memory both ways, on TLS 1.2 and 1.3.
    use crate::tls::quorum_tls;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use warden_core::config::{ClientAuth, TlsSettings};
    use warden_core::keystore::StoreType;

    fn run(dir: &Path, tool: &str, args: &[&str]) {
        let out = Command::new(tool).args(args).current_dir(dir).output().unwrap_or_else(|e| panic!("{tool}: {e}"));
        assert!(out.status.success(), "{tool} {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }

    /// ca.pem/ca.key and other-ca.*, truststore.jks (ca), and a JKS store per (name, CA, subject).
    fn stores(dir: &Path) {
        for ca in ["ca", "other-ca"] {
            let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
            run(dir, "openssl", &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &pem, "-days", "2", "-subj", &format!("/CN={ca}")]);
        }
        run(
            dir,
            "keytool",
            &["-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-storetype", "JKS", "-keystore", "truststore.jks", "-storepass", "trustpass"],
        );
        for (name, ca) in [("member", "ca"), ("stranger", "other-ca")] {
            let (key, csr, crt, p12, jks) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.p12"), format!("{name}.jks"));
            run(dir, "openssl", &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            run(dir, "openssl", &["x509", "-req", "-in", &csr, "-CA", &ca_pem, "-CAkey", &ca_key, "-set_serial", "7", "-out", &crt, "-days", "2"]);
            run(dir, "openssl", &["pkcs12", "-export", "-in", &crt, "-inkey", &key, "-passout", "pass:storepass", "-out", &p12]);
            let src = ["-importkeystore", "-noprompt", "-srckeystore", &p12, "-srcstoretype", "PKCS12", "-srcstorepass", "storepass"];
            let dst = ["-destkeystore", &jks, "-deststoretype", "JKS", "-deststorepass", "storepass", "-destkeypass", "storepass"];
            run(dir, "keytool", &[&src[..], &dst[..]].concat());
        }
    }

    fn settings(dir: &Path, key_store: &str, protocol: &str) -> TlsSettings {
        TlsSettings {
            key_store: dir.join(key_store),
            key_store_type: StoreType::Jks,
            trust_store: Some(dir.join("truststore.jks")),
            trust_store_type: StoreType::Jks,
            client_auth: ClientAuth::Need,
            protocols: vec![protocol.to_string()],
            cipher_suites: Vec::new(),
            key_password: Some("storepass".into()),
            trust_password: Some("trustpass".into()),
            hostname_verification: true,
        }
    }

    /// Whether `dialer` and `listener` complete a handshake (and one byte each way).
    async fn handshake(dialer: &TlsSettings, listener: &TlsSettings) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (d, l) = (quorum_tls(dialer).unwrap(), quorum_tls(listener).unwrap());
        let (a, b) = tokio::io::duplex(64 * 1024);
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let client = async move {
            let mut s = d.connector.connect(name, a).await.ok()?;
            s.write_all(b"x").await.ok()?;
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf[0])
        };
        let server = async move {
            let mut s = l.acceptor.accept(b).await.ok()?;
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.ok()?;
            s.write_all(b"y").await.ok()?;
            s.flush().await.ok()?;
            Some(buf[0])
        };
        let (c, s) = tokio::join!(client, server);
        c == Some(b'y') && s == Some(b'x')
    }

    fn temp_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("warden-tls-verify-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rand_suffix() -> u64 {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        u64::from_le_bytes(b)
    }

    #[tokio::test]
    async fn v1_certificates_from_jks_stores_are_verified_both_ways() {
        let dir = temp_dir();
        stores(&dir);
        for protocol in ["TLSv1.2", "TLSv1.3"] {
            let (member, stranger) = (settings(&dir, "member.jks", protocol), settings(&dir, "stranger.jks", protocol));
            assert!(handshake(&member, &member).await, "{protocol}: two members trust each other");
            assert!(!handshake(&stranger, &member).await, "{protocol}: a dialer from another CA is refused");
            assert!(!handshake(&member, &stranger).await, "{protocol}: a listener from another CA is refused");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
