//! The watch dispatcher actor: owns the watch registry and the map of live
//! sessions to connections, and delivers everything the processor produces —
//! notifications first, then the reply — so a client never sees a reply that
//! observes a change before the watch event for it.

use crate::delivery::{Delivered, DeliveryGate};
use crate::mailbox::Serve;
use crate::messages::{ConnAddr, ConnHandle, Detach, Dispatch, Dispatches, ToConn, WatchData, WatchReport};
use crate::registry::{ActorStats, Fault};
use crate::stats::ServerStats;
use actix::prelude::*;
use slog::Logger;
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
    /// Shared with the processor: batches handled here whose frames are not
    /// yet on the write queues (`undelivered` of them since the last flush).
    gate: Arc<DeliveryGate>,
    undelivered: u64,
    stats: Arc<ServerStats>,
    me: Arc<ActorStats>,
    log: Logger,
}

/// Connections with frames held at most, while more batches wait.
const MAX_HELD_CONNECTIONS: usize = 1024;

/// What one delivered batch has for the connections, handed to each I/O
/// thread as one task: a storm of notifications to many connections wakes
/// each I/O thread once, not once per connection. Everything for a
/// connection goes this way, so its frames and its `ToConn` messages keep
/// their order.
#[derive(Default)]
struct Outgoing {
    /// Frames gathered per connection, not yet placed in a thread's list.
    frames: HashMap<*const ConnHandle, (ConnAddr, Vec<u8>, u32)>,
    /// Per I/O thread, in order.
    per_thread: HashMap<usize, (actix_rt::ArbiterHandle, Vec<ConnOp>)>,
}

enum ConnOp {
    Write(ConnAddr, Vec<u8>, u32),
    Tell(ConnAddr, ToConn),
}

impl Outgoing {
    fn push(&mut self, conn: &ConnAddr, frame: &[u8]) {
        let (_, bytes, count) = self.frames.entry(Arc::as_ptr(conn)).or_insert_with(|| (conn.clone(), Vec::new(), 0));
        bytes.extend_from_slice(frame);
        *count += 1;
    }

    fn place(&mut self, conn: &ConnAddr, op: ConnOp) {
        self.per_thread.entry(conn.io.index).or_insert_with(|| (conn.io.handle.clone(), Vec::new())).1.push(op);
    }

    /// A message for the handler, after the frames gathered for it so far.
    fn tell(&mut self, conn: &ConnAddr, msg: ToConn) {
        if let Some((conn, bytes, count)) = self.frames.remove(&Arc::as_ptr(conn)) {
            self.place(&conn.clone(), ConnOp::Write(conn, bytes, count));
        }
        self.place(conn, ConnOp::Tell(conn.clone(), msg));
    }

    /// Hands everything gathered to the I/O threads; `delivered` is dropped
    /// once every thread has queued its share.
    fn flush(&mut self, stats: &Arc<ServerStats>, log: &Logger, delivered: Delivered) {
        let frames: Vec<_> = self.frames.drain().map(|(_, f)| f).collect();
        for (conn, bytes, count) in frames {
            self.place(&conn.clone(), ConnOp::Write(conn, bytes, count));
        }
        let delivered = Arc::new(delivered);
        for (_, (thread, ops)) in self.per_thread.drain() {
            let (stats, log, delivered) = (stats.clone(), log.clone(), delivered.clone());
            // A stopped I/O thread (shutdown) drops its connections anyway.
            thread.spawn_fn(move || {
                let _delivered = delivered;
                for op in ops {
                    match op {
                        ConnOp::Write(conn, bytes, count) => write(&conn, bytes, count, false, &stats, &log),
                        ConnOp::Tell(conn, msg) => conn.do_send(msg),
                    }
                }
            });
        }
    }
}

/// Queues frames on a connection's socket writer (on its I/O thread), or,
/// with `now` (the processor's direct replies), writes them at once when
/// nothing else is queued; a client whose queue is over its limit (it does
/// not read) is reset by its handler.
pub(crate) fn write(conn: &ConnHandle, bytes: Vec<u8>, count: u32, now: bool, stats: &ServerStats, log: &Logger) {
    let queued = if now { conn.out.send_now(bytes) } else { conn.out.send(bytes) };
    if queued {
        conn.info.sent.fetch_add(count as u64, Relaxed);
        stats.packets_sent.fetch_add(count as u64, Relaxed);
    } else if conn.mailbox.connected() {
        slog::warn!(log, "closing connection: client does not read its replies"; "instance" => &conn.mailbox.stats.instance, "pending_bytes" => conn.out.pending_bytes());
        conn.do_send(ToConn::TooSlow);
    }
}

impl Dispatcher {
    /// After each handled message. While more messages wait, what is held
    /// waits for theirs (each I/O thread is then woken once for all).
    fn flush_held(&mut self, _: &mut Context<Self>) {
        if self.me.depth() == 0 || self.outgoing.frames.len() >= MAX_HELD_CONNECTIONS {
            let delivered = Delivered::new(self.gate.clone(), std::mem::take(&mut self.undelivered));
            self.outgoing.flush(&self.stats, &self.log, delivered);
        }
    }

    pub fn new(stats: Arc<ServerStats>, me: Arc<ActorStats>, log: Logger, gate: Arc<DeliveryGate>) -> Dispatcher {
        Dispatcher { watches: WatchManager::default(), conns: HashMap::new(), outgoing: Outgoing::default(), gate, undelivered: 0, stats, me, log }
    }

    fn send(&mut self, session_id: i64, frame: &[u8]) {
        if let Some((_, conn)) = self.conns.get(&session_id) {
            self.outgoing.push(conn, frame);
        }
    }

    /// A message to a connection other than a frame: after its frames.
    fn tell(&mut self, conn: &ConnAddr, msg: ToConn) {
        self.outgoing.tell(conn, msg);
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

crate::supervise::supervised!(Dispatcher, after_each = flush_held);
crate::mailbox::mailbox!(Dispatcher: Dispatches, Detach, WatchReport, WatchData, crate::messages::CloseAll, Fault);

/// Watches live only in memory (clients hold the truth and re-send them with
/// setWatches on reconnect), so a restarted dispatcher starts empty and
/// closes every connection: clients reconnect, keep their sessions and
/// re-register their watches, as after a server restart.
impl crate::supervise::Rebuild for Dispatcher {
    fn rebuild(&mut self, _: &mut Context<Self>) {
        self.outgoing = Outgoing::default();
        // What was held is dropped with its connections, which all close.
        self.gate.delivered(std::mem::take(&mut self.undelivered));
        for (_, (_, conn)) in self.conns.drain() {
            conn.do_send(ToConn::Close { frame: None, reason: "the watch dispatcher restarted" });
        }
        self.watches = WatchManager::default();
        self.stats.watch_count.store(0, Relaxed);
    }
}

impl Serve<Dispatches> for Dispatcher {
    fn serve(&mut self, Dispatches(batch): Dispatches, _: &mut Context<Self>) {
        self.undelivered += 1;
        for msg in batch {
            self.dispatch(msg);
        }
        self.stats.watch_count.store(self.watches.count() as u64, Relaxed);
    }
}

impl Dispatcher {
    fn dispatch(&mut self, msg: Dispatch) {
        match msg {
            Dispatch::Output { conn, session_id, output, received } => {
                if let Some((t, op, update)) = received {
                    self.stats.record_latency(t, op, update);
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
        for (_, (_, conn)) in std::mem::take(&mut self.conns) {
            self.tell(&conn, ToConn::Close { frame: None, reason: "the server is not serving: looking for a leader" });
        }
    }
}
