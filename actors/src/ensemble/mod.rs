//! The processor's ensemble half: it owns the pure Zab `Peer` (election,
//! discovery, sync, broadcast) and executes its commands — peer links for
//! messages, the txn-log thread for disk, the Core for applying committed
//! transactions. Leader: client writes are prepared by the Core under the
//! zxid Zab will give them, then proposed. Learner: writes, session creation
//! and `sync` are forwarded to the leader and answered when their committed
//! transaction is applied here.

use crate::mailbox::{Mailbox, Serve};
use crate::messages::{Dispatch, Submit, ToConn, Tracking};
use crate::peer_link::{self, Adopt, Incoming, PeerEvent, PeerLink, Reset, SendFrame};
use crate::processor::{wall_clock_ms, Caller, InFlight, Processor, Route, WriteKey};
use actix::prelude::*;
use slog::{error, info, warn};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::proto::Request;
use warden_core::server::RequestCtx;
use warden_core::snapshot;
use warden_core::txn::{LogEntry, Txn};
pub use warden_core::zab::{Forward, ForwardOp};
use warden_core::zab::{Command, Message, Peer, PeerState, ServerId, Zxid};

mod digest;
mod sessions;
mod setup;
pub use setup::{read_dynamic_config, read_epoch, LinkFactory, QuorumSetup};
use setup::{epoch_file, write_epoch};

/// How often the Zab state machine sees the clock.
const ZAB_TICK: Duration = Duration::from_millis(20);
/// How often the leader tells learners its tree digest (when it changed).
const DIGEST_INTERVAL: Duration = Duration::from_millis(100);

/// A request this learner forwarded, waiting for its committed transaction.
pub(crate) enum Forwarded {
    Request(Caller, Request),
    Attach(Dispatch),
    /// A read barrier (warden.linearizableReads) of this session.
    Barrier,
}

pub struct Zab {
    pub peer: Peer,
    links: BTreeMap<ServerId, Mailbox<PeerLink>>,
    link_factory: LinkFactory,
    /// The live connection generation per peer (events of older ones are stale).
    link_gen: HashMap<ServerId, u64>,
    /// Disk operations issued, oldest first: the zxid the log ends at after each.
    disk_ops: VecDeque<Zxid>,
    ops_done: u64,
    epoch_dir: PathBuf,
    data_dir: PathBuf,
    snap_dir: PathBuf,
    started: Instant,
    pub(crate) forwarded: HashMap<(i64, i32), Forwarded>,
    pub serving: bool,
    /// When the last election began, and how long the last one took.
    looking_since: Option<Instant>,
    pub last_election_ms: u64,
    /// Learner: digests after recent applies, and the leader's digest for a
    /// zxid not applied yet (checked when it is).
    applied_digests: VecDeque<(Zxid, u64)>,
    expected_digest: Option<(Zxid, u64)>,
    /// Leader: the last zxid whose digest went out.
    digest_sent_for: Zxid,
    pub digests_checked: u64,
    /// Read barriers issued (their negative xids).
    barriers: u64,
    /// readonlymode.enabled: serving read-only clients while looking.
    pub read_only: bool,
    /// Bumped at every LookForLeader, so a stale read-only timer does nothing.
    looking_round: u64,
}

/// Digests a learner remembers for comparison with the leader's.
pub(super) const DIGEST_MEMORY: usize = 4096;

impl Zab {
    pub fn new(peer: Peer, links: BTreeMap<ServerId, Mailbox<PeerLink>>, link_factory: LinkFactory, ops_done: u64, data_dir: &Path) -> Zab {
        let dir = crate::storage::version_dir(data_dir);
        Zab {
            peer,
            links,
            link_factory,
            link_gen: HashMap::new(),
            disk_ops: VecDeque::new(),
            ops_done,
            epoch_dir: dir.clone(),
            data_dir: data_dir.to_path_buf(),
            snap_dir: dir,
            started: Instant::now(),
            forwarded: HashMap::new(),
            serving: false,
            looking_since: Some(Instant::now()),
            last_election_ms: 0,
            applied_digests: VecDeque::new(),
            expected_digest: None,
            digest_sent_for: 0,
            digests_checked: 0,
            barriers: 0,
            read_only: false,
            looking_round: 0,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn send(&self, to: ServerId, msg: &Message) {
        if let Some(link) = self.links.get(&to) {
            send_frame(link, peer_link::encode(msg));
        }
    }
}

/// A link whose mailbox is full is too far behind to catch up frame by
/// frame: it drops its connection and Zab resyncs the peer (frames after
/// the reset go to the new connection, which Zab treats as a fresh peer).
fn send_frame(link: &Mailbox<PeerLink>, frame: bytes::Bytes) {
    if link.try_send(SendFrame(frame)).is_err() {
        link.do_send(Reset);
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
        self.zab.as_ref().is_some_and(|z| z.serving && z.peer.state() == PeerState::Leading)
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
            Some(z) => match z.peer.state() {
                PeerState::Leading => "leader",
                PeerState::Following => "follower",
                PeerState::Observing => "observer",
                PeerState::Looking => "looking",
            },
        }
    }

    pub(crate) fn quorum_status(&self) -> Option<warden_core::fourlw::QuorumStatus> {
        let z = self.zab.as_ref()?;
        let store = z.peer.store();
        let last = store.last_zxid();
        let peer_state = match (z.peer.state(), z.serving) {
            (PeerState::Looking, _) => "looking",
            (PeerState::Leading, true) => "leading - broadcast",
            (PeerState::Leading, false) => "leading - synchronization",
            (PeerState::Following, true) => "following - broadcast",
            (PeerState::Following, false) => "following - synchronization",
            (PeerState::Observing, true) => "observing - broadcast",
            (PeerState::Observing, false) => "observing - synchronization",
        };
        let learners = z
            .peer
            .learners()
            .into_iter()
            .map(|(id, observer, synced, acked)| warden_core::fourlw::LearnerStatus {
                id,
                observer,
                synced,
                acked_zxid: acked,
                lag: store.entries_after(acked.max(store.base())).count() as u64,
            })
            .collect();
        Some(warden_core::fourlw::QuorumStatus {
            peer_state: peer_state.into(),
            server_id: z.peer.id(),
            leader_id: z.peer.leader(),
            epoch: store.current_epoch,
            last_logged_zxid: last,
            committed_zxid: store.committed(),
            last_election_ms: z.last_election_ms,
            learners,
        })
    }

    /// Leader: makes the Core prepare the next transaction under the zxid
    /// Zab will assign it. False when that is impossible now (not leading, or
    /// too many proposals in flight).
    pub(crate) fn prime_zxid(&mut self) -> bool {
        let Some(z) = &self.zab else { return true };
        match z.peer.next_zxid() {
            Ok(zxid) => {
                // Transactions prepared but not yet handed to Zab already
                // stand for zxid, zxid+1, ...: the core's counter continues
                // after them. Resetting it would prepare a second txn under
                // a zxid already taken.
                if !self.core.has_unlogged() {
                    self.core.set_next_zxid(zxid);
                }
                true
            }
            Err(e) => {
                warn!(self.log, "cannot propose now"; "why" => format!("{e:?}"));
                false
            }
        }
    }

    pub(crate) fn start_zab(&mut self, ctx: &mut Context<Self>) {
        let Some(z) = self.zab.as_mut() else { return };
        let now = z.now_ms();
        let cmds = z.peer.start(now);
        self.run_commands(cmds, ctx);
        ctx.run_interval(DIGEST_INTERVAL, |act, _| act.send_digest());
        ctx.run_interval(ZAB_TICK, |act, ctx| {
            let Some(z) = act.zab.as_mut() else { return };
            let now = z.now_ms();
            let cmds = z.peer.on_tick(now);
            act.run_commands(cmds, ctx);
            act.note_synced_learners();
        });
    }

    /// Leader: hands freshly prepared transactions to Zab.
    pub(crate) fn propose(&mut self, entries: Vec<Arc<LogEntry>>, ctx: &mut Context<Self>) {
        for e in entries {
            let Some(z) = self.zab.as_mut() else { return };
            match z.peer.propose(e.hdr, e.txn.clone()) {
                Ok((zxid, cmds)) => {
                    if zxid != e.hdr.zxid {
                        // Prepared under a different zxid than Zab gave it: the
                        // outstanding-change bookkeeping would be wrong. Fail stop.
                        return self.fatal(format!("prepared zxid {:#x} but Zab assigned {zxid:#x}", e.hdr.zxid));
                    }
                    self.run_commands(cmds, ctx);
                }
                Err(err) => return self.fatal(format!("propose failed after next_zxid succeeded: {err:?}")),
            }
        }
    }

    /// What a reconfig's NewConfigNoQuorum check counts: this leader and
    /// the learners synced with it (nobody when not leading).
    fn note_synced_learners(&mut self) {
        let Some(z) = &self.zab else { return };
        let synced = match z.peer.state() {
            PeerState::Leading => z.peer.learners().into_iter().filter(|l| l.2).map(|l| l.0).chain([z.peer.id()]).collect(),
            _ => Default::default(),
        };
        self.core.quorum_synced = Some(synced);
    }

    /// Learner: sends a client request to the leader and remembers who waits.
    pub(crate) fn forward(&mut self, msg: Submit) {
        let Submit { conn, session_id, xid, request, auth, received } = msg;
        let Some(z) = self.zab.as_mut() else { return };
        let Some(leader) = z.peer.leader().filter(|_| z.serving) else {
            return conn.do_send(ToConn::Close { frame: None, reason: "no leader" });
        };
        let local = self.core.is_local_session(session_id);
        let Some(z) = self.zab.as_mut() else { return };
        let fwd = Forward { session_id, cxid: xid, auth: auth.to_vec(), op: ForwardOp::Client(request.clone()), local };
        z.send(leader, &Message::Request(fwd));
        let caller = Caller { conn, session_id, received, op: request.name() };
        z.forwarded.insert((session_id, xid), Forwarded::Request(caller, request));
        self.in_flight.entry(session_id).or_default().push_back(InFlight::Write(WriteKey::Xid(xid)));
    }

    /// warden.linearizableReads: a no-op goes through the leader first and
    /// the read is served once it is applied here, so the read sees every
    /// write that completed before it was asked.
    pub(crate) fn read_behind_barrier(&mut self, msg: Submit) {
        let session_id = msg.session_id;
        let leading = self.is_leader();
        let Some(z) = self.zab.as_mut() else { return };
        z.barriers = z.barriers.wrapping_add(1);
        // Negative xids never collide with a client's own.
        let cxid = i32::MIN + (z.barriers % (i32::MAX as u64)) as i32;
        let key = if leading {
            if !self.prime_zxid() {
                return msg.conn.do_send(ToConn::Close { frame: None, reason: "the leader has too many proposals in flight" });
            }
            let rctx = RequestCtx { session_id, xid: cxid, auth: &[], now_ms: wall_clock_ms() };
            match self.core.process(&rctx, Request::Sync { path: "/".into() }) {
                warden_core::server::Processed::Pending(zxid) => {
                    self.routes.insert(zxid, Route::Barrier(session_id));
                    WriteKey::Zxid(zxid)
                }
                // The session is gone: answer the read as it would be answered.
                warden_core::server::Processed::Done(_) => return self.serve_now(msg),
            }
        } else {
            let Some(leader) = z.peer.leader().filter(|_| z.serving) else {
                return msg.conn.do_send(ToConn::Close { frame: None, reason: "no leader" });
            };
            let fwd = Forward { session_id, cxid, auth: Vec::new(), op: ForwardOp::Client(Request::Sync { path: "/".into() }), local: self.core.is_local_session(session_id) };
            z.send(leader, &Message::Request(fwd));
            z.forwarded.insert((session_id, cxid), Forwarded::Barrier);
            WriteKey::Xid(cxid)
        };
        let queue = self.in_flight.entry(session_id).or_default();
        queue.push_back(InFlight::Write(key));
        queue.push_back(InFlight::ReadAfterBarrier(msg));
    }

    pub(crate) fn forward_create_session(&mut self, session_id: i64, timeout_ms: i32, attach: Dispatch) {
        let Some(z) = self.zab.as_mut() else { return };
        let Some(leader) = z.peer.leader() else { return };
        let fwd = Forward { session_id, cxid: 0, auth: Vec::new(), op: ForwardOp::CreateSession { timeout_ms }, local: false };
        z.send(leader, &Message::Request(fwd));
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
                    match self.core.process_as(&rctx, request, fwd.local) {
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

    fn fatal(&mut self, reason: String) {
        error!(self.log, "Zab safety check failed; stopping rather than serve wrong data"; "reason" => &reason);
        eprintln!("warden: fatal: {reason}");
        std::thread::sleep(Duration::from_millis(100));
        std::process::exit(3);
    }

    /// The log thread finished operations up to `ops` (cumulative).
    pub(crate) fn on_disk_ops_done(&mut self, ops: u64, ctx: &mut Context<Self>) {
        loop {
            let Some(z) = self.zab.as_mut() else { return };
            if z.ops_done >= ops {
                return;
            }
            z.ops_done += 1;
            let Some(zxid) = z.disk_ops.pop_front() else {
                let n = z.ops_done;
                return self.fatal(format!("the log reported operation {n} that was never issued"));
            };
            let cmds = z.peer.on_persisted(zxid);
            self.run_commands(cmds, ctx);
        }
    }

    pub(crate) fn run_commands(&mut self, cmds: Vec<Command>, ctx: &mut Context<Self>) {
        for cmd in cmds {
            self.run_command(cmd, ctx);
        }
    }

    fn run_command(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        let Some(z) = self.zab.as_mut() else { return };
        match cmd {
            Command::Send { to, msg } => z.send(to, &msg),
            Command::Broadcast { to, msg } => {
                let frame = peer_link::encode(&msg);
                for id in to {
                    if let Some(link) = z.links.get(&id) {
                        send_frame(link, frame.clone());
                    }
                }
            }
            Command::CloseLink { peer } => {
                if let Some(link) = z.links.get(&peer) {
                    link.do_send(Reset);
                }
            }
            Command::PersistEpoch { kind, epoch } => {
                if let Err(e) = write_epoch(&z.epoch_dir, kind, epoch) {
                    self.fatal(format!("cannot persist {}: {e}", epoch_file(kind)));
                }
            }
            Command::AppendLog { entries } => {
                let last = entries.last().map(|e| e.hdr.zxid).unwrap_or_else(|| z.peer.store().last_zxid());
                z.disk_ops.push_back(last);
                self.txn_log.append(entries.into_iter().map(Arc::new).collect());
            }
            Command::TruncateLog { to_zxid } => {
                info!(self.log, "TRUNC: dropping log entries the leader does not have"; "to_zxid" => format!("{to_zxid:#x}"));
                z.disk_ops.push_back(to_zxid);
                self.txn_log.truncate(to_zxid);
            }
            Command::SendSnapshot { to, zxid } => {
                if self.core.db.last_zxid() != zxid {
                    return self.fatal(format!("SNAP for {to} at {zxid:#x}, but the database is at {:#x}", self.core.db.last_zxid()));
                }
                let Some(link) = z.links.get(&to).cloned() else { return };
                // Copying the nodes must happen here, where the tree is (and
                // it is exactly at zxid); encoding is the snapshotter's work.
                // The link holds later frames until the SNAP is ready.
                let started = Instant::now();
                let (mut writer, header) = warden_core::snapshot::SnapshotWriter::begin(&self.core.db);
                let mut items = Vec::new();
                while !writer.is_done() {
                    items.extend(writer.next_items(&self.core.db.tree, 10_000));
                }
                info!(self.log, "sending a snapshot to a learner"; "to" => to, "zxid" => format!("{zxid:#x}"), "copy_ms" => started.elapsed().as_millis() as u64);
                let (tx, rx) = tokio::sync::oneshot::channel();
                link.do_send(crate::peer_link::SendDeferred(rx));
                let snapshotter = self.snapshotter.clone();
                actix_rt::spawn(async move {
                    if let Ok(frame) = snapshotter.send(crate::messages::EncodeSnap { zxid, header, items }).await {
                        let _ = tx.send(frame);
                    }
                });
            }
            Command::InstallSnapshot { zxid, data } => {
                let loaded = match snapshot::load(&data) {
                    Ok(s) => s,
                    Err(e) => return self.fatal(format!("the leader's snapshot at {zxid:#x} does not load: {e}")),
                };
                info!(self.log, "installing the leader's snapshot"; "zxid" => format!("{zxid:#x}"), "nodes" => loaded.nodes);
                self.core.install(loaded.db);
                self.routes.clear();
                let z = self.zab.as_mut().expect("zab");
                z.applied_digests.clear();
                z.applied_digests.push_back((zxid, self.core.db.tree.digest()));
                z.expected_digest = z.expected_digest.filter(|(want, _)| *want > zxid);
                z.disk_ops.push_back(zxid);
                self.txn_log.install_snapshot(zxid, data, z.snap_dir.clone());
                self.membership_from_tree(ctx);
            }
            Command::Apply { entries } => self.apply_committed(entries, ctx),
            Command::ConfigAdopted { data } => {
                info!(self.log, "adopted a newer committed config from a peer");
                self.config_activated(&data);
            }
            Command::Elected { leader, vote } => {
                info!(self.log, "election finished"; "leader" => leader, "zxid" => format!("{:#x}", vote.zxid), "epoch" => vote.epoch);
            }
            Command::BecomeLeader => info!(self.log, "leading"),
            Command::BecomeFollower { leader, observer } => info!(self.log, "following"; "leader" => leader, "observer" => observer),
            Command::Serving { leader, epoch } => {
                z.serving = true;
                if std::mem::replace(&mut z.read_only, false) {
                    // As ZooKeeper: the read-only server stops; its clients reconnect read-write.
                    let n = self.core.drop_local_sessions();
                    self.dispatcher.do_send(crate::messages::CloseAll);
                    info!(self.log, "leaving read-only mode: a quorum is back"; "local_sessions_dropped" => n);
                }
                let z = self.zab.as_mut().expect("zab");
                if let Some(since) = z.looking_since.take() {
                    z.last_election_ms = since.elapsed().as_millis() as u64;
                }
                let me = z.peer.id();
                info!(self.log, "serving clients"; "leader" => leader, "epoch" => epoch, "role" => if leader == me { "leader" } else { "learner" }, "election_ms" => z.last_election_ms);
                if leader == me {
                    if self.core.settings.reconfig_enabled {
                        // After the commands being run, as any proposal.
                        ctx.run_later(Duration::ZERO, |act, ctx| {
                            if act.is_leader() && act.prime_zxid() && act.core.stamp_config(wall_clock_ms()).is_some() {
                                act.flush_log(ctx);
                            }
                        });
                    }
                    // Every session gets a fresh expiry clock under the new leader.
                    self.tracker.do_send(Tracking::Mode { expire: true, forward_to: None });
                    for (session_id, timeout_ms) in self.core.db.sessions() {
                        self.tracker.do_send(Tracking::Track { session_id: *session_id, timeout_ms: *timeout_ms });
                    }
                } else {
                    self.tracker.do_send(Tracking::Mode { expire: false, forward_to: Some(self.mailbox(ctx).inbox()) });
                }
            }
            Command::LookForLeader { reason } => {
                let was_serving = std::mem::replace(&mut z.serving, false);
                z.looking_since.get_or_insert_with(Instant::now);
                info!(self.log, "looking for a leader"; "reason" => reason);
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
            Command::Fatal { reason } => self.fatal(reason),
        }
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
        self.dispatcher.do_send(crate::messages::CloseAll);
        info!(self.log, "closed client connections until a leader is found"; "abandoned_proposals" => dropped);
    }

    /// Committed transactions, in zxid order: apply, answer who waits, fire watches.
    /// A reconfig committed (Zab activated its quorum already): links to
    /// the members it added. Links to removed servers stay; they may still
    /// follow as non-voting learners.
    fn config_activated(&mut self, data: &[u8]) {
        let Some(z) = self.zab.as_mut() else { return };
        let m = match warden_core::membership::Membership::parse(&String::from_utf8_lossy(data)) {
            Ok(m) => m,
            Err(e) => return error!(self.log, "a committed reconfig does not parse"; "error" => e),
        };
        if let Err(e) = setup::write_dynamic_config(&z.data_dir, &m) {
            // A restart then treats the reconfig as proposed (joint quorums): safe, only slower.
            error!(self.log, "cannot write the committed config"; "error" => %e);
        }
        let my_id = z.peer.id();
        for spec in m.servers.values().filter(|s| s.id != my_id) {
            if !z.links.contains_key(&spec.id) {
                z.links.insert(spec.id, z.link_factory.link(spec.id, setup::quorum_addr(spec)));
            }
        }
        info!(self.log, "reconfig activated"; "version" => format!("{:x}", m.version), "voters" => format!("{:?}", m.voters()), "observers" => format!("{:?}", m.observers()),
            "role" => format!("{:?}", z.peer.state()));
    }

    /// After a SNAP: the leader's tree may hold a config this member never
    /// saw committed.
    fn membership_from_tree(&mut self, ctx: &mut Context<Self>) {
        let Some(data) = self.core.db.tree.get(warden_core::tree::CONFIG).and_then(|n| n.data.as_deref()).map(<[u8]>::to_vec) else { return };
        let Ok(m) = warden_core::membership::Membership::parse(&String::from_utf8_lossy(&data)) else { return };
        if m.version == 0 || m.voters().is_empty() {
            return;
        }
        self.config_activated(&data);
        let Some(z) = self.zab.as_mut() else { return };
        let cmds = z.peer.set_membership(&data);
        self.run_commands(cmds, ctx);
    }

    fn apply_committed(&mut self, entries: Vec<LogEntry>, ctx: &mut Context<Self>) {
        for entry in entries {
            let zxid = entry.hdr.zxid;
            let key = (entry.hdr.session_id, entry.hdr.cxid);
            let local = self.routes.contains_key(&zxid);
            let fwd = if local { None } else { self.zab.as_mut().and_then(|z| z.forwarded.remove(&key)) };
            let answer = match &fwd {
                Some(Forwarded::Request(_, req)) => Some((entry.hdr.cxid, req.clone())),
                _ => None,
            };
            let Some(output) = self.core.apply_committed(&entry, answer) else { continue };
            self.txns_since_snapshot += 1;
            self.stats.txns_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.note_applied_digest(zxid);
            match &entry.txn {
                Txn::CreateSession { timeout_ms } => self.tracker.do_send(Tracking::Track { session_id: entry.hdr.session_id, timeout_ms: *timeout_ms }),
                Txn::CloseSession { .. } => self.tracker.do_send(Tracking::Untrack { session_id: entry.hdr.session_id }),
                Txn::Reconfig { data } => self.config_activated(data),
                _ => {}
            }
            match (self.routes.remove(&zxid), fwd) {
                (Some(Route::Request(caller)), _) | (None, Some(Forwarded::Request(caller, _))) => {
                    let sid = caller.session_id;
                    let key = if local { WriteKey::Zxid(zxid) } else { WriteKey::Xid(entry.hdr.cxid) };
                    self.answer(caller, output);
                    self.release_reads_after(sid, key);
                }
                (Some(Route::Attach(d)), _) | (None, Some(Forwarded::Attach(d))) => self.dispatcher.do_send(d),
                (Some(Route::Barrier(sid)), _) => self.release_reads_after(sid, WriteKey::Zxid(zxid)),
                (None, Some(Forwarded::Barrier)) => self.release_reads_after(entry.hdr.session_id, WriteKey::Xid(entry.hdr.cxid)),
                _ => self.dispatcher.do_send(Dispatch::Output { conn: None, session_id: output.session_closed.unwrap_or(0), output, received: None }),
            }
        }
        // Reads released above may have prepared barriers (on the leader):
        // propose them once the commands being run are done, not in the
        // middle of them.
        if self.core.has_unlogged() {
            ctx.run_later(Duration::ZERO, |act, ctx| act.flush_log(ctx));
        }
        self.maybe_snapshot(ctx);
    }
}

impl Serve<Incoming> for Processor {
    /// A peer connection that said Hello: members' go to their link (when
    /// they are the dialer); with reconfigEnabled a server outside the
    /// config gets a link too, so it can sync as a learner and be added.
    fn serve(&mut self, m: Incoming, _: &mut Context<Self>) {
        let Some(z) = self.zab.as_mut() else { return };
        let my_id = z.peer.id();
        match z.links.get(&m.from) {
            Some(link) if m.from > my_id => link.do_send(Adopt(m.stream, m.early)),
            Some(_) => warn!(self.log, "refused peer connection: the member with the larger id dials"; "from" => m.addr, "server_id" => m.from),
            None if self.core.settings.reconfig_enabled && m.from != my_id => {
                info!(self.log, "a server outside the config connected; it may sync as a non-voting learner"; "from" => m.addr, "server_id" => m.from);
                let link = z.link_factory.link(m.from, String::new());
                link.do_send(Adopt(m.stream, m.early));
                z.links.insert(m.from, link);
            }
            None => warn!(self.log, "refused peer connection from an unknown server id"; "from" => m.addr, "server_id" => m.from),
        }
    }
}

impl Serve<PeerEvent> for Processor {
    fn serve(&mut self, ev: PeerEvent, ctx: &mut Context<Self>) {
        let Some(z) = self.zab.as_mut() else { return };
        let cmds = match ev {
            PeerEvent::Up { peer, gen } => {
                let mut cmds = Vec::new();
                if z.link_gen.insert(peer, gen).is_some() {
                    cmds.extend(z.peer.on_disconnected(peer));
                }
                cmds.extend(z.peer.on_connected(peer));
                cmds
            }
            PeerEvent::Down { peer, gen } => {
                if z.link_gen.get(&peer) != Some(&gen) {
                    return;
                }
                z.link_gen.remove(&peer);
                z.peer.on_disconnected(peer)
            }
            PeerEvent::Msg { peer, gen, msg } => {
                if z.link_gen.get(&peer) != Some(&gen) {
                    return;
                }
                match msg {
                    Message::Request(fwd) => return self.on_forwarded(fwd, ctx),
                    Message::Digest { zxid, digest } => return self.check_digest(zxid, digest),
                    Message::Touch { sessions } => {
                        if self.is_leader() {
                            for session_id in sessions {
                                self.tracker.do_send(Tracking::Touch { session_id });
                            }
                        }
                        return;
                    }
                    msg => z.peer.on_message(peer, msg),
                }
            }
        };
        self.run_commands(cmds, ctx);
    }
}

/// Tracker -> processor on a learner: sessions its clients kept alive.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Touches(pub Vec<i64>);

impl Serve<Touches> for Processor {
    fn serve(&mut self, Touches(sessions): Touches, _: &mut Context<Self>) {
        let Some(z) = self.zab.as_ref() else { return };
        if let (true, Some(leader)) = (z.serving, z.peer.leader()) {
            if leader != z.peer.id() && !sessions.is_empty() {
                z.send(leader, &Message::Touch { sessions });
            }
        }
    }
}

