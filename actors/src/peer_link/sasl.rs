//! Quorum SASL (`quorum.auth.*`): DIGEST-MD5 on each peer link right after
//! the Hello, the dialer authenticating with its JAAS `QuorumLearner`
//! credentials to the listener's `QuorumServer` users, as ZooKeeper's
//! SaslQuorumAuthLearner / SaslQuorumAuthServer. The listener's rspauth
//! proves it knows the password too.

use crate::messages::PeerStream;
use crate::peer_link::codec;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::codec::{Framed, FramedParts};
use warden_core::config::Config;
use warden_core::sasl::{digest_credentials, digest_users, DigestMd5Client, DigestMd5Server, Step, ZK_QUORUM_DIGEST_URI, ZK_QUORUM_REALM};
use warden_core::zab::wire::{decode_sasl, encode_sasl, SaslFrame};

const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// SASL frames are small; a bigger one is refused before buffering.
const MAX_SASL_FRAME: usize = 16 * 1024;

pub struct QuorumSasl {
    learner: (String, String),
    server_users: BTreeMap<String, String>,
    learner_require: bool,
    server_require: bool,
}

impl QuorumSasl {
    /// None unless `quorum.auth.enableSasl`; errors name the key or section.
    pub fn from_config(c: &Config) -> Result<Option<Arc<QuorumSasl>>, String> {
        if !c.quorum_sasl_enabled {
            if c.quorum_learner_require_sasl || c.quorum_server_require_sasl {
                return Err("quorum.auth.learnerRequireSasl / serverRequireSasl need quorum.auth.enableSasl=true".into());
            }
            return Ok(None);
        }
        let path = c
            .jaas_config
            .as_ref()
            .ok_or("quorum.auth.enableSasl=true needs java.security.auth.login.config (a JAAS file with QuorumServer and QuorumLearner sections)")?;
        let text = std::fs::read_to_string(path).map_err(|e| format!("java.security.auth.login.config {}: {e}", path.display()))?;
        let at = |e: String| format!("java.security.auth.login.config {}: {e}", path.display());
        let learner = digest_credentials(&text, &c.quorum_learner_login_context).map_err(at)?;
        let server_users = digest_users(&text, &c.quorum_server_login_context).map_err(at)?;
        Ok(Some(Arc::new(QuorumSasl { learner, server_users, learner_require: c.quorum_learner_require_sasl, server_require: c.quorum_server_require_sasl })))
    }
}

async fn next(framed: &mut Framed<PeerStream, tokio_util::codec::LengthDelimitedCodec>) -> Result<SaslFrame, String> {
    let frame = tokio::time::timeout(EXCHANGE_TIMEOUT, framed.next()).await.map_err(|_| "no SASL frame within 5 s".to_string())?;
    decode_sasl(&frame.ok_or("closed during SASL")?.map_err(|e| format!("bad SASL frame: {e}"))?)
}

async fn send(framed: &mut Framed<PeerStream, tokio_util::codec::LengthDelimitedCodec>, f: &SaslFrame) -> Result<(), String> {
    framed.send(Bytes::from(encode_sasl(f))).await.map_err(|e| e.to_string())
}

fn framed(stream: PeerStream, early: BytesMut) -> Framed<PeerStream, tokio_util::codec::LengthDelimitedCodec> {
    let mut parts = FramedParts::new::<Bytes>(stream, codec(MAX_SASL_FRAME));
    parts.read_buf = early;
    Framed::from_parts(parts)
}

/// Listener side, after a Hello (`hello_sasl`: the dialer will authenticate).
/// The stream and whatever was read past the exchange, or why the peer is refused.
pub async fn accept(
    stream: PeerStream,
    early: BytesMut,
    hello_sasl: bool,
    sasl: Option<&QuorumSasl>,
) -> Result<(PeerStream, BytesMut, Option<String>), String> {
    match (hello_sasl, sasl) {
        (false, Some(s)) if s.server_require => Err("the peer did not authenticate (quorum.auth.serverRequireSasl=true)".into()),
        (false, _) => Ok((stream, early, None)),
        (true, None) => {
            let mut f = framed(stream, early);
            send(&mut f, &SaslFrame::Skipped).await?;
            let p = f.into_parts();
            Ok((p.io, p.read_buf, None))
        }
        (true, Some(s)) => {
            let mut f = framed(stream, early);
            let mut server = DigestMd5Server::new(ZK_QUORUM_REALM, ZK_QUORUM_DIGEST_URI, &crate::nonce::nonce());
            let Step::Continue(challenge) = server.step(b"", |_| None) else { return Err("DIGEST-MD5 did not start".into()) };
            send(&mut f, &SaslFrame::Challenge(challenge)).await?;
            let SaslFrame::Response(response) = next(&mut f).await? else { return Err("expected a SASL response".into()) };
            match server.step(&response, |u| s.server_users.get(u).cloned()) {
                Step::Done { token, user } => {
                    send(&mut f, &SaslFrame::Success(token)).await?;
                    let p = f.into_parts();
                    Ok((p.io, p.read_buf, Some(user)))
                }
                Step::Failed(why) => {
                    let _ = send(&mut f, &SaslFrame::Failure).await;
                    Err(format!("quorum SASL failed: {why}"))
                }
                Step::Continue(_) => Err("unexpected extra DIGEST-MD5 round".into()),
            }
        }
    }
}

/// Dialer side, after sending a Hello with `sasl: true`.
pub async fn dial(stream: PeerStream, sasl: &QuorumSasl) -> Result<(PeerStream, BytesMut), String> {
    let mut f = framed(stream, BytesMut::new());
    match next(&mut f).await? {
        SaslFrame::Skipped if sasl.learner_require => return Err("the peer does not do quorum SASL (quorum.auth.learnerRequireSasl=true)".into()),
        SaslFrame::Skipped => {}
        SaslFrame::Challenge(challenge) => {
            let (user, password) = &sasl.learner;
            let mut client = DigestMd5Client::new(user, password, ZK_QUORUM_DIGEST_URI, &crate::nonce::nonce());
            send(&mut f, &SaslFrame::Response(client.respond(&challenge)?)).await?;
            match next(&mut f).await? {
                SaslFrame::Success(token) => client.verify(&token)?,
                SaslFrame::Failure => return Err("the peer refused our quorum SASL credentials".into()),
                other => return Err(format!("unexpected SASL frame {other:?}")),
            }
        }
        other => return Err(format!("unexpected SASL frame {other:?}")),
    }
    let p = f.into_parts();
    Ok((p.io, p.read_buf))
}
