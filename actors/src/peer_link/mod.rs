//! Peer links: one TCP connection per pair of ensemble members, carrying
//! length-prefixed frames (4-byte big-endian length) of MessagePack-encoded
//! `zab::Message`s (`zab::wire`). The dialer's first frame is a `Hello` with
//! the protocol version and its id. As in ZooKeeper's QuorumCnxManager only the
//! member with the larger id dials, so a pair never holds two connections.
//!
//! One `PeerLink` actor per remote member owns the current connection, dials
//! with backoff when it is the dialer, and tells the processor `Up`, `Msg`
//! and `Down` in order, tagged with a generation so that events of a replaced
//! connection can be told apart. A malformed, oversized or wrong-version
//! frame drops that one connection (logged), never the node.

use crate::mailbox::{guarded, Inbox, Serve};
use crate::messages::{Adopt, Incoming, PeerEvent, PeerStream, Reset, SendFrame, SendStream};
use crate::registry::{ActorStats, Fault};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use slog::{info, warn, Logger};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use warden_core::zab::{Message, ServerId};

pub(crate) mod sasl;

const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

pub use warden_core::zab::wire::decode;

pub fn encode(msg: &Message) -> Bytes {
    Bytes::from(warden_core::zab::wire::encode(msg))
}

/// TCP keepalive on peer connections, probing after 2 s idle: a link only
/// one side writes to (a follower's to another follower) would otherwise
/// never learn that the other side dropped it (a one-way cut answered by a
/// reset, a peer's crash without FIN), and as the dialer it would never
/// redial, leaving the other unable to reach it (seen in a netns soak).
fn keepalive(tcp: &TcpStream) {
    let ka = socket2::TcpKeepalive::new().with_time(Duration::from_secs(2)).with_interval(Duration::from_secs(1)).with_retries(3);
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka);
}

pub fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(max_frame_bytes).new_codec()
}

/// What the writer task writes: a frame, or every frame of a stream (later
/// ones queue behind it).
enum Out {
    Frame(Bytes),
    Stream(mpsc::Receiver<Bytes>),
}

struct Conn {
    gen: u64,
    tx: mpsc::UnboundedSender<Out>,
    reader: SpawnHandle,
    /// Dropped with the connection: stops its writer even mid-stream.
    _stop: tokio::sync::oneshot::Sender<()>,
}

type Sink = FramedWrite<tokio::io::WriteHalf<PeerStream>, LengthDelimitedCodec>;

/// Writes one `Out`; a stream's next piece is taken only once the socket
/// took the last (flushed), so a slow peer slows whoever fills the stream.
async fn write_out(sink: &mut Sink, out: Out) -> std::io::Result<()> {
    match out {
        Out::Frame(frame) => sink.feed(frame).await,
        Out::Stream(mut pieces) => {
            while let Some(frame) = pieces.recv().await {
                sink.send(frame).await?;
            }
            Ok(())
        }
    }
}

async fn write_all(mut sink: Sink, mut rx: mpsc::UnboundedReceiver<Out>) -> std::io::Result<()> {
    while let Some(out) = rx.recv().await {
        write_out(&mut sink, out).await?;
        // Write out whatever else is queued with the same flush.
        while let Ok(more) = rx.try_recv() {
            write_out(&mut sink, more).await?;
        }
        SinkExt::<Bytes>::flush(&mut sink).await?;
    }
    Ok(())
}

pub struct PeerLink {
    my_id: ServerId,
    peer: ServerId,
    /// Set when this side dials (our id is the larger).
    dial_addr: Option<String>,
    tls: Option<crate::tls::QuorumTls>,
    max_frame_bytes: usize,
    /// Where events go: election messages to the election actor, the
    /// rest to the broadcast actor; both hear of the link going up and down.
    zab: Inbox<PeerEvent>,
    election: Inbox<PeerEvent>,
    conn: Option<Conn>,
    gen: u64,
    backoff: Duration,
    dialing: bool,
    /// quorum.auth.enableSasl: authenticate after the Hello when dialing.
    sasl: Option<Arc<sasl::QuorumSasl>>,
    me: Arc<ActorStats>,
    log: Logger,
}

impl PeerLink {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        my_id: ServerId,
        peer: ServerId,
        peer_addr: String,
        tls: Option<crate::tls::QuorumTls>,
        sasl: Option<Arc<sasl::QuorumSasl>>,
        max_frame_bytes: usize,
        zab: Inbox<PeerEvent>,
        election: Inbox<PeerEvent>,
        me: Arc<ActorStats>,
        log: Logger,
    ) -> PeerLink {
        let dial_addr = (my_id > peer && !peer_addr.is_empty()).then_some(peer_addr);
        PeerLink { my_id, peer, dial_addr, tls, max_frame_bytes, zab, election, conn: None, gen: 0, backoff: BACKOFF_MIN, dialing: false, sasl, me, log }
    }

    fn drop_conn(&mut self, ctx: &mut Context<Self>, why: &str) {
        if let Some(c) = self.conn.take() {
            ctx.cancel_future(c.reader);
            self.tell_both(PeerEvent::Down { peer: self.peer, gen: c.gen });
            info!(self.log, "peer link down"; "peer" => self.peer, "reason" => why);
        }
    }

    fn tell_both(&self, ev: PeerEvent) {
        let copy = match &ev {
            PeerEvent::Up { peer, gen } => PeerEvent::Up { peer: *peer, gen: *gen },
            PeerEvent::Down { peer, gen } => PeerEvent::Down { peer: *peer, gen: *gen },
            PeerEvent::Msg { .. } => unreachable!("messages go to one actor"),
        };
        self.election.do_send(copy);
        self.zab.do_send(ev);
    }

    fn schedule_dial(&mut self, ctx: &mut Context<Self>) {
        if self.dial_addr.is_none() || self.dialing {
            return;
        }
        self.dialing = true;
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        ctx.run_later(delay, |act, ctx| {
            guarded(act, ctx, |act, ctx| act.dial(ctx));
        });
    }

    fn dial(&mut self, ctx: &mut Context<Self>) {
        self.dialing = true;
        if self.conn.is_some() {
            self.dialing = false;
            return;
        }
        let Some(addr) = self.dial_addr.clone() else { return };
        let hello = warden_core::zab::wire::encode_hello(self.my_id, self.sasl.is_some());
        let max = self.max_frame_bytes;
        let tls = self.tls.clone();
        let sasl = self.sasl.clone();
        let fut = async move {
            let tcp = tokio::time::timeout(HELLO_TIMEOUT, TcpStream::connect(&addr))
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            keepalive(&tcp);
            let stream: PeerStream = match tls {
                None => Box::new(tcp),
                Some(t) => {
                    let host = addr.rsplit_once(':').map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']')).unwrap_or(&addr).to_string();
                    let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("bad peer host name: {e}"))?;
                    let s = tokio::time::timeout(HELLO_TIMEOUT, t.connector.connect(name, tcp)).await.map_err(|_| "TLS handshake timed out".to_string())?;
                    let s = s.map_err(|e| format!("TLS handshake with the peer failed: {e}"))?;
                    if t.hostname_verification {
                        let ip = s.get_ref().0.peer_addr().map_err(|e| e.to_string())?.ip();
                        let by_name = host.parse::<std::net::IpAddr>().is_err().then_some(host);
                        let cert = s.get_ref().1.peer_certificates().and_then(|c| c.first());
                        crate::tls::verify::check_peer_host(cert, ip, by_name)
                            .await
                            .map_err(|e| format!("TLS host verification of the peer failed (ssl.quorum.hostnameVerification): {e}"))?;
                    }
                    Box::new(s)
                }
            };
            let mut w = FramedWrite::new(stream, codec(max));
            w.send(Bytes::from(hello)).await.map_err(|e| e.to_string())?;
            match sasl {
                Some(s) => sasl::dial(w.into_inner(), &s).await,
                None => Ok((w.into_inner(), BytesMut::new())),
            }
        };
        ctx.spawn(actix::fut::wrap_future(fut).map(|res, act: &mut Self, ctx: &mut Context<Self>| {
            guarded(act, ctx, |act, ctx| act.dialed(res, ctx));
        }));
    }

    /// A dialed connection past Hello (and quorum SASL), with bytes read beyond them.
    fn dialed(&mut self, res: Result<(PeerStream, BytesMut), String>, ctx: &mut Context<Self>) {
        self.dialing = false;
        match res {
            Ok((stream, early)) => self.adopt(stream, early, ctx),
            Err(e) => {
                if self.backoff >= BACKOFF_MAX {
                    warn!(self.log, "cannot reach peer; retrying"; "peer" => self.peer, "error" => e);
                }
                self.schedule_dial(ctx);
            }
        }
    }

    /// Starts serving a connection whose Hello exchange is done.
    fn adopt(&mut self, stream: PeerStream, early: BytesMut, ctx: &mut Context<Self>) {
        self.drop_conn(ctx, "replaced by a new connection");
        self.gen += 1;
        let gen = self.gen;
        let (read, write) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel::<Out>();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sink = FramedWrite::new(write, codec(self.max_frame_bytes));
        actix_rt::spawn(async move {
            // A write error shows up as the reader ending; nothing to do here.
            tokio::select! {
                _ = write_all(sink, rx) => {}
                _ = stopped => {}
            }
        });
        let (peer, zab, election) = (self.peer, self.zab.clone(), self.election.clone());
        // Bytes that arrived with the hello are read first, then the socket.
        let read = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(early), read);
        let mut frames = FramedRead::new(read, codec(self.max_frame_bytes));
        let reader = ctx.spawn(
            actix::fut::wrap_future(async move {
                loop {
                    // Backpressure: no more frames off the socket while the
                    // actor they go to has a full mailbox (TCP slows the peer).
                    while zab.stats.full() || election.stats.full() {
                        actix::clock::sleep(Duration::from_millis(1)).await;
                    }
                    match frames.next().await {
                        None => break "closed by the peer".to_string(),
                        Some(Err(e)) => break format!("bad frame or I/O error: {e}"),
                        Some(Ok(frame)) => match decode(&frame) {
                            Ok(msg @ (Message::Notification(_) | Message::Config { .. })) => election.do_send(PeerEvent::Msg { peer, gen, msg }),
                            Ok(msg) => zab.do_send(PeerEvent::Msg { peer, gen, msg }),
                            Err(e) => break e,
                        },
                    }
                }
            })
            .map(move |why, act: &mut Self, ctx: &mut Context<Self>| {
                guarded(act, ctx, |act, ctx| act.reader_ended(gen, why, ctx));
            }),
        );
        self.tell_both(PeerEvent::Up { peer: self.peer, gen });
        self.conn = Some(Conn { gen, tx, reader, _stop: stop });
        self.backoff = BACKOFF_MIN;
        info!(self.log, "peer link up"; "peer" => self.peer, "gen" => gen);
    }

    fn reader_ended(&mut self, gen: u64, why: String, ctx: &mut Context<Self>) {
        if self.conn.as_ref().is_some_and(|c| c.gen == gen) {
            if let Some(c) = self.conn.take() {
                self.tell_both(PeerEvent::Down { peer: self.peer, gen: c.gen });
            }
            info!(self.log, "peer link down"; "peer" => self.peer, "reason" => why);
            self.schedule_dial(ctx);
        }
    }
}

impl Actor for PeerLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.dial_addr.is_some() {
            self.dial(ctx);
        }
    }
}

crate::supervise::supervised!(PeerLink);
crate::mailbox::mailbox!(PeerLink: SendFrame, SendStream, Reset, Adopt, Fault);

/// A restarted link trusts nothing of its connection: it drops it (Zab sees
/// the peer go down and resyncs it) and redials if it is the dialer.
impl crate::supervise::Rebuild for PeerLink {
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        // The restart cancelled the reader and any dial in progress.
        self.dialing = false;
        self.drop_conn(ctx, "the link actor restarted");
        self.backoff = BACKOFF_MIN;
        self.schedule_dial(ctx);
    }
}

impl Serve<Adopt> for PeerLink {
    fn serve(&mut self, Adopt(stream, early): Adopt, ctx: &mut Context<Self>) {
        self.adopt(stream, early, ctx);
    }
}

impl Serve<SendStream> for PeerLink {
    fn serve(&mut self, SendStream(pieces): SendStream, _: &mut Context<Self>) {
        // Without a connection the stream is dropped: its maker sees it closed.
        if let Some(c) = &self.conn {
            let _ = c.tx.send(Out::Stream(pieces));
        }
    }
}

impl Serve<SendFrame> for PeerLink {
    fn serve(&mut self, SendFrame(frame): SendFrame, _: &mut Context<Self>) {
        if let Some(c) = &self.conn {
            // A closed writer shows up as the reader ending; drop silently here.
            let _ = c.tx.send(Out::Frame(frame));
        }
    }
}

impl Serve<Reset> for PeerLink {
    fn serve(&mut self, _: Reset, ctx: &mut Context<Self>) {
        self.drop_conn(ctx, "reset by the protocol");
        self.schedule_dial(ctx);
    }
}

/// Accepts peer connections on the quorum port: reads the Hello (with a
/// timeout), checks its version, and hands the stream to the processor.
pub fn accept_loop(
    listener: tokio::net::TcpListener,
    incoming: Inbox<Incoming>,
    tls: Option<crate::tls::QuorumTls>,
    sasl: Option<Arc<sasl::QuorumSasl>>,
    max_frame_bytes: usize,
    log: Logger,
) {
    actix_rt::spawn(async move {
        loop {
            let (stream, addr) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(log, "peer accept failed"; "error" => %e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (incoming, log, tls, sasl) = (incoming.clone(), log.clone(), tls.clone(), sasl.clone());
            let _ = stream.set_nodelay(true);
            keepalive(&stream);
            actix_rt::spawn(async move {
                let stream: PeerStream = match tls {
                    None => Box::new(stream),
                    Some(t) => match tokio::time::timeout(HELLO_TIMEOUT, t.acceptor.accept(stream)).await {
                        Ok(Ok(s)) => {
                            if t.hostname_verification {
                                let cert = s.get_ref().1.peer_certificates().and_then(|c| c.first());
                                if let Err(e) = crate::tls::verify::check_peer_host(cert, addr.ip(), None).await {
                                    return warn!(log, "refused peer connection: TLS host verification failed (ssl.quorum.hostnameVerification)"; "from" => addr.to_string(), "error" => e);
                                }
                            }
                            Box::new(s)
                        }
                        Ok(Err(e)) => return warn!(log, "refused peer connection: TLS handshake failed"; "from" => addr.to_string(), "error" => %e),
                        Err(_) => return warn!(log, "refused peer connection: TLS handshake timed out"; "from" => addr.to_string()),
                    },
                };
                match read_hello(stream, max_frame_bytes).await {
                    Ok((hello, stream, early)) => match sasl::accept(stream, early, hello.sasl, sasl.as_deref()).await {
                        Ok((stream, early, user)) => {
                            if let Some(user) = user {
                                info!(log, "peer authenticated (quorum SASL)"; "from" => addr.to_string(), "server_id" => hello.server_id, "user" => user);
                            }
                            incoming.do_send(Incoming { from: hello.server_id, addr: addr.to_string(), stream, early })
                        }
                        Err(e) => warn!(log, "refused peer connection: quorum SASL"; "from" => addr.to_string(), "server_id" => hello.server_id, "reason" => e),
                    },
                    Err(e) => warn!(log, "refused peer connection"; "from" => addr.to_string(), "reason" => e),
                }
            });
        }
    });
}

/// The Hello, the stream, and whatever the peer sent behind the Hello that
/// was read with it (a dialer starts sending at once; through a proxy or
/// under load both often arrive in one read).
async fn read_hello(stream: PeerStream, max_frame_bytes: usize) -> Result<(warden_core::zab::wire::Hello, PeerStream, BytesMut), String> {
    let mut frames = FramedRead::new(stream, codec(max_frame_bytes.min(1024)));
    let frame = tokio::time::timeout(HELLO_TIMEOUT, frames.next()).await.map_err(|_| "no hello within 5 s".to_string())?;
    let frame = frame.ok_or("closed before hello")?.map_err(|e| format!("bad hello frame: {e}"))?;
    let hello = warden_core::zab::wire::decode_hello(&frame)?;
    let parts = frames.into_parts();
    Ok((hello, parts.io, parts.read_buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::{Decoder, Encoder};

    #[tokio::test]
    async fn peer_sockets_probe_an_idle_peer_within_seconds() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        keepalive(&tcp);
        let sock = socket2::SockRef::from(&tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(2));
        assert_eq!((sock.tcp_keepalive_interval().unwrap(), sock.tcp_keepalive_retries().unwrap()), (Duration::from_secs(1), 3));
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut c = codec(16);
        let mut b = BytesMut::from(&[0, 0, 0, 17][..]);
        assert!(c.decode(&mut b).is_err(), "oversized frame is refused before buffering it");
    }

    /// A dialer sends its first message right behind the Hello; when both
    /// arrive in one read (common through a proxy) the listener used to
    /// refuse the link ("data after hello"); now the bytes are kept.
    #[tokio::test]
    async fn bytes_behind_the_hello_are_kept_for_the_link() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut dialer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut out = BytesMut::new();
        codec(1 << 20).encode(Bytes::from(warden_core::zab::wire::encode_hello(3, false)), &mut out).unwrap();
        codec(1 << 20).encode(Bytes::from(warden_core::zab::wire::encode(&Message::Ping)), &mut out).unwrap();
        dialer.write_all(&out).await.unwrap();
        let (hello, _, mut early) = read_hello(Box::new(accepted), 1 << 20).await.unwrap();
        assert_eq!(hello.server_id, 3);
        let frame = codec(1 << 20).decode(&mut early).unwrap().expect("the Ping frame came with the hello");
        assert_eq!(decode(&frame).unwrap(), Message::Ping);
    }
}
