//! The `ssl.*` and `ssl.quorum.*` keys of the TLS client port and quorum
//! links, checked when the config is built so a bad setting stops the start
//! with a clear message (the stores themselves are opened by the TLS layer).

use super::{invalid, Config, R};
use crate::keystore::StoreType;
use std::path::{Path, PathBuf};

/// `ssl.clientAuth`; ZooKeeper's default (unset or empty) is need
/// (`X509Util.ClientAuth.fromPropertyValue`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Need,
    Want,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The private key and its certificate chain (JKS, PKCS12 or PEM).
    pub key_store: PathBuf,
    pub key_store_type: StoreType,
    /// The certificates peers' certificates must chain to.
    pub trust_store: Option<PathBuf>,
    pub trust_store_type: StoreType,
    pub client_auth: ClientAuth,
    /// "TLSv1.2" / "TLSv1.3" from `ssl.enabledProtocols`, else `ssl.protocol`;
    /// empty: both (ZooKeeper 3.8 enables only its `ssl.protocol`, TLSv1.2).
    pub protocols: Vec<String>,
    /// `ssl.ciphersuites` (IANA names, as Java's); empty: rustls' defaults.
    pub cipher_suites: Vec<String>,
    /// `ssl.keyStore.password`, or the file `ssl.keyStore.passwordPath` names:
    /// opens a JKS/PKCS12 store and its key, or an encrypted PKCS#8 PEM key.
    pub key_password: Option<String>,
    /// `ssl.trustStore.password` / `…passwordPath`: checks a JKS/PKCS12 trust store.
    pub trust_password: Option<String>,
    /// `ssl.hostnameVerification` (`ssl.quorum.hostnameVerification`), default
    /// true: quorum members check each other's certificate against their
    /// address, as ZooKeeper's `ZKTrustManager`; client-port clients are not
    /// host-checked (ZooKeeper's `ClientX509Util` does not either).
    pub hostname_verification: bool,
}

/// The stores and auth mode with what both listeners read alike under `prefix`.
fn settings(c: &Config, prefix: &str, key_store: PathBuf, trust_store: Option<PathBuf>, client_auth: ClientAuth) -> R<TlsSettings> {
    let (protocols, cipher_suites) = protocols_and_suites(c, prefix)?;
    let key_store_type = store_type(c, &format!("{prefix}keyStore"), &key_store)?;
    let trust_store_type = match &trust_store {
        Some(t) => store_type(c, &format!("{prefix}trustStore"), t)?,
        None => StoreType::Pem,
    };
    let key_password = password(c, &format!("{prefix}keyStore"))?;
    let trust_password = password(c, &format!("{prefix}trustStore"))?;
    for what in ["crl", "ocsp"] {
        let key = format!("{prefix}{what}");
        if c.ssl.get(&key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Err(invalid(&key, "true", "is not supported: Warden does not check certificate revocation (CRL/OCSP)"));
        }
    }
    let key = format!("{prefix}hostnameVerification");
    let hostname_verification = match c.ssl.get(&key).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("true") => true,
        Some("false") => false,
        Some(_) => return Err(invalid(&key, &c.ssl[&key], "is not true or false")),
    };
    Ok(TlsSettings {
        key_store,
        key_store_type,
        trust_store,
        trust_store_type,
        client_auth,
        protocols,
        cipher_suites,
        key_password,
        trust_password,
        hostname_verification,
    })
}

/// A store's password: the value, or the file `…passwordPath` names, which
/// wins when both are set (`X509Util.getPasswordFromConfigPropertyOrFile`).
fn password(c: &Config, store: &str) -> R<Option<String>> {
    let key = format!("{store}.passwordPath");
    if let Some(path) = c.ssl.get(&key).map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let text = std::fs::read_to_string(path).map_err(|e| invalid(&key, path, format!("cannot be read: {e}")))?;
        // SecretUtils.readSecret: the whole file, less one trailing line separator.
        return Ok(Some(text.strip_suffix('\n').unwrap_or(&text).to_string()));
    }
    Ok(c.ssl.get(&format!("{store}.password")).filter(|p| !p.is_empty()).cloned())
}

/// The protocols and cipher suites under `prefix` ("ssl." or "ssl.quorum.").
fn protocols_and_suites(c: &Config, prefix: &str) -> R<(Vec<String>, Vec<String>)> {
    let list = |key: &str| c.ssl.get(key).map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect::<Vec<_>>());
    let (enabled_key, protocol_key) = (format!("{prefix}enabledProtocols"), format!("{prefix}protocol"));
    let (key, requested) = match (list(&enabled_key), list(&protocol_key)) {
        (Some(l), _) => (enabled_key, l),
        (None, Some(l)) => (protocol_key, l),
        (None, None) => (enabled_key, Vec::new()),
    };
    let mut protocols = Vec::new();
    for p in &requested {
        let v = match p.to_ascii_uppercase().as_str() {
            "TLSV1.2" => "TLSv1.2",
            "TLSV1.3" => "TLSv1.3",
            // Java's generic "TLS": whatever both sides support.
            "TLS" => continue,
            _ => return Err(invalid(&key, p, "is not supported: Warden speaks TLSv1.2 and TLSv1.3")),
        };
        if !protocols.contains(&v.to_string()) {
            protocols.push(v.to_string());
        }
    }
    Ok((protocols, list(&format!("{prefix}ciphersuites")).unwrap_or_default()))
}

/// The store type: explicit `<store>.type`, else from the file extension as
/// ZooKeeper's `KeyStoreFileType.fromPropertyValueOrFileName`.
fn store_type(c: &Config, store: &str, path: &Path) -> R<StoreType> {
    let type_key = format!("{store}.type");
    let explicit = c.ssl.get(&type_key).map(|t| t.trim()).filter(|t| !t.is_empty());
    StoreType::from_property_or_file_name(explicit, &path.to_string_lossy()).map_err(|e| match explicit {
        Some(t) => invalid(&type_key, t, e),
        None => invalid(&format!("{store}.location"), path.display(), format!("{e}; set {type_key} to JKS, PKCS12 or PEM")),
    })
}

impl Config {
    /// TLS settings when `secureClientPort` is set, else None.
    pub fn tls(&self) -> R<Option<TlsSettings>> {
        if self.secure_client_port.is_none() {
            return Ok(None);
        }
        let get = |k: &str| self.ssl.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let key_store = get("ssl.keyStore.location").map(PathBuf::from).ok_or_else(|| {
            invalid(
                "ssl.keyStore.location",
                "",
                "is required when secureClientPort is set (a JKS, PKCS12 or PEM store with the private key and certificate chain)",
            )
        })?;
        let trust_store = get("ssl.trustStore.location").map(PathBuf::from);
        let client_auth = match get("ssl.clientAuth").map(str::to_ascii_lowercase).as_deref() {
            None | Some("need") => ClientAuth::Need,
            Some("want") => ClientAuth::Want,
            Some("none") => ClientAuth::None,
            Some(_) => return Err(invalid("ssl.clientAuth", &self.ssl["ssl.clientAuth"], "is not one of need, want, none")),
        };
        if client_auth != ClientAuth::None && trust_store.is_none() {
            // ZooKeeper would fall back to the JVM's cacerts; Warden has no such default.
            let reason =
                "needs ssl.trustStore.location (the CA certificates, JKS, PKCS12 or PEM) to verify client certificates; set ssl.clientAuth=none to accept clients without them";
            return Err(invalid("ssl.clientAuth", get("ssl.clientAuth").unwrap_or("need (default)"), reason));
        }
        settings(self, "ssl.", key_store, trust_store, client_auth).map(Some)
    }
}

impl Config {
    /// Quorum TLS (`sslQuorum=true`): ZooKeeper's `ssl.quorum.keyStore.*` and
    /// `ssl.quorum.trustStore.*` keys. Both are required: members present
    /// their certificate and verify each other's, both ways.
    pub fn quorum_tls(&self) -> R<Option<TlsSettings>> {
        if !self.ssl_quorum {
            return Ok(None);
        }
        let get = |k: &str| self.ssl.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let key_store = get("ssl.quorum.keyStore.location").map(PathBuf::from).ok_or_else(|| {
            invalid(
                "ssl.quorum.keyStore.location",
                "",
                "is required when sslQuorum=true (a JKS, PKCS12 or PEM store with the member's private key and certificate chain)",
            )
        })?;
        let trust_store = get("ssl.quorum.trustStore.location").map(PathBuf::from).ok_or_else(|| {
            invalid("ssl.quorum.trustStore.location", "", "is required when sslQuorum=true (the CA certificates the members' certificates chain to)")
        })?;
        settings(self, "ssl.quorum.", key_store, Some(trust_store), ClientAuth::Need).map(Some)
    }
}

#[cfg(test)]
mod quorum_tests {
    use super::*;

    #[test]
    fn quorum_tls_needs_both_stores() {
        let mut c = Config::default();
        assert_eq!(c.quorum_tls().unwrap(), None);
        c.ssl_quorum = true;
        assert!(c.quorum_tls().unwrap_err().to_string().contains("ssl.quorum.keyStore.location"));
        c.ssl.insert("ssl.quorum.keyStore.location".into(), "/k.pem".into());
        assert!(c.quorum_tls().unwrap_err().to_string().contains("ssl.quorum.trustStore.location"));
        c.ssl.insert("ssl.quorum.trustStore.location".into(), "/ca.crt".into());
        assert!(c.quorum_tls().unwrap_err().to_string().contains("ssl.quorum.trustStore.location"), "no type by that extension");
        c.ssl.insert("ssl.quorum.trustStore.location".into(), "/ca.jks".into());
        let t = c.quorum_tls().unwrap().unwrap();
        assert_eq!((t.key_store, t.client_auth), (PathBuf::from("/k.pem"), ClientAuth::Need));
        assert_eq!((t.key_store_type, t.trust_store_type, t.hostname_verification), (StoreType::Pem, StoreType::Jks, true));
        c.ssl.insert("ssl.quorum.ocsp".into(), "true".into());
        assert!(c.quorum_tls().unwrap_err().to_string().contains("ssl.quorum.ocsp"), "revocation checks are refused, not skipped");
        c.ssl.insert("ssl.quorum.ocsp".into(), "false".into());
        c.ssl.insert("ssl.quorum.hostnameVerification".into(), "false".into());
        c.ssl.insert("ssl.quorum.trustStore.type".into(), "pkcs12".into());
        let t = c.quorum_tls().unwrap().unwrap();
        assert_eq!((t.trust_store_type, t.hostname_verification), (StoreType::Pkcs12, false));
    }

    #[test]
    fn password_files_win_and_lose_one_line_separator() {
        let dir = std::env::temp_dir().join(format!("warden-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, "s3cret\n").unwrap();
        std::fs::write(&b, "two\nlines\n\n").unwrap();
        let mut c = Config { secure_client_port: Some(2281), ..Config::default() };
        c.ssl.insert("ssl.keyStore.location".into(), "/k.jks".into());
        c.ssl.insert("ssl.clientAuth".into(), "none".into());
        c.ssl.insert("ssl.keyStore.password".into(), "inline".into());
        assert_eq!(c.tls().unwrap().unwrap().key_password.as_deref(), Some("inline"));
        c.ssl.insert("ssl.keyStore.passwordPath".into(), a.display().to_string());
        c.ssl.insert("ssl.trustStore.passwordPath".into(), b.display().to_string());
        let t = c.tls().unwrap().unwrap();
        assert_eq!((t.key_password.as_deref(), t.trust_password.as_deref()), (Some("s3cret"), Some("two\nlines\n")));
        c.ssl.insert("ssl.keyStore.passwordPath".into(), dir.join("missing").display().to_string());
        assert!(c.tls().unwrap_err().to_string().contains("ssl.keyStore.passwordPath"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn protocols_come_from_enabled_protocols_else_protocol() {
        let mut c = Config { secure_client_port: Some(2281), ..Config::default() };
        c.ssl.insert("ssl.keyStore.location".into(), "/k.pem".into());
        c.ssl.insert("ssl.clientAuth".into(), "none".into());
        assert!(c.tls().unwrap().unwrap().protocols.is_empty(), "both by default");
        c.ssl.insert("ssl.protocol".into(), "TLSv1.3".into());
        assert_eq!(c.tls().unwrap().unwrap().protocols, vec!["TLSv1.3"]);
        c.ssl.insert("ssl.enabledProtocols".into(), "TLSv1.2, tlsv1.3".into());
        assert_eq!(c.tls().unwrap().unwrap().protocols, vec!["TLSv1.2", "TLSv1.3"]);
        c.ssl.insert("ssl.enabledProtocols".into(), "TLSv1.1".into());
        assert!(c.tls().unwrap_err().to_string().contains("TLSv1.2 and TLSv1.3"));
        c.ssl.remove("ssl.enabledProtocols");
        c.ssl.insert("ssl.ciphersuites".into(), "TLS_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into());
        assert_eq!(c.tls().unwrap().unwrap().cipher_suites.len(), 2);
    }
}
