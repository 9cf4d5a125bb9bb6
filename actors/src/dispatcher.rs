//! The watch dispatcher actor: owns the watch registry and the map of live
//! sessions to connections, and delivers everything the processor produces —
//! notifications first, then the reply — so a client never sees a reply that
//! observes a change before the watch event for it.

use crate::messages::{ConnAddr, Detach, Dispatch, ToConn, WatchData, WatchReport};
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
    stats: Arc<ServerStats>,
    me: Arc<ActorStats>,
    log: Logger,
}

impl Dispatcher {
    pub fn new(stats: Arc<ServerStats>, me: Arc<ActorStats>, log: Logger) -> Dispatcher {
        Dispatcher { watches: WatchManager::default(), conns: HashMap::new(), stats, me, log }
    }

    fn send(&self, session_id: i64, frame: Vec<u8>) {
        if let Some((_, conn)) = self.conns.get(&session_id) {
            to_conn(conn, ToConn::Frame(frame), &self.log);
        }
    }

    fn deliver(&mut self, conn: Option<ConnAddr>, session_id: i64, out: Output) {
        for (path, event_type) in &out.triggers {
            let fired = self.watches.trigger(path, *event_type);
            if fired.is_empty() {
                continue;
            }
            let frame = notification_frame(out.zxid, *event_type, path);
            for n in fired {
                self.send(n.session_id, frame.clone());
            }
        }
        for op in out.watches {
            match op {
                WatchOp::Add(kind, path) => self.watches.add(kind, &path, session_id),
                WatchOp::AddPersistent { path, recursive } => self.watches.add_persistent(&path, session_id, recursive),
                WatchOp::FireNow { event_type, path } => {
                    if let Some(c) = &conn {
                        to_conn(c, ToConn::Frame(notification_frame(out.zxid, event_type, &path)), &self.log);
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
            to_conn(c, ToConn::Frame(f), &self.log);
        }
        if let (Some(c), true) = (&conn, out.close_connection) {
            c.do_send(ToConn::Close { frame: None, reason: "unknown opcode" });
        }
        if let Some(closed) = out.session_closed {
            self.watches.remove_session(closed);
            if let Some((_, c)) = self.conns.remove(&closed) {
                c.do_send(ToConn::Close { frame: None, reason: "session closed" });
            }
        }
        self.stats.watch_count.store(self.watches.count() as u64, Relaxed);
    }
}

/// Delivers to a session handler, unless its mailbox is full: a client that
/// far behind is closed instead of buffered without limit.
fn to_conn(conn: &ConnAddr, msg: ToConn, log: &Logger) {
    if conn.try_send(msg).is_err() {
        slog::warn!(log, "session handler mailbox full; closing the connection"; "instance" => &conn.stats.instance, "depth" => conn.stats.depth());
        conn.do_send(ToConn::Close { frame: None, reason: "mailbox full" });
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;
}

crate::supervise::supervised!(Dispatcher);
crate::mailbox::mailbox!(Dispatcher: Dispatch, Detach, WatchReport, WatchData, crate::messages::CloseAll, Fault);

/// Watches live only in memory (clients hold the truth and re-send them with
/// setWatches on reconnect), so a restarted dispatcher starts empty and
/// closes every connection: clients reconnect, keep their sessions and
/// re-register their watches, as after a server restart.
impl crate::supervise::Rebuild for Dispatcher {
    fn rebuild(&mut self, _: &mut Context<Self>) {
        for (_, (_, conn)) in self.conns.drain() {
            conn.do_send(ToConn::Close { frame: None, reason: "the watch dispatcher restarted" });
        }
        self.watches = WatchManager::default();
        self.stats.watch_count.store(0, Relaxed);
    }
}

impl Serve<Dispatch> for Dispatcher {
    fn serve(&mut self, msg: Dispatch, _: &mut Context<Self>) {
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
                        old.do_send(ToConn::Close { frame: None, reason: "session moved to another connection" });
                    }
                }
                conn.do_send(ToConn::Connected { session_id, timeout_ms, frame });
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
            to_conn(&conn, ToConn::Close { frame: None, reason: "the server is not serving: looking for a leader" }, &self.log);
        }
    }
}
