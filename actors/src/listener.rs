//! The listener actor: accepts client connections on the plaintext and/or TLS
//! port and starts a session handler actor for each, enforcing
//! maxClientCnxns per client address.

use crate::codec::ClientCodec;
use crate::connection::{Connection, Security};
use crate::deps::Deps;
use crate::outbox::Outbox;
use crate::stats::ConnInfo;
use crate::tls::TlsSource;
use actix::prelude::*;
use slog::{info, warn};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;
use warden_core::config::Config;
use warden_core::proto::Id;

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection ids, unique across both ports.
static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// The bound client ports and what the connections on them need; bound
/// before the runtime starts so a port in use stops the start.
pub struct Ports {
    plain: Option<std::net::TcpListener>,
    tls: Option<(std::net::TcpListener, Arc<TlsSource>)>,
    security: Arc<Security>,
}

fn bind_one(host: &str, port: u16) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind((host, port)).map_err(|e| format!("cannot listen on {host}:{port}: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

impl Ports {
    pub fn bind(config: &Config, log: &slog::Logger) -> Result<Ports, String> {
        let plain = match config.serve_client_port {
            true => {
                let (host, port) = config.client_listen_address();
                Some(bind_one(&host, port)?)
            }
            false => None,
        };
        let tls = match (config.secure_listen_address(), config.tls().map_err(|e| e.to_string())?) {
            (Some((host, port)), Some(settings)) => {
                let source = TlsSource::load(settings, log.new(slog::o!("actor" => "tls")))?;
                Some((bind_one(&host, port)?, source))
            }
            _ => None,
        };
        let security = Arc::new(Security::load(config)?);
        Ok(Ports { plain, tls, security })
    }

    /// The addresses being served, for the start-up log line.
    pub fn addresses(&self) -> String {
        let plain = self.plain.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string());
        let tls = self.tls.iter().filter_map(|(l, _)| l.local_addr().ok()).map(|a| format!("{a} (TLS)"));
        plain.chain(tls).collect::<Vec<_>>().join(", ")
    }

    /// Starts one listener actor per port; call inside the actix system.
    /// Connections are handed round-robin to the `io` threads.
    pub fn start(self, deps: Arc<Deps>, io: Vec<ArbiterHandle>) {
        let io = Arc::new(io);
        if let Some(l) = self.plain {
            Listener::start(TcpListener::from_std(l).expect("listener joins the runtime"), None, self.security.clone(), deps.clone(), io.clone());
        }
        if let Some((l, source)) = self.tls {
            Listener::start(TcpListener::from_std(l).expect("listener joins the runtime"), Some(source), self.security, deps, io);
        }
    }
}

pub struct Listener {
    deps: Arc<Deps>,
    tls: Option<Arc<TlsSource>>,
    security: Arc<Security>,
    io: Arc<Vec<ArbiterHandle>>,
    next_io: usize,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(std::io::Result<(TcpStream, SocketAddr)>);

impl Listener {
    fn start(listener: TcpListener, tls: Option<Arc<TlsSource>>, security: Arc<Security>, deps: Arc<Deps>, io: Arc<Vec<ArbiterHandle>>) -> Addr<Listener> {
        Listener::create(|ctx| {
            let incoming = futures_util::stream::unfold(listener, |l| async move {
                let r = l.accept().await;
                Some((Accepted(r), l))
            });
            ctx.add_stream(incoming);
            Listener { deps, tls, security, io, next_io: 0 }
        })
    }

    fn too_many_from(&self, peer: &SocketAddr) -> bool {
        let max = self.deps.config.max_client_cnxns as usize;
        if max == 0 {
            return false;
        }
        let ip = peer.ip().to_string();
        let conns = self.deps.stats.connections.lock().unwrap();
        conns.values().filter(|c| c.address.rsplit_once(':').map(|(h, _)| h) == Some(ip.as_str())).count() >= max
    }
}

impl Actor for Listener {
    type Context = Context<Self>;
}

/// Starts the session handler for an accepted (and, on the TLS port,
/// handshaken) connection. `ids` are identities the transport proved (x509).
/// `plain`: `write` is the TCP socket itself, so replies may be written to
/// `fd` directly (`Outbox::send_now`).
#[allow(clippy::too_many_arguments)]
fn spawn_connection<R, W>(
    read: R,
    write: W,
    fd: i32,
    plain: bool,
    peer: SocketAddr,
    ids: Vec<Id>,
    security: Arc<Security>,
    deps: Arc<Deps>,
    io: crate::messages::IoThread,
) where
    R: AsyncRead + Unpin + 'static,
    W: AsyncWrite + Unpin + 'static,
{
    let id = NEXT_CONN_ID.fetch_add(1, Relaxed);
    let info = Arc::new(ConnInfo::new(peer.to_string(), crate::clock::wall_clock_ms()));
    deps.stats.connections.lock().unwrap().insert(id, info.clone());
    let max_frame = deps.config.jute_max_buffer_bytes;
    let me = deps.registry.register("session", id.to_string());
    let addr = Connection::create(|ctx| {
        let mailbox = crate::mailbox::Mailbox::new(ctx.address(), me.clone()).inbox();
        let handle = Arc::new(crate::messages::ConnHandle::new(mailbox, Outbox::start(write, fd, plain), info, io));
        // Requests are small; the buffer grows for a large one. (The default
        // 8 KiB per connection is most of an idle session's memory.)
        let frames = FramedRead::with_capacity(read, ClientCodec::new(max_frame), 1024);
        ctx.add_stream(crate::connection::gated(frames, &handle, deps.processor.stats.clone()));
        Connection::new(id, peer, deps, handle, ids, security)
    });
    crate::supervise::injectable(&crate::mailbox::Mailbox::new(addr, me));
}

impl StreamHandler<Accepted> for Listener {
    fn handle(&mut self, Accepted(res): Accepted, _: &mut Context<Self>) {
        let (stream, peer) = match res {
            Ok(s) => s,
            Err(e) => return warn!(self.deps.log, "accept failed"; "error" => %e),
        };
        if self.too_many_from(&peer) {
            warn!(self.deps.log, "too many connections"; "peer" => peer.to_string(), "maxClientCnxns" => self.deps.config.max_client_cnxns);
            return;
        }
        let _ = stream.set_nodelay(true);
        // The socket moves to the I/O thread that will serve it, and joins
        // that thread's event loop there.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => return warn!(self.deps.log, "cannot hand the connection to an I/O thread"; "peer" => peer.to_string(), "error" => %e),
        };
        let index = self.next_io % self.io.len();
        let thread = &self.io[index];
        let io = crate::messages::IoThread { index, handle: thread.clone() };
        self.next_io = self.next_io.wrapping_add(1);
        let (deps, security, tls) = (self.deps.clone(), self.security.clone(), self.tls.as_ref().map(|s| s.acceptor()));
        thread.spawn(async move {
            let stream = match TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => return warn!(deps.log, "cannot serve the connection"; "peer" => peer.to_string(), "error" => %e),
            };
            let fd = stream.as_raw_fd();
            let Some(acceptor) = tls else {
                let (read, write) = stream.into_split();
                return spawn_connection(read, write, fd, true, peer, Vec::new(), security, deps, io);
            };
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return info!(deps.log, "TLS handshake failed; connection closed"; "peer" => peer.to_string(), "error" => %e),
                Err(_) => return info!(deps.log, "TLS handshake timed out; connection closed"; "peer" => peer.to_string()),
            };
            let mut ids = Vec::new();
            if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                match warden_core::x509::subject_dn(cert) {
                    Ok(dn) => {
                        info!(deps.log, "authenticated client certificate"; "peer" => peer.to_string(), "x509" => &dn);
                        if deps.config.x509_super_user.as_deref() == Some(dn.as_str()) {
                            // zookeeper.X509AuthenticationProvider.superUser, as ZooKeeper adds it.
                            ids.push(Id::new("super", &dn));
                        }
                        ids.push(Id::new("x509", &dn));
                    }
                    // The certificate verified, so this is our parser's limit: no identity, no access.
                    Err(e) => warn!(deps.log, "cannot read the subject of a verified client certificate"; "peer" => peer.to_string(), "error" => e),
                }
            }
            let (read, write) = tokio::io::split(tls);
            spawn_connection(read, write, fd, false, peer, ids, security, deps, io);
        });
    }
}
