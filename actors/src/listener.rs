//! The listener actor: accepts client connections and starts a session
//! handler actor for each, enforcing maxClientCnxns per client address.

use crate::codec::ClientCodec;
use crate::connection::Connection;
use crate::node::Deps;
use crate::outbox::Outbox;
use crate::stats::ConnInfo;
use actix::prelude::*;
use slog::warn;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::FramedRead;

pub struct Listener {
    deps: Arc<Deps>,
    next_conn_id: u64,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Accepted(std::io::Result<(TcpStream, SocketAddr)>);

impl Listener {
    pub fn start(listener: TcpListener, deps: Arc<Deps>) -> Addr<Listener> {
        Listener::create(|ctx| {
            let incoming = futures_util::stream::unfold(listener, |l| async move {
                let r = l.accept().await;
                Some((Accepted(r), l))
            });
            ctx.add_stream(incoming);
            Listener { deps, next_conn_id: 1 }
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
        let id = self.next_conn_id;
        self.next_conn_id += 1;
        let info = Arc::new(ConnInfo::new(peer.to_string(), crate::processor::wall_clock_ms()));
        self.deps.stats.connections.lock().unwrap().insert(id, info.clone());
        let deps = self.deps.clone();
        let max_frame = deps.config.jute_max_buffer_bytes;
        let me = deps.registry.register("session", id.to_string());
        Connection::create(move |ctx| {
            let (read, write) = stream.into_split();
            ctx.add_stream(FramedRead::new(read, ClientCodec::new(max_frame)));
            Connection::new(id, peer, deps, Outbox::start(write), info, me)
        });
    }
}
