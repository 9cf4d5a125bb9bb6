//! Certificate checks as Java's PKIX trust manager and ZooKeeper's
//! `ZKHostnameVerifier` make them, for what webpki refuses: X.509 v1
//! certificates (`openssl x509 -req` without extensions, pyOpenSSL), which
//! Java accepts. Chain signatures (ring, through x509-parser), validity
//! dates, CA constraints and extended key usage are checked; nothing is skipped.

use std::net::IpAddr;
use x509_parser::prelude::*;

/// What the leaf certificate is presented for (its extended key usage, if any, must allow it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    ClientAuth,
    ServerAuth,
}

/// Paths longer than this are refused (Java's default `jdk.tls.maxCertificateChainLength` is 10).
const MAX_CHAIN: usize = 10;

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        Ok(_) => Err("certificate has trailing data".into()),
        Err(e) => Err(format!("malformed certificate ({e})")),
    }
}

/// True for an X.509 v3 certificate (webpki's ground); false for v1/v2 or unparsable.
pub fn is_v3(der: &[u8]) -> bool {
    parse(der).is_ok_and(|c| c.version() == X509Version::V3)
}

/// The certificate's SubjectPublicKeyInfo, DER (to match it with a private key).
pub fn public_key_info(der: &[u8]) -> Result<Vec<u8>, String> {
    Ok(parse(der)?.public_key().raw.to_vec())
}

/// The certificate's public key as TLS signatures are checked against it:
/// the contents of its AlgorithmIdentifier and the subjectPublicKey bits.
pub fn public_key_parts(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    use x509_parser::der_parser::asn1_rs::Any;
    let c = parse(der)?;
    let spki = c.public_key();
    let bad = |e: x509_parser::der_parser::asn1_rs::Err<_>| format!("malformed public key ({e})");
    let (_, outer) = Any::from_der(spki.raw).map_err(bad)?;
    let (_, alg) = Any::from_der(outer.data).map_err(bad)?;
    Ok((alg.data.to_vec(), spki.subject_public_key.data.to_vec()))
}

fn subject(c: &X509Certificate) -> String {
    c.subject().to_string()
}

fn check_dates(c: &X509Certificate, now: ASN1Time) -> Result<(), String> {
    let v = c.validity();
    if now < v.not_before {
        return Err(format!("certificate {} is not valid before {}", subject(c), v.not_before));
    }
    if now > v.not_after {
        return Err(format!("certificate {} expired at {}", subject(c), v.not_after));
    }
    Ok(())
}

/// Java's `ConstraintsChecker`: a v3 issuing certificate must be a CA; v1/v2
/// ones have no extensions to say so and are accepted, as Java does.
fn check_issuer(c: &X509Certificate) -> Result<(), String> {
    if c.version() != X509Version::V3 {
        return Ok(());
    }
    match c.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {}
        _ => return Err(format!("certificate {} issued another but is not a CA (basicConstraints)", subject(c))),
    }
    match c.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(format!("certificate {} issued another but its keyUsage lacks keyCertSign", subject(c))),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("certificate {}: bad keyUsage ({e})", subject(c))),
    }
}

fn check_purpose(c: &X509Certificate, purpose: Purpose) -> Result<(), String> {
    match c.extended_key_usage() {
        Ok(None) => Ok(()),
        Ok(Some(eku)) => {
            let e = eku.value;
            let ok = e.any || if purpose == Purpose::ClientAuth { e.client_auth } else { e.server_auth };
            if ok {
                Ok(())
            } else {
                Err(format!("certificate {} is not for {purpose:?} (extendedKeyUsage)", subject(c)))
            }
        }
        Err(e) => Err(format!("certificate {}: bad extendedKeyUsage ({e})", subject(c))),
    }
}

/// Checks that `leaf`, with the `intermediates` the peer sent, chains to one
/// of the trusted `anchors` at `now_unix` (seconds): each signature, each
/// certificate's dates (anchors' dates are not checked, as in PKIX), CA
/// constraints of intermediates, and the leaf's extended key usage.
pub fn verify_chain(leaf: &[u8], intermediates: &[&[u8]], anchors: &[Vec<u8>], now_unix: i64, purpose: Purpose) -> Result<(), String> {
    let now = ASN1Time::from_timestamp(now_unix).map_err(|e| format!("bad time: {e}"))?;
    let leaf_der = leaf;
    let leaf = parse(leaf)?;
    let anchors: Vec<_> = anchors.iter().filter_map(|a| parse(a).ok().map(|c| (a.as_slice(), c))).collect();
    let intermediates = intermediates.iter().map(|d| parse(d)).collect::<Result<Vec<_>, _>>()?;
    check_purpose(&leaf, purpose)?;
    // A trusted certificate presented as is (a self-signed peer in the trust store).
    if anchors.iter().any(|(der, _)| *der == leaf_der) {
        return check_dates(&leaf, now);
    }
    let mut current = &leaf;
    for _ in 0..MAX_CHAIN {
        check_dates(current, now)?;
        let signed_by =
            |issuer: &X509Certificate| issuer.subject().as_raw() == current.issuer().as_raw() && current.verify_signature(Some(issuer.public_key())).is_ok();
        if anchors.iter().any(|(_, a)| signed_by(a)) {
            return Ok(());
        }
        match intermediates.iter().find(|i| signed_by(i) && i.subject().as_raw() != current.subject().as_raw()) {
            Some(next) => {
                check_issuer(next)?;
                current = next;
            }
            None => return Err(format!("certificate {} is not signed by a trusted certificate (issuer {})", subject(current), current.issuer())),
        }
    }
    Err(format!("certificate chain of {} is longer than {MAX_CHAIN}", subject(&leaf)))
}

/// `ZKHostnameVerifier.verify`: an IP address must equal one of the
/// certificate's IP subject alternative names, a host name must match a DNS
/// one (a wildcard covers one label); only without DNS/IP alternative names
/// is the most specific common name compared instead.
pub fn verify_host(cert: &[u8], host: &str) -> Result<(), String> {
    let c = parse(cert)?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = c.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                    16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let host_ip = bare.parse::<IpAddr>().ok();
    if dns.is_empty() && ips.is_empty() {
        let cn = c.subject().iter_common_name().last().and_then(|a| a.as_str().ok().map(str::to_string));
        let cn = cn.ok_or_else(|| format!("certificate for <{host}> has neither a common name nor alternative names"))?;
        return if matches_identity(&host.to_lowercase(), &cn.to_lowercase()) {
            Ok(())
        } else {
            Err(format!("certificate for <{host}> doesn't match the common name of its subject: {cn}"))
        };
    }
    let ok = match host_ip {
        Some(ip) => ips.contains(&ip),
        None => dns.iter().any(|d| matches_identity(&host.to_lowercase(), &d.to_lowercase())),
    };
    if ok {
        Ok(())
    } else {
        let names: Vec<String> = dns.iter().cloned().chain(ips.iter().map(IpAddr::to_string)).collect();
        Err(format!("certificate for <{host}> doesn't match any of the subject alternative names: [{}]", names.join(", ")))
    }
}

/// `ZKHostnameVerifier.matchIdentityStrict` on lower-cased names.
fn matches_identity(host: &str, identity: &str) -> bool {
    let Some(star) = identity.find('*') else { return host == identity };
    let (prefix, suffix) = (&identity[..star], &identity[star + 1..]);
    if host.len() < prefix.len() + suffix.len() || !host.starts_with(prefix) || !host.ends_with(suffix) {
        return false;
    }
    !host[prefix.len()..host.len() - suffix.len()].contains('.')
}

#[cfg(test)]
mod tests {
    //! testdata/: ca.pem (v3 CA, "CN=fixture CA"), other-ca.pem (another key
    //! under the same name), leaf-v1.pem (`openssl x509 -req` without
    //! extensions: v1, "O=Warden, CN=localhost") and leaf-v3-server.pem (same
    //! key, serverAuth, SAN IP:127.0.0.1 and DNS:*.example.com), all made by
    //! openssl in December 2026 for 100 years; issued-by-leaf.pem is signed by
    //! that v3 leaf's key.
    use super::*;

    fn der(name: &str) -> Vec<u8> {
        let data = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/x509/testdata").join(name)).unwrap();
        x509_parser::pem::parse_x509_pem(&data).unwrap().1.contents
    }

    /// 2030-01-01, 2200-01-01 and 2000-01-01 (Unix seconds).
    const NOW: i64 = 1_893_456_000;
    const LATER: i64 = 7_258_118_400;
    const EARLIER: i64 = 946_684_800;

    #[test]
    fn a_v1_leaf_chains_to_its_ca() {
        let (leaf, ca) = (der("leaf-v1.pem"), der("ca.pem"));
        assert!(!is_v3(&leaf) && is_v3(&ca));
        verify_chain(&leaf, &[], std::slice::from_ref(&ca), NOW, Purpose::ClientAuth).unwrap();
        verify_chain(&leaf, &[], &[der("other-ca.pem"), ca.clone()], NOW, Purpose::ServerAuth).unwrap();
    }

    #[test]
    fn an_untrusted_forged_or_out_of_date_leaf_is_refused() {
        let (leaf, ca) = (der("leaf-v1.pem"), der("ca.pem"));
        let e = verify_chain(&leaf, &[], &[der("other-ca.pem")], NOW, Purpose::ClientAuth).unwrap_err();
        assert!(e.contains("not signed by a trusted certificate"), "same issuer name, other key: {e}");
        assert!(verify_chain(&leaf, &[], &[], NOW, Purpose::ClientAuth).is_err());
        // The CA is not trusted just because the peer sends it along.
        assert!(verify_chain(&leaf, &[&ca], &[der("other-ca.pem")], NOW, Purpose::ClientAuth).is_err());
        assert!(verify_chain(&leaf, &[], std::slice::from_ref(&ca), LATER, Purpose::ClientAuth).unwrap_err().contains("expired"));
        assert!(verify_chain(&leaf, &[], std::slice::from_ref(&ca), EARLIER, Purpose::ClientAuth).unwrap_err().contains("not valid before"));
        let mut forged = leaf.clone();
        let n = forged.len();
        forged[n - 10] ^= 0x01; // inside the signature
        assert!(verify_chain(&forged, &[], std::slice::from_ref(&ca), NOW, Purpose::ClientAuth).is_err());
        // The same bytes in the trust store are trusted as they are.
        verify_chain(&leaf, &[], std::slice::from_ref(&leaf), NOW, Purpose::ClientAuth).unwrap();
        assert!(verify_chain(&leaf, &[], std::slice::from_ref(&leaf), LATER, Purpose::ClientAuth).is_err());
    }

    #[test]
    fn extended_key_usage_limits_the_purpose() {
        let (leaf, ca) = (der("leaf-v3-server.pem"), der("ca.pem"));
        verify_chain(&leaf, &[], std::slice::from_ref(&ca), NOW, Purpose::ServerAuth).unwrap();
        let e = verify_chain(&leaf, &[], std::slice::from_ref(&ca), NOW, Purpose::ClientAuth).unwrap_err();
        assert!(e.contains("extendedKeyUsage"), "{e}");
    }

    #[test]
    fn a_leaf_cannot_issue_certificates() {
        // issued-by-leaf.pem: v1, signed with the v3 server leaf's key, which is no CA.
        let (gc, leaf, ca) = (der("issued-by-leaf.pem"), der("leaf-v3-server.pem"), der("ca.pem"));
        let e = verify_chain(&gc, &[&leaf], std::slice::from_ref(&ca), NOW, Purpose::ClientAuth).unwrap_err();
        assert!(e.contains("not a CA"), "{e}");
        // Trusting that leaf directly makes it an anchor, which PKIX does not check further.
        verify_chain(&gc, &[], std::slice::from_ref(&leaf), NOW, Purpose::ClientAuth).unwrap();
    }

    #[test]
    fn host_names_as_zookeeper_checks_them() {
        let (v1, v3) = (der("leaf-v1.pem"), der("leaf-v3-server.pem"));
        // No alternative names: the common name decides, case-insensitively.
        verify_host(&v1, "localhost").unwrap();
        verify_host(&v1, "LocalHost").unwrap();
        assert!(verify_host(&v1, "127.0.0.1").unwrap_err().contains("common name"));
        // Alternative names: IPs against IP entries, names against DNS entries, never the CN.
        verify_host(&v3, "127.0.0.1").unwrap();
        verify_host(&v3, "a.example.com").unwrap();
        assert!(verify_host(&v3, "a.b.example.com").is_err(), "a wildcard covers one label");
        assert!(verify_host(&v3, "localhost").unwrap_err().contains("subject alternative names"));
        assert!(verify_host(&v3, "127.0.0.2").is_err());
        assert!(verify_host(&v3, "::1").is_err());
        assert!(matches_identity("a.example.com", "a*.example.com"));
        assert!(!matches_identity("b.example.com", "a*.example.com"));
    }
}
