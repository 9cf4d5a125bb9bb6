//! Request -> transaction (ZooKeeper's `PrepRequestProcessor`): every check a
//! write must pass, in ZooKeeper's order, against the tree plus the changes
//! of earlier ops of the same multi.

use crate::acl;
use crate::error::{Code, ZkResult};
use crate::membership::Membership;
use crate::path;
use crate::proto::{perms, Acl, CreateOp, CreateRequest, Id, Request};
use crate::tree::{DataTree, Node, CONFIG};
use crate::txn::{owner, Txn};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

pub struct PrepCtx<'a> {
    pub session_id: i64,
    pub auth: &'a [Id],
    pub extended_types_enabled: bool,
    /// zookeeper.enforceQuota: hard limits refuse creates and sets.
    pub enforce_quota: bool,
    pub reconfig: ReconfigCtx<'a>,
}

/// What a reconfig request is checked against besides the tree.
#[derive(Clone, Copy, Default)]
pub struct ReconfigCtx<'a> {
    /// reconfigEnabled.
    pub enabled: bool,
    /// The zxid this request gets: the new config's version.
    pub zxid: i64,
    /// The leader and the learners synced with it; None when standalone.
    pub synced: Option<&'a BTreeSet<u64>>,
    /// 2 with standaloneEnabled (ZooKeeper's default), else 1.
    pub min_voters: usize,
}

/// The part of a node that preparation looks at.
#[derive(Clone, Debug)]
pub struct View {
    version: i32,
    create_count: i32,
    aversion: i32,
    owner: i64,
    num_children: usize,
    acl: Arc<[Acl]>,
    /// The data length, for setData's quota check.
    data_len: usize,
}

impl View {
    fn of(n: &Node) -> View {
        View {
            version: n.stat.version,
            create_count: n.stat.cversion,
            aversion: n.stat.aversion,
            owner: n.stat.ephemeral_owner,
            num_children: n.children.len(),
            acl: n.acl.clone(),
            data_len: n.data().map_or(0, <[u8]>::len),
        }
    }
}

/// Node states of transactions prepared but not yet applied to the tree
/// (ZooKeeper's outstandingChanges): later requests are checked against them,
/// so the tree itself only ever holds durable, committed state.
#[derive(Default)]
pub struct Outstanding {
    by_path: HashMap<String, (i64, Option<View>)>,
    order: VecDeque<(i64, String)>,
}

impl Outstanding {
    /// Remembers what transaction `zxid` will do to these paths.
    pub fn record(&mut self, zxid: i64, changes: Vec<(String, Option<View>)>) {
        for (path, view) in changes {
            self.order.push_back((zxid, path.clone()));
            self.by_path.insert(path, (zxid, view));
        }
    }

    /// Forgets changes of transactions up to `zxid`: the tree has them now.
    pub fn applied(&mut self, zxid: i64) {
        while self.order.front().is_some_and(|(z, _)| *z <= zxid) {
            let (z, path) = self.order.pop_front().unwrap();
            if self.by_path.get(&path).is_some_and(|(latest, _)| *latest == z) {
                self.by_path.remove(&path);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// The tree as outstanding transactions and earlier ops of this request will leave it.
struct Overlay<'a> {
    tree: &'a DataTree,
    outstanding: &'a Outstanding,
    changes: HashMap<String, Option<View>>,
    /// Quota messages ZooKeeper logs at WARN.
    warnings: Vec<String>,
}

impl Overlay<'_> {
    fn get(&self, path: &str) -> Option<View> {
        if let Some(v) = self.changes.get(path) {
            return v.clone();
        }
        if let Some((_, v)) = self.outstanding.by_path.get(path) {
            return v.clone();
        }
        self.tree.get(path).map(View::of)
    }

    fn node(&self, path: &str) -> ZkResult<View> {
        self.get(path).ok_or(Code::NoNode)
    }

    fn set(&mut self, path: &str, view: Option<View>) {
        self.changes.insert(path.to_owned(), view);
    }

    /// The session's ephemerals, counting outstanding creates and deletes.
    fn ephemerals_of(&self, session_id: i64) -> Vec<String> {
        let mut paths: BTreeSet<String> = self.tree.ephemerals_of(session_id).into_iter().collect();
        for (path, (_, view)) in &self.outstanding.by_path {
            match view {
                Some(v) if v.owner == session_id => paths.insert(path.clone()),
                _ => paths.remove(path),
            };
        }
        paths.into_iter().filter(|p| self.get(p).is_some_and(|v| v.owner == session_id)).collect()
    }
}

/// A prepared transaction and the node states it will produce.
pub struct Prepared {
    pub txn: Txn,
    pub changes: Vec<(String, Option<View>)>,
    /// Quota limits passed (soft) or refused (hard), for the log.
    pub warnings: Vec<String>,
}

impl Prepared {
    pub fn new(txn: Txn, changes: Vec<(String, Option<View>)>) -> Prepared {
        Prepared { txn, changes, warnings: Vec::new() }
    }
}

pub fn prepare(tree: &DataTree, outstanding: &Outstanding, ctx: &PrepCtx, req: &Request) -> Prepared {
    let mut ov = Overlay { tree, outstanding, changes: HashMap::new(), warnings: Vec::new() };
    let txn = match req {
        Request::CloseSession => close_session(&mut ov, ctx.session_id),
        Request::Multi(ops) => prepare_multi(&mut ov, ctx, ops),
        other => prepare_op(&mut ov, ctx, other).unwrap_or_else(|code| Txn::Error { code: code as i32 }),
    };
    // A failed request changes nothing (a failed multi rolls back its ops).
    let changes = if is_failure(&txn) { Vec::new() } else { ov.changes.into_iter().collect() };
    Prepared { txn, changes, warnings: ov.warnings }
}

fn is_failure(txn: &Txn) -> bool {
    match txn {
        Txn::Error { .. } => true,
        Txn::Multi(subs) => subs.iter().any(|t| matches!(t, Txn::Error { .. })),
        _ => false,
    }
}

/// Session close or expiry: its ephemerals, as they will be once everything
/// outstanding is applied, are deleted in one transaction.
fn close_session(ov: &mut Overlay, session_id: i64) -> Txn {
    let ephemerals = ov.ephemerals_of(session_id);
    for path in &ephemerals {
        let parent_path = path::parent(path);
        if let Some(mut parent) = ov.get(parent_path) {
            parent.num_children = parent.num_children.saturating_sub(1);
            ov.set(parent_path, Some(parent));
        }
        ov.set(path, None);
    }
    Txn::CloseSession { ephemerals }
}

/// Expiry of a session (no request behind it).
pub fn prepare_close_session(tree: &DataTree, outstanding: &Outstanding, session_id: i64) -> Prepared {
    let mut ov = Overlay { tree, outstanding, changes: HashMap::new(), warnings: Vec::new() };
    let txn = close_session(&mut ov, session_id);
    Prepared::new(txn, ov.changes.into_iter().collect())
}

/// The reaper's delete of an empty container or expired TTL node.
pub fn prepare_delete_container(tree: &DataTree, outstanding: &Outstanding, path: &str) -> Prepared {
    let mut ov = Overlay { tree, outstanding, changes: HashMap::new(), warnings: Vec::new() };
    let mut check = || -> ZkResult<Txn> {
        let node = ov.node(path)?;
        if node.num_children > 0 {
            return Err(Code::NotEmpty);
        }
        if owner::is_session(node.owner) {
            return Err(Code::BadVersion);
        }
        let parent_path = path::parent(path);
        if let Some(mut parent) = ov.get(parent_path) {
            parent.num_children = parent.num_children.saturating_sub(1);
            ov.set(parent_path, Some(parent));
        }
        ov.set(path, None);
        Ok(Txn::Delete { path: path.to_owned() })
    };
    match check() {
        Ok(txn) => Prepared::new(txn, ov.changes.into_iter().collect()),
        Err(code) => Prepared::new(Txn::Error { code: code as i32 }, Vec::new()),
    }
}

fn prepare_multi(ov: &mut Overlay, ctx: &PrepCtx, ops: &[Request]) -> Txn {
    let mut txns = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        match prepare_op(ov, ctx, op) {
            Ok(t) => txns.push(t),
            Err(code) => {
                // Ops before the failure report 0, the failure its code, the rest -2.
                let mut failed: Vec<Txn> = (0..i).map(|_| Txn::Error { code: 0 }).collect();
                failed.push(Txn::Error { code: code as i32 });
                failed.extend((i + 1..ops.len()).map(|_| Txn::Error { code: Code::RuntimeInconsistency as i32 }));
                return Txn::Multi(failed);
            }
        }
    }
    Txn::Multi(txns)
}

fn check_version(current: i32, expected: i32) -> ZkResult<i32> {
    if expected != -1 && expected != current {
        return Err(Code::BadVersion);
    }
    // ZooKeeper skips -1, which means "any version" on the wire.
    Ok(if current.wrapping_add(1) == -1 { 0 } else { current.wrapping_add(1) })
}

fn valid_path(p: &str) -> ZkResult<()> {
    path::validate(p).map_err(|_| Code::BadArguments)
}

fn prepare_op(ov: &mut Overlay, ctx: &PrepCtx, req: &Request) -> ZkResult<Txn> {
    match req {
        Request::Create(c) => prepare_create(ov, ctx, c),
        Request::Delete { path, version } => {
            if !path.contains('/') || path.contains('\0') || DataTree::is_special(path) {
                return Err(Code::BadArguments);
            }
            let parent_path = path::parent(path);
            let mut parent = ov.node(parent_path)?;
            acl::check(&parent.acl, perms::DELETE, ctx.auth)?;
            let node = ov.node(path)?;
            check_version(node.version, *version)?;
            if node.num_children > 0 {
                return Err(Code::NotEmpty);
            }
            parent.num_children -= 1;
            ov.set(parent_path, Some(parent));
            ov.set(path, None);
            Ok(Txn::Delete { path: path.clone() })
        }
        Request::SetData { path, data, version } => {
            valid_path(path)?;
            let mut node = ov.node(path)?;
            acl::check(&node.acl, perms::WRITE, ctx.auth)?;
            let new_len = data.as_ref().map_or(0, Vec::len);
            check_quota(ov, ctx, path, new_len as i64 - node.data_len as i64, 0)?;
            let new_version = check_version(node.version, *version)?;
            node.version = new_version;
            node.data_len = new_len;
            ov.set(path, Some(node));
            Ok(Txn::SetData { path: path.clone(), data: data.clone(), version: new_version })
        }
        Request::SetAcl { path, acl: requested, version } => {
            valid_path(path)?;
            let fixed = acl::fixup(requested, ctx.auth)?;
            let mut node = ov.node(path)?;
            acl::check(&node.acl, perms::ADMIN, ctx.auth)?;
            let new_version = check_version(node.aversion, *version)?;
            node.aversion = new_version;
            node.acl = fixed.clone().into();
            ov.set(path, Some(node));
            Ok(Txn::SetAcl { path: path.clone(), acl: fixed, version: new_version })
        }
        Request::Check { path, version } => {
            valid_path(path)?;
            let node = ov.node(path)?;
            acl::check(&node.acl, perms::READ, ctx.auth)?;
            Ok(Txn::Check { path: path.clone(), version: check_version(node.version, *version)? })
        }
        Request::Reconfig { joining, leaving, new_members, cur_config_id } => {
            prepare_reconfig(ov, ctx, joining.as_deref(), leaving.as_deref(), new_members.as_deref(), *cur_config_id)
        }
        _ => Err(Code::Unimplemented),
    }
}

/// reconfigEnabled, at a leader's first establishment: the static config
/// (version 0) is re-issued as a reconfig of the same members, so every
/// member agrees on a version from then on (ZooKeeper gives it the NEWLEADER
/// zxid, ZOOKEEPER-1783). None when the config has a version or is changing.
pub fn prepare_config_stamp(tree: &DataTree, outstanding: &Outstanding, zxid: i64) -> Option<Prepared> {
    if outstanding.by_path.contains_key(CONFIG) {
        return None;
    }
    let node = tree.get(CONFIG)?;
    let mut m = Membership::parse(&String::from_utf8_lossy(node.data.as_deref().unwrap_or_default())).ok()?;
    if m.version != 0 || m.voters().is_empty() {
        return None;
    }
    m.version = zxid;
    let mut view = View::of(node);
    view.version = -1;
    Some(Prepared::new(Txn::Reconfig { data: m.to_text().into_bytes() }, vec![(CONFIG.to_string(), Some(view))]))
}

/// PrepRequestProcessor's reconfig case, in its order of checks (the
/// session was checked before).
fn prepare_reconfig(
    ov: &mut Overlay,
    ctx: &PrepCtx,
    joining: Option<&str>,
    leaving: Option<&str>,
    new_members: Option<&str>,
    cur_config_id: i64,
) -> ZkResult<Txn> {
    let rc = &ctx.reconfig;
    if !rc.enabled {
        return Err(Code::ReconfigDisabled);
    }
    let Some(synced) = rc.synced else { return Err(Code::Unimplemented) };
    // A config change prepared but not applied yet: ZooKeeper's lastSeen != current.
    if ov.outstanding.by_path.contains_key(CONFIG) {
        return Err(Code::ReconfigInProgress);
    }
    let text = ov.tree.get(CONFIG).and_then(|n| n.data.as_deref()).unwrap_or_default();
    let current = Membership::parse(&String::from_utf8_lossy(text)).map_err(|_| Code::SystemError)?;
    if cur_config_id != -1 && cur_config_id != current.version {
        return Err(Code::BadVersion);
    }
    // ZooKeeper parses leaving ids with Long.parseLong, uncaught: MarshallingError.
    if leaving.into_iter().flat_map(|l| l.split(',')).any(|id| !id.trim().is_empty() && id.trim().parse::<u64>().is_err()) {
        return Err(Code::MarshallingError);
    }
    let mut next = match new_members {
        Some(members) => Membership::parse(members).map_err(|_| Code::BadArguments)?,
        None => current.incremental(joining, leaving).map_err(|_| Code::BadArguments)?,
    };
    next.version = rc.zxid;
    let voters = next.voters();
    if voters.len() < rc.min_voters.max(1) {
        return Err(Code::BadArguments);
    }
    if voters.iter().filter(|id| synced.contains(id)).count() * 2 <= voters.len() {
        return Err(Code::NewConfigNoQuorum);
    }
    let mut node = ov.node(CONFIG)?;
    acl::check(&node.acl, perms::WRITE, ctx.auth)?;
    node.version = -1;
    ov.set(CONFIG, Some(node));
    Ok(Txn::Reconfig { data: next.to_text().into_bytes() })
}

/// CreateMode flags: (ephemeral, sequential, container, ttl).
fn create_mode(flags: i32) -> ZkResult<(bool, bool, bool, bool)> {
    Ok(match flags {
        0 => (false, false, false, false),
        1 => (true, false, false, false),
        2 => (false, true, false, false),
        3 => (true, true, false, false),
        4 => (false, false, true, false),
        5 => (false, false, false, true),
        6 => (false, true, false, true),
        _ => return Err(Code::BadArguments),
    })
}

fn prepare_create(ov: &mut Overlay, ctx: &PrepCtx, c: &CreateRequest) -> ZkResult<Txn> {
    let (ephemeral, sequential, _container, ttl_mode) = create_mode(c.flags)?;
    if ttl_mode && !ctx.extended_types_enabled {
        return Err(Code::Unimplemented);
    }
    // EphemeralType.validateTTL: a TTL only with a TTL mode, and in range.
    if ttl_mode && (c.ttl_ms <= 0 || c.ttl_ms > owner::TTL_MAX_MS) || !ttl_mode && c.ttl_ms >= 0 {
        return Err(Code::BadArguments);
    }
    let Some(last_slash) = c.path.rfind('/') else { return Err(Code::BadArguments) };
    if c.path.contains('\0') {
        return Err(Code::BadArguments);
    }
    let parent_path = if last_slash == 0 { "/" } else { &c.path[..last_slash] };
    let acl = acl::fixup(&c.acl, ctx.auth)?;
    let mut parent = ov.node(parent_path)?;
    acl::check(&parent.acl, perms::CREATE, ctx.auth)?;
    let path = if sequential { format!("{}{:010}", c.path, parent.create_count) } else { c.path.clone() };
    valid_path(&path)?;
    if ov.get(&path).is_some() {
        return Err(Code::NodeExists);
    }
    if owner::is_session(parent.owner) {
        return Err(Code::NoChildrenForEphemerals);
    }
    let data_len = c.data.as_ref().map_or(0, Vec::len);
    check_quota(ov, ctx, &path, data_len as i64, 1)?;
    let ephemeral_owner = match c.op {
        CreateOp::Container => owner::CONTAINER,
        CreateOp::Ttl => owner::ttl(c.ttl_ms),
        _ if ephemeral => ctx.session_id,
        _ => 0,
    };
    parent.create_count = parent.create_count.wrapping_add(1);
    parent.num_children += 1;
    let parent_cversion = parent.create_count;
    ov.set(parent_path, Some(parent));
    let view = View { version: 0, create_count: 0, aversion: 0, owner: ephemeral_owner, num_children: 0, acl: acl.clone().into(), data_len };
    ov.set(&path, Some(view));
    Ok(Txn::Create { path, data: c.data.clone(), acl, ephemeral_owner, parent_cversion })
}

/// ZooKeeperServer.checkQuota with zookeeper.enforceQuota: limits and usage
/// come from the committed tree (not outstanding changes), as in ZooKeeper.
fn check_quota(ov: &mut Overlay, ctx: &PrepCtx, path: &str, bytes_diff: i64, count_diff: i64) -> ZkResult<()> {
    if !ctx.enforce_quota {
        return Ok(());
    }
    let verdict = crate::quota::check(ov.tree, path, bytes_diff, count_diff);
    ov.warnings.extend(verdict.messages);
    if verdict.exceeded {
        return Err(Code::QuotaExceeded);
    }
    Ok(())
}
