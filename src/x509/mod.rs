//! The subject of an X.509 certificate as ZooKeeper's x509 ACL scheme names
//! it: Java's `X500Principal.getName()`, i.e. RFC 2253 (`CN=client,O=Warden`),
//! from the certificate as x509-parser reads it (the TLS layer has verified
//! the certificate already).

pub mod verify;

use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

/// The certificate's subject in RFC 2253 form, as Java prints it.
pub fn subject_dn(cert_der: &[u8]) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| format!("malformed certificate ({e})"))?;
    rfc2253(cert.subject())
}

/// RDNs most specific first, AVAs of one RDN in encoded order joined by
/// '+'; known keywords with escaped text, others as `OID=#<DER hex>`.
fn rfc2253(name: &X509Name) -> Result<String, String> {
    let mut rdns = Vec::new();
    for rdn in name.iter() {
        let mut avas = Vec::new();
        for ava in rdn.iter() {
            let oid = ava.attr_type().to_id_string();
            let value = ava.attr_value();
            avas.push(match (keyword(&oid), string_value(value)) {
                (Some(k), Some(text)) => format!("{k}={}", escape(&text)),
                _ => {
                    let der = value.to_der_vec().map_err(|e| format!("malformed attribute value ({e})"))?;
                    format!("{oid}=#{}", der.iter().map(|b| format!("{b:02x}")).collect::<String>())
                }
            });
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// The attribute keywords Java's RFC 2253 output uses; others print as OIDs.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

fn string_value(v: &Any) -> Option<String> {
    match v.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::T61String => String::from_utf8(v.data.to_vec()).ok(),
        Tag::BmpString => {
            let units: Vec<u16> = v.data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let n = s.chars().count();
    for (i, c) in s.chars().enumerate() {
        let special = ",+\"\\<>;".contains(c) || (i == 0 && (c == '#' || c == ' ')) || (i + 1 == n && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(name: &str) -> Vec<u8> {
        let data = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/x509/testdata").join(name)).unwrap();
        x509_parser::pem::parse_x509_pem(&data).unwrap().1.contents
    }

    #[test]
    fn reversed_rdns_keywords_and_escapes_as_java_prints_them() {
        // dn.pem: openssl -multivalue-rdn -subj "/C=DE/O=Warden, Inc/CN=client+emailAddress=a@b";
        // the expected strings are what Java 17's X500Principal.getName() prints for these files.
        assert_eq!(subject_dn(&der("dn.pem")).unwrap(), "CN=client+1.2.840.113549.1.9.1=#1603614062,O=Warden\\, Inc,C=DE");
        assert_eq!(subject_dn(&der("leaf-v1.pem")).unwrap(), "CN=localhost,O=Warden", "an X.509 v1 certificate");
    }

    #[test]
    fn escapes_follow_rfc_2253() {
        assert_eq!(escape("#a b "), "\\#a b\\ ");
        assert_eq!(escape("a+b;c<d>\"e\\"), "a\\+b\\;c\\<d\\>\\\"e\\\\");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let cert = der("dn.pem");
        assert!(subject_dn(&cert[..cert.len() / 2]).is_err());
        assert!(subject_dn(&[]).is_err());
    }
}
