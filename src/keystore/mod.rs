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

/// id-ecPublicKey.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// The key as PKCS#8, with an EC key's public half filled in from its
/// certificate: Java writes ECPrivateKey without the optional publicKey, and
/// ring (rustls' provider) requires it. ring checks that the two fit.
fn complete_key(pkcs8_der: Vec<u8>, cert: Option<&[u8]>) -> Result<Vec<u8>, String> {
    use pkcs8::der::asn1::{AnyRef, BitStringRef, ContextSpecific, OctetStringRef};
    use pkcs8::der::{Decode, Encode, Tag, TagMode, TagNumber};
    use x509_parser::der_parser::{ber::BerObjectContent, der::parse_der_sequence};
    let bad = |e: String| format!("malformed private key ({e})");
    let info = pkcs8::PrivateKeyInfo::from_der(&pkcs8_der).map_err(|e| bad(e.to_string()))?;
    let Some(cert) = cert.filter(|_| info.algorithm.oid.to_string() == EC_PUBLIC_KEY) else { return Ok(pkcs8_der) };
    let (_, ec) = parse_der_sequence(info.private_key).map_err(|e| bad(e.to_string()))?;
    let parts = ec.as_sequence().map_err(|e| bad(e.to_string()))?;
    if parts.iter().any(|p| p.header.is_contextspecific() && p.header.tag().0 == 1) {
        return Ok(pkcs8_der);
    }
    let Some(BerObjectContent::OctetString(secret)) = parts.get(1).map(|p| &p.content) else { return Err(bad("no EC private key".into())) };
    let point = crate::x509::verify::public_key_parts(cert)?.1;
    let enc = |e: pkcs8::der::Error| bad(e.to_string());
    let public = ContextSpecific { tag_number: TagNumber::N1, tag_mode: TagMode::Explicit, value: BitStringRef::from_bytes(&point).map_err(enc)? };
    let body = [1u8.to_der().map_err(enc)?, OctetStringRef::new(secret).map_err(enc)?.to_der().map_err(enc)?, public.to_der().map_err(enc)?].concat();
    let ec_key = AnyRef::new(Tag::Sequence, &body).map_err(enc)?.to_der().map_err(enc)?;
    pkcs8::PrivateKeyInfo { algorithm: info.algorithm, private_key: &ec_key, public_key: None }.to_der().map_err(enc)
}

/// Reads a JKS or PKCS#12 store. Java 17's "JKS" and "PKCS12" key stores
/// each read the other format too, so the file's own magic decides.
/// `password` is ZooKeeper's: the store password, empty when unset, and
/// also the password of the private keys.
pub fn read(data: &[u8], password: &str) -> Result<Store, String> {
    let mut store = if jks::is_jks(data) {
        jks::read(data, password)?
    } else if jks::is_jceks(data) {
        return Err("a JCEKS store, which ZooKeeper's JKS and PKCS12 loaders do not read; convert it with keytool -importkeystore -deststoretype PKCS12".into());
    } else {
        pkcs12(data, password)?
    };
    for k in &mut store.keys {
        k.pkcs8 = complete_key(std::mem::take(&mut k.pkcs8), k.chain.first().map(Vec::as_slice))?;
    }
    Ok(store)
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
