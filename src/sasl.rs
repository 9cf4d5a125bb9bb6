//! SASL for the client port: the server side of DIGEST-MD5 (RFC 2831) as
//! ZooKeeper's Java server speaks it, and the JAAS `Server` section that
//! holds its users. Pure: the nonce and the password lookup are inputs.
//!
//! Only qop=auth is offered; auth-int and auth-conf (integrity, encryption)
//! are refused, as are initial responses and reauthentication.

use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::fmt::Write;

/// ZooKeeper's fixed DIGEST-MD5 realm, protocol and server name
/// (`ZooKeeperSaslServer.createSaslServer`).
pub const ZK_REALM: &str = "zk-sasl-md5";
pub const ZK_DIGEST_URI: &str = "zookeeper/zk-sasl-md5";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this token and expect another response.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send `token` (rspauth) as the final reply.
    Done { token: Vec<u8>, user: String },
    /// Authentication failed; the reason is for the log, not the client.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    Challenged,
    Finished,
}

pub struct DigestMd5Server {
    realm: String,
    digest_uri: String,
    nonce: String,
    stage: Stage,
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl DigestMd5Server {
    /// ZooKeeper's server: realm and digest-uri fixed, `nonce` fresh and random.
    pub fn zookeeper(nonce: &str) -> Self {
        Self::new(ZK_REALM, ZK_DIGEST_URI, nonce)
    }

    pub fn new(realm: &str, digest_uri: &str, nonce: &str) -> Self {
        DigestMd5Server { realm: realm.into(), digest_uri: digest_uri.into(), nonce: nonce.into(), stage: Stage::Start }
    }

    pub fn is_complete(&self) -> bool {
        self.stage == Stage::Finished
    }

    /// Evaluates one client token. `password_of` looks a user up.
    pub fn step(&mut self, token: &[u8], password_of: impl Fn(&str) -> Option<String>) -> Step {
        match self.stage {
            Stage::Start if !token.is_empty() => {
                self.stage = Stage::Finished;
                Step::Failed("the client sent an initial response: only DIGEST-MD5 is supported (GSSAPI and other mechanisms are refused)".into())
            }
            Stage::Start => {
                self.stage = Stage::Challenged;
                // As Java's DIGEST-MD5 server: no qop directive means auth only.
                let c = format!("realm=\"{}\",nonce=\"{}\",charset=utf-8,algorithm=md5-sess", self.realm, self.nonce);
                Step::Continue(c.into_bytes())
            }
            Stage::Challenged => {
                self.stage = Stage::Finished;
                match self.verify(token, password_of) {
                    Ok((user, rspauth)) => Step::Done { token: format!("rspauth={rspauth}").into_bytes(), user },
                    Err(why) => Step::Failed(why),
                }
            }
            Stage::Finished => Step::Failed("DIGEST-MD5 authentication already complete".into()),
        }
    }

    fn verify(&self, token: &[u8], password_of: impl Fn(&str) -> Option<String>) -> Result<(String, String), String> {
        let text = std::str::from_utf8(token).map_err(|_| "digest-response is not UTF-8".to_string())?;
        let d = parse_directives(text)?;
        let get = |k: &str| d.get(k).map(String::as_str);
        let need = |k: &str| get(k).ok_or_else(|| format!("digest-response lacks {k}"));
        let user = need("username")?;
        let realm = get("realm").unwrap_or("");
        if !realm.is_empty() && realm != self.realm {
            return Err(format!("realm {realm:?} is not {:?}", self.realm));
        }
        if need("nonce")? != self.nonce {
            return Err("nonce does not match the challenge".into());
        }
        let cnonce = need("cnonce")?;
        let nc = need("nc")?;
        if u32::from_str_radix(nc, 16) != Ok(1) {
            return Err(format!("nonce-count {nc} is not 00000001"));
        }
        let qop = get("qop").unwrap_or("auth");
        if qop != "auth" {
            return Err(format!("qop {qop} is not supported (only auth)"));
        }
        let uri = need("digest-uri")?;
        if !uri.eq_ignore_ascii_case(&self.digest_uri) {
            return Err(format!("digest-uri {uri:?} is not {:?}", self.digest_uri));
        }
        let response = need("response")?;
        let password = password_of(user).ok_or_else(|| format!("user {user:?} is not in the JAAS Server section"))?;
        let authzid = get("authzid");
        let ha1 = {
            let secret = md5(&[user.as_bytes(), b":", realm.as_bytes(), b":", password.as_bytes()]);
            let mut parts: Vec<&[u8]> = vec![&secret, b":", self.nonce.as_bytes(), b":", cnonce.as_bytes()];
            if let Some(z) = authzid {
                parts.extend([b":".as_slice(), z.as_bytes()]);
            }
            hex(&md5(&parts))
        };
        let kd = |a2: &str| {
            let ha2 = hex(&md5(&[a2.as_bytes()]));
            hex(&md5(&[ha1.as_bytes(), b":", self.nonce.as_bytes(), b":", nc.as_bytes(), b":", cnonce.as_bytes(), b":", qop.as_bytes(), b":", ha2.as_bytes()]))
        };
        if !kd(&format!("AUTHENTICATE:{uri}")).eq_ignore_ascii_case(response) {
            return Err(format!("wrong password for user {user:?}"));
        }
        Ok((user.to_string(), kd(&format!(":{uri}"))))
    }
}

/// ZooKeeper's quorum DIGEST-MD5 realm and digest-uri (`SaslQuorumAuthServer`).
pub const ZK_QUORUM_REALM: &str = "zk-quorum-sasl-md5";
pub const ZK_QUORUM_DIGEST_URI: &str = "zookeeper-quorum/zk-quorum-sasl-md5";

/// The client side of DIGEST-MD5 (qop auth), as a quorum learner uses it.
pub struct DigestMd5Client {
    user: String,
    password: String,
    digest_uri: String,
    cnonce: String,
    /// (HA1, nonce) once the challenge is answered, to check rspauth.
    sent: Option<(String, String)>,
}

impl DigestMd5Client {
    pub fn new(user: &str, password: &str, digest_uri: &str, cnonce: &str) -> Self {
        DigestMd5Client { user: user.into(), password: password.into(), digest_uri: digest_uri.into(), cnonce: cnonce.into(), sent: None }
    }

    /// The digest-response to a server's challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, String> {
        let d = parse_directives(std::str::from_utf8(challenge).map_err(|_| "challenge is not UTF-8".to_string())?)?;
        let nonce = d.get("nonce").ok_or("challenge lacks a nonce")?.clone();
        let realm = d.get("realm").cloned().unwrap_or_default();
        let secret = md5(&[self.user.as_bytes(), b":", realm.as_bytes(), b":", self.password.as_bytes()]);
        let ha1 = hex(&md5(&[&secret, b":", nonce.as_bytes(), b":", self.cnonce.as_bytes()]));
        let response = self.kd(&ha1, &nonce, &format!("AUTHENTICATE:{}", self.digest_uri));
        let text = format!(
            "charset=utf-8,username=\"{}\",realm=\"{realm}\",nonce=\"{nonce}\",nc=00000001,cnonce=\"{}\",digest-uri=\"{}\",maxbuf=65536,response={response},qop=auth",
            self.user, self.cnonce, self.digest_uri
        );
        self.sent = Some((ha1, nonce));
        Ok(text.into_bytes())
    }

    /// Checks the server's final `rspauth=...`: it knew the password too.
    pub fn verify(&self, token: &[u8]) -> Result<(), String> {
        let (ha1, nonce) = self.sent.as_ref().ok_or("no challenge was answered")?;
        let d = parse_directives(std::str::from_utf8(token).map_err(|_| "rspauth is not UTF-8".to_string())?)?;
        let got = d.get("rspauth").ok_or("the server's answer lacks rspauth")?;
        if got.eq_ignore_ascii_case(&self.kd(ha1, nonce, &format!(":{}", self.digest_uri))) {
            Ok(())
        } else {
            Err("the server's rspauth does not match: it does not know the password".into())
        }
    }

    fn kd(&self, ha1: &str, nonce: &str, a2: &str) -> String {
        let ha2 = hex(&md5(&[a2.as_bytes()]));
        hex(&md5(&[ha1.as_bytes(), b":", nonce.as_bytes(), b":00000001:", self.cnonce.as_bytes(), b":auth:", ha2.as_bytes()]))
    }
}

/// The `username` / `password` options of a JAAS section (ZooKeeper's
/// `QuorumLearner` section with DigestLoginModule).
pub fn digest_credentials(text: &str, section: &str) -> Result<(String, String), String> {
    let sections = parse_jaas(text)?;
    let entries = sections.get(section).ok_or_else(|| format!("no '{section}' section"))?;
    let option = |k: &str| entries.iter().flat_map(|e| &e.options).find(|(key, _)| key == k).map(|(_, v)| v.clone());
    match (option("username"), option("password")) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err(format!("section '{section}' needs username=\"...\" and password=\"...\"")),
    }
}

/// RFC 2831 `key=value` / `key="quoted"` list; keys lower-cased, a key seen
/// twice is an error (RFC 2831 requires most to appear at most once).
pub fn parse_directives(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("directive {key:?} has no value"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => return Err(format!("directive {key:?} has an unterminated quote")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim_end().to_string();
        }
        if out.insert(key.to_ascii_lowercase(), value).is_some() {
            return Err(format!("directive {key:?} appears twice"));
        }
    }
}

/// One `LoginModule flag key=value ...;` entry of a JAAS section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaasEntry {
    pub module: String,
    pub flag: String,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Quoted(String),
    Sym(char),
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => while it.next().is_some_and(|c| c != '\n') {},
            '/' if it.peek() == Some(&'/') => while it.next().is_some_and(|c| c != '\n') {},
            '/' if it.peek() == Some(&'*') => {
                it.next();
                let mut prev = ' ';
                loop {
                    match it.next() {
                        Some('/') if prev == '*' => break,
                        Some(c) => prev = c,
                        None => return Err("unterminated /* comment".into()),
                    }
                }
            }
            '{' | '}' | ';' | '=' => toks.push(Tok::Sym(c)),
            '"' | '\'' => {
                let mut s = String::new();
                loop {
                    match it.next() {
                        Some('\\') => s.extend(it.next()),
                        Some(q) if q == c => break,
                        Some(ch) => s.push(ch),
                        None => return Err("unterminated quoted string".into()),
                    }
                }
                toks.push(Tok::Quoted(s));
            }
            c => {
                let mut s = c.to_string();
                while let Some(&n) = it.peek() {
                    if n.is_whitespace() || "{};=\"'".contains(n) {
                        break;
                    }
                    s.push(n);
                    it.next();
                }
                toks.push(Tok::Word(s));
            }
        }
    }
    Ok(toks)
}

/// Parses a JAAS login configuration file into its named sections.
pub fn parse_jaas(text: &str) -> Result<BTreeMap<String, Vec<JaasEntry>>, String> {
    let toks = tokenize(text)?;
    let mut sections = BTreeMap::new();
    let mut i = 0;
    let word = |i: usize, what: &str| match toks.get(i) {
        Some(Tok::Word(w)) => Ok(w.clone()),
        other => Err(format!("expected {what}, found {}", show(other))),
    };
    let sym = |i: usize, c: char| match toks.get(i) {
        Some(Tok::Sym(s)) if *s == c => Ok(()),
        other => Err(format!("expected '{c}', found {}", show(other))),
    };
    while i < toks.len() {
        let name = word(i, "a section name")?;
        sym(i + 1, '{')?;
        i += 2;
        let mut entries = Vec::new();
        while toks.get(i) != Some(&Tok::Sym('}')) {
            let module = word(i, &format!("a login module class or '}}' in section {name}"))?;
            let flag = word(i + 1, &format!("a control flag after {module}"))?;
            if !["required", "requisite", "sufficient", "optional"].contains(&flag.to_ascii_lowercase().as_str()) {
                return Err(format!("{module}: control flag {flag:?} is not required, requisite, sufficient or optional"));
            }
            i += 2;
            let mut options = Vec::new();
            while toks.get(i) != Some(&Tok::Sym(';')) {
                let key = word(i, &format!("an option or ';' after {module}"))?;
                sym(i + 1, '=')?;
                let value = match toks.get(i + 2) {
                    Some(Tok::Quoted(v)) | Some(Tok::Word(v)) => v.clone(),
                    other => return Err(format!("option {key}: expected a value, found {}", show(other))),
                };
                options.push((key, value));
                i += 3;
            }
            i += 1;
            entries.push(JaasEntry { module, flag, options });
        }
        sym(i + 1, ';')?;
        i += 2;
        sections.insert(name, entries);
    }
    Ok(sections)
}

fn show(t: Option<&Tok>) -> String {
    match t {
        None => "the end of the file".into(),
        Some(Tok::Word(w)) => format!("{w:?}"),
        Some(Tok::Quoted(q)) => format!("\"{q}\""),
        Some(Tok::Sym(c)) => format!("'{c}'"),
    }
}

/// DIGEST-MD5 users (`user_NAME="password"` options) of `section`, as
/// ZooKeeper's `SaslServerCallbackHandler` reads them.
pub fn digest_users(text: &str, section: &str) -> Result<BTreeMap<String, String>, String> {
    let sections = parse_jaas(text)?;
    let entries = sections.get(section).ok_or_else(|| format!("no '{section}' section (ZooKeeper's server reads its users from 'Server')"))?;
    let mut users = BTreeMap::new();
    for e in entries {
        for (k, v) in &e.options {
            if let Some(name) = k.strip_prefix("user_") {
                users.insert(name.to_string(), v.clone());
            }
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_server() -> DigestMd5Server {
        DigestMd5Server::new("elwood.innosoft.com", "imap/elwood.innosoft.com", "OA6MG9tEQGm2hh")
    }

    const RFC_RESPONSE: &str = "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",nc=00000001,cnonce=\"OA6MHXh6VqTrRk\",digest-uri=\"imap/elwood.innosoft.com\",response=d388dad90d4bbd760a152321f2143af7,qop=auth";

    fn chris(u: &str) -> Option<String> {
        (u == "chris").then(|| "secret".to_string())
    }

    #[test]
    fn client_matches_the_rfc_example_and_checks_rspauth() {
        let mut c = DigestMd5Client::new("chris", "secret", "imap/elwood.innosoft.com", "OA6MHXh6VqTrRk");
        let mut s = rfc_server();
        let Step::Continue(challenge) = s.step(b"", chris) else { panic!() };
        let response = c.respond(&challenge).unwrap();
        assert!(String::from_utf8_lossy(&response).contains("response=d388dad90d4bbd760a152321f2143af7"));
        let Step::Done { token, user } = s.step(&response, chris) else { panic!("the server accepts the client") };
        assert_eq!(user, "chris");
        c.verify(&token).unwrap();
        assert!(c.verify(b"rspauth=00000000000000000000000000000000").is_err(), "a server without the password is caught");
        let mut wrong = DigestMd5Client::new("chris", "guess", "imap/elwood.innosoft.com", "x");
        let mut s = rfc_server();
        let Step::Continue(challenge) = s.step(b"", chris) else { panic!() };
        assert!(matches!(s.step(&wrong.respond(&challenge).unwrap(), chris), Step::Failed(_)));
    }

    #[test]
    fn learner_credentials_from_jaas() {
        let jaas = "QuorumLearner { org.apache.zookeeper.server.auth.DigestLoginModule required username=\"test\" password=\"pw\"; };";
        assert_eq!(digest_credentials(jaas, "QuorumLearner").unwrap(), ("test".into(), "pw".into()));
        assert!(digest_credentials(jaas, "QuorumServer").is_err());
    }

    #[test]
    fn rfc2831_example_exchange() {
        let mut s = rfc_server();
        let Step::Continue(challenge) = s.step(b"", chris) else { panic!("expected a challenge") };
        let c = parse_directives(std::str::from_utf8(&challenge).unwrap()).unwrap();
        assert_eq!(c["realm"], "elwood.innosoft.com");
        assert_eq!(c["nonce"], "OA6MG9tEQGm2hh");
        assert!(!c.contains_key("qop"), "no qop offered means auth only");
        assert_eq!(c["algorithm"], "md5-sess");
        let done = s.step(RFC_RESPONSE.as_bytes(), chris);
        assert_eq!(done, Step::Done { token: b"rspauth=ea40f60335c427b5527b84dbabcdfffd".to_vec(), user: "chris".into() });
        assert!(s.is_complete());
        assert!(matches!(s.step(b"", chris), Step::Failed(_)));
    }

    #[test]
    fn wrong_password_unknown_user_and_bad_fields_fail() {
        type Case = (String, fn(&str) -> Option<String>, &'static str);
        let cases: Vec<Case> = vec![
            (RFC_RESPONSE.into(), |_| Some("nope".into()), "wrong password"),
            (RFC_RESPONSE.into(), |_| None, "not in the JAAS"),
            (RFC_RESPONSE.replace("OA6MG9tEQGm2hh\"", "other\""), chris, "nonce"),
            (RFC_RESPONSE.replace("nc=00000001", "nc=00000002"), chris, "nonce-count"),
            (RFC_RESPONSE.replace("qop=auth", "qop=auth-conf"), chris, "only auth"),
            (RFC_RESPONSE.replace("imap/", "smtp/"), chris, "digest-uri"),
            (RFC_RESPONSE.replace("realm=\"elwood", "realm=\"x"), chris, "realm"),
            (RFC_RESPONSE.replace("cnonce=\"OA6MHXh6VqTrRk\",", ""), chris, "lacks cnonce"),
            ("username=\"a\",username=\"b\"".into(), chris, "twice"),
        ];
        for (resp, lookup, why) in cases {
            let mut s = rfc_server();
            assert!(matches!(s.step(b"", lookup), Step::Continue(_)));
            match s.step(resp.as_bytes(), lookup) {
                Step::Failed(reason) => assert!(reason.contains(why), "{reason} should mention {why}"),
                other => panic!("{resp}: expected failure, got {other:?}"),
            }
        }
    }

    #[test]
    fn initial_response_is_refused() {
        let mut s = DigestMd5Server::zookeeper("n");
        assert!(matches!(s.step(b"username=x", chris), Step::Failed(_)));
    }

    #[test]
    fn zookeeper_challenge_names_its_realm() {
        let mut s = DigestMd5Server::zookeeper("abc");
        let Step::Continue(c) = s.step(b"", chris) else { panic!() };
        assert_eq!(std::str::from_utf8(&c).unwrap(), "realm=\"zk-sasl-md5\",nonce=\"abc\",charset=utf-8,algorithm=md5-sess");
    }

    #[test]
    fn directives_unquote_and_escape() {
        let d = parse_directives(" a = 1 , b=\"x\\\"y,z\",C=\"\"").unwrap();
        assert_eq!((d["a"].as_str(), d["b"].as_str(), d["c"].as_str()), ("1", "x\"y,z", ""));
        assert!(parse_directives("a=\"open").is_err());
        assert!(parse_directives("novalue").is_err());
    }

    const JAAS: &str = r#"
        // ZooKeeper's documented example, plus comments and a client section.
        Server {
            org.apache.zookeeper.server.auth.DigestLoginModule required
            user_super="adminsecret"
            user_bob="bob;secret=1";   /* quoted punctuation */
        };
        Client {
            org.apache.zookeeper.server.auth.DigestLoginModule required username="bob" password=plain;
        };
    "#;

    #[test]
    fn jaas_server_users() {
        let users = digest_users(JAAS, "Server").unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users["bob"], "bob;secret=1");
        assert_eq!(users["super"], "adminsecret");
        let sections = parse_jaas(JAAS).unwrap();
        assert_eq!(sections["Client"][0].options[1], ("password".into(), "plain".into()));
        assert!(digest_users(JAAS, "Other").unwrap_err().contains("no 'Other' section"));
    }

    #[test]
    fn jaas_errors_are_clear() {
        let e = parse_jaas("Server { M required user_a=\"x\" }; ").unwrap_err();
        assert!(e.contains("expected an option or ';'"), "{e}");
        let e = parse_jaas("Server { M mandatory; };").unwrap_err();
        assert!(e.contains("control flag"), "{e}");
        let e = parse_jaas("Server { M required; }").unwrap_err();
        assert!(e.contains("expected ';', found the end"), "{e}");
        assert!(parse_jaas("Server { M required a=\"x; };").is_err());
    }
}
