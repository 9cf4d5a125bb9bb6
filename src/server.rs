//! The request processor's logic (ZooKeeper's `ZooKeeperServer` connect path,
//! `PrepRequestProcessor` and `FinalRequestProcessor` in one): takes decoded
//! requests, returns encoded replies plus the watch work they cause.

use crate::acl;
use crate::audit::{self, AuditEvent};
use crate::database::{Database, TxnResult};
use crate::error::Code;
use crate::jute::Writer;
use crate::prep::{self, Outstanding, PrepCtx, Prepared, ReconfigCtx};
use crate::proto::{self, op, perms, ConnectRequest, ConnectResponse, CreateOp, Id, PlainRead, ReadOp, Request, SetWatchesRequest};
use crate::session;
use crate::shared_db::SharedDb;
use crate::tree::Trigger;
use crate::txn::{owner, LogEntry, Txn, TxnHeader};
use crate::watch::{add_mode, event, state, WatchKind};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Settings {
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    pub super_digest: Option<String>,
    pub extended_types_enabled: bool,
    pub reconfig_enabled: bool,
    /// standaloneEnabled: a reconfig must then leave at least two voters.
    pub standalone_enabled: bool,
    pub server_id: u8,
    /// Ensemble mode: `sync` is a no-op transaction through the leader, so
    /// sync-then-read is linearizable (ZOOKEEPER-1675).
    pub quorum_sync: bool,
    /// Ensemble, localSessionsEnabled: new sessions are local to the member.
    pub local_sessions: bool,
    /// audit.enable: outputs carry the audit events of what they applied.
    pub audit: bool,
    /// zookeeper.enforceQuota.
    pub enforce_quota: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            super_digest: None,
            extended_types_enabled: true,
            reconfig_enabled: false,
            standalone_enabled: true,
            server_id: 0,
            quorum_sync: false,
            local_sessions: false,
            audit: false,
            enforce_quota: false,
        }
    }
}

/// Who is asking, for one request.
pub struct RequestCtx<'a> {
    pub session_id: i64,
    pub xid: i32,
    pub auth: &'a [Id],
    pub now_ms: i64,
}

/// Watch work a request leaves for the watch registry, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchOp {
    Add(WatchKind, String),
    AddPersistent {
        path: String,
        recursive: bool,
    },
    /// setWatches found the change already happened: notify at once.
    FireNow {
        event_type: i32,
        path: String,
    },
}

/// The reply to send, or a question only the watch registry can answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reply {
    Frame(Vec<u8>),
    /// checkWatches (remove = false) or removeWatches: reply OK or NoWatcher.
    WatchQuery {
        xid: i32,
        zxid: i64,
        path: String,
        watcher_type: i32,
        remove: bool,
    },
    #[default]
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    pub reply: Reply,
    /// Changes to fire watches for (path, event type), and the zxid that made them.
    pub triggers: Vec<Trigger>,
    pub zxid: i64,
    pub watches: Vec<WatchOp>,
    /// Set when the request ended its session (closeSession or expiry).
    pub session_closed: Option<i64>,
    /// Close the connection after the reply (ZooKeeper does for unknown opcodes).
    pub close_connection: bool,
    /// With `Settings::audit`: what this output changed, for the audit log.
    pub audit: Vec<AuditEvent>,
}

impl Output {
    fn reply(frame: Vec<u8>, zxid: i64) -> Output {
        Output { reply: Reply::Frame(frame), zxid, ..Default::default() }
    }
}

pub enum ConnectOutcome {
    /// `created`: the zxid of the new session's transaction, to wait for.
    Accepted { frame: Vec<u8>, session_id: i64, timeout_ms: i32, created: Option<i64> },
    /// Unknown session or wrong password: send the frame, then close.
    Expired { frame: Vec<u8> },
    /// The client has seen a newer state than ours: close without a reply.
    Refused(String),
}

/// Encodes a reply frame, length prefix included; the body only on success.
pub fn reply_frame(xid: i32, zxid: i64, err: i32, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut w = Vec::with_capacity(128);
    append_reply_frame(&mut w, xid, zxid, err, body);
    w
}

/// `reply_frame`, appended to `w` (replies that leave together share one buffer).
pub fn append_reply_frame(w: &mut Vec<u8>, xid: i32, zxid: i64, err: i32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = w.len();
    w.put_i32(0);
    proto::write_reply_header(w, xid, zxid, err);
    if err == 0 {
        body(w);
    }
    let len = (w.len() - start - 4) as i32;
    w[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn notification_frame(zxid: i64, event_type: i32, path: &str) -> Vec<u8> {
    reply_frame(proto::xid::NOTIFICATION, zxid, 0, |w| proto::write_watcher_event(w, event_type, state::SYNC_CONNECTED, path))
}

/// What to answer when a pending transaction has been applied.
enum Answer {
    /// A client request: the reply is shaped by the request.
    Request { xid: i32, request: Request },
    /// A session ended by expiry: no reply, but its connection and watches go.
    Expired(i64),
    /// Nothing to say (session creation, reaping).
    Silent,
}

struct Pending {
    entry: Arc<LogEntry>,
    answer: Answer,
}

/// What `process` did with a request.
pub enum Processed {
    /// Answered from committed state.
    Done(Output),
    /// A transaction was prepared with this zxid; its output comes from
    /// `apply_next` once the log has made it durable.
    Pending(i64),
}

pub struct Core {
    /// Committed state: only durable transactions are applied to it. I/O
    /// threads read it too (`read_without_watch`), through `db.reader()`.
    pub db: SharedDb,
    pub settings: Settings,
    next_session_id: i64,
    secret: Vec<u8>,
    last_assigned_zxid: i64,
    /// Prepared, not yet applied: later requests are checked against these.
    outstanding: Outstanding,
    pending: VecDeque<Pending>,
    /// Sessions whose close is prepared, so expiry does not close them twice.
    closing: HashSet<i64>,
    /// Transactions prepared but not yet handed to the log.
    unlogged: Vec<Arc<LogEntry>>,
    /// Read-only mode: sessions made by this server alone, never written
    /// to the log (ZooKeeper's local sessions), with their timeouts.
    local_sessions: std::collections::HashMap<i64, i32>,
    /// Sessions whose CreateSession is prepared (or forwarded) but not yet
    /// applied: a local session being upgraded may already send requests.
    creating: HashSet<i64>,
    /// In an ensemble, the leader and its synced learners (kept current by
    /// the leader's runtime): what a reconfig is checked against. None when standalone.
    pub quorum_synced: Option<std::collections::BTreeSet<u64>>,
    /// Quota messages from preparing requests, for the runtime to log.
    warnings: Vec<String>,
}

impl Core {
    /// `secret` keys session passwords; `now_ms` seeds session ids.
    pub fn new(settings: Settings, secret: Vec<u8>, now_ms: i64) -> Core {
        Core::restore(settings, secret, now_ms, Database::default())
    }

    /// A core over a recovered database; session ids continue past any restored one.
    pub fn restore(settings: Settings, secret: Vec<u8>, now_ms: i64, db: Database) -> Core {
        let mine = |id: &i64| (*id >> 56) as u8 == settings.server_id;
        let past_restored = db.sessions().keys().filter(|id| mine(id)).max().map_or(i64::MIN, |id| id + 1);
        let next_session_id = session::initial_session_id(now_ms, settings.server_id).max(past_restored);
        let last_assigned_zxid = db.last_zxid();
        Core {
            db: SharedDb::new(db),
            settings,
            next_session_id,
            secret,
            last_assigned_zxid,
            outstanding: Outstanding::default(),
            quorum_synced: None,
            pending: VecDeque::new(),
            closing: HashSet::new(),
            unlogged: Vec::new(),
            local_sessions: std::collections::HashMap::new(),
            creating: HashSet::new(),
            warnings: Vec::new(),
        }
    }

    /// Takes the messages (quota limits passed or refused) that ZooKeeper
    /// would log at WARN, gathered while preparing requests.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Takes the transactions prepared since the last call, in zxid order, for the log.
    pub fn take_unlogged(&mut self) -> Vec<Arc<LogEntry>> {
        std::mem::take(&mut self.unlogged)
    }

    /// Whether transactions were prepared since the last `take_unlogged`.
    pub fn has_unlogged(&self) -> bool {
        !self.unlogged.is_empty()
    }

    /// The zxid the next transaction will get.
    pub fn next_zxid(&self) -> i64 {
        self.last_assigned_zxid + 1
    }

    /// The last committed (applied) zxid.
    pub fn last_zxid(&self) -> i64 {
        self.db.last_zxid()
    }

    /// The leader's Zab state decides zxids (epochs, bumps): the next
    /// transaction prepared gets `zxid`.
    pub fn set_next_zxid(&mut self, zxid: i64) {
        self.last_assigned_zxid = zxid - 1;
    }

    /// At a leader with reconfigEnabled: gives the static config a version
    /// (see `prep::prepare_config_stamp`); the zxid, if a txn was prepared.
    pub fn stamp_config(&mut self, now_ms: i64) -> Option<i64> {
        let prepared = prep::prepare_config_stamp(&self.db.tree, &self.outstanding, self.next_zxid())?;
        let hdr = self.header(0, 0, now_ms);
        Some(self.submit(hdr, prepared, Answer::Silent))
    }

    /// At the leader: the CreateSession a follower forwarded, as a transaction.
    pub fn create_session(&mut self, session_id: i64, timeout_ms: i32, now_ms: i64) -> i64 {
        self.creating.insert(session_id);
        let hdr = self.header(session_id, 0, now_ms);
        self.submit(hdr, Prepared::new(Txn::CreateSession { timeout_ms }, Vec::new()), Answer::Silent)
    }

    /// At the leader: a forwarded request that fails before preparation
    /// (its session is gone) still becomes a transaction, an error one, so the
    /// learner that waits for it gets its answer (PrepRequestProcessor does so).
    pub fn reject(&mut self, session_id: i64, cxid: i32, code: i32, now_ms: i64) -> i64 {
        let hdr = self.header(session_id, cxid, now_ms);
        self.submit(hdr, Prepared::new(Txn::Error { code }, Vec::new()), Answer::Silent)
    }

    /// Leadership ended: forget everything prepared but not committed (the
    /// next leader decides its fate); returns how many were dropped.
    pub fn abandon_pending(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        self.outstanding = Outstanding::default();
        self.closing.clear();
        self.unlogged.clear();
        self.last_assigned_zxid = self.db.last_zxid();
        n
    }

    /// Applies a transaction the ensemble committed. If this server prepared
    /// it (it is the leader's oldest pending one) the prepared answer is used;
    /// else `answer` — the request a follower forwarded for its client — shapes
    /// the reply, if any. Returns None if the entry was already applied.
    pub fn apply_committed(&mut self, entry: &LogEntry, answer: Option<(i32, Request)>) -> Option<Output> {
        let zxid = entry.hdr.zxid;
        if zxid <= self.db.last_zxid() {
            return None;
        }
        if self.pending.front().is_some_and(|p| p.entry.hdr.zxid == zxid) {
            return self.apply_next(zxid).map(|(_, out)| out);
        }
        let answer = match answer {
            Some((xid, request)) => Answer::Request { xid, request },
            None if matches!(entry.txn, Txn::CloseSession { .. }) => Answer::Expired(entry.hdr.session_id),
            None => Answer::Silent,
        };
        Some(self.apply_entry(entry, answer))
    }

    /// Read-only mode: what ReadOnlyRequestProcessor refuses with
    /// NotReadOnly (writes, sync, check; closeSession of a global session).
    pub fn refused_read_only(&self, session_id: i64, req: &Request) -> bool {
        match req {
            Request::CloseSession => !self.is_local_session(session_id),
            Request::Sync { .. } => true,
            r => r.is_write(),
        }
    }

    /// Replaces the database (a SNAP from the leader).
    pub fn install(&mut self, db: Database) {
        let old = self.db.write(|current| std::mem::replace(current, db));
        // Freed outside the lock: a big tree takes a while to drop.
        drop(old);
        self.abandon_pending();
    }

    fn header(&mut self, session_id: i64, cxid: i32, now_ms: i64) -> TxnHeader {
        self.last_assigned_zxid += 1;
        TxnHeader { session_id, cxid, zxid: self.last_assigned_zxid, time_ms: now_ms }
    }

    fn submit(&mut self, hdr: TxnHeader, prepared: Prepared, answer: Answer) -> i64 {
        self.outstanding.record(hdr.zxid, prepared.changes);
        let entry = Arc::new(LogEntry { hdr, txn: prepared.txn });
        self.unlogged.push(entry.clone());
        self.pending.push_back(Pending { entry, answer });
        hdr.zxid
    }

    /// Applies the oldest pending transaction if the log has made it durable
    /// (`durable_zxid`), and returns what to deliver for it.
    pub fn apply_next(&mut self, durable_zxid: i64) -> Option<(i64, Output)> {
        if self.pending.front()?.entry.hdr.zxid > durable_zxid {
            return None;
        }
        let Pending { entry, answer } = self.pending.pop_front().unwrap();
        self.outstanding.applied(entry.hdr.zxid);
        Some((entry.hdr.zxid, self.apply_entry(&entry, answer)))
    }

    fn apply_entry(&mut self, entry: &LogEntry, answer: Answer) -> Output {
        let (hdr, txn) = (&entry.hdr, &entry.txn);
        let mut triggers = Vec::new();
        let mut audited = match self.settings.audit {
            true => audit::for_session_end(hdr.session_id, txn, |p| self.db.tree.get(p).is_some()),
            false => Vec::new(),
        };
        let result = self.db.write(|db| db.apply(hdr, txn, &mut triggers));
        if self.pending.is_empty() {
            // Followers never prepare: keep zxids moving with what is applied.
            self.last_assigned_zxid = self.last_assigned_zxid.max(hdr.zxid);
        }
        let mut out = Output { triggers, zxid: hdr.zxid, ..Default::default() };
        match answer {
            Answer::Request { xid, request } => {
                if self.settings.audit {
                    audited.extend(audit::for_request(hdr.session_id, &request, &result));
                }
                out.reply = Reply::Frame(match (&result, &request) {
                    // A quorum sync is a no-op transaction; its reply names the path.
                    (TxnResult::Error(0), Request::Sync { path }) => reply_frame(xid, hdr.zxid, 0, |w| w.put_string(path)),
                    (TxnResult::Error(code), _) => reply_frame(xid, hdr.zxid, *code, |_| {}),
                    (r, _) => reply_frame(xid, hdr.zxid, 0, |w| write_result(w, &request, r, txn)),
                });
                if matches!(request, Request::CloseSession) {
                    out.session_closed = Some(hdr.session_id);
                }
            }
            Answer::Expired(session_id) => out.session_closed = Some(session_id),
            Answer::Silent => {}
        }
        out.audit = audited;
        match txn {
            Txn::CloseSession { .. } => {
                self.closing.remove(&hdr.session_id);
            }
            Txn::CreateSession { .. } => {
                // An upgraded local session is global from now on.
                self.creating.remove(&hdr.session_id);
                self.local_sessions.remove(&hdr.session_id);
            }
            _ => {}
        }
        out
    }

    pub fn connect(&mut self, req: &ConnectRequest, now_ms: i64) -> ConnectOutcome {
        self.connect_as(req, now_ms, true)
    }

    /// `submit_create = false` (a follower): a new session gets its id here
    /// but its CreateSession is left for the caller to send to the leader.
    pub fn connect_as(&mut self, req: &ConnectRequest, now_ms: i64, submit_create: bool) -> ConnectOutcome {
        if req.last_zxid_seen > self.db.last_zxid() {
            return ConnectOutcome::Refused(format!(
                "client has seen zxid {:#x}, our last zxid is {:#x}; client must try another server",
                req.last_zxid_seen,
                self.db.last_zxid()
            ));
        }
        let timeout_ms = session::negotiate_timeout(req.timeout_ms, self.settings.min_session_timeout_ms, self.settings.max_session_timeout_ms);
        let (session_id, created) = if req.session_id == 0 && self.settings.local_sessions {
            // localSessionsEnabled: the session lives on this member only.
            let sid = self.next_session_id;
            self.next_session_id += 1;
            self.local_sessions.insert(sid, timeout_ms);
            (sid, None)
        } else if req.session_id == 0 && !submit_create {
            let sid = self.next_session_id;
            self.next_session_id += 1;
            (sid, None)
        } else if req.session_id == 0 {
            let sid = self.next_session_id;
            self.next_session_id += 1;
            let hdr = self.header(sid, 0, now_ms);
            let zxid = self.submit(hdr, Prepared::new(Txn::CreateSession { timeout_ms }, Vec::new()), Answer::Silent);
            (sid, Some(zxid))
        } else {
            let known = (self.db.session_timeout(req.session_id).is_some() || self.local_sessions.contains_key(&req.session_id))
                && !self.closing.contains(&req.session_id);
            if !known || !self.password_ok(req.session_id, &req.passwd) {
                let mut w = Vec::new();
                w.put_i32(0);
                ConnectResponse::expired().encode(&mut w);
                return ConnectOutcome::Expired { frame: finish_frame(w) };
            }
            (req.session_id, None)
        };
        let resp = ConnectResponse { timeout_ms, session_id, passwd: self.password_of(session_id), read_only: false };
        let mut w = Vec::new();
        w.put_i32(0);
        resp.encode(&mut w);
        ConnectOutcome::Accepted { frame: finish_frame(w), session_id, timeout_ms, created }
    }

    /// Read-only mode (ReadOnlyZooKeeperServer): a client that allows it gets
    /// a local session, or reattaches a known one; the reply says read-only.
    pub fn connect_read_only(&mut self, req: &ConnectRequest) -> ConnectOutcome {
        if req.last_zxid_seen > self.db.last_zxid() {
            return ConnectOutcome::Refused(format!("client has seen zxid {:#x}, our last zxid is {:#x}", req.last_zxid_seen, self.db.last_zxid()));
        }
        let timeout_ms = session::negotiate_timeout(req.timeout_ms, self.settings.min_session_timeout_ms, self.settings.max_session_timeout_ms);
        let session_id = if req.session_id == 0 {
            let sid = self.next_session_id;
            self.next_session_id += 1;
            self.local_sessions.insert(sid, timeout_ms);
            sid
        } else {
            let known = self.db.session_timeout(req.session_id).is_some() || self.local_sessions.contains_key(&req.session_id);
            if !known || !self.password_ok(req.session_id, &req.passwd) {
                let mut w = Vec::new();
                w.put_i32(0);
                ConnectResponse::expired().encode(&mut w);
                return ConnectOutcome::Expired { frame: finish_frame(w) };
            }
            req.session_id
        };
        let resp = ConnectResponse { timeout_ms, session_id, passwd: self.password_of(session_id), read_only: true };
        let mut w = Vec::new();
        w.put_i32(0);
        resp.encode(&mut w);
        ConnectOutcome::Accepted { frame: finish_frame(w), session_id, timeout_ms, created: None }
    }

    /// Warden's password, or for a session ZooKeeper created (imported from
    /// its files) the one ZooKeeper gave its client.
    fn password_of(&self, session_id: i64) -> Vec<u8> {
        if self.db.is_zookeeper_session(session_id) {
            crate::zkfiles::zookeeper_password(session_id)
        } else {
            session::password(&self.secret, session_id)
        }
    }

    fn password_ok(&self, session_id: i64, passwd: &[u8]) -> bool {
        passwd == self.password_of(session_id) || passwd == session::password(&self.secret, session_id)
    }

    pub fn is_local_session(&self, session_id: i64) -> bool {
        self.local_sessions.contains_key(&session_id)
    }

    pub fn is_creating(&self, session_id: i64) -> bool {
        self.creating.contains(&session_id)
    }

    pub fn local_session_count(&self) -> usize {
        self.local_sessions.len()
    }

    /// Local sessions and their timeouts.
    pub fn local_sessions(&self) -> Vec<(i64, i32)> {
        self.local_sessions.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// localSessionsUpgradingEnabled: the local session becomes global; its
    /// CreateSession goes to the leader (the caller sends or prepares it).
    /// Returns its timeout.
    pub fn begin_upgrade(&mut self, session_id: i64) -> Option<i32> {
        let timeout = self.local_sessions.remove(&session_id)?;
        self.creating.insert(session_id);
        Some(timeout)
    }

    /// Ends a local session (closeSession or expiry in read-only mode).
    pub fn close_local_session(&mut self, session_id: i64) -> bool {
        self.local_sessions.remove(&session_id).is_some()
    }

    /// Read-only mode ended: its local sessions end with it.
    pub fn drop_local_sessions(&mut self) -> usize {
        std::mem::take(&mut self.local_sessions).len()
    }

    /// Ends a session the tracker found expired; returns the close's zxid.
    pub fn expire(&mut self, session_id: i64, now_ms: i64) -> Option<i64> {
        self.db.session_timeout(session_id)?;
        if !self.closing.insert(session_id) {
            return None;
        }
        let hdr = self.header(session_id, 0, now_ms);
        let prepared = prep::prepare_close_session(&self.db.tree, &self.outstanding, session_id);
        Some(self.submit(hdr, prepared, Answer::Expired(session_id)))
    }

    /// Paths the container manager should try to delete now: containers that
    /// had children and have none left, and TTL nodes idle past their TTL.
    pub fn reap_candidates(&self, now_ms: i64) -> Vec<String> {
        let tree = &self.db.tree;
        let mut out: Vec<String> = tree.containers().filter(|p| tree.get(p).is_some_and(|n| n.children.is_empty() && n.stat.cversion > 0)).cloned().collect();
        out.extend(
            tree.ttl_nodes()
                .filter(|p| {
                    tree.get(p).is_some_and(|n| {
                        let ttl = owner::ttl_of(n.stat.ephemeral_owner).unwrap_or(0);
                        n.children.is_empty() && ttl != 0 && now_ms - n.stat.mtime > ttl
                    })
                })
                .cloned(),
        );
        out.sort();
        out
    }

    /// Deletes one reaper candidate (deleteContainer); None if it no longer qualifies.
    pub fn reap(&mut self, path: &str, now_ms: i64) -> Option<i64> {
        let prepared = prep::prepare_delete_container(&self.db.tree, &self.outstanding, path);
        if matches!(prepared.txn, Txn::Error { .. }) {
            return None;
        }
        let hdr = self.header(0, 0, now_ms);
        Some(self.submit(hdr, prepared, Answer::Silent))
    }

    pub fn process(&mut self, ctx: &RequestCtx, req: Request) -> Processed {
        self.process_as(ctx, req, false)
    }

    /// `remote_local`: at the leader, a request a learner forwarded for one of
    /// its local sessions, which the leader cannot know (LeaderSessionTracker
    /// lets such sessions through when localSessionsEnabled).
    pub fn process_as(&mut self, ctx: &RequestCtx, req: Request, remote_local: bool) -> Processed {
        let zxid = self.db.last_zxid();
        let local = remote_local || self.local_sessions.contains_key(&ctx.session_id);
        // A session whose close is prepared is gone for its requests too (ZooKeeper's
        // SessionTracker.checkSession: isClosing): a create prepared now would be
        // applied after the close and leave an ephemeral owned by no session.
        let ended = !local && self.db.session_timeout(ctx.session_id).is_none() && !self.creating.contains(&ctx.session_id);
        if ended || self.closing.contains(&ctx.session_id) {
            return Processed::Done(Output::reply(reply_frame(ctx.xid, zxid, Code::SessionExpired as i32, |_| {}), zxid));
        }
        if self.settings.quorum_sync && matches!(req, Request::Sync { .. }) {
            let hdr = self.header(ctx.session_id, ctx.xid, ctx.now_ms);
            let prepared = Prepared::new(Txn::Error { code: 0 }, Vec::new());
            return Processed::Pending(self.submit(hdr, prepared, Answer::Request { xid: ctx.xid, request: req }));
        }
        if req.is_write() && local && creates_ephemeral(&req) {
            // PrepRequestProcessor: a local session cannot own ephemerals.
            let hdr = self.header(ctx.session_id, ctx.xid, ctx.now_ms);
            let prepared = Prepared::new(Txn::Error { code: Code::EphemeralOnLocalSession as i32 }, Vec::new());
            return Processed::Pending(self.submit(hdr, prepared, Answer::Request { xid: ctx.xid, request: req }));
        }
        if req.is_write() {
            let hdr = self.header(ctx.session_id, ctx.xid, ctx.now_ms);
            let min_voters = if self.settings.standalone_enabled { 2 } else { 1 };
            let reconfig = ReconfigCtx { enabled: self.settings.reconfig_enabled, zxid: hdr.zxid, synced: self.quorum_synced.as_ref(), min_voters };
            let pctx = PrepCtx {
                session_id: ctx.session_id,
                auth: ctx.auth,
                extended_types_enabled: self.settings.extended_types_enabled,
                enforce_quota: self.settings.enforce_quota,
                reconfig,
            };
            let mut prepared = prep::prepare(&self.db.tree, &self.outstanding, &pctx, &req);
            self.warnings.append(&mut prepared.warnings);
            if matches!(req, Request::CloseSession) {
                self.closing.insert(ctx.session_id);
            }
            return Processed::Pending(self.submit(hdr, prepared, Answer::Request { xid: ctx.xid, request: req }));
        }
        if let Request::Unknown(_) = req {
            // UnimplementedRequestProcessor: error reply with zxid -1, then close.
            let mut out = Output::reply(reply_frame(ctx.xid, -1, Code::Unimplemented as i32, |_| {}), zxid);
            out.close_connection = true;
            return Processed::Done(out);
        }
        let mut watches = Vec::new();
        let result = self.read(ctx, &req, &mut watches);
        let reply = match result {
            Ok(ReadReply::Frame(f)) => Reply::Frame(f),
            Ok(ReadReply::WatchQuery { path, watcher_type, remove }) => Reply::WatchQuery { xid: ctx.xid, zxid, path, watcher_type, remove },
            Err(code) => Reply::Frame(reply_frame(ctx.xid, zxid, code as i32, |_| {})),
        };
        Processed::Done(Output { reply, zxid, watches, ..Default::default() })
    }

    fn node_for_read(&self, path: &str, perm: i32, auth: &[Id]) -> Result<&crate::tree::Node, Code> {
        let node = self.db.tree.get(path).ok_or(Code::NoNode)?;
        acl::check(&node.acl, perm, auth)?;
        Ok(node)
    }

    fn read(&self, ctx: &RequestCtx, req: &Request, watches: &mut Vec<WatchOp>) -> Result<ReadReply, Code> {
        let zxid = self.db.last_zxid();
        let ok = |body: &dyn Fn(&mut Vec<u8>)| Ok(ReadReply::Frame(reply_frame(ctx.xid, zxid, 0, body)));
        match req {
            Request::Ping => Ok(ReadReply::Frame(reply_frame(proto::xid::PING, zxid, 0, |_| {}))),
            Request::Exists { watch, path } | Request::GetData { watch, path } | Request::GetChildren { watch, path, .. } => {
                let mut frame = Vec::with_capacity(128);
                let result = req.as_read().map_or(Err(Code::Unimplemented), |read| plain_read(&self.db, ctx.xid, ctx.auth, read, &mut frame)).map(|()| frame);
                // exists sets its watch on a missing node too; the others only on success.
                let sets_watch = matches!((&result, req), (Ok(_), _) | (Err(Code::NoNode), Request::Exists { .. }));
                if *watch && sets_watch {
                    let kind = if matches!(req, Request::GetChildren { .. }) { WatchKind::Child } else { WatchKind::Data };
                    watches.push(WatchOp::Add(kind, path.clone()));
                }
                result.map(ReadReply::Frame)
            }
            Request::GetAcl { path } => {
                let node = self.node_for_read(path, perms::READ | perms::ADMIN, ctx.auth)?;
                let is_admin = acl::check(&node.acl, perms::ADMIN, ctx.auth).is_ok();
                let acls: Vec<_> = node
                    .acl
                    .iter()
                    .map(|a| {
                        let mut a = a.clone();
                        // Without ADMIN, digests are hidden ("user:x"), as ZooKeeper.
                        if !is_admin && a.id.scheme == "digest" {
                            a.id.id = format!("{}:x", a.id.id.split(':').next().unwrap_or(""));
                        }
                        a
                    })
                    .collect();
                ok(&|w| {
                    proto::write_acls(w, &acls);
                    proto::write_stat(w, &node.stat());
                })
            }
            Request::GetAllChildrenNumber { path } => {
                self.node_for_read(path, perms::READ, ctx.auth)?;
                let n = self.db.tree.descendant_count(path) as i32;
                ok(&|w| w.put_i32(n))
            }
            Request::GetEphemerals { prefix } => {
                let all = self.db.tree.ephemerals_of(ctx.session_id);
                let p = prefix.trim();
                let list: Vec<String> = all.into_iter().filter(|e| p.is_empty() || p == "/" || e.starts_with(prefix.as_str())).collect();
                ok(&|w| w.put_strings(&list))
            }
            Request::Sync { path } => ok(&|w| w.put_string(path)),
            Request::SetWatches(sw) => {
                self.set_watches(sw, watches);
                ok(&|_| {})
            }
            Request::AddWatch { path, mode } => {
                let recursive = match *mode {
                    add_mode::PERSISTENT => false,
                    add_mode::PERSISTENT_RECURSIVE => true,
                    _ => return Err(Code::BadArguments),
                };
                watches.push(WatchOp::AddPersistent { path: path.clone(), recursive });
                ok(&|w| w.put_i32(0))
            }
            Request::CheckWatches { path, watcher_type } => Ok(ReadReply::WatchQuery { path: path.clone(), watcher_type: *watcher_type, remove: false }),
            Request::RemoveWatches { path, watcher_type } => Ok(ReadReply::WatchQuery { path: path.clone(), watcher_type: *watcher_type, remove: true }),
            Request::WhoAmI => ok(&|w| {
                let infos: Vec<&Id> = ctx.auth.iter().filter(|i| i.scheme != "super").collect();
                w.put_i32(infos.len() as i32);
                for id in infos {
                    w.put_string(&id.scheme);
                    w.put_string(if id.scheme == "digest" { id.id.split(':').next().unwrap_or("") } else { &id.id });
                }
            }),
            Request::MultiRead(ops) => ok(&|w| self.multi_read(ctx.auth, ops, w)),
            Request::Sasl => Err(Code::Unimplemented),
            // Auth is answered by the connection; writes never get here.
            _ => Err(Code::Unimplemented),
        }
    }

    /// multiRead: each op answered on its own (not atomic), errors per op.
    fn multi_read(&self, auth: &[Id], ops: &[Request], w: &mut Vec<u8>) {
        for req in ops {
            let (opcode, result) = match req {
                Request::GetData { path, .. } => (
                    op::GET_DATA,
                    self.node_for_read(path, perms::READ, auth).map(|n| {
                        let mut b = Vec::new();
                        b.put_buffer(n.data());
                        proto::write_stat(&mut b, &n.stat());
                        b
                    }),
                ),
                Request::GetChildren { path, .. } => (
                    op::GET_CHILDREN,
                    self.node_for_read(path, perms::READ, auth).map(|n| {
                        let mut b = Vec::new();
                        b.put_i32(n.children.len() as i32);
                        for c in &n.children {
                            b.put_string(c);
                        }
                        b
                    }),
                ),
                _ => (op::ERROR, Err(Code::Unimplemented)),
            };
            match result {
                Ok(body) => {
                    proto::write_multi_header(w, opcode, false, 0);
                    w.put_bytes(&body);
                }
                Err(code) => {
                    proto::write_multi_header(w, op::ERROR, false, code as i32);
                    w.put_i32(code as i32);
                }
            }
        }
        proto::write_multi_header(w, -1, true, -1);
    }

    /// DataTree.setWatches: fire at once what changed since `relative_zxid`,
    /// re-arm the rest.
    fn set_watches(&self, sw: &SetWatchesRequest, watches: &mut Vec<WatchOp>) {
        let tree = &self.db.tree;
        let fire = |event_type, path: &String| WatchOp::FireNow { event_type, path: path.clone() };
        for path in &sw.data {
            watches.push(match tree.get(path) {
                None => fire(event::NODE_DELETED, path),
                Some(n) if n.stat.mzxid > sw.relative_zxid => fire(event::NODE_DATA_CHANGED, path),
                Some(_) => WatchOp::Add(WatchKind::Data, path.clone()),
            });
        }
        for path in &sw.exist {
            watches.push(match tree.get(path) {
                Some(_) => fire(event::NODE_CREATED, path),
                None => WatchOp::Add(WatchKind::Data, path.clone()),
            });
        }
        for path in &sw.child {
            watches.push(match tree.get(path) {
                None => fire(event::NODE_DELETED, path),
                Some(n) if n.stat.pzxid > sw.relative_zxid => fire(event::NODE_CHILDREN_CHANGED, path),
                Some(_) => WatchOp::Add(WatchKind::Child, path.clone()),
            });
        }
        for path in &sw.persistent {
            watches.push(WatchOp::AddPersistent { path: path.clone(), recursive: false });
        }
        for path in &sw.persistent_recursive {
            watches.push(WatchOp::AddPersistent { path: path.clone(), recursive: true });
        }
    }
}

/// A plain read any thread may serve from a view of the committed database:
/// getData, exists or getChildren without a watch, by a live global session.
/// None when only the processor can answer it (a watch to set, a local or
/// unknown session, any other request). The caller keeps the session's order.
/// Appends to `out` the reply to a plain read and says whether it did; any
/// other request (or a read with a watch, or from a session not open) is
/// left for the processor.
pub fn read_without_watch(db: &Database, session_id: i64, xid: i32, auth: &[Id], req: &Request, out: &mut Vec<u8>) -> bool {
    req.as_read().is_some_and(|read| answer_read(db, session_id, xid, auth, read, out))
}

/// [`read_without_watch`] for a read still in its frame.
pub fn answer_read(db: &Database, session_id: i64, xid: i32, auth: &[Id], read: PlainRead, out: &mut Vec<u8>) -> bool {
    if read.watch || db.session_timeout(session_id).is_none() {
        return false;
    }
    let start = out.len();
    if let Err(code) = plain_read(db, xid, auth, read, out) {
        out.truncate(start);
        append_reply_frame(out, xid, db.last_zxid(), code as i32, |_| {});
    }
    true
}

/// Appends the reply of exists, getData or getChildren (watches aside) to
/// `out`, or gives its error (with `out` as it was).
fn plain_read(db: &Database, xid: i32, auth: &[Id], read: PlainRead, out: &mut Vec<u8>) -> Result<(), Code> {
    let zxid = db.last_zxid();
    let mut ok = |body: &dyn Fn(&mut Vec<u8>)| {
        append_reply_frame(out, xid, zxid, 0, body);
        Ok(())
    };
    let node = || {
        let node = db.tree.get(read.path).ok_or(Code::NoNode)?;
        acl::check(&node.acl, perms::READ, auth).map(|_| node)
    };
    match read.op {
        ReadOp::Exists => {
            if read.path.contains('\0') {
                return Err(Code::BadArguments);
            }
            node().map(|node| node.stat()).and_then(|stat| ok(&|w| proto::write_stat(w, &stat)))
        }
        ReadOp::GetData => node().and_then(|node| {
            ok(&|w| {
                w.put_buffer(node.data());
                proto::write_stat(w, &node.stat());
            })
        }),
        ReadOp::GetChildren { with_stat } => node().and_then(|node| {
            ok(&|w| {
                w.put_i32(node.children.len() as i32);
                for c in &node.children {
                    w.put_string(c);
                }
                if with_stat {
                    proto::write_stat(w, &node.stat());
                }
            })
        }),
    }
}

/// Whether a write creates an ephemeral node (directly or inside a multi).
pub fn creates_ephemeral(req: &Request) -> bool {
    match req {
        // CreateMode EPHEMERAL (1) and EPHEMERAL_SEQUENTIAL (3).
        Request::Create(c) => matches!(c.flags, 1 | 3) && matches!(c.op, CreateOp::Create | CreateOp::Create2),
        Request::Multi(ops) => ops.iter().any(creates_ephemeral),
        _ => false,
    }
}

enum ReadReply {
    Frame(Vec<u8>),
    WatchQuery { path: String, watcher_type: i32, remove: bool },
}

fn finish_frame(mut w: Vec<u8>) -> Vec<u8> {
    let len = (w.len() - 4) as i32;
    w[..4].copy_from_slice(&len.to_be_bytes());
    w
}

/// The success body of a write, shaped by the opcode the client used.
fn write_result(w: &mut Vec<u8>, req: &Request, result: &TxnResult, txn: &Txn) {
    match (req, result) {
        (Request::Create(c), TxnResult::Created { path, stat }) => {
            w.put_string(path);
            if c.op != CreateOp::Create {
                proto::write_stat(w, stat);
            }
        }
        (Request::SetData { .. } | Request::SetAcl { .. } | Request::Check { .. }, TxnResult::Stat(stat)) => proto::write_stat(w, stat),
        // GetDataResponse: the new config and the config node's stat.
        (Request::Reconfig { .. }, TxnResult::Stat(stat)) => {
            w.put_buffer(if let Txn::Reconfig { data } = txn { Some(data.as_slice()) } else { None });
            proto::write_stat(w, stat);
        }
        (Request::Multi(ops), TxnResult::Multi(results)) => {
            for (op_req, r) in ops.iter().zip(results) {
                write_multi_result(w, op_req, r);
            }
            proto::write_multi_header(w, -1, true, -1);
        }
        _ => {}
    }
}

fn write_multi_result(w: &mut Vec<u8>, req: &Request, result: &TxnResult) {
    match (req, result) {
        (_, TxnResult::Error(code)) => {
            proto::write_multi_header(w, op::ERROR, false, *code);
            w.put_i32(*code);
        }
        (Request::Create(c), TxnResult::Created { path, stat }) => {
            if c.op == CreateOp::Create {
                proto::write_multi_header(w, op::CREATE, false, 0);
                w.put_string(path);
            } else {
                proto::write_multi_header(w, op::CREATE2, false, 0);
                w.put_string(path);
                proto::write_stat(w, stat);
            }
        }
        (Request::Delete { .. }, _) => proto::write_multi_header(w, op::DELETE, false, 0),
        (Request::Check { .. }, _) => proto::write_multi_header(w, op::CHECK, false, 0),
        (Request::SetData { .. }, TxnResult::Stat(stat)) => {
            proto::write_multi_header(w, op::SET_DATA, false, 0);
            proto::write_stat(w, stat);
        }
        _ => {
            proto::write_multi_header(w, op::ERROR, false, Code::RuntimeInconsistency as i32);
            w.put_i32(Code::RuntimeInconsistency as i32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jute::Reader;
    use crate::proto::CreateRequest;

    fn core_with_session() -> (Core, i64) {
        let mut core = Core::new(Settings::default(), b"secret".to_vec(), 1_700_000_000_000);
        let req = ConnectRequest { protocol_version: 0, last_zxid_seen: 0, timeout_ms: 10_000, session_id: 0, passwd: vec![], read_only: Some(false) };
        let ConnectOutcome::Accepted { session_id, created: Some(zxid), .. } = core.connect(&req, 1) else { panic!("connect") };
        assert!(core.apply_next(zxid).is_some());
        assert_eq!(core.take_unlogged().len(), 1);
        (core, session_id)
    }

    #[test]
    fn zookeepers_passwords_reattach_only_the_sessions_it_created() {
        let mut db = Database::default();
        let hdr = |sid, zxid| crate::txn::TxnHeader { session_id: sid, cxid: 0, zxid, time_ms: 1 };
        db.apply(&hdr(0x11, 1), &Txn::CreateSession { timeout_ms: 10_000 }, &mut Vec::new());
        db.apply(&hdr(0x22, 2), &Txn::CreateSession { timeout_ms: 10_000 }, &mut Vec::new());
        db.mark_sessions_from_zookeeper([0x11]);
        let mut core = Core::restore(Settings::default(), b"secret".to_vec(), 1_700_000_000_000, db);
        let attach = |core: &mut Core, session_id: i64, passwd: Vec<u8>| {
            let req = ConnectRequest { protocol_version: 0, last_zxid_seen: 0, timeout_ms: 10_000, session_id, passwd, read_only: Some(false) };
            match core.connect(&req, 5) {
                ConnectOutcome::Accepted { frame, .. } => Some(frame),
                _ => None,
            }
        };
        let zk = crate::zkfiles::zookeeper_password(0x11);
        let frame = attach(&mut core, 0x11, zk.clone()).expect("ZooKeeper's password reattaches its session");
        assert!(frame.windows(16).any(|w| w == &zk[..]), "and is handed back");
        assert!(attach(&mut core, 0x11, vec![0; 16]).is_none());
        assert!(attach(&mut core, 0x22, crate::zkfiles::zookeeper_password(0x22)).is_none(), "not for a session Warden created");
        assert!(attach(&mut core, 0x22, session::password(b"secret", 0x22)).is_some());
        core.db.write(|db| db.apply(&hdr(0x11, 3), &Txn::CloseSession { ephemerals: vec![] }, &mut Vec::new()));
        assert!(!core.db.is_zookeeper_session(0x11));
    }

    fn create(path: &str) -> Request {
        Request::Create(CreateRequest {
            op: CreateOp::Create,
            path: path.into(),
            data: Some(b"d".to_vec()),
            acl: vec![proto::Acl::world_all()],
            flags: 0,
            ttl_ms: -1,
        })
    }

    fn err_of(out: &Output) -> i32 {
        let Reply::Frame(f) = &out.reply else { panic!("no frame") };
        let mut r = Reader::new(&f[4..]);
        r.i32().unwrap();
        r.i64().unwrap();
        r.i32().unwrap()
    }

    #[test]
    fn writes_wait_for_durability_and_reads_see_only_committed_state() {
        let (mut core, sid) = core_with_session();
        let ctx = RequestCtx { session_id: sid, xid: 1, auth: &[], now_ms: 5 };
        let Processed::Pending(z1) = core.process(&ctx, create("/a")) else { panic!("a write is pending") };
        // Prepared against outstanding changes: /a/b may follow /a before /a is applied.
        let Processed::Pending(z2) = core.process(&ctx, create("/a/b")) else { panic!() };
        let Processed::Pending(z3) = core.process(&ctx, create("/a")) else { panic!() };
        assert_eq!(core.take_unlogged().len(), 3);
        // Nothing is visible until the log says so.
        let Processed::Done(read) = core.process(&ctx, Request::Exists { path: "/a".into(), watch: false }) else { panic!() };
        assert_eq!(err_of(&read), Code::NoNode as i32);
        assert!(core.apply_next(z1 - 1).is_none());
        let (z, out) = core.apply_next(z2).unwrap();
        assert_eq!((z, err_of(&out)), (z1, 0));
        assert_eq!(out.triggers[0], ("/a".to_string(), crate::watch::event::NODE_CREATED));
        let (_, out) = core.apply_next(z2).unwrap();
        assert_eq!(err_of(&out), 0);
        assert!(core.apply_next(z2).is_none(), "z3 is not durable yet");
        let (_, out) = core.apply_next(z3).unwrap();
        assert_eq!(err_of(&out), Code::NodeExists as i32, "the second /a failed at prep time");
        assert_eq!(core.last_zxid(), z3, "a failed write still takes its zxid");
        assert!(core.outstanding.is_empty());
    }

    #[test]
    fn a_plain_read_off_the_processor_answers_exactly_as_the_processor() {
        let (mut core, sid) = core_with_session();
        let ctx = RequestCtx { session_id: sid, xid: 7, auth: &[], now_ms: 5 };
        assert_eq!(write(&mut core, &ctx, create("/a")), 0);
        let mut secret = CreateRequest { op: CreateOp::Create, path: "/s".into(), data: None, acl: vec![], flags: 0, ttl_ms: -1 };
        secret.acl = vec![proto::Acl { perms: perms::ALL, id: Id::new("digest", "u:hash") }];
        assert_eq!(write(&mut core, &ctx, Request::Create(secret)), 0);
        let plain = |path: &str, watch| {
            [
                Request::GetData { path: path.into(), watch },
                Request::Exists { path: path.into(), watch },
                Request::GetChildren { path: path.into(), watch, with_stat: false },
                Request::GetChildren { path: path.into(), watch, with_stat: true },
            ]
        };
        // Replies answered together share one buffer: each is appended whole
        // after those before it, an error reply included.
        let mut here = b"earlier replies".to_vec();
        let mut there = here.clone();
        for path in ["/", "/a", "/s", "/missing", "bad\0"] {
            for req in plain(path, false) {
                assert!(read_without_watch(&core.db, sid, 7, &[], &req, &mut here), "a plain read is served off the processor: {req:?}");
                let Processed::Done(Output { reply: Reply::Frame(frame), .. }) = core.process(&ctx, req.clone()) else { panic!("a read") };
                there.extend_from_slice(&frame);
                assert_eq!(here, there, "{req:?}");
            }
            for req in plain(path, true) {
                assert!(!read_without_watch(&core.db, sid, 7, &[], &req, &mut here), "a watch is set by the processor: {req:?}");
            }
        }
        let others = [Request::GetAcl { path: "/a".into() }, create("/b"), Request::Sync { path: "/".into() }, Request::Ping];
        for req in others {
            assert!(!read_without_watch(&core.db, sid, 7, &[], &req, &mut here), "{req:?}");
        }
        let get = Request::GetData { path: "/a".into(), watch: false };
        assert!(!read_without_watch(&core.db, sid + 1, 7, &[], &get, &mut here), "an unknown session is the processor's to refuse");
        assert_eq!(write(&mut core, &ctx, Request::CloseSession), 0);
        assert!(!read_without_watch(&core.db, sid, 7, &[], &get, &mut here), "a closed session too");
        assert_eq!(here, there, "nothing appended for a request left to the processor");
    }

    fn write(core: &mut Core, ctx: &RequestCtx, req: Request) -> i32 {
        let Processed::Pending(z) = core.process(ctx, req) else { panic!("a write is pending") };
        let (_, out) = core.apply_next(z).unwrap();
        err_of(&out)
    }

    #[test]
    fn enforced_quota_refuses_past_hard_limits_and_warns_past_soft_ones() {
        let (mut core, sid) = core_with_session();
        let ctx = RequestCtx { session_id: sid, xid: 1, auth: &[], now_ms: 5 };
        let mk = |path: &str, data: &str| {
            Request::Create(CreateRequest {
                data: Some(data.as_bytes().to_vec()),
                ..match create(path) {
                    Request::Create(c) => c,
                    _ => unreachable!(),
                }
            })
        };
        for (p, d) in [
            ("/q", ""),
            ("/zookeeper/quota/q", ""),
            ("/zookeeper/quota/q/zookeeper_limits", "count=2,bytes=-1=;byteHardLimit=6;countHardLimit=3"),
            ("/zookeeper/quota/q/zookeeper_stats", ""),
        ] {
            assert_eq!(write(&mut core, &ctx, mk(p, d)), 0);
        }
        // Not enforced: past the hard limit is fine, and nothing is said.
        assert_eq!(write(&mut core, &ctx, mk("/q/a", "abcdefg")), 0);
        assert!(core.take_warnings().is_empty());
        assert_eq!(write(&mut core, &ctx, Request::Delete { path: "/q/a".into(), version: -1 }), 0);
        core.settings.enforce_quota = true;
        assert_eq!(write(&mut core, &ctx, mk("/q/a", "abc")), 0);
        assert!(core.take_warnings().is_empty(), "count 2 is within the soft limit");
        assert_eq!(write(&mut core, &ctx, mk("/q/b", "")), 0);
        assert!(core.take_warnings().is_empty(), "a hard limit replaces the soft one");
        assert_eq!(write(&mut core, &ctx, mk("/q/c", "")), Code::QuotaExceeded as i32);
        assert_eq!(core.take_warnings(), vec!["Quota exceeded: /q [current count=4, hardCountLimit=3]".to_string()]);
        let set = |data: &str| Request::SetData { path: "/q/a".into(), data: Some(data.as_bytes().to_vec()), version: -1 };
        assert_eq!(write(&mut core, &ctx, set("abcdef")), 0, "6 bytes is the hard limit itself");
        assert_eq!(write(&mut core, &ctx, set("abcdefg")), Code::QuotaExceeded as i32);
        assert_eq!(core.take_warnings(), vec!["Quota exceeded: /q [current bytes=7, hardByteLimit=6]".to_string()]);
        // In a multi the refused op fails the whole request.
        let multi = Request::Multi(vec![Request::Delete { path: "/q/b".into(), version: -1 }, mk("/q/d", "")]);
        let Processed::Pending(z) = core.process(&ctx, multi) else { panic!() };
        core.apply_next(z).unwrap();
        // Checked against committed usage, as ZooKeeper: the delete before it does not make room.
        assert!(core.db.tree.get("/q/b").is_some() && core.db.tree.get("/q/d").is_none());
        assert_eq!(core.take_warnings(), vec!["Quota exceeded: /q [current count=4, hardCountLimit=3]".to_string()]);
        let stats = core.db.tree.get("/zookeeper/quota/q/zookeeper_stats").unwrap();
        assert_eq!(stats.data().unwrap(), b"count=3,bytes=6");
        // Soft limits only: the write passes with a warning.
        let limits = Request::SetData { path: "/zookeeper/quota/q/zookeeper_limits".into(), data: Some(b"count=1,bytes=2".to_vec()), version: -1 };
        assert_eq!(write(&mut core, &ctx, limits), 0);
        assert_eq!(write(&mut core, &ctx, set("abcdefg")), 0);
        assert_eq!(core.take_warnings(), vec!["Quota exceeded: /q [current bytes=7, softByteLimit=2]".to_string()]);
        assert_eq!(write(&mut core, &ctx, mk("/q/e", "")), 0);
        assert_eq!(core.take_warnings(), vec!["Quota exceeded: /q [current count=4, softCountLimit=1]".to_string()]);
    }

    fn reconfig_core() -> (Core, i64) {
        let (mut core, sid) = core_with_session();
        core.settings.reconfig_enabled = true;
        core.quorum_synced = Some([1, 2, 3].into());
        let text = "server.1=127.0.0.1:2888:3888:participant\nserver.2=127.0.0.1:2889:3889:participant\nserver.3=127.0.0.1:2890:3890:participant\nversion=0";
        core.db.write(|db| db.tree.init_config(text.as_bytes().to_vec(), 0, 0));
        (core, sid)
    }

    fn add_observer(id: u64, cur_config_id: i64) -> Request {
        let joining = format!("server.{id}=127.0.0.1:{}:{}:observer;{}", 3000 + id, 4000 + id, 5000 + id);
        Request::Reconfig { joining: Some(joining), leaving: None, new_members: None, cur_config_id }
    }

    #[test]
    fn one_reconfig_at_a_time_each_a_version_of_the_config() {
        let (mut core, sid) = reconfig_core();
        let sup = [Id { scheme: "super".into(), id: String::new() }];
        let ctx = RequestCtx { session_id: sid, xid: 1, auth: &sup, now_ms: 5 };
        let stamp = core.stamp_config(5).expect("a version-0 config is re-issued");
        assert!(core.stamp_config(5).is_none(), "once");
        let run = |core: &mut Core, req| {
            let Processed::Pending(z) = core.process(&ctx, req) else { panic!() };
            z
        };
        let result = |core: &mut Core, z| err_of(&core.apply_next(z).unwrap().1);
        let z4 = run(&mut core, add_observer(4, -1));
        assert!(core.apply_next(stamp).is_some());
        assert_eq!(result(&mut core, z4), Code::ReconfigInProgress as i32, "the stamp was not applied yet");
        let z5 = run(&mut core, add_observer(5, stamp));
        assert_eq!(result(&mut core, z5), 0);
        let z6 = run(&mut core, add_observer(6, stamp));
        assert_eq!(result(&mut core, z6), Code::BadVersion as i32, "5's reconfig made a new version");
        let z7 = run(&mut core, add_observer(7, z5));
        let z8 = run(&mut core, add_observer(8, -1));
        assert_eq!(result(&mut core, z7), 0);
        assert_eq!(result(&mut core, z8), Code::ReconfigInProgress as i32);
        let config = core.db.tree.get(crate::tree::CONFIG).unwrap();
        let m = crate::membership::Membership::parse(std::str::from_utf8(config.data.as_deref().unwrap()).unwrap()).unwrap();
        assert_eq!(m.observers(), [5, 7].into());
        assert_eq!((m.version, config.stat.mzxid, config.stat.version), (z7, z7, -1));
        // Quorum of the new voters synced with the leader, then the ACL.
        core.quorum_synced = Some([1, 2].into());
        let plain = RequestCtx { auth: &[], ..ctx };
        let four_voters = Request::Reconfig {
            joining: Some("server.9=127.0.0.1:1:2:participant;3,server.10=127.0.0.1:4:5:participant;6".into()),
            leaving: None,
            new_members: None,
            cur_config_id: -1,
        };
        let Processed::Pending(z5) = core.process(&plain, four_voters) else { panic!() };
        let (_, out) = core.apply_next(z5).unwrap();
        assert_eq!(err_of(&out), Code::NewConfigNoQuorum as i32, "2 of 5 voters synced");
        let Processed::Pending(z6) = core.process(&plain, add_observer(11, -1)) else { panic!() };
        let (_, out) = core.apply_next(z6).unwrap();
        assert_eq!(err_of(&out), Code::NoAuth as i32);
    }

    #[test]
    fn a_failed_multi_leaves_no_outstanding_change() {
        let (mut core, sid) = core_with_session();
        let ctx = RequestCtx { session_id: sid, xid: 1, auth: &[], now_ms: 5 };
        let multi = Request::Multi(vec![create("/m"), Request::Delete { path: "/missing".into(), version: -1 }]);
        let Processed::Pending(z) = core.process(&ctx, multi) else { panic!() };
        assert!(core.outstanding.is_empty());
        let Processed::Pending(z2) = core.process(&ctx, create("/m")) else { panic!() };
        core.apply_next(z);
        let (_, out) = core.apply_next(z2).unwrap();
        assert_eq!(err_of(&out), 0, "/m was never created by the failed multi");
    }

    #[test]
    fn closing_a_session_counts_its_outstanding_ephemerals() {
        let (mut core, sid) = core_with_session();
        let ctx = RequestCtx { session_id: sid, xid: 1, auth: &[], now_ms: 5 };
        let mut eph = create("/e");
        if let Request::Create(c) = &mut eph {
            c.flags = 1;
        }
        let Processed::Pending(_) = core.process(&ctx, eph) else { panic!() };
        let z = core.expire(sid, 6).unwrap();
        assert!(core.expire(sid, 7).is_none(), "expiry is prepared once");
        while core.apply_next(z).is_some() {}
        assert!(core.db.tree.get("/e").is_none(), "the ephemeral created just before expiry is gone");
        assert!(core.db.session_timeout(sid).is_none());
    }

    /// Chaos seed 502: a create from a session whose expiry was already
    /// prepared was logged after the close, and its ephemeral outlived the session.
    #[test]
    fn a_session_being_closed_gets_session_expired_and_leaves_no_ephemeral() {
        let (mut core, sid) = core_with_session();
        let z = core.expire(sid, 6).unwrap();
        let ctx = RequestCtx { session_id: sid, xid: 2, auth: &[], now_ms: 7 };
        let mut eph = create("/late");
        if let Request::Create(c) = &mut eph {
            c.flags = 1;
        }
        let Processed::Done(out) = core.process(&ctx, eph) else { panic!("a closing session's create must not be prepared") };
        assert_eq!(err_of(&out), Code::SessionExpired as i32);
        let Processed::Done(out) = core.process(&ctx, Request::Exists { path: "/".into(), watch: false }) else { panic!() };
        assert_eq!(err_of(&out), Code::SessionExpired as i32, "reads too, as ZooKeeper's checkSession");
        while core.apply_next(z).is_some() {}
        assert!(core.db.tree.get("/late").is_none() && core.db.tree.ephemerals_of(sid).is_empty());
    }
}
