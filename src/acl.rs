//! ACL schemes world, auth, digest, ip and super, as ZooKeeper's
//! `ZooKeeperServer.checkACL`, `PrepRequestProcessor.fixupACL` and auth providers.

use crate::error::{Code, ZkResult};
use crate::proto::{Acl, Id};
use base64::Engine;
use sha1::{Digest, Sha1};
use std::net::IpAddr;

/// `user:password` -> `user:base64(sha1(user:password))`, as DigestAuthenticationProvider.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// The identities an `addAuth` packet adds to a connection, or AuthFailed.
/// `super_digest` is `zookeeper.DigestAuthenticationProvider.superDigest`.
pub fn authenticate(scheme: &str, auth: &[u8], client_ip: &str, super_digest: Option<&str>) -> ZkResult<Vec<Id>> {
    match scheme {
        "digest" => {
            let text = std::str::from_utf8(auth).map_err(|_| Code::AuthFailed)?;
            let id = digest(text);
            let mut ids = Vec::with_capacity(2);
            if super_digest == Some(id.as_str()) {
                ids.push(Id::new("super", ""));
            }
            ids.push(Id::new("digest", &id));
            Ok(ids)
        }
        "ip" => Ok(vec![Id::new("ip", client_ip)]),
        _ => Err(Code::AuthFailed),
    }
}

/// Whether `ids` grant `perm` on a node with `acl`.
pub fn check(acl: &[Acl], perm: i32, ids: &[Id]) -> ZkResult<()> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl.iter().filter(|a| a.perms & perm != 0) {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        let granted = ids.iter().any(|i| {
            i.scheme == a.id.scheme
                && match a.id.scheme.as_str() {
                    "ip" => ip_matches(&i.id, &a.id.id),
                    "digest" | "sasl" | "x509" => i.id == a.id.id,
                    _ => false,
                }
        });
        if granted {
            return Ok(());
        }
    }
    Err(Code::NoAuth)
}

/// Validates a requested ACL and expands the `auth` scheme into the caller's
/// authenticated identities; duplicates are dropped, order kept.
pub fn fixup(acl: &[Acl], ids: &[Id]) -> ZkResult<Vec<Acl>> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(Code::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    for a in unique {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                // Only schemes that prove who you are (not ip) stand in for `auth`.
                let authenticated: Vec<&Id> = ids.iter().filter(|i| matches!(i.scheme.as_str(), "digest" | "sasl" | "x509")).collect();
                if authenticated.is_empty() {
                    return Err(Code::InvalidAcl);
                }
                out.extend(authenticated.into_iter().map(|i| Acl { perms: a.perms, id: i.clone() }));
            }
            "digest" if digest_id_is_valid(&a.id.id) => out.push(a.clone()),
            "ip" if ip_expr_is_valid(&a.id.id) => out.push(a.clone()),
            "sasl" if kerberos_name_is_valid(&a.id.id) => out.push(a.clone()),
            "x509" if x500_name_is_valid(&a.id.id) => out.push(a.clone()),
            _ => return Err(Code::InvalidAcl),
        }
    }
    Ok(out)
}

/// Java's `id.split(":").length == 2` (trailing empty parts dropped).
fn digest_id_is_valid(id: &str) -> bool {
    let mut parts: Vec<&str> = id.split(':').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    parts.len() == 2
}

/// SASLAuthenticationProvider.isValid: Java's KerberosName accepts a name
/// without '@', or `service[/host]@REALM`.
fn kerberos_name_is_valid(id: &str) -> bool {
    match id.split_once('@') {
        None => true,
        Some((principal, realm)) => !realm.contains(['@', '/']) && principal.matches('/').count() <= 1,
    }
}

/// Loosely X509AuthenticationProvider.isValid (new X500Principal(id)):
/// empty, or every RDN is `type=value`.
fn x500_name_is_valid(id: &str) -> bool {
    id.is_empty() || id.split(',').all(|rdn| rdn.split_once('=').is_some_and(|(t, _)| !t.trim().is_empty()))
}

fn parse_ip_expr(expr: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b.parse::<u32>().ok().filter(|b| *b <= max)?,
        None => max,
    };
    Some((addr, bits))
}

fn ip_expr_is_valid(expr: &str) -> bool {
    parse_ip_expr(expr).is_some()
}

fn ip_bits(addr: IpAddr) -> (u128, u32) {
    match addr {
        IpAddr::V4(a) => (u32::from(a) as u128, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// Whether client address `id` falls in `expr` (`addr` or `addr/bits`).
pub fn ip_matches(id: &str, expr: &str) -> bool {
    let (Some((acl_addr, bits)), Ok(client)) = (parse_ip_expr(expr), id.parse::<IpAddr>()) else {
        return false;
    };
    let ((a, width), (c, client_width)) = (ip_bits(acl_addr), ip_bits(client));
    if width != client_width {
        return false;
    }
    let shift = width - bits;
    shift >= width || (a >> shift) == (c >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::perms;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl { perms, id: Id::new(scheme, id) }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // Value from ZooKeeper's documentation of DigestAuthenticationProvider.
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn world_digest_ip_and_super_checks() {
        let ip = vec![Id::new("ip", "127.0.0.1")];
        assert!(check(&[Acl::world_all()], perms::READ, &ip).is_ok());
        let secret = vec![acl(perms::READ, "digest", &digest("u:p"))];
        assert_eq!(check(&secret, perms::READ, &ip), Err(Code::NoAuth));
        let user = authenticate("digest", b"u:p", "127.0.0.1", None).unwrap();
        assert!(check(&secret, perms::READ, &user).is_ok());
        assert_eq!(check(&secret, perms::WRITE, &user), Err(Code::NoAuth));
        let sup = authenticate("digest", b"super:test", "127.0.0.1", Some(&digest("super:test"))).unwrap();
        assert!(check(&secret, perms::WRITE, &sup).is_ok());
        let local = vec![acl(perms::ALL, "ip", "127.0.0.0/8")];
        assert!(check(&local, perms::DELETE, &ip).is_ok());
        assert_eq!(check(&local, perms::DELETE, &[Id::new("ip", "10.0.0.1")]), Err(Code::NoAuth));
        assert!(check(&[], perms::ADMIN, &[]).is_ok(), "an empty ACL grants everything, as ZooKeeper");
    }

    #[test]
    fn fixup_expands_auth_and_rejects_bad_ids() {
        let ids = vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "u:h")];
        let fixed = fixup(&[acl(perms::ALL, "auth", ""), acl(perms::ALL, "auth", "")], &ids).unwrap();
        assert_eq!(fixed, vec![acl(perms::ALL, "digest", "u:h")]);
        assert_eq!(fixup(&[acl(perms::ALL, "auth", "")], &ids[..1]), Err(Code::InvalidAcl));
        assert_eq!(fixup(&[], &ids), Err(Code::InvalidAcl));
        assert_eq!(fixup(&[acl(perms::ALL, "world", "someone")], &ids), Err(Code::InvalidAcl));
        assert_eq!(fixup(&[acl(perms::ALL, "digest", "nocolon")], &ids), Err(Code::InvalidAcl));
        assert_eq!(fixup(&[acl(perms::ALL, "ip", "300.1.1.1")], &ids), Err(Code::InvalidAcl));
        assert_eq!(fixup(&[acl(perms::ALL, "bogus", "x")], &ids), Err(Code::InvalidAcl));
        assert!(fixup(&[acl(perms::ALL, "ip", "::1/128")], &ids).is_ok());
        assert!(fixup(&[acl(perms::ALL, "sasl", "bob")], &ids).is_ok());
        assert!(fixup(&[acl(perms::ALL, "sasl", "zk/host@EXAMPLE.COM")], &ids).is_ok());
        assert_eq!(fixup(&[acl(perms::ALL, "sasl", "a@b@c")], &ids), Err(Code::InvalidAcl));
        assert!(fixup(&[acl(perms::ALL, "x509", "CN=client,O=Warden")], &ids).is_ok());
        assert_eq!(fixup(&[acl(perms::ALL, "x509", "client")], &ids), Err(Code::InvalidAcl));
    }

    #[test]
    fn sasl_and_x509_identities_match_exactly_and_stand_for_auth() {
        let ids = vec![Id::new("ip", "127.0.0.1"), Id::new("x509", "CN=client,O=Warden"), Id::new("sasl", "bob")];
        assert!(check(&[acl(perms::READ, "x509", "CN=client,O=Warden")], perms::READ, &ids).is_ok());
        assert_eq!(check(&[acl(perms::READ, "x509", "CN=other,O=Warden")], perms::READ, &ids), Err(Code::NoAuth));
        assert!(check(&[acl(perms::READ, "sasl", "bob")], perms::READ, &ids).is_ok());
        let fixed = fixup(&[acl(perms::ALL, "auth", "")], &ids).unwrap();
        assert_eq!(fixed, vec![acl(perms::ALL, "x509", "CN=client,O=Warden"), acl(perms::ALL, "sasl", "bob")]);
    }

    #[test]
    fn unknown_auth_scheme_fails() {
        assert_eq!(authenticate("kerberos", b"x", "127.0.0.1", None), Err(Code::AuthFailed));
    }
}
