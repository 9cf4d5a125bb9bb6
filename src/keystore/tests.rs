//! Fixtures in testdata/ were made once with Java 17's keytool (password
//! "apassword"): one RSA key and self-signed certificate in PKCS12 (Java 17's
//! default PBES2/AES-256, HMAC-SHA256), the same key imported into JKS and
//! into a legacy PKCS12 (3DES keys, RC2-40 certificates, HMAC-SHA1), the key
//! as plain PKCS#8 to compare with, and trust stores holding ca.pem; and an
//! EC P-256 key (keytool -keyalg EC) in PKCS12 and, imported, in JKS.

use super::*;

const PASSWORD: &str = "apassword";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/keystore/testdata").join(name)).unwrap()
}

fn pem_der(name: &str) -> Vec<u8> {
    let data = fixture(name);
    let (_, pem) = x509_parser::pem::parse_x509_pem(&data).unwrap();
    pem.contents
}

#[test]
fn key_stores_in_every_format_give_the_same_key_and_certificate() {
    let key = fixture("server-key.pk8");
    let cert = pem_der("server.pem");
    for name in ["keystore.jks", "keystore.p12", "keystore-legacy.p12"] {
        let store = read(&fixture(name), PASSWORD).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(store.keys.len(), 1, "{name}");
        assert!(store.keys[0].pkcs8 == key, "{name}: the decrypted key is the original PKCS#8 key");
        assert_eq!(store.keys[0].chain, vec![cert.clone()], "{name}");
        assert!(store.certificates.is_empty(), "{name}");
        assert_eq!(store.trust_anchors(), vec![cert.clone()], "{name}: a key entry's certificate is trusted, as Java's TrustStoreUtil");
    }
}

#[test]
fn trust_stores_hold_the_ca_certificate() {
    let ca = pem_der("ca.pem");
    for name in ["truststore.jks", "truststore.p12"] {
        let store = read(&fixture(name), PASSWORD).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((store.keys.len(), store.certificates.clone()), (0, vec![ca.clone()]), "{name}");
    }
}

#[test]
fn a_wrong_password_is_named() {
    for name in ["keystore.jks", "keystore.p12", "keystore-legacy.p12", "truststore.jks"] {
        let e = read(&fixture(name), "wrong").unwrap_err();
        assert!(e.contains("password is incorrect"), "{name}: {e}");
        let e = read(&fixture(name), "").unwrap_err();
        assert!(e.contains("password is incorrect"), "{name}, no password: {e}");
    }
}

#[test]
fn damaged_and_foreign_files_are_refused() {
    for name in ["keystore.jks", "keystore.p12"] {
        let mut data = fixture(name);
        let mid = data.len() / 2;
        data[mid] ^= 0x01;
        assert!(read(&data, PASSWORD).is_err(), "{name}: a flipped byte");
        let data = fixture(name);
        assert!(read(&data[..data.len() - 30], PASSWORD).is_err(), "{name}: truncated");
    }
    let e = read(&fixture("ca.pem"), PASSWORD).unwrap_err();
    assert!(e.contains("not a JKS or PKCS#12 store"), "{e}");
    let e = read(&[0xCE, 0xCE, 0xCE, 0xCE, 0, 0, 0, 2], PASSWORD).unwrap_err();
    assert!(e.contains("JCEKS"), "{e}");
    assert!(read(&[0xFE, 0xED, 0xFE, 0xED], PASSWORD).is_err());
}

#[test]
fn a_jks_key_under_another_password_is_refused_by_its_own_check() {
    // Rebuild the store's digest with the right password but protect nothing
    // differently: the key protector check must still hold, so flipping a key
    // byte and re-digesting the file is caught by the key check.
    let mut data = fixture("keystore.jks");
    let body_len = data.len() - 20;
    // The protected key starts after magic, version, count, tag, alias, date and its length.
    let alias_len = u16::from_be_bytes([data[16], data[17]]) as usize;
    let key_at = 18 + alias_len + 8 + 4 + 60; // well inside the encrypted key
    data[key_at] ^= 0x80;
    let pw: Vec<u8> = PASSWORD.encode_utf16().flat_map(u16::to_be_bytes).collect();
    use sha1::{Digest, Sha1};
    let digest = Sha1::new().chain_update(&pw).chain_update(b"Mighty Aphrodite").chain_update(&data[..body_len]).finalize();
    data[body_len..].copy_from_slice(&digest);
    let e = read(&data, PASSWORD).unwrap_err();
    assert!(e.contains("key entry") && e.contains("cannot be recovered"), "{e}");
}

#[test]
fn store_type_from_the_type_key_or_the_extension() {
    use StoreType::*;
    let t = StoreType::from_property_or_file_name;
    assert_eq!(t(None, "/a/keystore.jks"), Ok(Jks));
    assert_eq!(t(None, "/a/keystore.p12"), Ok(Pkcs12));
    assert_eq!(t(None, "/a/b.c/keystore.pem"), Ok(Pem));
    assert_eq!(t(Some("pkcs12"), "/a/keystore.jks"), Ok(Pkcs12));
    assert_eq!(t(Some(" "), "/a/keystore.jks"), Ok(Jks));
    assert!(t(None, "/a/keystore.JKS").is_err(), "ZooKeeper compares extensions case-sensitively");
    assert!(t(None, "/a/keystore.pfx").is_err());
    assert!(t(None, "/a/keystore").is_err());
    assert!(t(None, "/a/keystore.bcfks").unwrap_err().contains("BCFKS"));
    assert!(t(Some("JCEKS"), "/a/keystore.jks").is_err());
}

#[test]
fn java_ec_keys_get_their_public_half_and_load_in_ring() {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let mut keys = Vec::new();
    for name in ["keystore-ec.jks", "keystore-ec.p12"] {
        let store = read(&fixture(name), PASSWORD).unwrap_or_else(|e| panic!("{name}: {e}"));
        let k = &store.keys[0];
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &k.pkcs8, &rng).unwrap_or_else(|e| panic!("{name}: ring refuses the key: {e}"));
        let (_, cert_point) = crate::x509::verify::public_key_parts(&k.chain[0]).unwrap();
        assert_eq!(pair.public_key().as_ref(), cert_point.as_slice(), "{name}: the key is the certificate's");
        keys.push(k.pkcs8.clone());
    }
    assert_eq!(keys[0], keys[1], "the same key from both stores");
    // An RSA key is left as it is.
    assert_eq!(read(&fixture("keystore.jks"), PASSWORD).unwrap().keys[0].pkcs8, fixture("server-key.pk8"));
}
