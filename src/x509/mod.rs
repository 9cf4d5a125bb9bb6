//! The subject of an X.509 certificate as ZooKeeper's x509 ACL scheme names
//! it: Java's `X500Principal.getName()`, i.e. RFC 2253 (`CN=client,O=Warden`).
//! A minimal DER walk, enough for the subject; no validation (the TLS layer
//! has verified the certificate already).

pub mod verify;

/// DER tag and contents of the next element; advances `input`.
fn next<'a>(input: &mut &'a [u8]) -> Result<(u8, &'a [u8]), String> {
    let (&tag, rest) = input.split_first().ok_or("truncated DER")?;
    let (&first, mut rest) = rest.split_first().ok_or("truncated DER length")?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err("unsupported DER length".into());
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err("DER element longer than its input".into());
    }
    let (content, after) = rest.split_at(len);
    *input = after;
    Ok((tag, content))
}

fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &str) -> Result<&'a [u8], String> {
    match next(input)? {
        (t, c) if t == tag => Ok(c),
        (t, _) => Err(format!("expected {what} (tag {tag:#x}), found tag {t:#x}")),
    }
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;

/// The certificate's subject in RFC 2253 form, as Java prints it.
pub fn subject_dn(cert_der: &[u8]) -> Result<String, String> {
    let mut input = cert_der;
    let mut cert = expect(&mut input, SEQUENCE, "Certificate")?;
    let mut tbs = expect(&mut cert, SEQUENCE, "TBSCertificate")?;
    if tbs.first() == Some(&0xa0) {
        next(&mut tbs)?; // [0] version
    }
    next(&mut tbs)?; // serialNumber
    next(&mut tbs)?; // signature algorithm
    next(&mut tbs)?; // issuer
    next(&mut tbs)?; // validity
    let name = expect(&mut tbs, SEQUENCE, "subject Name")?;
    rfc2253(name)
}

fn rfc2253(mut name: &[u8]) -> Result<String, String> {
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let mut set = expect(&mut name, SET, "RelativeDistinguishedName")?;
        let mut avas = Vec::new();
        while !set.is_empty() {
            let mut ava = expect(&mut set, SEQUENCE, "AttributeTypeAndValue")?;
            let oid = expect(&mut ava, 0x06, "attribute OID")?;
            let value_start = ava;
            let (vtag, value) = next(&mut ava)?;
            let value_der = &value_start[..value_start.len() - ava.len()];
            let oid = oid_string(oid)?;
            avas.push(match (keyword(&oid), string_value(vtag, value)) {
                (Some(k), Some(text)) => format!("{k}={}", escape(&text)),
                _ => format!("{oid}=#{}", value_der.iter().map(|b| format!("{b:02x}")).collect::<String>()),
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

fn string_value(tag: u8, v: &[u8]) -> Option<String> {
    match tag {
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(v.to_vec()).ok(), // UTF8, Printable, IA5, T61
        0x1e => {
            let units: Vec<u16> = v.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok() // BMPString
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

fn oid_string(bytes: &[u8]) -> Result<String, String> {
    let mut arcs = Vec::new();
    let mut acc: u64 = 0;
    for &b in bytes {
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    let (&first, rest) = arcs.split_first().ok_or("empty OID")?;
    let (a, b) = if first < 80 { (first / 40, first % 40) } else { (2, first - 80) };
    let mut s = format!("{a}.{b}");
    for r in rest {
        s += &format!(".{r}");
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 128 {
            v.push(content.len() as u8);
        } else {
            v.extend([0x82, (content.len() >> 8) as u8, content.len() as u8]);
        }
        v.extend_from_slice(content);
        v
    }

    fn ava(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(SEQUENCE, &[tlv(0x06, oid), tlv(tag, value)].concat())
    }

    fn cert_with_subject(rdns: &[Vec<u8>]) -> Vec<u8> {
        let name = tlv(SEQUENCE, &rdns.concat());
        let tbs = [tlv(0xa0, &tlv(0x02, &[2])), tlv(0x02, &[1]), tlv(SEQUENCE, &[]), tlv(SEQUENCE, &[]), tlv(SEQUENCE, &[]), name].concat();
        tlv(SEQUENCE, &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0])].concat())
    }

    #[test]
    fn reversed_rdns_keywords_and_escapes() {
        let cn = [0x55, 0x04, 0x03];
        let o = [0x55, 0x04, 0x0a];
        let c = [0x55, 0x04, 0x06];
        let email = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        let der = cert_with_subject(&[
            tlv(SET, &ava(&c, 0x13, b"DE")),
            tlv(SET, &ava(&o, 0x0c, b"Warden, Inc")),
            tlv(SET, &[ava(&cn, 0x0c, b"client"), ava(&email, 0x16, b"a@b")].concat()),
        ]);
        assert_eq!(subject_dn(&der).unwrap(), "CN=client+1.2.840.113549.1.9.1=#1603614062,O=Warden\\, Inc,C=DE");
    }

    #[test]
    fn truncated_input_is_an_error() {
        let der = cert_with_subject(&[tlv(SET, &ava(&[0x55, 4, 3], 0x0c, b"x"))]);
        assert!(subject_dn(&der[..der.len() - 20]).is_err());
        assert!(subject_dn(&[]).is_err());
    }
}
