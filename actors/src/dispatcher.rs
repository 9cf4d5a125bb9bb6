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
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
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
    /// Requests answered in the batch being handled, for the latency histograms.
    answered: Vec<(std::time::Instant, &'static str, bool)>,
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

/// What one delivered batch has for the connections: frames alone are
/// written from the dispatcher's thread; a batch with messages for handlers
/// goes to each I/O thread as one task, so a connection's frames and its
/// `ToConn` messages keep their order.
#[derive(Default)]
pub(crate) struct Outgoing {
    /// Frames gathered per connection, not yet placed in a thread's list.
    frames: HashMap<*const ConnHandle, Frames>,
    /// Per I/O thread, in order.
    per_thread: HashMap<usize, (actix_rt::ArbiterHandle, Vec<ConnOp>)>,
    /// I/O-thread shares of earlier flushes not yet run: while any is, a
    /// frame written here could overtake one of theirs.
    on_io_threads: Arc<AtomicUsize>,
}

/// One connection's frames to write together.
struct Frames {
    conn: ConnAddr,
    bytes: Vec<u8>,
    /// Frames in `bytes`, for the sent-packet counters.
    count: u32,
    /// Replies among them that answer a request (`ConnHandle::unanswered`).
    answers: u32,
}

enum ConnOp {
    Write(Frames),
    Tell(ConnAddr, ToConn),
}

impl Outgoing {
    fn entry(&mut self, conn: &ConnAddr) -> &mut Frames {
        self.frames.entry(Arc::as_ptr(conn)).or_insert_with(|| Frames { conn: conn.clone(), bytes: Vec::new(), count: 0, answers: 0 })
    }

    pub(crate) fn push(&mut self, conn: &ConnAddr, frame: &[u8]) {
        let f = self.entry(conn);
        f.bytes.extend_from_slice(frame);
        f.count += 1;
    }

    /// The frames pushed so far for `conn` end with the answer to one of its requests.
    pub(crate) fn answered(&mut self, conn: &ConnAddr) {
        self.entry(conn).answers += 1;
    }

    /// Writes each connection's frames from this thread, one syscall each
    /// (for frames gathered without any handler message among them).
    pub(crate) fn write_here(&mut self, stats: &ServerStats, log: &Logger) {
        debug_assert!(self.per_thread.is_empty(), "messages for handlers need the I/O threads");
        for (_, f) in self.frames.drain() {
            write(&f.conn, f.bytes, f.count, f.answers, stats, log);
        }
    }

    fn place(&mut self, conn: &ConnAddr, op: ConnOp) {
        self.per_thread.entry(conn.io.index).or_insert_with(|| (conn.io.handle.clone(), Vec::new())).1.push(op);
    }

    /// A message for the handler, after the frames gathered for it so far.
    fn tell(&mut self, conn: &ConnAddr, msg: ToConn) {
        if let Some(f) = self.frames.remove(&Arc::as_ptr(conn)) {
            self.place(&f.conn.clone(), ConnOp::Write(f));
        }
        self.place(conn, ConnOp::Tell(conn.clone(), msg));
    }

    /// Writes or hands over everything gathered; `delivered` is dropped once
    /// all of it is written or queued. When the batch is frames only and no
    /// earlier share is still on its way, they are written from this thread:
    /// a storm of notifications then costs one syscall per connection and no
    /// wake-ups. Otherwise each I/O thread gets its share as one task.
    fn flush(&mut self, stats: &Arc<ServerStats>, log: &Logger, delivered: Delivered) {
        let here = self.per_thread.is_empty() && self.on_io_threads.load(Acquire) == 0;
        let frames: Vec<_> = self.frames.drain().map(|(_, f)| f).collect();
        for f in frames {
            if here {
                write(&f.conn, f.bytes, f.count, f.answers, stats, log);
            } else {
                self.place(&f.conn.clone(), ConnOp::Write(f));
            }
        }
        let delivered = Arc::new(delivered);
        for (_, (thread, ops)) in self.per_thread.drain() {
            let (stats, log, delivered) = (stats.clone(), log.clone(), delivered.clone());
            let share = OnIoThread::new(&self.on_io_threads);
            // A stopped I/O thread (shutdown) drops its connections anyway.
            thread.spawn_fn(move || {
                let _done = (delivered, share);
                for op in ops {
                    match op {
                        ConnOp::Write(f) => write(&f.conn, f.bytes, f.count, f.answers, &stats, &log),
                        ConnOp::Tell(conn, msg) => conn.do_send(msg),
                    }
                }
            });
        }
    }
}

/// Counts one I/O-thread share as pending until it has run (or was dropped
/// unrun, by a stopped thread).
struct OnIoThread(Arc<AtomicUsize>);

impl OnIoThread {
    fn new(count: &Arc<AtomicUsize>) -> OnIoThread {
        count.fetch_add(1, Relaxed);
        OnIoThread(count.clone())
    }
}

impl Drop for OnIoThread {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Release);
    }
}

/// Writes frames to a connection at once when nothing else is queued or
/// being written for it (one non-blocking syscall on the calling thread),
/// else queues them on its socket writer; a client whose queue is over its
/// limit (it does not read) is reset by its handler. `answers`: replies to
/// the connection's requests among the frames, now all on its queue.
pub(crate) fn write(conn: &ConnHandle, bytes: Vec<u8>, count: u32, answers: u32, stats: &ServerStats, log: &Logger) {
    let queued = bytes.is_empty() || conn.out.send_now(bytes);
    if answers > 0 {
        // Release: a local read that sees the count drop sees these frames queued.
        conn.unanswered.fetch_sub(answers, Release);
    }
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
        Dispatcher {
            watches: WatchManager::default(),
            conns: HashMap::new(),
            outgoing: Outgoing::default(),
            answered: Vec::new(),
            gate,
            undelivered: 0,
            stats,
            me,
            log,
        }
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

    /// `answers`: the output answers a request of `conn`'s.
    fn deliver(&mut self, conn: Option<ConnAddr>, session_id: i64, out: Output, answers: bool) {
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
        if out.watches.iter().any(|op| !matches!(op, WatchOp::FireNow { .. })) {
            // Before the reply is queued: the session's later local reads must
            // wait for watch events in flight (`LocalReads`).
            let attached = self.conns.get(&session_id).map(|(_, c)| c);
            for c in conn.iter().chain(attached) {
                c.watching.store(true, Relaxed);
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
        if let (Some(c), true) = (&conn, answers) {
            self.outgoing.answered(c);
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
        self.stats.record_each(&self.answered);
        self.answered.clear();
        self.stats.watch_count.store(self.watches.count() as u64, Relaxed);
    }
}

impl Dispatcher {
    fn dispatch(&mut self, msg: Dispatch) {
        match msg {
            Dispatch::Output { conn, session_id, output, received } => {
                if let Some((t, op, update)) = received {
                    self.answered.push((t, op, update));
                    self.stats.outstanding.fetch_sub(1, Relaxed);
                }
                self.deliver(conn, session_id, output, received.is_some());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::{mailbox, Mailbox, Supervision};
    use crate::messages::{ConnHandle, IoThread};
    use crate::outbox::Outbox;
    use crate::registry::Registry;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    /// Stands in for a connection's handler: takes its messages and does nothing.
    struct Sink {
        me: Arc<ActorStats>,
        log: Logger,
    }

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Supervision for Sink {
        fn stats(&self) -> &Arc<ActorStats> {
            &self.me
        }
        fn log(&self) -> &Logger {
            &self.log
        }
        fn panicked(&mut self, _: &mut Context<Self>) {}
    }

    impl Serve<ToConn> for Sink {
        fn serve(&mut self, _: ToConn, _: &mut Context<Self>) {}
    }

    mailbox!(Sink: ToConn);

    /// A connection living on `io`, with the client's end of its socket.
    async fn connection(io: &actix_rt::Arbiter) -> (ConnAddr, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&server);
        let (_read, write) = server.into_split();
        let registry = Registry::default();
        let me = registry.register("session", "1");
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mailbox = Mailbox::new(Sink { me: me.clone(), log }.start(), me).inbox();
        let info = Arc::new(crate::stats::ConnInfo::new("test".into(), 0));
        let conn = ConnHandle::new(mailbox, Outbox::start(write, fd, true), info, IoThread { index: 0, handle: io.handle() });
        (Arc::new(conn), client)
    }

    /// Holds the I/O thread until the returned sender is dropped.
    fn block(io: &actix_rt::Arbiter) -> std::sync::mpsc::Sender<()> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        io.spawn_fn(move || {
            let _ = rx.recv();
        });
        tx
    }

    async fn read_some(client: &mut tokio::net::TcpStream, wait: Duration) -> Vec<u8> {
        let mut buf = vec![0u8; 1024];
        match tokio::time::timeout(wait, client.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].to_vec(),
            _ => Vec::new(),
        }
    }

    fn flush(out: &mut Outgoing) {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        out.flush(&Arc::new(ServerStats::default()), &log, Delivered::new(Arc::new(DeliveryGate::default()), 0));
    }

    #[actix_rt::test]
    async fn frames_alone_are_written_at_once_but_never_ahead_of_an_earlier_share() {
        let io = actix_rt::Arbiter::new();
        let (conn, mut client) = connection(&io).await;
        let mut out = Outgoing::default();

        // Frames only, nothing on the I/O thread: written from here, so
        // they arrive while the I/O thread is held.
        let held = block(&io);
        out.push(&conn, b"first");
        flush(&mut out);
        assert_eq!(read_some(&mut client, Duration::from_secs(5)).await, b"first");

        // A message for the handler sends the batch through the I/O thread
        // (still held); the next batch's frame must wait behind it.
        out.push(&conn, b"second");
        out.tell(&conn, ToConn::Connected { session_id: 1, timeout_ms: 1 });
        flush(&mut out);
        out.push(&conn, b"third");
        flush(&mut out);
        assert!(read_some(&mut client, Duration::from_millis(300)).await.is_empty(), "nothing overtakes the held share");
        drop(held);
        let mut got = Vec::new();
        while got.len() < b"secondthird".len() {
            let more = read_some(&mut client, Duration::from_secs(5)).await;
            assert!(!more.is_empty(), "only {:?} arrived", String::from_utf8_lossy(&got));
            got.extend(more);
        }
        assert_eq!(got, b"secondthird");
        io.stop();
    }
}
