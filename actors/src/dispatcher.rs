//! The watch dispatcher actor: owns the watch registry and the map of live
//! sessions to connections, and delivers everything the processor produces —
//! notifications first, then the reply — so a client never sees a reply that
//! observes a change before the watch event for it.

use crate::messages::{ConnAddr, ConnHandle, Detach, Dispatch, Dispatches, ToConn, WatchData, WatchReport};
use crate::mailbox::Serve;
use crate::registry::{ActorStats, Fault};
use crate::stats::ServerStats;
use slog::Logger;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use warden_core::error::Code;
use warden_core::server::{notification_frame, reply_frame, Output, Reply, WatchOp};
use warden_core::watch::WatchManager;

pub struct Dispatcher {
    watches: WatchManager,
    conns: HashMap<i64, (u64, ConnAddr)>,
    /// Frames gathered per connection while one batch is delivered, sent as
    /// one message each at its end (or before anything else to that connection).
    outgoing: Outgoing,
    stats: Arc<ServerStats>,
    me: Arc<ActorStats>,
    log: Logger,
}

/// Per connection: its handle and the frames gathered for it so far.
#[derive(Default)]
struct Outgoing(HashMap<*const ConnHandle, (ConnAddr, Vec<u8>, u32)>);

impl Outgoing {
    fn push(&mut self, conn: &ConnAddr, frame: &[u8]) {
        let (_, bytes, count) = self.0.entry(Arc::as_ptr(conn)).or_insert_with(|| (conn.clone(), Vec::new(), 0));
        bytes.extend_from_slice(frame);
        *count += 1;
    }

    /// Writes what is gathered for `conn` now (so a later message keeps its place).
    fn flush_one(&mut self, conn: &ConnAddr, stats: &ServerStats, log: &Logger) {
        if let Some((conn, bytes, count)) = self.0.remove(&Arc::as_ptr(conn)) {
            write(&conn, bytes, count, stats, log);
        }
    }

    fn flush(&mut self, stats: &ServerStats, log: &Logger) {
        for (_, (conn, bytes, count)) in self.0.drain() {
            write(&conn, bytes, count, stats, log);
        }
    }
}

/// Writes frames straight to a connection's socket queue; a client whose
/// queue is over its limit (it does not read) is reset by its handler.
fn write(conn: &ConnHandle, bytes: Vec<u8>, count: u32, stats: &ServerStats, log: &Logger) {
    if conn.out.send(bytes) {
        conn.info.sent.fetch_add(count as u64, Relaxed);
        stats.packets_sent.fetch_add(count as u64, Relaxed);
    } else if conn.mailbox.connected() {
        slog::warn!(log, "closing connection: client does not read its replies"; "instance" => &conn.mailbox.stats.instance, "pending_bytes" => conn.out.pending_bytes());
        conn.do_send(ToConn::TooSlow);
    }
}

impl Dispatcher {
    pub fn new(stats: Arc<ServerStats>, me: Arc<ActorStats>, log: Logger) -> Dispatcher {
        Dispatcher { watches: WatchManager::default(), conns: HashMap::new(), outgoing: Outgoing::default(), stats, me, log }
    }

    fn send(&mut self, session_id: i64, frame: &[u8]) {
        if let Some((_, conn)) = self.conns.get(&session_id) {
            self.outgoing.push(conn, frame);
        }
    }

    /// A message to a connection other than a frame: after its frames.
    fn tell(&mut self, conn: &ConnAddr, msg: ToConn) {
        self.outgoing.flush_one(conn, &self.stats, &self.log);
        conn.do_send(msg);
    }

    fn deliver(&mut self, conn: Option<ConnAddr>, session_id: i64, out: Output) {
        for (path, event_type) in &out.triggers {
            let fired = self.watches.trigger(path, *event_type);
            if fired.is_empty() {
                continue;
            }
            let frame = notification_frame(out.zxid, *event_type, path);
            for n in fired {
                self.send(n.session_id, &frame);
            }
        }
        for op in out.watches {
            match op {
                WatchOp::Add(kind, path) => self.watches.add(kind, &path, session_id),
                WatchOp::AddPersistent { path, recursive } => self.watches.add_persistent(&path, session_id, recursive),
                WatchOp::FireNow { event_type, path } => {
                    if let Some(c) = &conn {
                        self.outgoing.push(c, &notification_frame(out.zxid, event_type, &path));
                    }
                }
            }
        }
        let frame = match out.reply {
            Reply::Frame(f) => Some(f),
            Reply::WatchQuery { xid, zxid, path, watcher_type, remove } => {
                let found = if remove { self.watches.remove(&path, session_id, watcher_type) } else { self.watches.contains(&path, session_id, watcher_type) };
                let err = if found { 0 } else { Code::NoWatcher as i32 };
                Some(reply_frame(xid, zxid, err, |_| {}))
            }
            Reply::None => None,
        };
        if let (Some(c), Some(f)) = (&conn, frame) {
            self.outgoing.push(c, &f);
        }
        if let (Some(c), true) = (&conn, out.close_connection) {
            self.tell(c, ToConn::Close { frame: None, reason: "unknown opcode" });
        }
        if let Some(closed) = out.session_closed {
            self.watches.remove_session(closed);
            if let Some((_, c)) = self.conns.remove(&closed) {
                self.tell(&c, ToConn::Close { frame: None, reason: "session closed" });
            }
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

crate::supervise::supervised!(Dispatcher);
crate::mailbox::mailbox!(Dispatcher: Dispatches, Detach, WatchReport, WatchData, crate::messages::CloseAll, Fault);

/// Watches live only in memory (clients hold the truth and re-send them with
/// setWatches on reconnect), so a restarted dispatcher starts empty and
/// closes every connection: clients reconnect, keep their sessions and
/// re-register their watches, as after a server restart.
impl crate::supervise::Rebuild for Dispatcher {
    fn rebuild(&mut self, _: &mut Context<Self>) {
        self.outgoing = Outgoing::default();
        for (_, (_, conn)) in self.conns.drain() {
            conn.do_send(ToConn::Close { frame: None, reason: "the watch dispatcher restarted" });
        }
        self.watches = WatchManager::default();
        self.stats.watch_count.store(0, Relaxed);
    }
}

impl Serve<Dispatches> for Dispatcher {
    fn serve(&mut self, Dispatches(batch): Dispatches, _: &mut Context<Self>) {
        for msg in batch {
            self.dispatch(msg);
        }
        self.outgoing.flush(&self.stats, &self.log);
        self.stats.watch_count.store(self.watches.count() as u64, Relaxed);
    }
}

impl Dispatcher {
    fn dispatch(&mut self, msg: Dispatch) {
        match msg {
            Dispatch::Output { conn, session_id, output, received } => {
                if let Some((t, op)) = received {
                    self.stats.record_latency(t, op);
                    self.stats.outstanding.fetch_sub(1, Relaxed);
                }
                self.deliver(conn, session_id, output);
            }
            Dispatch::Attach { session_id, conn_id, conn, timeout_ms, frame } => {
                // A session lives on one connection: a reattach closes the old one
                // and drops its watches (the client re-sends them with setWatches).
                if let Some((old_id, old)) = self.conns.insert(session_id, (conn_id, conn.clone())) {
                    if old_id != conn_id {
                        self.watches.remove_session(session_id);
                        self.tell(&old, ToConn::Close { frame: None, reason: "session moved to another connection" });
                    }
                }
                // The handshake reply goes first on the socket; the handler
                // then serves the requests it held back.
                self.outgoing.push(&conn, &frame);
                self.tell(&conn, ToConn::Connected { session_id, timeout_ms });
            }
        }
    }
}

impl Serve<Detach> for Dispatcher {
    fn serve(&mut self, msg: Detach, _: &mut Context<Self>) {
        if self.conns.get(&msg.session_id).is_some_and(|(id, _)| *id == msg.conn_id) {
            self.conns.remove(&msg.session_id);
            self.watches.remove_session(msg.session_id);
            self.stats.watch_count.store(self.watches.count() as u64, Relaxed);
        }
    }
}

impl Serve<WatchReport> for Dispatcher {
    fn serve(&mut self, msg: WatchReport, _: &mut Context<Self>) -> String {
        self.watches.report(msg.0)
    }
}

impl Serve<WatchData> for Dispatcher {
    fn serve(&mut self, _: WatchData, _: &mut Context<Self>) -> std::collections::HashMap<i64, Vec<String>> {
        self.watches.by_session()
    }
}

impl Serve<crate::messages::CloseAll> for Dispatcher {
    fn serve(&mut self, _: crate::messages::CloseAll, _: &mut Context<Self>) {
        for (_, (_, conn)) in self.conns.drain() {
            conn.do_send(ToConn::Close { frame: None, reason: "the server is not serving: looking for a leader" });
        }
    }
}
