//! The request processor actor: owns the data tree and session table (the
//! pure `Core`), assigns zxids, hands new transactions to the log, and passes
//! every result to the dispatcher in order — holding results back until the
//! transactions before them are durable. It also drives fuzzy snapshots and
//! the container/TTL reaper.

use crate::auditor::Auditor;
use crate::clock::wall_clock_ms;
use crate::delivery::DeliveryGate;
use crate::dispatcher::Dispatcher;
use crate::mailbox::{Mailbox, Serve};
use crate::messages::Audit;
use crate::messages::{
    ConnAddr, Connect, Dispatch, Dispatches, Expire, ReportStats, Retrack, SnapshotNow, SnapshotPart, Submit, Submits, Synced, ToConn, Tracking,
};
use crate::registry::{ActorStats, Fault};
use crate::snapshotter::Snapshotter;
use crate::stats::ServerStats;
use crate::storage::TxnLog;
use crate::tracker::Tracker;
use actix::prelude::*;
use slog::{error, info, warn, Logger};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use warden_core::audit::{self, AuditEvent};
use warden_core::config::Config;
use warden_core::fourlw::ServerSnapshot;
use warden_core::server::{ConnectOutcome, Core, Output, Processed, Reply, RequestCtx};
use warden_core::snapshot::SnapshotWriter;

mod backup;
pub(crate) mod ensemble;
mod throttler;

/// Results held for the dispatcher at most, while more messages wait.
const MAX_DISPATCH_BATCH: usize = 1024;

/// Nodes serialized per snapshot step; requests are served between steps.
const SNAPSHOT_CHUNK_NODES: usize = 5000;

/// ZooKeeper's snapshot spacing: snapCount/2 plus a random part, so members
/// of an ensemble do not all snapshot at once.
fn snapshot_threshold(snap_count: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    let half = (snap_count / 2).max(1);
    half + random % half
}

/// Who asked, for delivering a result later.
pub(crate) struct Caller {
    pub conn: ConnAddr,
    pub session_id: i64,
    /// The connection's identities when it asked (the audit log's user and ip).
    pub auth: Arc<[warden_core::proto::Id]>,
    pub received: std::time::Instant,
    pub op: &'static str,
    /// A write (ZooKeeper's updatelatency rather than readlatency).
    pub update: bool,
}

impl Caller {
    /// Who asked `msg`, to answer it later.
    pub fn of(msg: &Submit) -> Caller {
        Caller {
            conn: msg.conn.clone(),
            session_id: msg.session_id,
            auth: msg.auth.clone(),
            received: msg.received,
            op: msg.request.name(),
            update: msg.request.is_write(),
        }
    }
}

/// Which write a session waits for: one this server prepared (its zxid), or
/// one forwarded to the leader (its client xid).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum WriteKey {
    Zxid(i64),
    Xid(i32),
    /// A batch of linearizable reads waiting for its read index.
    ReadIndex(u64),
}

/// A session's request waiting for an earlier write of the same session.
pub(crate) enum InFlight {
    Write(WriteKey),
    Read(Submit),
    /// A read whose quorum barrier (warden.linearizableReads) is ahead of it.
    ReadAfterBarrier(Submit),
}

/// Where the result of a pending transaction goes.
pub(crate) enum Route {
    Request(Caller),
    /// A new session's handshake reply.
    Attach(Dispatch),
    /// A learner's forwarded request: the learner answers its own client.
    Remote,
}

pub struct Processor {
    pub(crate) core: Core,
    pub(crate) dispatcher: Mailbox<Dispatcher>,
    /// Clear when the dispatcher has nothing of ours in transit: a plain
    /// reply may then go straight to its connection.
    delivery: Arc<DeliveryGate>,
    pub(crate) tracker: Mailbox<Tracker>,
    /// Standalone: the log. In an ensemble the broadcast actor owns it.
    pub(crate) txn_log: Option<TxnLog>,
    pub(crate) snapshotter: Mailbox<Snapshotter>,
    pub(crate) me: Arc<ActorStats>,
    pub(crate) config: Arc<Config>,
    pub(crate) stats: Arc<ServerStats>,
    pub(crate) log: Logger,
    /// Highest zxid the log made durable.
    synced_zxid: i64,
    /// Who waits for each pending transaction's result.
    pub(crate) routes: HashMap<i64, Route>,
    /// Per session with writes in flight: its requests in arrival order, so
    /// its replies keep request order. Other sessions' reads never wait here.
    pub(crate) in_flight: HashMap<i64, VecDeque<InFlight>>,
    pub(crate) txns_since_snapshot: u64,
    /// Whether writes come one at a time (then written on this thread).
    lone_writes: crate::storage::LoneWrites,
    next_snapshot_after: u64,
    pub(crate) snapshot: Option<SnapshotWriter>,
    /// Told when the snapshot being written ends (`FinishSnapshot`).
    snapshot_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// The backup walk in progress (its id), and how many have started.
    pub(crate) backup: Option<u64>,
    pub(crate) backups_started: u64,
    /// Ensemble mode: the view of Zab and the broadcast actor (None when standalone).
    pub(crate) zab: Option<self::ensemble::Ensemble>,
    /// Results of the message being handled, sent to the dispatcher in one
    /// batch when it is done (`after_each`).
    outbound: Vec<Dispatch>,
    /// Direct replies gathered while a run of them is produced (`gathering_replies`),
    /// then written with one syscall per connection.
    replies: crate::dispatcher::Outgoing,
    /// The requests among `replies`, for the latency histograms.
    answered: Vec<(std::time::Instant, &'static str, bool)>,
    gather_replies: bool,
    /// audit.enable: the auditor, and the events gathered for it this message.
    auditor: Option<Mailbox<Auditor>>,
    audited: Vec<AuditEvent>,
    /// The connection throttle and the request throttler's waiting line.
    pub(crate) throttles: self::throttler::Throttles,
}

impl Processor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: Core,
        dispatcher: Mailbox<Dispatcher>,
        delivery: Arc<DeliveryGate>,
        tracker: Mailbox<Tracker>,
        txn_log: Option<TxnLog>,
        snapshotter: Mailbox<Snapshotter>,
        me: Arc<ActorStats>,
        config: Arc<Config>,
        stats: Arc<ServerStats>,
        log: Logger,
    ) -> Processor {
        let zxid = core.last_zxid();
        let next_snapshot_after = snapshot_threshold(config.snap_count);
        let throttles = self::throttler::Throttles::new(&config.throttle, wall_clock_ms());
        Processor {
            core,
            dispatcher,
            delivery,
            tracker,
            txn_log,
            snapshotter,
            me,
            config,
            stats,
            log,
            synced_zxid: zxid,
            routes: HashMap::new(),
            in_flight: HashMap::new(),
            txns_since_snapshot: 0,
            lone_writes: Default::default(),
            next_snapshot_after,
            snapshot: None,
            snapshot_waiters: Vec::new(),
            backup: None,
            backups_started: 0,
            zab: None,
            outbound: Vec::new(),
            replies: Default::default(),
            answered: Vec::new(),
            gather_replies: false,
            auditor: None,
            audited: Vec::new(),
            throttles,
        }
    }

    pub fn with_auditor(mut self, auditor: Option<Mailbox<Auditor>>) -> Processor {
        self.auditor = auditor;
        self
    }

    /// This actor's own counted address.
    pub(crate) fn mailbox(&self, ctx: &Context<Self>) -> Mailbox<Processor> {
        Mailbox::new(ctx.address(), self.me.clone())
    }

    pub fn with_zab(mut self, zab: self::ensemble::Ensemble) -> Processor {
        self.zab = Some(zab);
        self
    }

    /// Sends new transactions to the log; starts a snapshot when due.
    pub(crate) fn flush_log(&mut self, ctx: &mut Context<Self>) {
        let entries = self.core.take_unlogged();
        if entries.is_empty() {
            return;
        }
        if self.zab.is_some() {
            // Reads asked before these writes get an index that does not cover them.
            self.ask_read_index();
            return self.propose(entries);
        }
        self.txns_since_snapshot += entries.len() as u64;
        // The only requests in the server (one client, one at a time): written
        // here rather than wait for the log thread to wake and wake this one back.
        let crowded = self.me.depth() > 0 || self.stats.outstanding.load(Relaxed) > entries.len() as i64;
        let alone = self.lone_writes.alone(crowded);
        let written_here = match &self.txn_log {
            Some(log) if alone => log.append_if_idle(entries, &mut self.lone_writes),
            Some(log) => {
                log.append(entries);
                None
            }
            None => None,
        };
        if let Some(synced) = written_here {
            self.on_synced(synced);
        }
        self.maybe_snapshot(ctx);
    }

    pub(crate) fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        if self.snapshot.is_none() && self.txns_since_snapshot >= self.next_snapshot_after {
            self.start_snapshot(ctx);
        }
    }

    /// A full txn-log queue or dispatcher mailbox: take no further message
    /// until it drains. This processor's mailbox then fills and session
    /// handlers stop reading their sockets (the processor's full answer).
    fn hold_while_downstream_full(&mut self, ctx: &mut Context<Self>) {
        let downstream = [self.txn_log.as_ref().map(|l| &l.me), Some(&self.dispatcher.stats), self.zab.as_ref().map(|z| &z.broadcast().stats)];
        let downstream: Vec<_> = downstream.into_iter().flatten().cloned().collect();
        if !downstream.iter().any(|s| s.full()) {
            return;
        }
        self.send_outbound();
        ctx.wait(actix::fut::wrap_future(async move {
            while downstream.iter().any(|s| s.full()) {
                actix::clock::sleep(Duration::from_millis(1)).await;
            }
        }));
    }

    pub(crate) fn answer(&mut self, caller: Caller, mut output: Output) {
        for e in &mut output.audit {
            e.attribute(&caller.auth);
        }
        if self.may_reply_directly(&output) {
            if let Reply::Frame(frame) = std::mem::take(&mut output.reply) {
                self.audited.extend(output.audit.drain(..).filter(|e| e.actor != audit::Actor::Client));
                self.stats.outstanding.fetch_sub(1, Relaxed);
                if self.gather_replies {
                    self.answered.push((caller.received, caller.op, caller.update));
                    self.replies.push(&caller.conn, &frame);
                    return self.replies.answered(&caller.conn);
                }
                self.stats.record_latency(caller.received, caller.op, caller.update);
                return crate::dispatcher::write(&caller.conn, frame, 1, 1, &self.stats, &self.log);
            }
        }
        self.dispatch(Dispatch::Output {
            conn: Some(caller.conn),
            session_id: caller.session_id,
            output,
            received: Some((caller.received, caller.op, caller.update)),
        });
    }

    /// Runs `f` with direct replies gathered per connection, then writes each
    /// connection's with one syscall: a commit or a read index releases many
    /// replies at once (8 pipelined reads of one session: one write, not 8).
    /// Results dispatched meanwhile reach the dispatcher only after this, in
    /// `send_outbound`, so they cannot overtake these replies.
    pub(crate) fn gathering_replies(&mut self, f: impl FnOnce(&mut Self)) {
        let outer = std::mem::replace(&mut self.gather_replies, true);
        f(self);
        self.gather_replies = outer;
        if !outer {
            self.write_replies();
        }
    }

    pub(crate) fn write_replies(&mut self) {
        self.stats.record_each(&self.answered);
        self.answered.clear();
        self.replies.write_here(&self.stats, &self.log);
    }

    /// A reply with nothing for the dispatcher to do (no watch to set, none
    /// that can fire, no session or connection to close) may skip it when
    /// nothing sent to it earlier is still on its way: it cannot overtake.
    fn may_reply_directly(&self, out: &Output) -> bool {
        matches!(out.reply, Reply::Frame(_))
            && out.watches.is_empty()
            && out.session_closed.is_none()
            && !out.close_connection
            && self.outbound.is_empty()
            && self.delivery.is_clear()
            // Read after the gate: every watch set so far is counted.
            && (out.triggers.is_empty() || self.stats.watch_count.load(Relaxed) == 0)
    }

    /// Queues a result for the dispatcher; sent with the others of this
    /// message by `flush_dispatch`, in order.
    pub(crate) fn dispatch(&mut self, mut d: Dispatch) {
        if let Dispatch::Output { output, .. } = &mut d {
            if !output.audit.is_empty() {
                // A client event never attributed is another member's client's: that member logs it.
                self.audited.extend(output.audit.drain(..).filter(|e| e.actor != audit::Actor::Client));
            }
        }
        self.outbound.push(d);
    }

    /// After each handled message: what it produced, as one batch — or, while
    /// more messages wait in this mailbox, with theirs (natural batching: a
    /// burst of single-request messages from many connections costs the
    /// dispatcher one message, and the delay is only the burst's own handling).
    fn flush_dispatch(&mut self, ctx: &mut Context<Self>) {
        if self.throttles.waiting() > 0 {
            self.release_throttled(ctx);
        }
        self.wake_applied_waiters();
        if self.me.depth() == 0 || self.outbound.len() >= MAX_DISPATCH_BATCH {
            self.send_outbound();
        }
        self.delivery.allow_local_reads(self.serves_local_reads());
        self.delivery.allow_indexed_reads(self.serves_indexed_reads());
    }

    /// Whether I/O threads may answer plain reads from the committed tree:
    /// not while reads must pass a read index, the request throttler, or
    /// the read-only or not-serving ensemble states (which this thread decides).
    fn serves_local_reads(&self) -> bool {
        let throttled = self.throttles.max_requests() > 0;
        let linearizable = self.zab.is_some() && self.config.linearizable_reads;
        !throttled && !linearizable && self.is_serving() && !self.in_read_only()
    }

    pub(crate) fn send_outbound(&mut self) {
        // Gathered replies first: nothing handed to the dispatcher may overtake them.
        self.write_replies();
        self.ask_read_index();
        if let (Some(auditor), false) = (&self.auditor, self.audited.is_empty()) {
            auditor.do_send(Audit(std::mem::take(&mut self.audited)));
        }
        if !self.outbound.is_empty() {
            let batch = std::mem::take(&mut self.outbound);
            let n = batch.len();
            self.delivery.handed_over();
            self.dispatcher.do_send_batch(Dispatches(batch), n);
        }
        // Every change's results so far are written or in that batch.
        self.delivery.handed_up_to(self.core.db.epoch());
    }

    /// Serves one request: reads from committed state at once, writes once durable.
    fn serve(&mut self, msg: Submit) {
        self.serve_now(msg);
    }

    pub(crate) fn serve_now(&mut self, msg: Submit) {
        if self.zab.is_some() && self::ensemble::needs_leader(&msg.request) {
            if !self.is_leader() {
                return self.forward(msg);
            }
            if !self.prime_zxid() {
                return msg.conn.do_send(ToConn::Close { frame: None, reason: "the leader has too many proposals in flight" });
            }
        }
        let Submit { conn, session_id, xid, request, auth, received } = msg;
        let rctx = RequestCtx { session_id, xid, auth: &auth, now_ms: wall_clock_ms() };
        let caller = Caller { conn, session_id, auth: auth.clone(), received, op: request.name(), update: request.is_write() };
        let processed = self.core.process(&rctx, request);
        for msg in self.core.take_warnings() {
            warn!(self.log, "{}", msg);
        }
        match processed {
            Processed::Done(output) => self.answer(caller, output),
            Processed::Pending(zxid) => {
                self.in_flight.entry(session_id).or_default().push_back(InFlight::Write(WriteKey::Zxid(zxid)));
                self.routes.insert(zxid, Route::Request(caller));
            }
        }
    }

    /// The session's write `zxid` is answered: serve the reads that followed it.
    pub(crate) fn release_reads_after(&mut self, session_id: i64, key: WriteKey) {
        let Some(queue) = self.in_flight.get_mut(&session_id) else { return };
        debug_assert!(matches!(queue.front(), Some(InFlight::Write(k)) if *k == key));
        queue.pop_front();
        let mut reads = Vec::new();
        while let Some(InFlight::Read(_) | InFlight::ReadAfterBarrier(_)) = queue.front() {
            match queue.pop_front() {
                Some(InFlight::Read(r)) => reads.push((r, false)),
                Some(InFlight::ReadAfterBarrier(r)) => reads.push((r, true)),
                _ => {}
            }
        }
        if queue.is_empty() {
            self.in_flight.remove(&session_id);
        }
        for (read, barrier_done) in reads {
            if barrier_done {
                self.serve_now(read);
            } else {
                self.serve(read);
            }
        }
        // Next, reads whose read index is already applied.
        if let Some(key) = self.ready_placeholder(session_id) {
            self.release_reads_after(session_id, key);
        }
    }

    /// Applies every transaction the log has made durable, delivering each
    /// result and then the reads that were waiting behind it.
    fn apply_durable(&mut self) {
        self.gathering_replies(Self::apply_durable_now);
    }

    fn apply_durable_now(&mut self) {
        while let Some((zxid, output)) = self.core.apply_next(self.synced_zxid) {
            self.stats.txns_applied.fetch_add(1, Relaxed);
            match self.routes.remove(&zxid) {
                Some(Route::Request(caller)) => {
                    let sid = caller.session_id;
                    if let Some(closed) = output.session_closed {
                        info!(self.log, "session closed by client"; "session" => format!("0x{closed:x}"));
                        self.tracker.do_send(Tracking::Untrack { session_id: closed });
                    }
                    self.answer(caller, output);
                    self.release_reads_after(sid, WriteKey::Zxid(zxid));
                }
                Some(Route::Attach(d)) => self.dispatch(d),
                Some(Route::Remote) | None => self.dispatch_remote(output),
            }
        }
    }

    /// The result of another member's client's transaction: only watches to
    /// fire or a session to end need the dispatcher. Without them it is not
    /// woken (on a member without watches, one wake-up per write less).
    pub(crate) fn dispatch_remote(&mut self, output: Output) {
        let nothing_to_fire = output.triggers.is_empty()
            // As `may_reply_directly`: no watch is still on its way to being set.
            || (self.outbound.is_empty() && self.delivery.is_clear() && self.stats.watch_count.load(Relaxed) == 0);
        if output.session_closed.is_none() && nothing_to_fire && output.watches.is_empty() && matches!(output.reply, Reply::None | Reply::Frame(_)) {
            self.audited.extend(output.audit.into_iter().filter(|e| e.actor != audit::Actor::Client));
            return;
        }
        self.dispatch(Dispatch::Output { conn: None, session_id: output.session_closed.unwrap_or(0), output, received: None })
    }

    fn start_snapshot(&mut self, ctx: &mut Context<Self>) {
        self.txns_since_snapshot = 0;
        self.next_snapshot_after = snapshot_threshold(self.config.snap_count);
        // New transactions go to a new segment, so old ones can be purged
        // later (in an ensemble after the last logged one, which the
        // broadcast actor knows).
        match (&self.zab, &self.txn_log) {
            (Some(z), _) => z.broadcast().do_send(crate::messages::ToZab::RollLog),
            (None, Some(log)) => log.roll(self.core.next_zxid()),
            (None, None) => {}
        }
        let (writer, bytes) = SnapshotWriter::begin(&self.core.db);
        info!(self.log, "starting fuzzy snapshot"; "zxid" => format!("{:#x}", writer.zxid));
        self.snapshotter.do_send(SnapshotPart::Begin { zxid: writer.zxid, bytes });
        self.snapshot = Some(writer);
        self.snapshot_step(ctx);
    }

    fn snapshot_step(&mut self, ctx: &mut Context<Self>) {
        let Some(writer) = self.snapshot.as_mut() else { return };
        let items = writer.next_items(&self.core.db.tree, SNAPSHOT_CHUNK_NODES, crate::processor::ensemble::SNAP_PIECE_BYTES);
        let done = writer.is_done();
        let part = if done { SnapshotPart::End(items) } else { SnapshotPart::Chunk(items) };
        self.snapshotter
            .send(part)
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(Ok(())) if done => act.snapshot_ended(),
                Ok(Ok(())) => act.snapshot_step(ctx),
                Ok(Err(e)) => {
                    error!(act.log, "snapshot failed; will retry at the next snapCount"; "error" => e);
                    act.snapshot_ended();
                }
                Err(e) => {
                    error!(act.log, "snapshotter unreachable"; "error" => %e);
                    act.snapshot_ended();
                }
            })
            .spawn(ctx);
    }

    fn snapshot_ended(&mut self) {
        self.snapshot = None;
        for done in self.snapshot_waiters.drain(..) {
            let _ = done.send(());
        }
    }

    /// ContainerManager: delete empty containers and idle TTL nodes, at most
    /// znode.container.maxPerMinute per minute.
    fn reap(&mut self, ctx: &mut Context<Self>) {
        let interval_ms = self.config.container_check_interval_ms.max(1);
        let budget = ((self.config.container_max_per_minute as u64 * interval_ms) / 60_000).max(1) as usize;
        let now = wall_clock_ms();
        if self.zab.is_some() && !self.is_leader() {
            return; // only the leader reaps, as ZooKeeper's ContainerManager
        }
        let due: Vec<String> = self.core.reap_candidates(now).into_iter().take(budget).collect();
        if due.len() > 1 {
            // Deletes come together: the log thread syncs them in batches, not this one by one.
            self.lone_writes.alone(true);
        }
        for path in due {
            if !self.prime_zxid() {
                return;
            }
            if self.core.reap(&path, now).is_some() {
                info!(self.log, "reaping container or TTL node"; "path" => &path);
                self.flush_log(ctx);
            }
        }
    }
}

impl Actor for Processor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_millis(self.config.container_check_interval_ms.max(1));
        ctx.run_interval(every, |act, ctx| act.reap(ctx));
        if self.zab.is_some() {
            self.start_zab(ctx);
        }
    }
}

crate::supervise::supervised!(Processor, after_each = flush_dispatch);
crate::mailbox::mailbox!(
    Processor: Connect,
    Submits,
    Expire,
    Synced,
    ReportStats,
    SnapshotNow,
    Retrack,
    Fault,
    crate::messages::FromZab,
    crate::messages::Touches,
    crate::messages::TakeBackup,
    crate::messages::RestoreDatabase,
    crate::messages::FinishSnapshot,
    crate::messages::AwaitApplied
);

/// The processor's state is the tree; a failure may have left it half
/// changed and only the disk is a source of truth for it, which a process
/// restart reads: its strategy is escalate (`can_restart`).
impl crate::supervise::Rebuild for Processor {
    fn rebuild(&mut self, _: &mut Context<Self>) {}
}

impl Serve<Retrack> for Processor {
    /// The tracker restarted empty: tell it every session and who expires.
    fn serve(&mut self, _: Retrack, ctx: &mut Context<Self>) {
        let expire = self.zab.is_none() || self.is_leader();
        let forward_to = (self.zab.is_some() && !expire && self.is_serving()).then(|| self.mailbox(ctx).inbox());
        self.tracker.do_send(Tracking::Mode { expire, forward_to });
        for (session_id, timeout_ms) in self.core.db.sessions() {
            self.tracker.do_send(Tracking::Track { session_id: *session_id, timeout_ms: *timeout_ms });
        }
        for (session_id, timeout_ms) in self.core.local_sessions() {
            self.tracker.do_send(Tracking::TrackLocal { session_id, timeout_ms });
        }
    }
}

impl Serve<Connect> for Processor {
    fn serve(&mut self, msg: Connect, ctx: &mut Context<Self>) {
        if !self.admit_connection(&msg) {
            return;
        }
        if self.in_read_only() {
            if msg.request.read_only != Some(true) {
                info!(self.log, "Refusing session request for not-read-only client"; "conn" => msg.conn_id);
                return msg.conn.do_send(ToConn::Close { frame: None, reason: "read-only server; the client does not allow read-only" });
            }
            if msg.request.session_id == 0 && !self.config.local_sessions_enabled {
                // ZooKeeper's ReadOnlyRequestProcessor refuses a global
                // createSession with a NotReadOnly reply header: read-only
                // mode creates sessions only when localSessionsEnabled.
                info!(self.log, "refused a new read-only session: localSessionsEnabled is false"; "conn" => msg.conn_id);
                let frame = warden_core::server::reply_frame(0, self.core.db.last_zxid(), warden_core::error::Code::NotReadOnly as i32, |_| {});
                return msg.conn.do_send(ToConn::Close { frame: Some(frame), reason: "read-only: new sessions need localSessionsEnabled" });
            }
            return match self.core.connect_read_only(&msg.request) {
                ConnectOutcome::Accepted { frame, session_id, timeout_ms, .. } => {
                    info!(self.log, "read-only session established"; "session" => format!("0x{session_id:x}"), "conn" => msg.conn_id);
                    self.tracker.do_send(Tracking::Track { session_id, timeout_ms });
                    self.dispatch(Dispatch::Attach { session_id, conn_id: msg.conn_id, conn: msg.conn, timeout_ms, frame });
                }
                ConnectOutcome::Expired { frame } => msg.conn.do_send(ToConn::Close { frame: Some(frame), reason: "session expired" }),
                ConnectOutcome::Refused(_) => msg.conn.do_send(ToConn::Close { frame: None, reason: "client zxid ahead of server" }),
            };
        }
        if self.zab.is_some() && !self.is_serving() {
            info!(self.log, "refused a client: not serving (no leader yet)"; "conn" => msg.conn_id);
            return msg.conn.do_send(ToConn::Close { frame: None, reason: "this server is not serving: no quorum or leader" });
        }
        let leading = self.zab.is_none() || self.is_leader();
        if msg.request.session_id == 0 && self.zab.is_some() && leading && !self.prime_zxid() {
            return msg.conn.do_send(ToConn::Close { frame: None, reason: "the leader has too many proposals in flight" });
        }
        match self.core.connect_as(&msg.request, wall_clock_ms(), leading) {
            ConnectOutcome::Accepted { frame, session_id, timeout_ms, .. } if self.core.is_local_session(session_id) => {
                info!(self.log, "local session established"; "session" => format!("0x{session_id:x}"), "timeout_ms" => timeout_ms, "conn" => msg.conn_id);
                self.tracker.do_send(Tracking::TrackLocal { session_id, timeout_ms });
                self.dispatch(Dispatch::Attach { session_id, conn_id: msg.conn_id, conn: msg.conn, timeout_ms, frame });
            }
            ConnectOutcome::Accepted { frame, session_id, timeout_ms, created } => {
                info!(self.log, "session established"; "session" => format!("0x{session_id:x}"), "timeout_ms" => timeout_ms, "new" => created.is_some(), "conn" => msg.conn_id);
                self.tracker.do_send(Tracking::Track { session_id, timeout_ms });
                let attach = Dispatch::Attach { session_id, conn_id: msg.conn_id, conn: msg.conn, timeout_ms, frame };
                match created {
                    // A new session is answered once its creation is durable.
                    Some(zxid) => {
                        self.routes.insert(zxid, Route::Attach(attach));
                        self.flush_log(ctx);
                    }
                    // A learner's new session: created by the leader, answered on commit.
                    None if msg.request.session_id == 0 => self.forward_create_session(session_id, timeout_ms, attach),
                    None => self.dispatch(attach),
                }
            }
            ConnectOutcome::Expired { frame } => {
                info!(self.log, "refused reattach to an unknown or expired session, or with a wrong password"; "session" => format!("0x{:x}", msg.request.session_id));
                msg.conn.do_send(ToConn::Close { frame: Some(frame), reason: "session expired" });
            }
            ConnectOutcome::Refused(why) => {
                info!(self.log, "refused connection"; "reason" => &why);
                msg.conn.do_send(ToConn::Close { frame: None, reason: "client zxid ahead of server" });
            }
        }
    }
}

impl Serve<Submits> for Processor {
    /// One read's requests: each served in order, the new transactions then
    /// handed to the log (or proposed) together.
    fn serve(&mut self, Submits(batch): Submits, ctx: &mut Context<Self>) {
        for msg in batch {
            self.submit(msg, ctx);
        }
        self.flush_log(ctx);
        // One read-index request per batch, even while the mailbox stays busy.
        self.ask_read_index();
        self.hold_while_downstream_full(ctx);
    }
}

impl Processor {
    fn submit(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if let Some(msg) = self.throttle_gate(msg, ctx) {
            self.admit(msg, ctx);
        }
    }

    pub(crate) fn admit(&mut self, msg: Submit, ctx: &mut Context<Self>) {
        if self.in_read_only() {
            return self.serve_read_only(msg);
        }
        if self.core.is_local_session(msg.session_id) {
            if matches!(msg.request, warden_core::proto::Request::CloseSession) {
                return self.close_local(msg);
            }
            if self.config.local_sessions_upgrading_enabled && warden_core::server::creates_ephemeral(&msg.request) {
                self.upgrade_local_session(msg.session_id, ctx);
            }
        }
        if self.config.linearizable_reads && self.zab.is_some() && self::ensemble::is_data_read(&msg.request) {
            return self.read_behind_index(msg);
        }
        if !msg.request.is_write() {
            if let Some(queue) = self.in_flight.get_mut(&msg.session_id) {
                // Behind this session's own pending write: answer after it.
                queue.push_back(InFlight::Read(msg));
                return;
            }
        }
        self.serve(msg);
    }
}

impl Serve<Expire> for Processor {
    fn serve(&mut self, msg: Expire, ctx: &mut Context<Self>) {
        if self.core.close_local_session(msg.session_id) {
            info!(self.log, "read-only session expired"; "session" => format!("0x{:x}", msg.session_id));
            let output = warden_core::server::Output { session_closed: Some(msg.session_id), ..Default::default() };
            return self.dispatch(Dispatch::Output { conn: None, session_id: msg.session_id, output, received: None });
        }
        if self.zab.is_some() && !self.is_leader() {
            return;
        }
        if !self.prime_zxid() {
            // Too many proposals in flight: expire it a little later.
            let session_id = msg.session_id;
            ctx.run_later(Duration::from_millis(100), move |act, ctx| act.mailbox(ctx).do_send(Expire { session_id }));
            return;
        }
        if self.core.expire(msg.session_id, wall_clock_ms()).is_some() {
            info!(self.log, "expiring session"; "session" => format!("0x{:x}", msg.session_id));
            self.flush_log(ctx);
        }
    }
}

impl Serve<Synced> for Processor {
    fn serve(&mut self, msg: Synced, _: &mut Context<Self>) {
        self.on_synced(msg);
    }
}

impl Processor {
    /// Writes up to `msg.zxid` are durable; a Synced from the log thread may
    /// arrive after one written here and count for less.
    fn on_synced(&mut self, msg: Synced) {
        self.stats.fsyncs.fetch_max(msg.fsyncs, Relaxed);
        self.synced_zxid = self.synced_zxid.max(msg.zxid);
        self.apply_durable();
    }
}

impl Serve<ReportStats> for Processor {
    fn serve(&mut self, msg: ReportStats, _: &mut Context<Self>) -> ServerSnapshot {
        match msg.0 {
            "srst" => self.stats.reset_server(),
            "crst" => self.stats.reset_connections(),
            _ => {}
        }
        let db = &self.core.db;
        let mut s = ServerSnapshot {
            warden_version: env!("CARGO_PKG_VERSION").to_string(),
            mode: self.mode().into(),
            local_sessions: self.core.local_session_count() as u64,
            last_zxid: db.last_zxid(),
            // ZooKeeper's count includes the root twice (its map holds "" and "/").
            node_count: db.tree.node_count() as u64 + 1,
            ephemerals_count: db.tree.ephemeral_count() as u64,
            approximate_data_size: db.tree.approximate_data_size(),
            global_sessions: db.sessions().len() as u64,
            conf_quorum: crate::conf_dump::zookeeper_conf_quorum(&self.config),
            membership: self
                .zab
                .as_ref()
                .and_then(|_| db.tree.get(warden_core::tree::CONFIG))
                .and_then(|n| n.data.as_deref())
                .map(|d| String::from_utf8_lossy(d).into_owned()),
            sessions: db.sessions().iter().map(|(k, v)| (*k, *v)).collect(),
            ephemerals: db.tree.ephemerals().iter().map(|(k, v)| (*k, v.iter().cloned().collect())).collect(),
            ..Default::default()
        };
        s.quorum = self.quorum_status();
        s.read_only = self.in_read_only();
        self.stats.fill(&mut s);
        s
    }
}

impl Serve<crate::messages::FinishSnapshot> for Processor {
    fn serve(&mut self, crate::messages::FinishSnapshot { done }: crate::messages::FinishSnapshot, _: &mut Context<Self>) {
        match &self.snapshot {
            Some(writer) => {
                info!(self.log, "finishing the snapshot in progress before stopping"; "zxid" => format!("{:#x}", writer.zxid));
                self.snapshot_waiters.push(done);
            }
            None => {
                let _ = done.send(());
            }
        }
    }
}

impl Serve<SnapshotNow> for Processor {
    fn serve(&mut self, _: SnapshotNow, ctx: &mut Context<Self>) -> Option<i64> {
        if self.snapshot.is_some() {
            return None;
        }
        self.start_snapshot(ctx);
        Some(self.core.last_zxid())
    }
}
