//! TLS for secureClientPort and quorum links: builds the rustls configs from
//! the key store and trust store (JKS, PKCS12 or PEM, as ZooKeeper reads
//! them), and rebuilds the client port's when those files change so new
//! connections get a renewed certificate without a restart.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use slog::{info, warn, Logger};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_rustls::rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio_rustls::rustls::{self, ClientConfig, ServerConfig};
use tokio_rustls::TlsAcceptor;
use verify::StoreVerifier;
use warden_core::config::{ClientAuth, TlsSettings};
use warden_core::keystore::{self, StoreType};

pub(crate) mod verify;

/// How often the store files are checked for changes (on accept).
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Modification time and size of each store file: a change means reload.
type Stamp = Vec<Option<(SystemTime, u64)>>;

struct Loaded {
    acceptor: TlsAcceptor,
    stamp: Stamp,
    checked: Instant,
}

pub struct TlsSource {
    settings: TlsSettings,
    loaded: Mutex<Loaded>,
    log: Logger,
}

/// The key store's private key: a plain PEM key (PKCS#8, PKCS#1, SEC1), or
/// an encrypted PKCS#8 one (`ENCRYPTED PRIVATE KEY`, PBES2) opened with the
/// key store password, as ZooKeeper's PEM loader does.
fn private_key(s: &TlsSettings, key: &str) -> Result<PrivateKeyDer<'static>, String> {
    const BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
    const END: &str = "-----END ENCRYPTED PRIVATE KEY-----";
    let path = &s.key_store;
    let at = |what: String| format!("{key}.location {}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(format!("cannot read it: {e}")))?;
    if let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) {
        let password = s.key_password.as_deref().ok_or_else(|| at(format!("the private key is encrypted; set {key}.password or {key}.passwordPath")))?;
        let block = text.get(b..e + END.len()).ok_or_else(|| at("a malformed ENCRYPTED PRIVATE KEY block".into()))?;
        let (_, der) = pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|e| at(format!("a malformed ENCRYPTED PRIVATE KEY block ({e})")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).map_err(|e| at(format!("not an encrypted PKCS#8 key ({e})")))?;
        let plain = info.decrypt(password).map_err(|e| at(format!("cannot decrypt the private key with {key}.password ({e})")))?;
        return Ok(PrivateKeyDer::Pkcs8(plain.as_bytes().to_vec().into()));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        at(format!("no usable private key ({e}); an unencrypted PKCS#8, PKCS#1 or SEC1 PEM key, or an encrypted PKCS#8 one with {key}.password, is needed"))
    })
}

/// A cipher suite by its IANA name, as Java (and ssl.ciphersuites) spell it.
fn suite_name(cs: &rustls::SupportedCipherSuite) -> String {
    format!("{:?}", cs.suite()).replace("TLS13_", "TLS_")
}

/// The crypto provider with only the configured cipher suites, the protocol
/// versions, and warnings for suite names this build does not have.
type Crypto = (Arc<rustls::crypto::CryptoProvider>, Vec<&'static rustls::SupportedProtocolVersion>, Vec<String>);

fn crypto(s: &TlsSettings, prefix: &str) -> Result<Crypto, String> {
    let mut p = rustls::crypto::ring::default_provider();
    let mut warnings = Vec::new();
    if !s.cipher_suites.is_empty() {
        let known: Vec<String> = p.cipher_suites.iter().map(suite_name).collect();
        for name in s.cipher_suites.iter().filter(|n| !known.contains(n)) {
            warnings.push(format!("{prefix}ciphersuites: {name} is not supported here and is left out"));
        }
        p.cipher_suites.retain(|cs| s.cipher_suites.contains(&suite_name(cs)));
        if p.cipher_suites.is_empty() {
            return Err(format!("{prefix}ciphersuites: none of {} is supported; supported: {}", s.cipher_suites.join(","), known.join(",")));
        }
    }
    let versions = if s.protocols.is_empty() {
        rustls::ALL_VERSIONS.to_vec()
    } else {
        s.protocols.iter().map(|v| if v == "TLSv1.3" { &rustls::version::TLS13 } else { &rustls::version::TLS12 }).collect()
    };
    Ok((Arc::new(p), versions, warnings))
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{what} {}: cannot read PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}

/// A JKS or PKCS12 store, opened with `password` (empty when unset, as ZooKeeper does).
fn binary_store(path: &Path, kind: StoreType, key: &str, password: Option<&str>) -> Result<keystore::Store, String> {
    let at = |what: String| format!("{key}.location {} ({kind}): {what}", path.display());
    let data = std::fs::read(path).map_err(|e| at(format!("cannot read it: {e}")))?;
    keystore::read(&data, password.unwrap_or("")).map_err(|e| at(e.replace("password", &format!("{key}.password"))))
}

/// The key store's certificate chain and private key; `key` is "ssl.keyStore" or "ssl.quorum.keyStore".
fn key_store(s: &TlsSettings, key: &str) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    if s.key_store_type == StoreType::Pem {
        return Ok((certs(&s.key_store, &format!("{key}.location"))?, private_key(s, key)?));
    }
    let store = binary_store(&s.key_store, s.key_store_type, key, s.key_password.as_deref())?;
    let entry = store.keys.into_iter().next().ok_or_else(|| {
        format!(
            "{key}.location {} ({}): no private key entry; the key store must hold the key and its certificate chain",
            s.key_store.display(),
            s.key_store_type
        )
    })?;
    if entry.chain.is_empty() {
        return Err(format!("{key}.location {}: the private key entry has no certificate", s.key_store.display()));
    }
    let chain = entry.chain.into_iter().map(CertificateDer::from).collect();
    Ok((chain, PrivateKeyDer::Pkcs8(entry.pkcs8.into())))
}

/// The trust store's certificates; `key` is "ssl.trustStore" or "ssl.quorum.trustStore".
fn trust_store(s: &TlsSettings, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let path = s.trust_store.as_ref().ok_or_else(|| format!("{key}.location is required"))?;
    if s.trust_store_type == StoreType::Pem {
        return certs(path, &format!("{key}.location"));
    }
    let anchors = binary_store(path, s.trust_store_type, key, s.trust_password.as_deref())?.trust_anchors();
    if anchors.is_empty() {
        return Err(format!("{key}.location {} ({}): no trusted certificate in the store", path.display(), s.trust_store_type));
    }
    Ok(anchors.into_iter().map(CertificateDer::from).collect())
}

/// The chain and key as rustls signs with them. Built here rather than by
/// rustls' `with_single_cert`, whose key check parses the certificate with
/// webpki and so refuses an X.509 v1 certificate, which Java accepts.
fn certified_key(s: &TlsSettings, prefix: &str, provider: &rustls::crypto::CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let key_name = format!("{prefix}keyStore");
    let (chain, key) = key_store(s, &key_name)?;
    let at = |what: String| format!("{key_name}.location {}: {what}", s.key_store.display());
    let signing = provider.key_provider.load_private_key(key).map_err(|e| at(format!("the private key cannot be used: {e}")))?;
    let cert_key = warden_core::x509::verify::public_key_info(&chain[0]).map_err(|e| at(format!("its certificate: {e}")))?;
    if signing.public_key().is_some_and(|k| k.as_ref() != cert_key.as_slice()) {
        return Err(at("key and certificate do not fit: the private key is not the one of the first certificate".into()));
    }
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A ServerConfig from the current files; errors name the key and file.
pub fn server_config(s: &TlsSettings) -> Result<ServerConfig, String> {
    server_config_with(s, "ssl.").map(|(c, _)| c)
}

fn server_config_with(s: &TlsSettings, prefix: &str) -> Result<(ServerConfig, Vec<String>), String> {
    let (provider, versions, warnings) = crypto(s, prefix)?;
    let key = certified_key(s, prefix, &provider)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{prefix}enabledProtocols / {prefix}ciphersuites: {e}"))?;
    let builder = match (&s.trust_store, s.client_auth) {
        (_, ClientAuth::None) | (None, _) => builder.with_no_client_auth(),
        (Some(ts), auth) => {
            let anchors = trust_store(s, &format!("{prefix}trustStore"))?;
            let v =
                StoreVerifier::new(&anchors, &provider, auth == ClientAuth::Need).map_err(|e| format!("{prefix}trustStore.location {}: {e}", ts.display()))?;
            builder.with_client_cert_verifier(Arc::new(v))
        }
    };
    Ok((builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(key))), warnings))
}

fn stamp(s: &TlsSettings) -> Stamp {
    std::iter::once(&s.key_store).chain(s.trust_store.as_ref()).map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())))).collect()
}

impl TlsSource {
    /// Loads the stores now; a failure here stops the start.
    pub fn load(settings: TlsSettings, log: Logger) -> Result<Arc<TlsSource>, String> {
        let stamp = stamp(&settings);
        let (config, warnings) = server_config_with(&settings, "ssl.")?;
        for w in warnings {
            warn!(log, "{}", w);
        }
        let loaded = Loaded { acceptor: TlsAcceptor::from(Arc::new(config)), stamp, checked: Instant::now() };
        Ok(Arc::new(TlsSource { settings, loaded: Mutex::new(loaded), log }))
    }

    /// The acceptor for a new connection, reloading changed store files
    /// first. A broken new file keeps the old certificate in use.
    pub fn acceptor(&self) -> TlsAcceptor {
        let mut l = self.loaded.lock().unwrap();
        if l.checked.elapsed() >= RELOAD_CHECK {
            l.checked = Instant::now();
            let now = stamp(&self.settings);
            if now != l.stamp {
                l.stamp = now;
                match server_config(&self.settings) {
                    Ok(c) => {
                        l.acceptor = TlsAcceptor::from(Arc::new(c));
                        info!(self.log, "TLS key/certificate files changed; new connections use the reloaded certificate"; "keyStore" => self.settings.key_store.display().to_string());
                    }
                    Err(e) => warn!(self.log, "TLS files changed but cannot be loaded; keeping the previous certificate"; "error" => e),
                }
            }
        }
        l.acceptor.clone()
    }
}

/// Quorum TLS (sslQuorum): every member is a TLS server to the members that
/// dial it and a TLS client to those it dials, presenting the same
/// certificate and verifying the peer's against the quorum trust store.
#[derive(Clone)]
pub struct QuorumTls {
    pub acceptor: TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
    /// `ssl.quorum.hostnameVerification`: peers' certificates must name their address.
    pub hostname_verification: bool,
    /// Cipher suite names left out (logged at start).
    pub warnings: Vec<String>,
}

pub fn quorum_tls(s: &TlsSettings) -> Result<QuorumTls, String> {
    const PREFIX: &str = "ssl.quorum.";
    let (server, warnings) = server_config_with(s, PREFIX)?;
    let (provider, versions, _) = crypto(s, PREFIX)?;
    let anchors = trust_store(s, "ssl.quorum.trustStore")?;
    let verifier = StoreVerifier::new(&anchors, &provider, true).map_err(|e| format!("ssl.quorum.trustStore.location: {e}"))?;
    let key = certified_key(s, PREFIX, &provider)?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| format!("ssl.quorum.enabledProtocols / ssl.quorum.ciphersuites: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(key)));
    Ok(QuorumTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        hostname_verification: s.hostname_verification,
        warnings,
    })
}
