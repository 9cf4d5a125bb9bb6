//! Java's proprietary JKS key store (`sun.security.provider.JavaKeyStore`).
//! No maintained crate reads it on the RustCrypto generation already in the
//! tree, and the format is small: a SHA-1 integrity digest and Sun's SHA-1
//! XOR key protector around PKCS#8 keys.

use super::{KeyEntry, Store};
use sha1::{Digest, Sha1};
use x509_parser::der_parser::der::parse_der_sequence;
use x509_parser::der_parser::oid;

const JKS_MAGIC: u32 = 0xFEED_FEED;
const JCEKS_MAGIC: u32 = 0xCECE_CECE;
const PRIVATE_KEY: u32 = 1;
const TRUSTED_CERT: u32 = 2;
const DIGEST_LEN: usize = 20;

pub fn is_jks(data: &[u8]) -> bool {
    data.starts_with(&JKS_MAGIC.to_be_bytes())
}

pub fn is_jceks(data: &[u8]) -> bool {
    data.starts_with(&JCEKS_MAGIC.to_be_bytes())
}

/// Java chars as big-endian bytes, as `JavaKeyStore` and `KeyProtector` hash passwords.
fn password_bytes(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("truncated (a JKS entry runs past the end of the file)")?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    /// `DataInput.readUTF`: a length and modified UTF-8 (aliases, certificate types).
    fn utf(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn blob(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn cert(&mut self, version: u32) -> Result<Vec<u8>, String> {
        if version == 2 {
            let kind = self.utf()?;
            if kind != b"X.509" {
                return Err(format!("a {} certificate; only X.509 is supported", String::from_utf8_lossy(kind)));
            }
        }
        Ok(self.blob()?.to_vec())
    }
}

/// Reads the store, checking its integrity digest with `password` first
/// (as ZooKeeper, which always passes a password, empty when unset).
pub fn read(data: &[u8], password: &str) -> Result<Store, String> {
    let body_len = data.len().checked_sub(DIGEST_LEN).filter(|&n| n >= 12).ok_or("too short to be a JKS store")?;
    let (body, digest) = data.split_at(body_len);
    let pw = password_bytes(password);
    let expected = Sha1::new().chain_update(&pw).chain_update(b"Mighty Aphrodite").chain_update(body).finalize();
    if expected.as_slice() != digest {
        return Err("password is incorrect, or the JKS file is damaged (its integrity check failed)".into());
    }
    let mut r = Reader { data: body, at: 4 };
    let version = r.u32()?;
    if version != 1 && version != 2 {
        return Err(format!("JKS version {version}; versions 1 and 2 are known"));
    }
    let count = r.u32()?;
    let mut store = Store::default();
    for _ in 0..count {
        let tag = r.u32()?;
        let alias = String::from_utf8_lossy(r.utf()?).into_owned();
        r.take(8)?; // creation date
        match tag {
            PRIVATE_KEY => {
                let protected = r.blob()?;
                let n = r.u32()?;
                let chain = (0..n).map(|_| r.cert(version)).collect::<Result<Vec<_>, _>>()?;
                let pkcs8 = recover_key(protected, &pw).map_err(|e| format!("key entry \"{alias}\": {e}"))?;
                store.keys.push(KeyEntry { pkcs8, chain });
            }
            TRUSTED_CERT => store.certificates.push(r.cert(version)?),
            other => return Err(format!("an entry of unknown type {other} (\"{alias}\")")),
        }
    }
    if r.at != body.len() {
        return Err("trailing data after its entries".into());
    }
    Ok(store)
}

/// Sun's `KeyProtector.recover`: an EncryptedPrivateKeyInfo whose data is
/// salt(20) | key XOR SHA-1 stream | SHA-1(password | key).
fn recover_key(protected: &[u8], pw: &[u8]) -> Result<Vec<u8>, String> {
    let (_, info) = parse_der_sequence(protected).map_err(|e| format!("malformed protected key ({e})"))?;
    let parts = info.as_sequence().map_err(|e| format!("malformed protected key ({e})"))?;
    let (Some(alg), Some(data)) = (parts.first(), parts.get(1)) else { return Err("malformed protected key".into()) };
    let alg_oid = alg.as_sequence().ok().and_then(|s| s.first()).and_then(|o| o.as_oid().ok()).ok_or("malformed protected key algorithm")?;
    if *alg_oid != oid!(1.3.6 .1 .4 .1 .42 .2 .17 .1 .1) {
        return Err(format!("key protected with {alg_oid}, not Sun's JKS key protector"));
    }
    let data = data.as_slice().map_err(|e| format!("malformed protected key ({e})"))?;
    let key_len = data.len().checked_sub(2 * DIGEST_LEN).ok_or("protected key is too short")?;
    let (salt, rest) = data.split_at(DIGEST_LEN);
    let (encrypted, check) = rest.split_at(key_len);
    let mut key = Vec::with_capacity(key_len);
    let mut block = salt.to_vec();
    while key.len() < key_len {
        block = Sha1::new().chain_update(pw).chain_update(&block).finalize().to_vec();
        let take = (key_len - key.len()).min(DIGEST_LEN);
        key.extend(encrypted[key.len()..key.len() + take].iter().zip(&block).map(|(e, k)| e ^ k));
    }
    if Sha1::new().chain_update(pw).chain_update(&key).finalize().as_slice() != check {
        return Err("cannot be recovered with the store password (Warden, like ZooKeeper, uses the store password for keys)".into());
    }
    Ok(key)
}
