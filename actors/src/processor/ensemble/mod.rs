//! The processor's ensemble half: it owns the pure Zab `Peer` (election,
//! discovery, sync, broadcast) and executes its commands — peer links for
//! messages, the txn-log thread for disk, the Core for applying committed
//! transactions. Leader: client writes are prepared by the Core under the
//! zxid Zab will give them, then proposed. Learner: writes, session creation
//! and `sync` are forwarded to the leader and answered when their committed
//! transaction is applied here.

use crate::broadcast::Broadcast;
use crate::clock::wall_clock_ms;
use crate::mailbox::{Mailbox, Serve};
use crate::messages::{Dispatch, FromZab, QuorumView, Submit, ToConn, ToZab, Touches, Tracking};
use crate::processor::{Caller, InFlight, Processor, Route, WriteKey};
use actix::prelude::*;
use slog::{info, warn};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use warden_core::proto::Request;
use warden_core::server::RequestCtx;
use warden_core::snapshot;
use warden_core::txn::{LogEntry, Txn};
use warden_core::zab::leader::zxid_after;
pub use warden_core::zab::{Forward, ForwardOp};
use warden_core::zab::{Message, PeerState, ServerId, Zxid};

/// How often the leader tells learners its tree digest (when it changed).
const DIGEST_INTERVAL: Duration = Duration::from_millis(100);

mod digest;
mod read_index;
mod sessions;
mod snap_stream;
pub(crate) use snap_stream::{PIECE_BYTES as SNAP_PIECE_BYTES, PIECE_NODES as SNAP_PIECE_NODES};

/// A request this learner forwarded, waiting for its committed transaction.
pub(crate) enum Forwarded {
    Request(Caller, Request),
    Attach(Dispatch),
}

/// The processor's view of Zab (what the broadcast actor last told it)
/// and its own ensemble bookkeeping: forwarded requests, digests,
/// read-only mode.
pub struct Ensemble {
    broadcast: Mailbox<Broadcast>,
    view: QuorumView,
    pub serving: bool,
    leader: Option<ServerId>,
    state: PeerState,
    epoch: u32,
    /// The broadcast actor's leadership term; proposals carry it.
    term: u64,
    /// Leader: the zxid of the last write numbered; the next follows it
    /// (`zxid_after`).
    last_numbered: Zxid,
    counter_limit: u32,
    pub(crate) forwarded: HashMap<(i64, i32), Forwarded>,
    /// Learner: digests after recent applies, and the leader's digest for a
    /// zxid not applied yet (checked when it is).
    applied_digests: VecDeque<(Zxid, u64)>,
    expected_digest: Option<(Zxid, u64)>,
    /// Leader: the last zxid whose digest went out.
    digest_sent_for: Zxid,
    pub digests_checked: u64,
    /// warden.linearizableReads: reads waiting for a read index.
    reads: read_index::ReadBatches,
    /// readonlymode.enabled: serving read-only clients while looking.
    pub read_only: bool,
    /// Bumped at every LookForLeader, so a stale read-only timer does nothing.
    looking_round: u64,
    /// Learner: the tree came from a fuzzy SNAP and may be ahead of the
    /// applied zxid until this one (digests are not compared before).
    fuzzy_until: Zxid,
}

/// Sessions per Touch message (9 bytes each at most, encoded).
const TOUCH_BATCH: usize = 50_000;

/// Digests a learner remembers for comparison with the leader's.
pub(super) const DIGEST_MEMORY: usize = 4096;

impl Ensemble {
    pub fn new(broadcast: Mailbox<Broadcast>, view: QuorumView, counter_limit: u32) -> Ensemble {
        Ensemble {
            broadcast,
            view,
            serving: false,
            leader: None,
            state: PeerState::Looking,
            epoch: 0,
            term: 0,
            last_numbered: 0,
            counter_limit,
            forwarded: HashMap::new(),
            applied_digests: VecDeque::new(),
            expected_digest: None,
            digest_sent_for: 0,
            digests_checked: 0,
            reads: read_index::ReadBatches::default(),
            read_only: false,
            looking_round: 0,
            fuzzy_until: 0,
        }
    }

    /// To the leader, through the broadcast actor's link (dropped when
    /// there is none: the client times out, as with a lost packet).
    fn send_to_leader(&self, msg: Message) {
        self.broadcast.do_send(ToZab::ToLeader(msg));
    }

    pub(crate) fn broadcast(&self) -> &Mailbox<Broadcast> {
        &self.broadcast
    }
}

/// Reads of the tree, which warden.linearizableReads puts behind a barrier.
pub fn is_data_read(req: &Request) -> bool {
    matches!(
        req,
        Request::Exists { .. }
            | Request::GetData { .. }
            | Request::GetChildren { .. }
            | Request::GetAcl { .. }
            | Request::GetAllChildrenNumber { .. }
            | Request::GetEphemerals { .. }
            | Request::MultiRead(_)
    )
}

/// Requests a learner cannot answer itself: writes, and `sync` (a quorum
/// round trip, so sync-then-read is linearizable).
pub fn needs_leader(req: &Request) -> bool {
    req.is_write() || matches!(req, Request::Sync { .. })
}

impl Processor {
    pub(crate) fn is_leader(&self) -> bool {
        self.zab.as_ref().is_some_and(|z| z.serving && z.state == PeerState::Leading)
    }

    pub(crate) fn is_serving(&self) -> bool {
        self.zab.as_ref().is_none_or(|z| z.serving)
    }

    pub(crate) fn in_read_only(&self) -> bool {
        self.zab.as_ref().is_some_and(|z| z.read_only && !z.serving)
    }

    pub(crate) fn mode(&self) -> &'static str {
        match &self.zab {
            None => "standalone",
            Some(z) if z.read_only && !z.serving => "read-only",
            Some(z) if !z.serving => "looking",
            Some(z) => match z.state {
                PeerState::Leading => "leader",
                PeerState::Following => "follower",
                PeerState::Observing => "observer",
                PeerState::Looking => "looking",
            },
        }
    }

    /// As the broadcast actor last published it (every Zab tick).
    pub(crate) fn quorum_status(&self) -> Option<warden_core::fourlw::QuorumStatus> {
        self.zab.as_ref().and_then(|z| z.view.lock().unwrap().clone())
    }

    /// Leader: makes the Core prepare the next transaction under the zxid
    /// Zab will assign it (`zxid_after` the last one numbered). False when
    /// not the serving leader.
    pub(crate) fn prime_zxid(&mut self) -> bool {
        if self.zab.is_none() {
            return true;
        }
        if !self.is_leader() {
            warn!(self.log, "cannot propose now: not the serving leader");
            return false;
        }
        // Transactions prepared but not yet handed to Zab (earlier requests of
        // the same batch) already stand for the next zxids: the core's counter
        // continues after them, unless it reached the limit, where they are
        // proposed first so that the next one starts the next epoch.
        if self.core.has_unlogged() {
            let limit = self.zab.as_ref().expect("ensemble").counter_limit;
            if warden_core::zab::zxid::counter_of(self.core.next_zxid() - 1) < limit {
                return true;
            }
            let entries = self.core.take_unlogged();
            self.propose(entries);
        }
        let z = self.zab.as_ref().expect("ensemble");
        self.core.set_next_zxid(zxid_after(z.last_numbered, z.epoch, z.counter_limit));
        true
    }

    pub(crate) fn start_zab(&mut self, ctx: &mut Context<Self>) {
        self.core.quorum_synced = Some(Default::default());
        ctx.run_interval(DIGEST_INTERVAL, |act, ctx| {
            crate::mailbox::guarded(act, ctx, |act, _| act.send_digest());
        });
        let tick = Duration::from_millis(self.config.tick_time_ms.max(1) as u64);
        let limit = crate::lin_reads::read_index_limit(&self.config);
        ctx.run_interval(tick, move |act, ctx| {
            crate::mailbox::guarded(act, ctx, |act, _| act.refuse_stale_reads(limit));
        });
    }

    /// Leader: hands freshly prepared transactions to the broadcast actor.
    pub(crate) fn propose(&mut self, entries: Vec<Arc<LogEntry>>) {
        let Some(z) = self.zab.as_mut() else { return };
        let Some(last) = entries.last() else { return };
        z.last_numbered = last.hdr.zxid;
        z.broadcast.do_send(ToZab::Propose { term: z.term, entries });
    }

    /// Learner: sends a client request to the leader and remembers who waits.
    pub(crate) fn forward(&mut self, msg: Submit) {
        // Reads asked before this write get an index that does not cover it.
        self.ask_read_index();
        let Submit { conn, session_id, xid, request, auth, received } = msg;
        let local = self.core.is_local_session(session_id);
        let Some(z) = self.zab.as_mut() else { return };
        if !z.serving || z.leader.is_none() {
            // Replies gathered for this connection are written before it closes.
            self.write_replies();
            return conn.do_send(ToConn::Close { frame: None, reason: "no leader" });
        }
        let fwd = Forward { session_id, cxid: xid, auth: auth.to_vec(), op: ForwardOp::Client(request.clone()), local };
        z.send_to_leader(Message::Request(fwd));
        let caller = Caller { conn, session_id, auth, received, op: request.name(), update: request.is_write() };
        z.forwarded.insert((session_id, xid), Forwarded::Request(caller, request));
        self.in_flight.entry(session_id).or_default().push_back(InFlight::Write(WriteKey::Xid(xid)));
    }

    pub(crate) fn forward_create_session(&mut self, session_id: i64, timeout_ms: i32, attach: Dispatch) {
        let Some(z) = self.zab.as_mut() else { return };
        let fwd = Forward { session_id, cxid: 0, auth: Vec::new(), op: ForwardOp::CreateSession { timeout_ms }, local: false };
        z.send_to_leader(Message::Request(fwd));
        z.forwarded.insert((session_id, 0), Forwarded::Attach(attach));
    }

    /// Leader: a learner's forwarded request becomes a transaction.
    fn on_forwarded(&mut self, fwd: Forward, ctx: &mut Context<Self>) {
        if !self.is_leader() || !self.prime_zxid() {
            return; // the learner's client times out and reconnects, as with a lost packet
        }
        let now = wall_clock_ms();
        match fwd.op {
            ForwardOp::CreateSession { timeout_ms } => {
                self.core.create_session(fwd.session_id, timeout_ms, now);
            }
            ForwardOp::Client(request) => {
                let known = fwd.local || self.core.db.session_timeout(fwd.session_id).is_some() || self.core.is_creating(fwd.session_id);
                let zxid = if !known {
                    self.core.reject(fwd.session_id, fwd.cxid, warden_core::error::Code::SessionExpired as i32, now)
                } else {
                    let rctx = RequestCtx { session_id: fwd.session_id, xid: fwd.cxid, auth: &fwd.auth, now_ms: now };
                    let processed = self.core.process_as(&rctx, request, fwd.local);
                    for msg in self.core.take_warnings() {
                        warn!(self.log, "{}", msg);
                    }
                    match processed {
                        warden_core::server::Processed::Pending(zxid) => zxid,
                        warden_core::server::Processed::Done(_) => {
                            self.core.reject(fwd.session_id, fwd.cxid, warden_core::error::Code::Unimplemented as i32, now)
                        }
                    }
                };
                self.routes.insert(zxid, Route::Remote);
            }
        }
        self.flush_log(ctx);
    }

    fn fatal(&mut self, reason: String) -> ! {
        crate::broadcast::fatal(&self.log, &reason)
    }

    /// Synced with a quorum: serve clients (a leader numbers writes from
    /// `last_zxid` on); a read-only member stops being one.
    #[allow(clippy::too_many_arguments)] // FromZab::Serving's fields, one by one
    fn on_serving(&mut self, leader: ServerId, me: ServerId, state: PeerState, epoch: u32, last_zxid: Zxid, term: u64, ctx: &mut Context<Self>) {
        let Some(z) = self.zab.as_mut() else { return };
        (z.serving, z.leader, z.state, z.epoch, z.term, z.last_numbered) = (true, Some(leader), state, epoch, term, last_zxid);
        if std::mem::replace(&mut z.read_only, false) {
            // As ZooKeeper: the read-only server stops; its clients reconnect read-write.
            let n = self.core.drop_local_sessions();
            self.send_outbound();
            self.dispatcher.do_send(crate::messages::CloseAll);
            info!(self.log, "leaving read-only mode: a quorum is back"; "local_sessions_dropped" => n);
        }
        if leader != me {
            let touches = self.mailbox(ctx).inbox();
            return self.tracker.do_send(Tracking::Mode { expire: false, forward_to: Some(touches) });
        }
        if self.core.settings.reconfig_enabled && self.prime_zxid() && self.core.stamp_config(wall_clock_ms()).is_some() {
            self.flush_log(ctx);
        }
        // Every session gets a fresh expiry clock under the new leader.
        self.tracker.do_send(Tracking::Mode { expire: true, forward_to: None });
        for (session_id, timeout_ms) in self.core.db.sessions() {
            self.tracker.do_send(Tracking::Track { session_id: *session_id, timeout_ms: *timeout_ms });
        }
    }

    fn on_looking(&mut self, reason: &'static str, ctx: &mut Context<Self>) {
        let Some(z) = self.zab.as_mut() else { return };
        let was_serving = std::mem::replace(&mut z.serving, false);
        (z.leader, z.state) = (None, PeerState::Looking);
        info!(self.log, "not serving: looking for a leader"; "reason" => reason);
        let forwarded: Vec<Forwarded> = z.forwarded.drain().map(|(_, f)| f).collect();
        z.looking_round += 1;
        let round = z.looking_round;
        self.tracker.do_send(Tracking::Mode { expire: false, forward_to: None });
        if was_serving || !forwarded.is_empty() {
            self.drop_clients(forwarded);
        }
        if self.config.read_only_mode_enabled {
            // ZooKeeper waits max(2000 ms, tickTime) before serving read-only.
            let grace = Duration::from_millis((self.config.tick_time_ms as u64).max(2000));
            ctx.run_later(grace, move |act, _| act.enter_read_only(round));
        }
    }

    /// Learner: waits (serving nothing else, so later commits apply after
    /// it) until the log thread made the leader's snapshot durable, then
    /// loads it from its file.
    fn install_when_ready(
        &mut self,
        zxid: Zxid,
        fuzzy_until: Zxid,
        ready: tokio::sync::oneshot::Receiver<Result<std::path::PathBuf, String>>,
        ctx: &mut Context<Self>,
    ) {
        ctx.wait(actix::fut::wrap_future(ready).map(move |res, act: &mut Self, ctx: &mut Context<Self>| {
            let path = match res.map_err(|_| "the log thread stopped".to_string()).and_then(|r| r) {
                Ok(path) => path,
                Err(e) => act.fatal(format!("the leader's snapshot at {zxid:#x} could not be installed: {e}")),
            };
            crate::mailbox::guarded(act, ctx, |act, _| act.install(zxid, fuzzy_until, &path));
        }));
    }

    fn install(&mut self, zxid: Zxid, fuzzy_until: Zxid, path: &std::path::Path) {
        let started = std::time::Instant::now();
        let loaded = std::fs::File::open(path)
            .map_err(|e| e.to_string())
            .and_then(|f| snapshot::load_from(std::io::BufReader::with_capacity(1 << 20, f)).map_err(|e| e.to_string()));
        let loaded = match loaded {
            Ok(s) => s,
            Err(e) => self.fatal(format!("the leader's snapshot at {zxid:#x} does not load from {}: {e}", path.display())),
        };
        info!(self.log, "installed the leader's snapshot"; "zxid" => format!("{zxid:#x}"), "nodes" => loaded.nodes,
            "fuzzy_until" => format!("{fuzzy_until:#x}"), "load_ms" => started.elapsed().as_millis() as u64);
        self.core.install(loaded.db);
        self.routes.clear();
        let digest = self.core.db.tree.digest();
        let Some(z) = self.zab.as_mut() else { return };
        z.applied_digests.clear();
        z.fuzzy_until = fuzzy_until;
        if fuzzy_until <= zxid {
            z.applied_digests.push_back((zxid, digest));
        }
        z.expected_digest = z.expected_digest.filter(|(want, _)| *want > fuzzy_until);
        self.membership_from_tree();
    }

    /// Leaving the serving state: ZooKeeper closes every client connection
    /// and clients reconnect to a serving member; prepared requests are lost
    /// (the next leader decides whether they committed).
    fn drop_clients(&mut self, forwarded: Vec<Forwarded>) {
        let dropped = self.core.abandon_pending();
        for route in std::mem::take(&mut self.routes).into_values() {
            match route {
                Route::Request(c) => c.conn.do_send(ToConn::Close { frame: None, reason: "the server lost its leader" }),
                Route::Attach(Dispatch::Attach { conn, .. }) => conn.do_send(ToConn::Close { frame: None, reason: "the server lost its leader" }),
                _ => {}
            }
        }
        for f in forwarded {
            match f {
                Forwarded::Request(c, _) => c.conn.do_send(ToConn::Close { frame: None, reason: "the server lost its leader" }),
                Forwarded::Attach(Dispatch::Attach { conn, .. }) => conn.do_send(ToConn::Close { frame: None, reason: "the server lost its leader" }),
                _ => {}
            }
        }
        self.in_flight.clear();
        self.forget_reads();
        self.send_outbound();
        self.dispatcher.do_send(crate::messages::CloseAll);
        info!(self.log, "closed client connections until a leader is found"; "abandoned_proposals" => dropped);
    }

    /// After a SNAP: the leader's tree may hold a config this member never
    /// saw committed; the broadcast actor adopts it.
    fn membership_from_tree(&mut self) {
        let Some(data) = self.core.db.tree.get(warden_core::tree::CONFIG).and_then(|n| n.data.as_deref()).map(<[u8]>::to_vec) else { return };
        let Ok(m) = warden_core::membership::Membership::parse(&String::from_utf8_lossy(&data)) else { return };
        if m.version == 0 || m.voters().is_empty() {
            return;
        }
        if let Some(z) = &self.zab {
            z.broadcast.do_send(ToZab::ConfigFromTree(data));
        }
    }

    /// Committed transactions, in zxid order: apply, answer who waits, fire watches.
    fn apply_committed(&mut self, entries: Vec<LogEntry>, ctx: &mut Context<Self>) {
        if let Some(z) = self.zab.as_mut() {
            z.reads.held.extend(entries);
        }
        self.gathering_replies(|p| {
            p.apply_held();
            p.release_ready_reads();
        });
        // Reads released above may have prepared writes (on the leader):
        // propose them once the commands being run are done, not in the
        // middle of them.
        if self.core.has_unlogged() {
            ctx.run_later(Duration::ZERO, |act, ctx| act.flush_log(ctx));
        }
        self.maybe_snapshot(ctx);
    }

    /// Applies committed entries in order until one is fenced by a read.
    fn apply_held(&mut self) {
        loop {
            let Some(entry) = self.zab.as_ref().and_then(|z| z.reads.held.front()) else { return };
            if self.fenced(entry) {
                return;
            }
            let entry = self.zab.as_mut().and_then(|z| z.reads.held.pop_front()).expect("checked");
            self.apply_one(entry);
        }
    }

    fn apply_one(&mut self, entry: LogEntry) {
        {
            let zxid = entry.hdr.zxid;
            let key = (entry.hdr.session_id, entry.hdr.cxid);
            let local = self.routes.contains_key(&zxid);
            let fwd = if local { None } else { self.zab.as_mut().and_then(|z| z.forwarded.remove(&key)) };
            let answer = match &fwd {
                Some(Forwarded::Request(_, req)) => Some((entry.hdr.cxid, req.clone())),
                _ => None,
            };
            let Some(output) = self.core.apply_committed(&entry, answer) else { return };
            self.txns_since_snapshot += 1;
            self.stats.txns_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.note_applied_digest(zxid);
            match &entry.txn {
                Txn::CreateSession { timeout_ms } => self.tracker.do_send(Tracking::Track { session_id: entry.hdr.session_id, timeout_ms: *timeout_ms }),
                Txn::CloseSession { .. } => self.tracker.do_send(Tracking::Untrack { session_id: entry.hdr.session_id }),
                _ => {}
            }
            match (self.routes.remove(&zxid), fwd) {
                (Some(Route::Request(caller)), _) | (None, Some(Forwarded::Request(caller, _))) => {
                    let sid = caller.session_id;
                    let key = if local { WriteKey::Zxid(zxid) } else { WriteKey::Xid(entry.hdr.cxid) };
                    self.answer(caller, output);
                    self.release_reads_after(sid, key);
                }
                (Some(Route::Attach(d)), _) | (None, Some(Forwarded::Attach(d))) => self.dispatch(d),
                _ => self.dispatch_remote(output),
            }
        }
    }
}

impl Serve<FromZab> for Processor {
    fn serve(&mut self, msg: FromZab, ctx: &mut Context<Self>) {
        self.on_zab(msg, ctx);
    }
}

impl Processor {
    pub(crate) fn on_zab(&mut self, msg: FromZab, ctx: &mut Context<Self>) {
        match msg {
            FromZab::Serving { leader, me, state, epoch, last_zxid, term } => self.on_serving(leader, me, state, epoch, last_zxid, term, ctx),
            FromZab::Role(state) => {
                if let Some(z) = self.zab.as_mut() {
                    z.state = state;
                }
            }
            FromZab::LookForLeader { reason } => self.on_looking(reason, ctx),
            FromZab::Apply(entries) => self.apply_committed(entries, ctx),
            FromZab::SnapFor { to, zxid, out } => self.snapshot_for(to, zxid, out, ctx),
            FromZab::Install { zxid, fuzzy_until, ready } => self.install_when_ready(zxid, fuzzy_until, ready, ctx),
            FromZab::ReadReady { id, zxid } => self.on_read_ready(id, zxid),
            FromZab::ReadRefused { id } => self.on_read_refused(id),
            FromZab::SyncedLearners(synced) => self.core.quorum_synced = Some(synced),
            FromZab::FromPeer(Message::Request(fwd)) => self.on_forwarded(fwd, ctx),
            FromZab::FromPeer(Message::Digest { zxid, digest }) => self.check_digest(zxid, digest),
            FromZab::FromPeer(Message::Touch { sessions }) if self.is_leader() => self.tracker.do_send(Tracking::Touches(sessions)),
            FromZab::FromPeer(_) => {}
        }
    }
}

impl Serve<Touches> for Processor {
    fn serve(&mut self, Touches(sessions): Touches, _: &mut Context<Self>) {
        let leading = self.is_leader();
        let Some(z) = self.zab.as_ref() else { return };
        if z.serving && !leading {
            // In batches that stay far below the peer frame limit, however many sessions.
            for batch in sessions.chunks(TOUCH_BATCH) {
                z.send_to_leader(Message::Touch { sessions: batch.to_vec() });
            }
        }
    }
}
