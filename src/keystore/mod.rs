//! Key and trust stores as ZooKeeper reads them (`X509Util`, `KeyStoreFileType`):
//! the store type from `ssl.*.type` or the file name, and the binary formats,
//! JKS and PKCS#12, opened with the store password. PEM stores are read by the
//! TLS layer, which already parses PEM.

mod jks;

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    Jks,
    Pkcs12,
    Pem,
}

impl fmt::Display for StoreType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreType::Jks => "JKS",
            StoreType::Pkcs12 => "PKCS12",
            StoreType::Pem => "PEM",
        })
    }
}

impl StoreType {
    /// `KeyStoreFileType.fromPropertyValueOrFileName`: the `*.type` value when
    /// set (case-insensitive), else the file extension, case-sensitive as
    /// ZooKeeper compares it. BCFKS needs Bouncy Castle's provider and is refused.
    pub fn from_property_or_file_name(property: Option<&str>, file_name: &str) -> Result<StoreType, String> {
        if let Some(p) = property.map(str::trim).filter(|p| !p.is_empty()) {
            return match p.to_ascii_uppercase().as_str() {
                "JKS" => Ok(StoreType::Jks),
                "PKCS12" => Ok(StoreType::Pkcs12),
                "PEM" => Ok(StoreType::Pem),
                "BCFKS" => Err("is not supported (BCFKS needs Bouncy Castle); use JKS, PKCS12 or PEM".into()),
                _ => Err("is not one of JKS, PKCS12, PEM".into()),
            };
        }
        match file_name.rfind('.').map(|i| &file_name[i..]) {
            Some(".jks") => Ok(StoreType::Jks),
            Some(".p12") => Ok(StoreType::Pkcs12),
            Some(".pem") => Ok(StoreType::Pem),
            Some(".bcfks") => Err("is a BCFKS store (by its extension), which is not supported".into()),
            _ => Err("has no .jks, .p12 or .pem extension to tell its type by".into()),
        }
    }
}

/// A private key with the certificate chain presented with it (leaf first).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// PKCS#8 PrivateKeyInfo, DER.
    pub pkcs8: Vec<u8>,
    pub chain: Vec<Vec<u8>>,
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry").field("pkcs8", &"<key>").field("chain", &self.chain.len()).finish()
    }
}

/// What a JKS or PKCS#12 file holds, in file order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Store {
    pub keys: Vec<KeyEntry>,
    /// Trusted certificate entries (DER).
    pub certificates: Vec<Vec<u8>>,
}

impl Store {
    /// The certificates a Java trust manager built from this store trusts:
    /// the certificate entries and each key entry's own certificate
    /// (`TrustStoreUtil.getTrustedCerts`).
    pub fn trust_anchors(&self) -> Vec<Vec<u8>> {
        let mut all = self.certificates.clone();
        all.extend(self.keys.iter().filter_map(|k| k.chain.first().cloned()));
        all
    }
}

/// Reads a JKS or PKCS#12 store. Java 17's "JKS" and "PKCS12" key stores
/// each read the other format too, so the file's own magic decides.
/// `password` is ZooKeeper's: the store password, empty when unset, and
/// also the password of the private keys.
pub fn read(data: &[u8], password: &str) -> Result<Store, String> {
    if jks::is_jks(data) {
        jks::read(data, password)
    } else if jks::is_jceks(data) {
        Err("a JCEKS store, which ZooKeeper's JKS and PKCS12 loaders do not read; convert it with keytool -importkeystore -deststoretype PKCS12".into())
    } else {
        pkcs12(data, password)
    }
}

fn pkcs12(data: &[u8], password: &str) -> Result<Store, String> {
    use p12_keystore::{error::Error, KeyStore, KeyStoreEntry};
    let ks = KeyStore::from_pkcs12(data, password).map_err(|e| match e {
        Error::MacError(_) => "password is incorrect (the PKCS#12 integrity check failed)".to_string(),
        Error::DerError(e) => format!("not a JKS or PKCS#12 store ({e})"),
        Error::UnpadError | Error::Pkcs5Error(_) => format!("cannot be decrypted: password is incorrect or the file is damaged ({e})"),
        other => format!("cannot be read as PKCS#12: {other}"),
    })?;
    let mut store = Store::default();
    for (_, entry) in ks.entries() {
        match entry {
            KeyStoreEntry::PrivateKeyChain(k) => {
                store.keys.push(KeyEntry { pkcs8: k.key().to_vec(), chain: k.chain().iter().map(|c| c.as_der().to_vec()).collect() })
            }
            KeyStoreEntry::Certificate(c) => store.certificates.push(c.as_der().to_vec()),
            KeyStoreEntry::Secret(_) => {}
        }
    }
    Ok(store)
}

#[cfg(test)]
mod tests;
