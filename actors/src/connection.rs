//! The per-session handler actor: one per client connection. It frames and
//! decodes packets, holds the connection's auth identities, answers auth and
//! four-letter words itself, and forwards everything else to the processor.

use crate::codec::{FrameError, Inbound};
use crate::delivery::LocalReads;
use crate::deps::Deps;
use crate::mailbox::{guarded, Serve, Supervision};
use crate::messages::{AwaitApplied, ConnAddr, Connect, Detach, Submit, ToConn, WatchReport};
use crate::outbox::Outbox;
use crate::registry::{ActorStats, Fault};
use crate::stats::ConnInfo;
use actix::prelude::*;
use bytes::BytesMut;
use slog::{debug, info, warn, Logger};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::error::Code;
use warden_core::jute::{Reader, Writer};
use warden_core::proto::{op, ConnectRequest, Id, PlainRead, Request};
use warden_core::sasl::{DigestMd5Server, Step};
use warden_core::server::reply_frame;
use warden_core::shared_db::DbView;
use warden_core::{acl, fourlw};

/// What a connection needs to authenticate clients beyond addAuth.
pub struct Security {
    /// DIGEST-MD5 users from the JAAS `Server` section; None without a JAAS file.
    pub sasl_users: Option<BTreeMap<String, String>>,
}

impl Security {
    /// Reads `java.security.auth.login.config`; a missing or broken file
    /// stops the start, as in ZooKeeper.
    pub fn load(config: &warden_core::config::Config) -> Result<Security, String> {
        let Some(path) = &config.jaas_config else { return Ok(Security { sasl_users: None }) };
        let fail = |e: String| format!("java.security.auth.login.config {}: {e}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        // A file with only the quorum sections (quorum.auth.*) leaves client
        // SASL off, as in ZooKeeper; a file that does not parse stops the start.
        let sections = warden_core::sasl::parse_jaas(&text).map_err(fail)?;
        if !sections.contains_key("Server") {
            return Ok(Security { sasl_users: None });
        }
        let users = warden_core::sasl::digest_users(&text, "Server").map_err(fail)?;
        Ok(Security { sasl_users: Some(users) })
    }
}

/// Replies answered here are written once they reach this much, so a burst
/// of large reads is neither held in memory nor exempt from the outbox limit.
const LOCAL_REPLIES_FLUSH_BYTES: usize = 64 << 10;

/// The first room made for replies answered here (32 small reads' worth).
const LOCAL_REPLIES_FIRST_BYTES: usize = 4 << 10;

/// How often a busy connection refreshes its session's expiry clock.
const TOUCH_INTERVAL: Duration = Duration::from_millis(50);

enum State {
    AwaitingConnect,
    /// ConnectRequest sent to the processor; later frames wait in `queued`.
    Connecting,
    Established {
        session_id: i64,
    },
    Closing,
}

pub struct Connection {
    id: u64,
    peer: SocketAddr,
    deps: Arc<Deps>,
    out: Outbox,
    /// How the processor and dispatcher reach this connection.
    handle: ConnAddr,
    state: State,
    /// The attached session, kept through Closing so its watches are released.
    session: Option<i64>,
    queued: VecDeque<BytesMut>,
    /// Requests decoded from the current read, for the processor in one message.
    batch: Vec<Submit>,
    /// Replies to plain reads answered here from the current read, written
    /// together (one syscall for a pipelined burst) before anything else:
    /// before the batch's requests go to the processor, and before any
    /// frame this handler writes itself.
    local: Vec<u8>,
    local_count: u32,
    /// The node's `LocalReads`, cloned at the first read: taken out while a
    /// run of reads holds its read lock, and put back (cloning the shared
    /// `Arc` per read would bounce its count between the I/O threads).
    run_reads: Option<Arc<LocalReads>>,
    /// Of `local_count`, reads answered behind a read index (`lin_reads`),
    /// and pings answered after them.
    indexed_uncounted: u64,
    pings_uncounted: u64,
    /// The operations among `local`, and how many of each, for the latency histograms.
    local_ops: Vec<(&'static str, u64)>,
    /// When the current batch of frames was read: every request in it was received then.
    read_at: Instant,
    /// Packets read but not yet added to the shared counters (once per batch,
    /// not per packet: the counters are shared by every I/O thread).
    received_uncounted: u64,
    auth: Arc<[Id]>,
    info: Arc<ConnInfo>,
    /// This handler's mailbox counters (kind "session").
    me: Arc<ActorStats>,
    last_touch: Instant,
    log: Logger,
    security: Arc<Security>,
    /// The SASL exchange in progress or done, if the client started one.
    sasl: Option<DigestMd5Server>,
    /// warden.linearizableReads: plain reads waiting here for a read index
    /// (`lin_reads`), in order; batch 0 until they join one.
    waiting: VecDeque<Waiting>,
    /// The board's batch this connection last registered for.
    registered: Option<u64>,
}

/// A read waiting on the I/O thread for its read index.
struct Waiting {
    batch: u64,
    xid: i32,
    request: Request,
    auth: Arc<[Id]>,
    received: Instant,
}

impl Connection {
    #[allow(clippy::too_many_arguments)]
    pub fn new(id: u64, peer: SocketAddr, deps: Arc<Deps>, handle: ConnAddr, transport_ids: Vec<Id>, security: Arc<Security>) -> Connection {
        let (out, info, me) = (handle.out.clone(), handle.info.clone(), handle.mailbox.stats.clone());
        let log = deps.log.new(slog::o!("conn" => id, "peer" => peer.to_string()));
        let mut ids = vec![Id::new("ip", &peer.ip().to_string())];
        ids.extend(transport_ids);
        if deps.config.skip_acl {
            // zookeeper.skipACL=yes: every permission check passes.
            ids.push(Id::new("super", ""));
        }
        let auth: Arc<[Id]> = ids.into();
        Connection {
            id,
            peer,
            deps,
            out,
            handle,
            state: State::AwaitingConnect,
            session: None,
            queued: VecDeque::new(),
            batch: Vec::new(),
            local: Vec::new(),
            local_count: 0,
            run_reads: None,
            indexed_uncounted: 0,
            pings_uncounted: 0,
            local_ops: Vec::new(),
            read_at: Instant::now(),
            received_uncounted: 0,
            auth,
            info,
            me,
            last_touch: Instant::now(),
            log,
            security,
            sasl: None,
            waiting: VecDeque::new(),
            registered: None,
        }
    }

    fn write(&mut self, frame: Vec<u8>, ctx: &mut Context<Self>) {
        self.flush_local();
        if !self.out.send(frame) {
            warn!(self.log, "closing connection: client does not read its replies"; "pending_bytes" => self.out.pending_bytes());
            self.out.abort();
            return self.close("client too slow", ctx);
        }
        self.info.sent.fetch_add(1, Relaxed);
        self.deps.stats.packets_sent.fetch_add(1, Relaxed);
    }

    /// Writes the replies answered here so far.
    fn flush_local(&mut self) {
        if self.local_count > 0 {
            let count = std::mem::take(&mut self.local_count);
            let indexed = std::mem::take(&mut self.indexed_uncounted);
            let pings = std::mem::take(&mut self.pings_uncounted);
            if indexed > 0 {
                self.deps.stats.indexed_reads.fetch_add(indexed, Relaxed);
            }
            let plain = (count as u64).saturating_sub(indexed + pings);
            if plain > 0 {
                self.deps.stats.local_reads.fetch_add(plain, Relaxed);
            }
            self.deps.stats.record_latencies(self.read_at, &self.local_ops, false);
            self.local_ops.clear();
            crate::dispatcher::write(&self.handle, std::mem::take(&mut self.local), count, 0, &self.deps.stats, &self.log);
        }
    }

    /// Hands the requests read so far to this I/O thread's batch for the processor.
    fn submit_batch(&mut self) {
        if self.received_uncounted > 0 {
            let n = std::mem::take(&mut self.received_uncounted);
            self.info.received.fetch_add(n, Relaxed);
            self.deps.stats.packets_received.fetch_add(n, Relaxed);
        }
        self.flush_local();
        if self.waiting.back().is_some_and(|w| w.batch == 0) {
            let batch = self.deps.local_reads.board.join(self.registered, &self.handle);
            self.registered = Some(batch);
            for w in self.waiting.iter_mut().rev().take_while(|w| w.batch == 0) {
                w.batch = batch;
            }
        }
        if !self.batch.is_empty() {
            crate::io_batch::submit(&self.deps, self.batch.drain(..));
        }
    }

    /// Flushes what is queued, closes the socket and stops this actor.
    fn close(&mut self, reason: &str, ctx: &mut Context<Self>) {
        // Requests read before the reason to close are still served.
        self.submit_batch();
        if !matches!(self.state, State::Closing) {
            debug!(self.log, "closing connection"; "reason" => reason);
        }
        self.state = State::Closing;
        self.out.close();
        ctx.stop();
    }

    fn on_handshake(&mut self, frame: &[u8], ctx: &mut Context<Self>) {
        match ConnectRequest::decode(frame) {
            Ok(request) => {
                self.state = State::Connecting;
                self.deps.processor.do_send(Connect { conn: self.handle.clone(), conn_id: self.id, request });
            }
            Err(e) => {
                warn!(self.log, "closing connection: malformed connect request"; "error" => %e, "bytes" => frame.len());
                self.close("malformed connect request", ctx);
            }
        }
    }

    fn on_packet(&mut self, session_id: i64, frame: &[u8], ctx: &mut Context<Self>) {
        self.count_packet(session_id);
        let mut r = Reader::new(frame);
        let (Ok(xid), Ok(opcode)) = (r.i32(), r.i32()) else {
            warn!(self.log, "closing connection: packet shorter than a request header"; "bytes" => frame.len());
            return self.close("short packet", ctx);
        };
        if opcode == op::SASL {
            return self.on_sasl(xid, &mut r, ctx);
        }
        let request = match Request::decode(opcode, &mut r) {
            Ok(req) => req,
            Err(e) => {
                // Like ZooKeeper: a body we cannot read gets MarshallingError, the connection lives.
                warn!(self.log, "rejecting malformed request"; "xid" => xid, "opcode" => opcode, "error" => %e);
                let zxid = 0;
                self.write(reply_frame(xid, zxid, Code::MarshallingError as i32, |_| {}), ctx);
                return;
            }
        };
        if let Request::Auth { scheme, auth } = &request {
            return self.on_auth(xid, scheme, auth, ctx);
        }
        if opcode == op::CLOSE_SESSION {
            debug!(self.log, "client closes its session"; "session" => format!("0x{session_id:x}"));
        }
        let received = self.read_at;
        self.route(session_id, xid, request, received);
    }

    fn count_packet(&mut self, session_id: i64) {
        self.received_uncounted += 1;
        if self.read_at.saturating_duration_since(self.last_touch) >= TOUCH_INTERVAL {
            crate::io_batch::touch(&self.deps, session_id);
            self.last_touch = self.read_at;
        }
    }

    /// A read without a watch answered from its frame, with no owned request
    /// (its path stays in the frame) and under `view`, the read lock a run of
    /// such reads shares; says whether it was. Anything else is for `on_frame`.
    fn answered_from_frame<'v>(&mut self, frame: &[u8], reads: &'v LocalReads, view: &mut Option<DbView<'v>>) -> bool {
        let State::Established { session_id } = self.state else { return false };
        if !self.waiting.is_empty() {
            return false;
        }
        let mut r = Reader::new(frame);
        let (Ok(xid), Ok(opcode)) = (r.i32(), r.i32()) else { return false };
        let Some(Ok(read)) = PlainRead::decode(opcode, &mut r) else { return false };
        if read.watch || reads.waits_for_index(read) {
            return false;
        }
        self.make_room_for_local();
        if !reads.answer(view, &self.handle, session_id, xid, read, &self.auth, &mut self.local) {
            return false;
        }
        self.answered_here(read);
        self.count_packet(session_id);
        true
    }

    /// Where a request goes, in its session's order: waiting here for a
    /// read index, answered here from the committed tree, or to the processor.
    fn route(&mut self, session_id: i64, xid: i32, request: Request, received: Instant) {
        let read = request.as_read();
        let indexed = read.is_some_and(|read| self.deps.local_reads.waits_for_index(read));
        let at_processor = self.handle.unanswered.load(std::sync::atomic::Ordering::Acquire);
        let ping = matches!(request, Request::Ping);
        match crate::lin_reads::route(!self.waiting.is_empty(), indexed, ping, at_processor) {
            crate::lin_reads::Route::Wait => {
                let auth = self.auth.clone();
                return self.waiting.push_back(Waiting { batch: 0, xid, request, auth, received });
            }
            crate::lin_reads::Route::HandOver => self.hand_over_waiting(session_id),
            crate::lin_reads::Route::Go => {}
        }
        if let Some(read) = read.filter(|read| !read.watch) {
            self.make_room_for_local();
            if self.deps.local_reads.answer(&mut None, &self.handle, session_id, xid, read, &self.auth, &mut self.local) {
                return self.answered_here(read);
            }
        }
        let auth = self.auth.clone();
        self.submit(session_id, xid, request, auth, received);
    }

    fn make_room_for_local(&mut self) {
        if self.local.capacity() == 0 {
            // Room for a batch's replies at once, not a doubling per few replies.
            self.local.reserve(LOCAL_REPLIES_FIRST_BYTES);
        }
    }

    /// After a read's reply was appended to `local` (`LocalReads::answer`).
    fn answered_here(&mut self, read: PlainRead) {
        self.count_local(read.name());
        // At once when watching: a watch event queued after this read must
        // not go out ahead of its reply.
        if self.handle.watching.load(Relaxed) || self.local.len() >= LOCAL_REPLIES_FLUSH_BYTES {
            self.flush_local();
        }
    }

    /// The reads waiting here go to the processor, in order (it puts them behind an index of its own).
    fn hand_over_waiting(&mut self, session_id: i64) {
        for w in std::mem::take(&mut self.waiting) {
            self.submit(session_id, w.xid, w.request, w.auth, w.received);
        }
    }

    fn count_local(&mut self, op: &'static str) {
        match self.local_ops.iter_mut().find(|(o, _)| *o == op) {
            Some((_, n)) => *n += 1,
            None => self.local_ops.push((op, 1)),
        }
        self.local_count += 1;
    }

    fn submit(&mut self, session_id: i64, xid: i32, request: Request, auth: Arc<[Id]>, received: Instant) {
        // Answered when its reply is queued (by the processor or dispatcher).
        self.handle.unanswered.fetch_add(1, Relaxed);
        // Bounded by the read gate (`gated`): no new request is read while
        // the processor's mailbox is full.
        self.batch.push(Submit { conn: self.handle.clone(), session_id, xid, request, auth, received });
    }

    /// The reads waiting for `batch` (and earlier) have read index `index`:
    /// answered here if the tree has applied it (else the processor says
    /// when it has); those that cannot be, and every read after them, go to
    /// the processor.
    fn on_read_index(&mut self, batch: u64, index: i64) {
        let State::Established { session_id } = self.state else { return };
        let ready = self.waiting.iter().take_while(|w| w.batch != 0 && w.batch <= batch).count();
        if ready == 0 {
            return;
        }
        let Some(first) = self.waiting.front().map(|w| w.received) else { return };
        self.flush_local();
        let reads = self.waiting.iter().take(ready).map(|w| (w.xid, &w.request, &*w.auth));
        let Ok(answered) = self.deps.local_reads.answer_indexed(&self.handle, session_id, index, reads, &mut self.local) else {
            // The leader's commit is still on its way to this tree: the processor says when it is applied.
            let conn = self.handle.clone();
            return self.deps.processor.do_send(AwaitApplied { zxid: index, batch, conn });
        };
        for _ in 0..answered {
            let Some(w) = self.waiting.pop_front() else { break };
            self.count_local(w.request.name());
            match w.request {
                Request::Ping => self.pings_uncounted += 1,
                _ => self.indexed_uncounted += 1,
            }
        }
        if answered < ready {
            self.hand_over_waiting(session_id);
        }
        // Their latency counts from when the first of them was read.
        self.read_at = first;
        self.flush_local();
        self.read_at = Instant::now();
        self.submit_batch();
    }

    /// addAuth: answered here, since identities belong to the connection. The
    /// reply echoes the request's xid (Java clients send -4, others need not).
    fn on_auth(&mut self, xid: i32, scheme: &str, auth: &[u8], ctx: &mut Context<Self>) {
        let ip = self.peer.ip().to_string();
        let result = match scheme {
            // As ZooKeeper's X509AuthenticationProvider: succeeds only with a verified client certificate.
            "x509" if self.auth.iter().any(|i| i.scheme == "x509") => Ok(Vec::new()),
            "x509" => Err(Code::AuthFailed),
            _ => acl::authenticate(scheme, auth, &ip, self.deps.config.super_digest.as_deref()),
        };
        match result {
            Ok(ids) => {
                let mut all: Vec<Id> = self.auth.to_vec();
                for id in ids {
                    if !all.contains(&id) {
                        all.push(id);
                    }
                }
                self.auth = all.into();
                self.write(reply_frame(xid, 0, 0, |_| {}), ctx);
            }
            Err(code) => {
                info!(self.log, "authentication failed"; "scheme" => scheme);
                self.deps.stats.auth_failed.fetch_add(1, Relaxed);
                self.write(reply_frame(xid, 0, code as i32, |_| {}), ctx);
                self.close("authentication failed", ctx);
            }
        }
    }

    fn add_identity(&mut self, id: Id) {
        if !self.auth.contains(&id) {
            let mut all: Vec<Id> = self.auth.to_vec();
            all.push(id);
            self.auth = all.into();
        }
    }

    /// One SASL token (GetSASLRequest), answered here like addAuth, as
    /// ZooKeeperServer.processSasl. Only DIGEST-MD5 is served.
    fn on_sasl(&mut self, xid: i32, r: &mut Reader, ctx: &mut Context<Self>) {
        let token = match r.buffer() {
            Ok(t) => t.unwrap_or_default(),
            Err(e) => {
                warn!(self.log, "rejecting malformed SASL request"; "xid" => xid, "error" => %e);
                return self.write(reply_frame(xid, 0, Code::MarshallingError as i32, |_| {}), ctx);
            }
        };
        let step = match &self.security.sasl_users {
            None => Step::Failed("SASL is not configured (no java.security.auth.login.config)".into()),
            Some(users) => {
                let server = self.sasl.get_or_insert_with(|| DigestMd5Server::zookeeper(&crate::nonce::nonce()));
                server.step(&token, |u| users.get(u).cloned())
            }
        };
        match step {
            Step::Continue(t) => self.write(reply_frame(xid, 0, 0, |w| w.put_buffer(Some(&t))), ctx),
            Step::Done { token, user } => {
                info!(self.log, "SASL authenticated"; "mechanism" => "DIGEST-MD5", "sasl" => &user);
                if self.deps.config.sasl_super_user.as_deref() == Some(user.as_str()) {
                    // zookeeper.superUser
                    self.add_identity(Id::new("super", ""));
                }
                self.add_identity(Id::new("sasl", &user));
                self.write(reply_frame(xid, 0, 0, |w| w.put_buffer(Some(&token))), ctx);
            }
            Step::Failed(why) => {
                // ZooKeeper: AuthFailed with an empty response, then the connection (not the session) closes.
                warn!(self.log, "SASL authentication failed; closing connection"; "reason" => why);
                self.deps.stats.auth_failed.fetch_add(1, Relaxed);
                self.write(reply_frame(xid, 0, Code::AuthFailed as i32, |_| {}), ctx);
                self.close("SASL authentication failed", ctx);
            }
        }
    }

    fn on_four_letter(&mut self, cmd: &'static str, ctx: &mut Context<Self>) {
        if !self.deps.config.four_letter_allowed(cmd) {
            info!(self.log, "four-letter word not in 4lw.commands.whitelist"; "cmd" => cmd);
            self.out.send(fourlw::not_whitelisted(cmd).into_bytes());
            return self.close("4lw not whitelisted", ctx);
        }
        self.state = State::Closing;
        if matches!(cmd, "wchs" | "wchc" | "wchp") {
            self.deps
                .dispatcher
                .send(WatchReport(cmd))
                .into_actor(self)
                .then(move |res, act, ctx| {
                    if let Ok(text) = res {
                        act.out.send(text.into_bytes());
                    }
                    act.close("4lw answered", ctx);
                    fut::ready(())
                })
                .wait(ctx);
            return;
        }
        let snapshot = crate::deps::server_snapshot(&self.deps.processor, cmd, self.deps.config.clone());
        actix::fut::wrap_future::<_, Self>(snapshot)
            .then(move |res, act, ctx| {
                if let Ok(snapshot) = res {
                    act.out.send(fourlw::reply(cmd, &snapshot).into_bytes());
                }
                act.close("4lw answered", ctx);
                fut::ready(())
            })
            .wait(ctx);
    }

    fn on_frame(&mut self, frame: &[u8], ctx: &mut Context<Self>) {
        match self.state {
            State::AwaitingConnect => self.on_handshake(frame, ctx),
            State::Connecting => self.queued.push_back(BytesMut::from(frame)),
            State::Established { session_id } => self.on_packet(session_id, frame, ctx),
            State::Closing => {}
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        // The dispatcher may still hold this connection's write side: end it here.
        self.out.close();
        self.deps.stats.connections.lock().unwrap().remove(&self.id);
        self.deps.registry.unregister(&self.me);
        if let Some(session_id) = self.session {
            self.deps.dispatcher.do_send(Detach { session_id, conn_id: self.id });
        }
        debug!(self.log, "connection closed");
    }
}

crate::mailbox::mailbox!(Connection: ToConn, Fault);

/// A session handler is not restarted: it closes its connection, and the
/// client reconnects and resumes its session (on any member).
impl Supervision for Connection {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.me
    }
    fn log(&self) -> &Logger {
        &self.log
    }
    fn panicked(&mut self, ctx: &mut Context<Self>) {
        self.me.policy.restarts.fetch_add(1, Relaxed);
        self.out.abort();
        self.close("the session handler failed", ctx);
    }
}

impl Serve<Fault> for Connection {
    fn serve(&mut self, f: Fault, ctx: &mut Context<Self>) {
        match f {
            Fault::Stop => self.panicked(ctx),
            f => crate::supervise::inject(self, f, ctx),
        }
    }
}

/// Reads answered under one read lock at most (the processor's next
/// change waits for them).
const READS_PER_VIEW: u32 = 64;

/// Reads' worth of frames handed to the handler at once: all those already
/// read, up to this many reads.
const FRAMES_PER_BATCH: usize = 128;

/// Replies queued but unwritten beyond which a connection stops reading
/// requests (a client that pipelines but does not read is throttled, and
/// cut off only at `outbox::MAX_PENDING_BYTES`).
const READ_GATE_PENDING_BYTES: usize = 4 << 20;

/// The socket's frames, in batches of those already read, read only while
/// this handler's mailbox is below half its capacity, its unwritten replies
/// below `READ_GATE_PENDING_BYTES`, and the processor's mailbox not full: a
/// session handler whose replies pile up, or a busy processor, stops
/// reading (backpressure).
pub fn gated<S: futures_util::Stream + Unpin + 'static>(
    frames: S,
    handle: &ConnAddr,
    processor: Arc<ActorStats>,
) -> impl futures_util::Stream<Item = Vec<S::Item>> {
    let gate = ReadGate { frames, me: handle.mailbox.stats.clone(), pending: handle.out.pending_counter(), processor, pause: None };
    futures_util::StreamExt::ready_chunks(gate, FRAMES_PER_BATCH)
}

/// `gated`'s stream: checked before each read's frames, with no allocation or
/// shared reference count touched per frame (the I/O threads share them).
struct ReadGate<S> {
    frames: S,
    me: Arc<ActorStats>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
    processor: Arc<ActorStats>,
    pause: Option<std::pin::Pin<Box<actix::clock::Sleep>>>,
}

impl<S> ReadGate<S> {
    fn closed(&self) -> bool {
        self.processor.full()
            || self.me.depth() * 2 >= self.me.policy.mailbox_capacity.load(Relaxed) as u64
            || self.pending.load(Relaxed) > READ_GATE_PENDING_BYTES
    }
}

impl<S: futures_util::Stream + Unpin> futures_util::Stream for ReadGate<S> {
    type Item = S::Item;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<S::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = this.pause.as_mut() {
                std::task::ready!(std::future::Future::poll(pause.as_mut(), cx));
                this.pause = None;
            }
            if !this.closed() {
                return std::pin::Pin::new(&mut this.frames).poll_next(cx);
            }
            this.pause = Some(Box::pin(actix::clock::sleep(Duration::from_millis(1))));
        }
    }
}

impl StreamHandler<Vec<Result<Inbound, FrameError>>> for Connection {
    fn handle(&mut self, items: Vec<Result<Inbound, FrameError>>, ctx: &mut Context<Self>) {
        guarded(self, ctx, |act, ctx| {
            act.read_at = Instant::now();
            for item in items {
                act.on_inbound(item, ctx);
            }
            act.submit_batch();
        });
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Connection {
    fn on_inbound(&mut self, item: Result<Inbound, FrameError>, ctx: &mut Context<Self>) {
        match item {
            Ok(Inbound::Frames(buf)) => {
                let mut frames = crate::codec::frames(&buf).peekable();
                while frames.peek().is_some() {
                    // A run of reads answered here, under one read lock.
                    let reads = self.run_reads.take().unwrap_or_else(|| self.deps.local_reads.clone());
                    let (mut view, mut shared) = (None, 0);
                    while frames.next_if(|frame| shared < READS_PER_VIEW && self.answered_from_frame(frame, &reads, &mut view)).is_some() {
                        shared += 1;
                    }
                    drop(view);
                    self.run_reads = Some(reads);
                    // Anything else runs with the lock let go (the processor waits on it).
                    if shared < READS_PER_VIEW {
                        if let Some(frame) = frames.next() {
                            self.on_frame(frame, ctx);
                        }
                    }
                }
            }
            Ok(Inbound::FourLetter(cmd)) => self.on_four_letter(cmd, ctx),
            Err(e) => {
                warn!(self.log, "closing connection: bad frame"; "error" => %e);
                self.close("bad frame", ctx);
            }
        }
    }
}

impl Serve<ToConn> for Connection {
    fn serve(&mut self, msg: ToConn, ctx: &mut Context<Self>) {
        match msg {
            ToConn::TooSlow => {
                self.out.abort();
                self.close("client too slow", ctx);
            }
            ToConn::Connected { session_id, timeout_ms } => {
                debug!(self.log, "session attached"; "session" => format!("0x{session_id:x}"), "timeout_ms" => timeout_ms);
                self.info.session_id.store(session_id, Relaxed);
                self.info.timeout_ms.store(timeout_ms as i64, Relaxed);
                self.state = State::Established { session_id };
                self.session = Some(session_id);
                self.read_at = Instant::now();
                while let Some(f) = self.queued.pop_front() {
                    self.on_frame(&f, ctx);
                }
                self.submit_batch();
            }
            ToConn::Close { frame, reason } => {
                if let Some(f) = frame {
                    self.write(f, ctx);
                }
                self.close(reason, ctx);
            }
            ToConn::ReadIndex { batch, index: Some(index) } => self.on_read_index(batch, index),
            ToConn::ReadIndex { batch, index: None } => {
                if self.waiting.front().is_some_and(|w| w.batch != 0 && w.batch <= batch) {
                    self.close("no read index: the server lost its leader", ctx);
                }
            }
        }
    }
}
