//! The broadcast actor (kind "broadcast"): owns the pure Zab `Replica` —
//! discovery, sync and atomic broadcast, as leader or learner — the peer
//! links, the epoch files and, on an ensemble member, the txn log. It runs
//! with the election actor and the links on one thread: the quorum thread
//! (the default), where votes, heartbeats, ACKs and commits never queue
//! behind client requests, or the processor's, where a write crosses no
//! thread between the processor and Zab (`warden.quorumThread`). It
//! asks the election actor for a round (`ToElection::Elect`) whenever the
//! replica leaves its role, and leads or follows by its outcome. It talks to the processor only by
//! typed messages: the processor numbers and prepares writes and sends
//! `ToZab::Propose`; the broadcast actor sends back what Zab decided
//! (`FromZab`: serving, looking, committed transactions, snapshots).

use self::setup::{epoch_file, quorum_addr, write_dynamic_config, write_epoch, write_zookeeper_dynamic_config, LinkFactory};
use crate::election::ElectionActor;
use crate::mailbox::{Inbox, Mailbox, Serve};
use crate::messages::SendFrame;
use crate::messages::ToElection;
use crate::messages::{Adopt, Incoming, PeerEvent, Reset, SendStream};
use crate::messages::{FromZab, QuorumView, Synced, ToZab};
use crate::peer_link::{self, PeerLink};
use crate::registry::{ActorStats, Fault};
use crate::storage::TxnLog;
use actix::prelude::*;
use slog::{error, info, warn, Logger};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::zab::{Command, Message, PeerState, ProposeError, Replica, ServerId, Zxid};

pub(crate) mod setup;

/// How often the Zab state machine sees the clock.
const ZAB_TICK: Duration = Duration::from_millis(20);

pub struct Broadcast {
    replica: Replica,
    election: Mailbox<ElectionActor>,
    /// Set by `ToZab::Start`; nothing runs before.
    processor: Option<Inbox<FromZab>>,
    /// warden.linearizableReads answered on the I/O threads (`lin_reads`); set by `ToZab::Start`.
    io_reads: Option<Arc<crate::lin_reads::ReadIndexBoard>>,
    txn_log: TxnLog,
    links: BTreeMap<ServerId, Mailbox<PeerLink>>,
    link_factory: LinkFactory,
    /// The live connection generation per peer (events of older ones are stale).
    link_gen: HashMap<ServerId, u64>,
    /// Disk operations issued, oldest first: the zxid the log ends at after each.
    disk_ops: VecDeque<Zxid>,
    ops_done: u64,
    epoch_dir: PathBuf,
    data_dir: PathBuf,
    /// reconfigEnabled and started from a zoo.cfg: its dynamic file is written there too.
    zoo_cfg: Option<PathBuf>,
    started: Instant,
    serving: bool,
    /// Commands not yet run, and whether a disk write holds them back.
    queued: VecDeque<Command>,
    writing: bool,
    /// Whether proposals come one at a time (then logged on this thread).
    lone_writes: crate::storage::LoneWrites,
    /// The role the processor was last told of.
    reported_state: PeerState,
    /// Bumped each time this member starts serving as leader; the
    /// processor tags its proposals with it, so stale ones are told apart.
    term: u64,
    looking_since: Option<Instant>,
    last_election_ms: u64,
    synced_learners: BTreeSet<ServerId>,
    /// What `srvr`/`mntr` report, refreshed every tick.
    view: QuorumView,
    /// The quorum listener and the members to link to, until `Start` runs
    /// them on this thread.
    listener: Option<self::setup::QuorumListener>,
    members: BTreeMap<ServerId, String>,
    stats: Arc<crate::stats::ServerStats>,
    me: Arc<ActorStats>,
    log: Logger,
}

/// A safety check failed: stop rather than serve wrong data (exit 3).
pub fn fatal(log: &Logger, reason: &str) -> ! {
    error!(log, "Zab safety check failed; stopping rather than serve wrong data"; "reason" => reason);
    eprintln!("warden: fatal: {reason}");
    std::thread::sleep(Duration::from_millis(100));
    std::process::exit(3);
}

impl Broadcast {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        replica: Replica,
        election: Mailbox<ElectionActor>,
        txn_log: TxnLog,
        link_factory: LinkFactory,
        listener: self::setup::QuorumListener,
        members: BTreeMap<ServerId, String>,
        data_dir: PathBuf,
        view: QuorumView,
        stats: Arc<crate::stats::ServerStats>,
        me: Arc<ActorStats>,
        log: Logger,
    ) -> Broadcast {
        Broadcast {
            replica,
            election,
            processor: None,
            io_reads: None,
            txn_log,
            links: BTreeMap::new(),
            link_factory,
            link_gen: HashMap::new(),
            disk_ops: VecDeque::new(),
            ops_done: 0,
            epoch_dir: crate::storage::version_dir(&data_dir),
            data_dir,
            zoo_cfg: None,
            started: Instant::now(),
            serving: false,
            queued: VecDeque::new(),
            writing: false,
            lone_writes: Default::default(),
            reported_state: PeerState::Looking,
            term: 0,
            looking_since: Some(Instant::now()),
            last_election_ms: 0,
            synced_learners: BTreeSet::new(),
            view,
            listener: Some(listener),
            members,
            stats,
            me,
            log,
        }
    }

    pub fn with_zoo_cfg(mut self, zoo_cfg: Option<PathBuf>) -> Broadcast {
        self.zoo_cfg = zoo_cfg;
        self
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The election actor sends votes on the links this actor makes.
    fn send_links(&self) {
        self.election.do_send(ToElection::Links(self.links.iter().map(|(id, l)| (*id, l.inbox())).collect()));
    }

    fn to_processor(&self, msg: FromZab) {
        if let Some(p) = &self.processor {
            p.do_send(msg);
        }
    }

    fn send(&self, to: ServerId, msg: &Message) {
        if let Some(link) = self.links.get(&to) {
            send_frame(link, peer_link::encode(msg));
        }
    }

    fn start(&mut self, processor: Inbox<FromZab>, reads: Arc<crate::lin_reads::ReadIndexBoard>, ctx: &mut Context<Self>) {
        self.processor = Some(processor);
        self.io_reads = Some(reads);
        for (id, addr) in std::mem::take(&mut self.members) {
            self.links.insert(id, self.link_factory.link(id, addr));
        }
        self.send_links();
        if let Some(l) = self.listener.take() {
            l.run(crate::mailbox::Mailbox::new(ctx.address(), self.me.clone()).inbox());
        }
        let now = self.now_ms();
        let cmds = self.replica.start(now);
        self.run_commands(cmds, ctx);
        ctx.run_interval(ZAB_TICK, |act, ctx| {
            crate::mailbox::guarded(act, ctx, |act, ctx| act.tick(ctx));
        });
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = self.now_ms();
        let cmds = self.replica.on_tick(now);
        self.run_commands(cmds, ctx);
        if let Some(id) = self.io_reads.as_ref().and_then(|b| b.overdue()) {
            warn!(self.log, "no read index within the limit; refusing the I/O threads' reads"; "batch" => id & !crate::lin_reads::IO_READS);
            self.io_read_answered(id, None, ctx);
        }
        self.note_synced_learners();
        self.publish_view();
    }

    /// What a reconfig's NewConfigNoQuorum check counts: this leader and
    /// the learners synced with it (nobody when not leading).
    fn note_synced_learners(&mut self) {
        let synced: BTreeSet<ServerId> = match self.replica.state() {
            PeerState::Leading => self.replica.learners().into_iter().filter(|l| l.2).map(|l| l.0).chain([self.replica.id()]).collect(),
            _ => Default::default(),
        };
        if synced != self.synced_learners {
            self.synced_learners = synced.clone();
            self.to_processor(FromZab::SyncedLearners(synced));
        }
    }

    fn publish_view(&self) {
        let store = self.replica.store();
        let peer_state = match (self.replica.state(), self.serving) {
            (PeerState::Looking, _) => "looking",
            (PeerState::Leading, true) => "leading - broadcast",
            (PeerState::Leading, false) => "leading - synchronization",
            (PeerState::Following, true) => "following - broadcast",
            (PeerState::Following, false) => "following - synchronization",
            (PeerState::Observing, true) => "observing - broadcast",
            (PeerState::Observing, false) => "observing - synchronization",
        };
        let learners = self
            .replica
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
        let status = warden_core::fourlw::QuorumStatus {
            peer_state: peer_state.into(),
            server_id: self.replica.id(),
            leader_id: self.replica.leader(),
            epoch: store.current_epoch,
            last_logged_zxid: store.last_zxid(),
            committed_zxid: store.committed(),
            last_election_ms: self.last_election_ms,
            learners,
        };
        *self.view.lock().unwrap() = Some(status);
    }

    /// A lone proposal written on this thread, if the log thread is idle.
    fn append_here(&mut self, entries: Vec<Arc<warden_core::txn::LogEntry>>, ctx: &mut Context<Self>) {
        if let Some(done) = self.txn_log.append_if_idle(entries, &mut self.lone_writes) {
            self.on_synced(done, ctx);
        }
    }

    fn on_synced(&mut self, msg: Synced, ctx: &mut Context<Self>) {
        self.stats.fsyncs.fetch_max(msg.fsyncs, std::sync::atomic::Ordering::Relaxed);
        self.on_disk_ops_done(msg.ops, ctx);
    }

    /// The log thread finished operations up to `ops` (cumulative).
    fn on_disk_ops_done(&mut self, ops: u64, ctx: &mut Context<Self>) {
        while self.ops_done < ops {
            self.ops_done += 1;
            let Some(zxid) = self.disk_ops.pop_front() else {
                fatal(&self.log, &format!("the log reported operation {} that was never issued", self.ops_done));
            };
            let cmds = self.replica.on_persisted(zxid);
            self.run_commands(cmds, ctx);
        }
    }

    /// A write the processor numbered and prepared. Proposals of an older
    /// term are stale (this member stopped leading since); a zxid Zab would
    /// not give (an epoch bump the processor could not foresee) makes the
    /// leader step down, and clients retry with the next one.
    fn propose(&mut self, term: u64, entries: Vec<Arc<warden_core::txn::LogEntry>>, ctx: &mut Context<Self>) {
        if term != self.term || !self.serving {
            return;
        }
        for e in entries {
            match self.replica.next_zxid() {
                Ok(z) if z == e.hdr.zxid => {}
                Ok(z) => {
                    warn!(self.log, "the processor numbered a write differently from Zab; stepping down"; "prepared" => format!("{:#x}", e.hdr.zxid), "zab" => format!("{z:#x}"));
                    let cmds = self.replica.step_down("proposal numbering out of step");
                    return self.run_commands(cmds, ctx);
                }
                Err(ProposeError::NotLeader) => return,
                // Uncommitted proposals piled up (no quorum acknowledging):
                // stop leading rather than refuse a write the processor prepared.
                Err(ProposeError::Busy) => {
                    let cmds = self.replica.step_down("too many proposals in flight");
                    return self.run_commands(cmds, ctx);
                }
                Err(err) => fatal(&self.log, &format!("cannot propose {:#x}: {err:?}", e.hdr.zxid)),
            }
            match self.replica.propose(e.hdr, e.txn.clone()) {
                Ok((_, cmds)) => self.run_commands(cmds, ctx),
                Err(err) => fatal(&self.log, &format!("propose failed after next_zxid succeeded: {err:?}")),
            }
        }
    }

    fn run_commands(&mut self, cmds: Vec<Command>, ctx: &mut Context<Self>) {
        self.queued.extend(cmds);
        self.drain(ctx);
    }

    /// Runs queued commands in order until one must wait for the disk.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while !self.writing {
            let Some(cmd) = self.queued.pop_front() else { break };
            self.run_command(cmd, ctx);
        }
        // A reconfig can turn an observer into a follower (or back) while it serves.
        let state = self.replica.state();
        if self.serving && state != self.reported_state {
            self.reported_state = state;
            self.to_processor(FromZab::Role(state));
        }
    }

    fn run_command(&mut self, cmd: Command, ctx: &mut Context<Self>) {
        match cmd {
            Command::Send { to, msg } => self.send(to, &msg),
            Command::Broadcast { to, msg } => {
                let frame = peer_link::encode(&msg);
                for id in to {
                    if let Some(link) = self.links.get(&id) {
                        send_frame(link, frame.clone());
                    }
                }
            }
            Command::CloseLink { peer } => {
                if let Some(link) = self.links.get(&peer) {
                    link.do_send(Reset);
                }
            }
            Command::PersistEpoch { kind, epoch } => {
                let dir = self.epoch_dir.clone();
                self.write_then_go_on(ctx, move || write_epoch(&dir, kind, epoch).map_err(|e| format!("cannot persist {}: {e}", epoch_file(kind))), true);
            }
            Command::AppendLog { entries } => {
                let last = entries.last().map(|e| e.hdr.zxid).unwrap_or_else(|| self.replica.store().last_zxid());
                self.disk_ops.push_back(last);
                let entries: Vec<_> = entries.into_iter().map(Arc::new).collect();
                // A lone proposal (one write at a time, nothing else waiting here)
                // is logged on this thread: a follower then ACKs, and a leader
                // counts its own vote, without waiting for the log thread to wake
                // and wake this one back. (A late ACK in the mailbox is no crowd.)
                if !(self.lone_writes.alone(entries.len() > 1) && self.me.depth() == 0) {
                    return self.txn_log.append(entries);
                }
                // The sends queued behind it (a leader's proposal) leave first, as
                // they would beside the log thread's write: nothing Zab sends
                // waits for an append but what `on_persisted` gives.
                let mut sent = false;
                while matches!(self.queued.front(), Some(Command::Send { .. } | Command::Broadcast { .. })) {
                    let send = self.queued.pop_front().expect("checked");
                    self.run_command(send, ctx);
                    sent = true;
                }
                if !self.queued.is_empty() {
                    return self.txn_log.append(entries);
                }
                if !sent {
                    return self.append_here(entries, ctx);
                }
                // The peer links share this thread: they write the proposal
                // before the fsync holds it, so the followers' fsyncs run beside it.
                self.writing = true;
                ctx.wait(actix::fut::wrap_future(tokio::task::yield_now()).map(move |_, act: &mut Self, ctx: &mut Context<Self>| {
                    act.writing = false;
                    crate::mailbox::guarded(act, ctx, |act, ctx| {
                        act.append_here(entries, ctx);
                        act.drain(ctx);
                    });
                }));
            }
            Command::TruncateLog { to_zxid } => {
                info!(self.log, "TRUNC: dropping log entries the leader does not have"; "to_zxid" => format!("{to_zxid:#x}"));
                self.disk_ops.push_back(to_zxid);
                self.txn_log.truncate(to_zxid);
            }
            Command::SendSnapshot { to, zxid } => {
                let Some(link) = self.links.get(&to) else { return };
                // The processor streams the tree (which, after the Apply
                // messages before this one, is at zxid when it starts) in
                // pieces; the link writes them as they come and holds later
                // frames until the stream ends. Two pieces in flight at most.
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                link.do_send(SendStream(rx));
                self.to_processor(FromZab::SnapFor { to, zxid, out: tx });
            }
            Command::BeginSnapshot { zxid } => {
                info!(self.log, "receiving the leader's snapshot"; "zxid" => format!("{zxid:#x}"));
                self.txn_log.begin_snapshot(zxid, crate::storage::version_dir(&self.data_dir));
            }
            Command::SnapshotChunk { data } => self.txn_log.snapshot_chunk(data),
            Command::InstallSnapshot { zxid, bytes, crc, fuzzy_until } => {
                info!(self.log, "installing the leader's snapshot"; "zxid" => format!("{zxid:#x}"), "bytes" => bytes, "fuzzy_until" => format!("{fuzzy_until:#x}"));
                self.disk_ops.push_back(zxid);
                let (ready, installed) = tokio::sync::oneshot::channel();
                self.txn_log.install_snapshot(zxid, bytes, crc, ready);
                self.to_processor(FromZab::Install { zxid, fuzzy_until, ready: installed });
            }
            Command::ReadReady { id, zxid } if id & crate::lin_reads::IO_READS != 0 => self.io_read_answered(id, Some(zxid), ctx),
            Command::ReadRefused { id } if id & crate::lin_reads::IO_READS != 0 => self.io_read_answered(id, None, ctx),
            Command::ReadReady { id, zxid } => self.to_processor(FromZab::ReadReady { id, zxid }),
            Command::ReadRefused { id } => self.to_processor(FromZab::ReadRefused { id }),
            Command::Apply { entries } => {
                for e in &entries {
                    if let warden_core::txn::Txn::Reconfig { data } = &e.txn {
                        self.config_activated(data, ctx);
                    }
                }
                self.to_processor(FromZab::Apply(entries));
            }
            Command::ConfigAdopted { data } => {
                info!(self.log, "adopted a newer committed config from a peer");
                self.config_activated(&data, ctx);
            }
            Command::Elect(look) => self.election.do_send(ToElection::Elect(look)),
            Command::ConfigActive { voters, observers, version, data } => self.election.do_send(ToElection::ConfigActive { voters, observers, version, data }),
            // The election actor's; the replica gives neither.
            Command::Elected { .. } => {}
            Command::BecomeLeader => info!(self.log, "leading"),
            Command::BecomeFollower { leader, observer } => info!(self.log, "following"; "leader" => leader, "observer" => observer),
            Command::Serving { leader, epoch } if self.serving => {
                // An epoch bump finished (the leader kept serving): the
                // processor numbers on, its writes queued by the bump.
                info!(self.log, "epoch bumped without an election"; "leader" => leader, "epoch" => epoch);
                self.publish_view();
            }
            Command::Serving { leader, epoch } => {
                self.serving = true;
                if let Some(since) = self.looking_since.take() {
                    self.last_election_ms = since.elapsed().as_millis() as u64;
                }
                let me = self.replica.id();
                if leader == me {
                    self.term += 1;
                }
                info!(self.log, "serving clients"; "leader" => leader, "epoch" => epoch, "role" => if leader == me { "leader" } else { "learner" }, "election_ms" => self.last_election_ms);
                self.reported_state = self.replica.state();
                let serving = FromZab::Serving { leader, me, state: self.replica.state(), epoch, last_zxid: self.replica.store().last_zxid(), term: self.term };
                self.to_processor(serving);
                self.publish_view();
            }
            Command::LookForLeader { reason } => {
                self.serving = false;
                if let Some(b) = &self.io_reads {
                    b.abandon();
                }
                self.looking_since.get_or_insert_with(Instant::now);
                info!(self.log, "looking for a leader"; "reason" => reason);
                self.to_processor(FromZab::LookForLeader { reason });
                self.publish_view();
            }
            Command::Fatal { reason } => fatal(&self.log, &reason),
        }
        let _ = ctx;
    }

    /// An I/O threads' batch got its index (None: refused): its connections
    /// are told, and the batch gathered meanwhile is asked at once.
    fn io_read_answered(&mut self, id: u64, index: Option<i64>, ctx: &mut Context<Self>) {
        let Some(next) = self.io_reads.as_ref().and_then(|b| b.answered(id, index)) else { return };
        let cmds = self.replica.read_index(next);
        self.run_commands(cmds, ctx);
    }

    /// Runs `write` on a blocking thread while this actor waits (its
    /// mailbox and its queued commands: a Send after an epoch write must not
    /// leave before the epoch is durable); its thread runs on. A
    /// failed write stops the node when `must` (Zab relies on it), else is
    /// logged.
    fn write_then_go_on(&mut self, ctx: &mut Context<Self>, write: impl FnOnce() -> Result<(), String> + Send + 'static, must: bool) {
        self.writing = true;
        let done = tokio::task::spawn_blocking(write);
        ctx.wait(actix::fut::wrap_future(done).map(move |res, act: &mut Self, ctx: &mut Context<Self>| {
            act.writing = false;
            match res.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(()) => {}
                Err(e) if must => fatal(&act.log, &e),
                // A restart then treats a reconfig as proposed (joint quorums): safe, only slower.
                Err(e) => error!(act.log, "cannot write the committed config"; "error" => e),
            }
            crate::mailbox::guarded(act, ctx, |act, ctx| act.drain(ctx));
        }));
    }

    /// A reconfig committed (Zab activated its quorum already): keep the
    /// config, and link to the members it added. Links to removed servers
    /// stay; they may still follow as non-voting learners.
    fn config_activated(&mut self, data: &[u8], ctx: &mut Context<Self>) {
        let m = match warden_core::membership::Membership::parse(&String::from_utf8_lossy(data)) {
            Ok(m) => m,
            Err(e) => return error!(self.log, "a committed reconfig does not parse"; "error" => e),
        };
        let (dir, zoo_cfg, written, my_id) = (self.data_dir.clone(), self.zoo_cfg.clone(), m.clone(), self.replica.id());
        self.write_then_go_on(
            ctx,
            move || {
                write_dynamic_config(&dir, &written).map_err(|e| e.to_string())?;
                zoo_cfg.map_or(Ok(()), |cfg| write_zookeeper_dynamic_config(&cfg, my_id, &written))
            },
            false,
        );
        let my_id = self.replica.id();
        let before = self.links.len();
        for spec in m.servers.values().filter(|s| s.id != my_id) {
            if !self.links.contains_key(&spec.id) {
                self.links.insert(spec.id, self.link_factory.link(spec.id, quorum_addr(spec)));
            }
        }
        if self.links.len() != before {
            self.send_links();
        }
        info!(self.log, "reconfig activated"; "version" => format!("{:x}", m.version), "voters" => format!("{:?}", m.voters()), "observers" => format!("{:?}", m.observers()),
            "role" => format!("{:?}", self.replica.state()));
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

impl Actor for Broadcast {
    type Context = Context<Self>;
}

crate::supervise::supervised!(Broadcast);
crate::mailbox::mailbox!(Broadcast: ToZab, PeerEvent, Incoming, Synced, Fault);

/// Zab's state after a failure cannot be trusted and its source of truth
/// is the log on disk: the kind escalates (`can_restart`), and the restarted
/// process re-elects and re-syncs.
impl crate::supervise::Rebuild for Broadcast {
    fn rebuild(&mut self, _: &mut Context<Self>) {}
}

impl Serve<ToZab> for Broadcast {
    fn serve(&mut self, msg: ToZab, ctx: &mut Context<Self>) {
        match msg {
            ToZab::Start { processor, reads } => self.start(processor, reads, ctx),
            ToZab::Propose { term, entries } => self.propose(term, entries, ctx),
            ToZab::ToLeader(msg) => {
                if let Some(leader) = self.replica.leader().filter(|l| self.serving && *l != self.replica.id()) {
                    self.send(leader, &msg);
                }
            }
            ToZab::ToLearners(msg) => {
                let frame = peer_link::encode(&msg);
                for link in self.links.values() {
                    send_frame(link, frame.clone());
                }
            }
            ToZab::ConfigFromTree(data) => {
                self.config_activated(&data, ctx);
                let cmds = self.replica.set_membership(&data);
                self.run_commands(cmds, ctx);
            }
            ToZab::RollLog => self.txn_log.roll(self.replica.store().last_zxid() + 1),
            ToZab::Elected(vote) => {
                let cmds = self.replica.on_elected(vote);
                self.run_commands(cmds, ctx);
            }
            ToZab::ConfigAdopted(data) => {
                self.config_activated(&data, ctx);
                let cmds = self.replica.set_membership(&data);
                self.run_commands(cmds, ctx);
            }
            ToZab::ReadIndex { id } => {
                let cmds = self.replica.read_index(id);
                self.run_commands(cmds, ctx);
            }
            ToZab::ElectionRestarted => {
                self.election.do_send(ToElection::Reset(Box::new(self.replica.config().clone())));
                if self.replica.state() == PeerState::Looking {
                    let look = self.replica.look_inputs();
                    self.election.do_send(ToElection::Elect(look));
                } else {
                    let cmds = self.replica.step_down("the election actor restarted");
                    self.run_commands(cmds, ctx);
                }
            }
        }
    }
}

impl Serve<Synced> for Broadcast {
    fn serve(&mut self, msg: Synced, ctx: &mut Context<Self>) {
        self.on_synced(msg, ctx);
    }
}

impl Serve<Incoming> for Broadcast {
    /// A peer connection that said Hello: members' go to their link (when
    /// they are the dialer); with reconfigEnabled a server outside the
    /// config gets a link too, so it can sync as a learner and be added.
    fn serve(&mut self, m: Incoming, _: &mut Context<Self>) {
        let my_id = self.replica.id();
        match self.links.get(&m.from) {
            Some(link) if m.from > my_id => link.do_send(Adopt(m.stream, m.early)),
            Some(_) => warn!(self.log, "refused peer connection: the member with the larger id dials"; "from" => m.addr, "server_id" => m.from),
            None if self.link_factory.allow_joiners && m.from != my_id => {
                info!(self.log, "a server outside the config connected; it may sync as a non-voting learner"; "from" => m.addr, "server_id" => m.from);
                let link = self.link_factory.link(m.from, String::new());
                link.do_send(Adopt(m.stream, m.early));
                self.links.insert(m.from, link);
                self.send_links();
            }
            None => warn!(self.log, "refused peer connection from an unknown server id"; "from" => m.addr, "server_id" => m.from),
        }
    }
}

impl Serve<PeerEvent> for Broadcast {
    fn serve(&mut self, ev: PeerEvent, ctx: &mut Context<Self>) {
        let cmds = match ev {
            PeerEvent::Up { peer, gen } => {
                if self.link_gen.insert(peer, gen).is_none() {
                    return;
                }
                self.replica.on_disconnected(peer)
            }
            PeerEvent::Down { peer, gen } => {
                if self.link_gen.get(&peer) != Some(&gen) {
                    return;
                }
                self.link_gen.remove(&peer);
                self.replica.on_disconnected(peer)
            }
            PeerEvent::Msg { peer, gen, msg } => {
                if self.link_gen.get(&peer) != Some(&gen) {
                    return;
                }
                match msg {
                    // Runtime traffic on the same link: the processor's.
                    msg @ (Message::Request(_) | Message::Digest { .. } | Message::Touch { .. }) => return self.to_processor(FromZab::FromPeer(msg)),
                    // The links give votes and configs to the election actor.
                    msg @ (Message::Notification(_) | Message::Config { .. }) => {
                        warn!(self.log, "an election message reached the broadcast actor"; "peer" => peer, "message" => format!("{msg:?}"));
                        return;
                    }
                    msg => self.replica.on_message(peer, msg),
                }
            }
        };
        self.run_commands(cmds, ctx);
    }
}
