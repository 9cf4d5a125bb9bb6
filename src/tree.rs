//! The data tree (ZooKeeper's `DataTree`): znodes, their persisted stats, and the
//! indexes of ephemerals, containers and TTL nodes. Applying a transaction
//! returns the watch triggers it causes instead of firing them.

use crate::error::{Code, ZkResult};
use crate::path;
use crate::proto::{Acl, Stat};
use crate::quota::{self, QuotaPaths, StatsTrack};
use crate::txn::owner;
use crate::watch::event;
use compact_str::CompactString;
use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

/// A node's persisted stat (`StatPersisted`): client-visible numbers are derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeStat {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    /// Number of child creations (ZooKeeper persists creates only).
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub data: Option<Box<[u8]>>,
    pub acl: Arc<[Acl]>,
    pub stat: NodeStat,
    pub children: Children,
}

/// A node's place in the tree's arena.
type NodeId = u32;

/// Every node's id by its full path (the root aside). A read finds its node
/// with one hash probe: a walk through the parents' children took a B-tree
/// descent per name, mostly cache misses, and was the read path's largest
/// cost. The children maps stay for what needs name order (listing, the
/// fuzzy snapshot's cursor). A per-process random seed keeps client-chosen
/// paths from being made to collide.
type PathIndex = HashMap<CompactString, NodeId, foldhash::fast::RandomState>;
const ROOT_ID: NodeId = 0;

/// A node's children by name, in name order.
#[derive(Debug, Clone, Default)]
pub struct Children(BTreeMap<CompactString, NodeId>);

impl Children {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> Names<'_> {
        self.0.keys().map(CompactString::as_str)
    }

    fn all(&self) -> btree_map::Range<'_, CompactString, NodeId> {
        self.0.range::<str, _>(..)
    }
}

pub type Names<'a> = std::iter::Map<btree_map::Keys<'a, CompactString, NodeId>, fn(&CompactString) -> &str>;

impl<'a> IntoIterator for &'a Children {
    type Item = &'a str;
    type IntoIter = Names<'a>;
    fn into_iter(self) -> Names<'a> {
        self.iter()
    }
}

impl Node {
    /// The Stat a client sees, as `DataNode.copyStat`: cversion counts creates
    /// and deletes, and container/TTL owners read as 0.
    pub fn stat(&self) -> Stat {
        let s = &self.stat;
        let num_children = self.children.len() as i32;
        Stat {
            czxid: s.czxid,
            mzxid: s.mzxid,
            ctime: s.ctime,
            mtime: s.mtime,
            version: s.version,
            cversion: s.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: s.aversion,
            ephemeral_owner: if owner::is_session(s.ephemeral_owner) { s.ephemeral_owner } else { 0 },
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children,
            pzxid: s.pzxid,
        }
    }

    pub fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }
}

/// A watch trigger: a change of `event_type` at `path`.
pub type Trigger = (String, i32);

pub const ROOT: &str = "/";
pub const ZOOKEEPER: &str = "/zookeeper";
pub const QUOTA: &str = "/zookeeper/quota";
pub const CONFIG: &str = "/zookeeper/config";

#[derive(Clone)]
pub struct DataTree {
    /// Every node, by id; the root is `ROOT_ID`. A freed slot is reused.
    slots: Slots,
    index: PathIndex,
    free: Vec<NodeId>,
    count: usize,
    /// Nodes a snapshot load skipped because their parent was missing.
    orphans: u64,
    /// The last parent a restored node went under: a snapshot lists siblings together.
    restore_parent: Option<(Box<str>, NodeId)>,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: HashSet<String>,
    ttls: HashSet<String>,
    acl_cache: HashMap<Vec<Acl>, Arc<[Acl]>>,
    data_bytes: u64,
    /// Sum of every node's hash, kept up to date by each change (as
    /// ZooKeeper 3.6+'s DigestCalculator): members compare it to find divergence.
    digest: u64,
    /// Paths with a quota limits node (ZooKeeper's pTrie), rebuilt on restore.
    quotas: QuotaPaths,
    /// While a backup walks the tree: every path a change touched since it began.
    changes: Option<HashSet<String>>,
}

/// A node's part of the tree digest: crc32c over its path, data and persisted
/// stat (not its ACL or children, as ZooKeeper).
fn node_hash(path: &str, n: &Node) -> u64 {
    if path == CONFIG {
        // Each member writes its config at start (ZooKeeper leaves it out too).
        return 0;
    }
    let s = &n.stat;
    let mut crc = crc32c::crc32c(path.as_bytes());
    // A quota stats node's text is derived (recounted when a snapshot loads), so a member
    // that loaded one may differ from one that did not if a client wrote the node by hand.
    let derived = path.strip_prefix(QUOTA).is_some_and(|rest| rest.starts_with('/') && path::name(path) == quota::STAT_NODE);
    let data = if derived { &[0xfe][..] } else { n.data.as_deref().unwrap_or(&[0xff]) };
    crc = crc32c::crc32c_append(crc, data);
    // The Stat's fields in one buffer: one checksum call, the same value as one call per field.
    let mut fields = [0u8; 6 * 8 + 3 * 4];
    let (longs, ints) = fields.split_at_mut(6 * 8);
    for (out, v) in longs.chunks_exact_mut(8).zip([s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime, s.ephemeral_owner]) {
        out.copy_from_slice(&v.to_be_bytes());
    }
    for (out, v) in ints.chunks_exact_mut(4).zip([s.version, s.cversion, s.aversion]) {
        out.copy_from_slice(&v.to_be_bytes());
    }
    crc32c::crc32c_append(crc, &fields) as u64
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// The tree every ZooKeeper starts with: /, /zookeeper, /zookeeper/quota
    /// and the read-only /zookeeper/config.
    pub fn new() -> DataTree {
        let mut t = DataTree {
            slots: Slots::default(),
            index: PathIndex::default(),
            free: Vec::new(),
            count: 0,
            orphans: 0,
            restore_parent: None,
            ephemerals: HashMap::new(),
            containers: HashSet::new(),
            ttls: HashSet::new(),
            acl_cache: HashMap::new(),
            data_bytes: 0,
            digest: 0,
            quotas: QuotaPaths::default(),
            changes: None,
        };
        let open = t.intern_acl(vec![Acl::world_all()]);
        let read_only = t.intern_acl(vec![Acl { perms: crate::proto::perms::READ, ..Acl::world_all() }]);
        for (p, acl) in [(ROOT, &open), (ZOOKEEPER, &open), (QUOTA, &open), (CONFIG, &read_only)] {
            let mut stat = NodeStat::default();
            if p == CONFIG {
                // ZooKeeper sets its ACL with version -1 (ZOOKEEPER-2014).
                stat.aversion = -1;
            }
            let node = Node { data: Some(Box::new([])), acl: acl.clone(), stat, children: Children::default() };
            t.data_bytes += Self::node_size(p, &node.data);
            // System nodes are linked in without counting as creates (cversion -1 on /, as ZooKeeper).
            if p == ROOT {
                t.alloc(node);
            } else {
                let parent = t.id_of(path::parent(p)).unwrap();
                t.add_child(parent, p, node).expect("a new tree has no such node");
            }
        }
        t.digest = t.compute_digest();
        t
    }

    /// The digest of the whole tree, maintained incrementally.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The digest recomputed from every node (for checks and after restores).
    pub fn compute_digest(&self) -> u64 {
        let mut digest = 0u64;
        let mut walk = self.walk_after(None);
        while let Some((p, n)) = walk.next_ref() {
            digest = digest.wrapping_add(node_hash(p, n));
        }
        digest
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.id_of(path).map(|id| self.node(id))
    }

    /// The node at `path`, found from the root one name at a time.
    fn id_of(&self, path: &str) -> Option<NodeId> {
        if path == ROOT {
            return Some(ROOT_ID);
        }
        self.index.get(path).copied()
    }

    fn node(&self, id: NodeId) -> &Node {
        self.slots[id as usize].as_ref().expect("a linked node id names a live slot")
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        self.count += 1;
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(node);
                id
            }
            None => {
                self.slots.push(Some(node));
                NodeId::try_from(self.slots.len() - 1).expect("fewer than 2^32 znodes")
            }
        }
    }

    fn release(&mut self, id: NodeId) -> Node {
        self.restore_parent = None;
        self.count -= 1;
        self.free.push(id);
        self.slots[id as usize].take().expect("a linked node id names a live slot")
    }

    pub fn node_count(&self) -> usize {
        self.count
    }

    /// Bytes of paths and data, as ZooKeeper's approximate data size.
    pub fn approximate_data_size(&self) -> u64 {
        self.data_bytes
    }

    pub fn ephemerals_of(&self, session_id: i64) -> Vec<String> {
        self.ephemerals.get(&session_id).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    pub fn ephemerals(&self) -> &HashMap<i64, BTreeSet<String>> {
        &self.ephemerals
    }

    /// Every node in the subtree below `path`, not counting `path` itself.
    pub fn descendant_count(&self, path: &str) -> usize {
        let Some(node) = self.get(path) else { return 0 };
        node.children
            .iter()
            .map(|c| {
                let child = path::child(path, c);
                1 + self.descendant_count(&child)
            })
            .sum()
    }

    pub fn containers(&self) -> impl Iterator<Item = &String> {
        self.containers.iter()
    }

    pub fn ttl_nodes(&self) -> impl Iterator<Item = &String> {
        self.ttls.iter()
    }

    pub fn is_special(path: &str) -> bool {
        matches!(path, ROOT | ZOOKEEPER | QUOTA | CONFIG)
    }

    /// Shares one allocation among nodes with equal ACLs (ZooKeeper's ACL cache).
    pub fn intern_acl(&mut self, acl: Vec<Acl>) -> Arc<[Acl]> {
        if let Some(a) = self.acl_cache.get(&acl) {
            return a.clone();
        }
        let shared: Arc<[Acl]> = acl.clone().into();
        self.acl_cache.insert(acl, shared.clone());
        shared
    }

    /// Starts noting every path a change touches (a node's data, ACL or
    /// stat, its creation or removal), so a walk that copies the tree piece by
    /// piece can be made exact at its end: see `zkfiles::backup`.
    pub fn track_changes(&mut self) {
        self.changes = Some(HashSet::new());
    }

    pub fn is_tracking_changes(&self) -> bool {
        self.changes.is_some()
    }

    /// The paths touched since `track_changes`, and tracking stops.
    pub fn take_changes(&mut self) -> HashSet<String> {
        self.changes.take().unwrap_or_default()
    }

    fn note_change(&mut self, path: &str) {
        if let Some(changes) = &mut self.changes {
            if !changes.contains(path) {
                changes.insert(path.to_owned());
            }
        }
    }

    fn node_size(path: &str, data: &Option<Box<[u8]>>) -> u64 {
        (path.len() + data.as_ref().map_or(0, |d| d.len())) as u64
    }

    #[allow(clippy::too_many_arguments)] // as ZooKeeper's DataTree.createNode
    pub fn create(
        &mut self,
        path: &str,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        ephemeral_owner: i64,
        parent_cversion: i32,
        zxid: i64,
        time_ms: i64,
        triggers: &mut Vec<Trigger>,
    ) -> ZkResult<Stat> {
        let parent_path = path::parent(path);
        let parent_id = self.id_of(parent_path).ok_or(Code::NoNode)?;
        let acl = self.intern_acl(acl);
        let stat = NodeStat { czxid: zxid, mzxid: zxid, pzxid: zxid, ctime: time_ms, mtime: time_ms, ephemeral_owner, ..Default::default() };
        let node = Node { data: data.map(Vec::into_boxed_slice), acl, stat, children: Children::default() };
        let (client_stat, size, hash) = (node.stat(), Self::node_size(path, &node.data), node_hash(path, &node));
        let bytes = node.data.as_ref().map_or(0, |d| d.len() as i64);
        let added = self.add_child(parent_id, path, node).is_ok();
        // Replays may see an older create, or one a fuzzy snapshot already
        // holds: the parent's cversion only moves forward (ZooKeeper's processTxn).
        let parent = slot_mut(&mut self.slots, parent_id);
        let bumped = parent_cversion > parent.stat.cversion;
        if bumped {
            let before = node_hash(parent_path, parent);
            parent.stat.cversion = parent_cversion;
            parent.stat.pzxid = zxid;
            self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(parent_path, parent));
        }
        if !added {
            if bumped {
                self.note_change(parent_path);
            }
            return Err(Code::NodeExists);
        }
        self.data_bytes += size;
        self.digest = self.digest.wrapping_add(hash);
        self.note_change(path);
        self.note_change(parent_path);
        if ephemeral_owner == owner::CONTAINER {
            self.containers.insert(path.to_owned());
        } else if owner::ttl_of(ephemeral_owner).is_some() {
            self.ttls.insert(path.to_owned());
        } else if ephemeral_owner != 0 {
            self.ephemerals.entry(ephemeral_owner).or_default().insert(path.to_owned());
        }
        // A limits or stats node of a quota (DataTree.createNode's string checks, kept literal).
        if let Some(real) = parent_path.strip_prefix(QUOTA) {
            match path::name(path) {
                quota::LIMIT_NODE => self.quotas.add(real),
                quota::STAT_NODE => self.recount_quota(real),
                _ => {}
            }
        }
        self.update_quota_usage(path, bytes, 1);
        triggers.push((path.to_owned(), event::NODE_CREATED));
        triggers.push((parent_path.to_owned(), event::NODE_CHILDREN_CHANGED));
        Ok(client_stat)
    }

    pub fn delete(&mut self, path: &str, zxid: i64, triggers: &mut Vec<Trigger>) -> ZkResult<()> {
        let parent_path = path::parent(path);
        let mut removed = None;
        // The parent's pzxid moves even if the child is already gone (replay).
        if let Some(parent_id) = self.id_of(parent_path) {
            let parent = slot_mut(&mut self.slots, parent_id);
            removed = parent.children.0.remove(path::name(path));
            if zxid > parent.stat.pzxid {
                let before = node_hash(parent_path, parent);
                parent.stat.pzxid = zxid;
                self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(parent_path, parent));
                self.note_change(parent_path);
            }
        }
        let id = removed.ok_or(Code::NoNode)?;
        self.remove_unlinked(id, path);
        triggers.push((path.to_owned(), event::NODE_DELETED));
        triggers.push((parent_path.to_owned(), event::NODE_CHILDREN_CHANGED));
        Ok(())
    }

    /// Frees a node already taken out of its parent's children, and anything
    /// still below it (a consistent history never deletes a parent first).
    fn remove_unlinked(&mut self, id: NodeId, path: &str) {
        self.note_change(path);
        self.index.remove(path);
        let node = self.release(id);
        for (name, child) in &node.children.0 {
            self.remove_unlinked(*child, &path::child(path, name));
        }
        self.digest = self.digest.wrapping_sub(node_hash(path, &node));
        self.data_bytes -= Self::node_size(path, &node.data);
        let o = node.stat.ephemeral_owner;
        if o == owner::CONTAINER {
            self.containers.remove(path);
        } else if owner::ttl_of(o).is_some() {
            self.ttls.remove(path);
        } else if o != 0 {
            if let Some(set) = self.ephemerals.get_mut(&o) {
                set.remove(path);
                if set.is_empty() {
                    self.ephemerals.remove(&o);
                }
            }
        }
        let parent_path = path::parent(path);
        if parent_path.starts_with(ZOOKEEPER) && path::name(path) == quota::LIMIT_NODE {
            if let Some(real) = parent_path.get(QUOTA.len()..) {
                self.quotas.remove(real);
            }
        }
        self.update_quota_usage(path, -(node.data.as_ref().map_or(0, |d| d.len() as i64)), -1);
    }

    pub fn set_data(&mut self, path: &str, data: Option<Vec<u8>>, version: i32, zxid: i64, time_ms: i64, triggers: &mut Vec<Trigger>) -> ZkResult<Stat> {
        let id = self.id_of(path).ok_or(Code::NoNode)?;
        let node = slot_mut(&mut self.slots, id);
        let before = node_hash(path, node);
        let new_data = data.map(Vec::into_boxed_slice);
        let len = |d: &Option<Box<[u8]>>| d.as_ref().map_or(0, |d| d.len() as i64);
        let bytes_diff = len(&new_data) - len(&node.data);
        self.data_bytes = self.data_bytes + Self::node_size(path, &new_data) - Self::node_size(path, &node.data);
        node.data = new_data;
        node.stat.version = version;
        node.stat.mzxid = zxid;
        node.stat.mtime = time_ms;
        self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(path, node));
        let stat = node.stat();
        self.note_change(path);
        self.update_quota_usage(path, bytes_diff, 0);
        triggers.push((path.to_owned(), event::NODE_DATA_CHANGED));
        Ok(stat)
    }

    /// Writes the config in use into /zookeeper/config outside any
    /// transaction, as ZooKeeper does at start (version -1, mzxid = the
    /// config's version). The node is not part of the digest.
    pub fn init_config(&mut self, data: Vec<u8>, config_version: i64, now_ms: i64) {
        let _ = self.set_data(CONFIG, Some(data), -1, config_version, now_ms, &mut Vec::new());
    }

    pub fn set_acl(&mut self, path: &str, acl: Vec<Acl>, aversion: i32) -> ZkResult<Stat> {
        let acl = self.intern_acl(acl);
        let id = self.id_of(path).ok_or(Code::NoNode)?;
        let node = slot_mut(&mut self.slots, id);
        let before = node_hash(path, node);
        node.acl = acl;
        node.stat.aversion = aversion;
        self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(path, node));
        let stat = node.stat();
        self.note_change(path);
        Ok(stat)
    }

    /// Up to `max` nodes strictly after `after` (from the start when None) in
    /// depth-first order, children by name: the fuzzy snapshot's cursor. A
    /// subtree is contiguous, so a parent created during a walk is never left
    /// out while a child of it is written.
    pub fn nodes_after(&self, after: Option<&str>, max: usize) -> impl Iterator<Item = (String, &Node)> {
        let mut walk = self.walk_after(after);
        std::iter::from_fn(move || walk.next_ref().map(|(p, n)| (p.to_owned(), n))).take(max)
    }

    /// A depth-first walk positioned after `after`, which need not exist: the
    /// walk resumes at the first node that sorts after it.
    fn walk_after(&self, after: Option<&str>) -> Walk<'_> {
        let mut walk = Walk { tree: self, path: String::new(), stack: Vec::new(), root_pending: after.is_none() };
        let Some(after) = after else { return walk };
        let mut id = ROOT_ID;
        if after != ROOT {
            let Some(rest) = after.strip_prefix('/') else { return walk };
            for name in rest.split('/') {
                let children = &self.node(id).children.0;
                walk.stack.push((walk.path.len(), children.range::<str, _>((Bound::Excluded(name), Bound::Unbounded))));
                let Some(&child) = children.get(name) else { return walk };
                walk.path.push('/');
                walk.path.push_str(name);
                id = child;
            }
        }
        walk.stack.push((walk.path.len(), self.node(id).children.all()));
        walk
    }

    /// Inserts a node read from a snapshot (parents come before their
    /// children); the owner indexes are rebuilt by `finish_restore`. A node
    /// whose parent is missing is skipped: only an old fuzzy snapshot written
    /// in path order holds one, and the log after it creates both again.
    pub fn restore_node(&mut self, path: &str, data: Option<Vec<u8>>, acl: Arc<[Acl]>, stat: NodeStat) {
        let data = data.map(Vec::into_boxed_slice);
        if path == ROOT {
            let root = slot_mut(&mut self.slots, ROOT_ID);
            self.data_bytes = self.data_bytes + Self::node_size(path, &data) - Self::node_size(path, &root.data);
            (root.data, root.acl, root.stat) = (data, acl, stat);
            return;
        }
        let parent_path = path::parent(path);
        let parent = match &self.restore_parent {
            Some((p, id)) if **p == *parent_path => *id,
            _ => {
                let Some(id) = self.id_of(parent_path) else {
                    self.orphans += 1;
                    return;
                };
                self.restore_parent = Some((parent_path.into(), id));
                id
            }
        };
        self.data_bytes += Self::node_size(path, &data);
        if let Err((id, new)) = self.add_child(parent, path, Node { data, acl, stat, children: Children::default() }) {
            let node = slot_mut(&mut self.slots, id);
            self.data_bytes -= Self::node_size(path, &node.data);
            (node.data, node.acl, node.stat) = (new.data, new.acl, new.stat);
        }
    }

    /// Links `node` at `path` under `parent` (its parent's id) with one
    /// descent of the parent's children. If the node exists, its id is
    /// returned with `node`, and nothing changes.
    fn add_child(&mut self, parent: NodeId, path: &str, node: Node) -> Result<NodeId, (NodeId, Box<Node>)> {
        // The id `alloc` hands out next is linked first.
        let next = self.free.last().copied().unwrap_or_else(|| NodeId::try_from(self.slots.len()).expect("fewer than 2^32 znodes"));
        match slot_mut(&mut self.slots, parent).children.0.entry(path::name(path).into()) {
            btree_map::Entry::Occupied(e) => return Err((*e.get(), Box::new(node))),
            btree_map::Entry::Vacant(e) => {
                e.insert(next);
            }
        }
        self.index.insert(path.into(), next);
        let id = self.alloc(node);
        debug_assert_eq!(id, next);
        Ok(id)
    }

    /// Rebuilds the ephemeral/container/TTL and quota indexes and the digest
    /// after nodes were restored from a snapshot. Returns how many nodes were
    /// skipped for want of a parent.
    pub fn finish_restore(&mut self) -> u64 {
        self.restore_parent = None;
        // One walk finds the owned nodes and sums the digest.
        let (mut owned, mut digest) = (Vec::new(), 0u64);
        let mut walk = self.walk_after(None);
        while let Some((p, n)) = walk.next_ref() {
            digest = digest.wrapping_add(node_hash(p, n));
            if n.stat.ephemeral_owner != 0 {
                owned.push((p.to_owned(), n.stat.ephemeral_owner));
            }
        }
        self.ephemerals.clear();
        self.containers.clear();
        self.ttls.clear();
        for (p, o) in owned {
            if o == owner::CONTAINER {
                self.containers.insert(p);
            } else if owner::ttl_of(o).is_some() {
                self.ttls.insert(p);
            } else {
                self.ephemerals.entry(o).or_default().insert(p);
            }
        }
        self.digest = digest;
        self.setup_quotas();
        std::mem::take(&mut self.orphans)
    }

    /// The quota'd path that governs `path`, if any (`getMaxPrefixWithQuota`).
    pub fn quota_prefix(&self, path: &str) -> Option<String> {
        self.quotas.max_prefix(path)
    }

    /// Every quota'd path.
    pub fn quota_paths(&self) -> impl Iterator<Item = &String> {
        self.quotas.iter()
    }

    /// Replaces a node's data outside any transaction (quota stats): its Stat
    /// stays, as ZooKeeper rewrites `DataNode.data` only.
    fn rewrite_data(&mut self, path: &str, data: Vec<u8>) {
        let Some(id) = self.id_of(path) else { return };
        let node = slot_mut(&mut self.slots, id);
        let before = node_hash(path, node);
        let new_data = Some(data.into_boxed_slice());
        self.data_bytes = self.data_bytes + Self::node_size(path, &new_data) - Self::node_size(path, &node.data);
        node.data = new_data;
        self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(path, node));
        self.note_change(path);
    }

    /// `updateQuotaStat`: adds the change to the stats node of the quota that
    /// governs `path`. An unreadable stats node is left alone (ZooKeeper would throw).
    fn update_quota_usage(&mut self, path: &str, bytes_diff: i64, count_diff: i64) {
        let Some(prefix) = self.quotas.max_prefix(path) else { return };
        let stat_path = quota::stat_path(&prefix);
        let Some(node) = self.get(&stat_path) else { return };
        let Ok(mut usage) = StatsTrack::parse(node.data().unwrap_or_default()) else { return };
        usage.set_count(usage.count() + count_diff);
        usage.set_bytes(usage.bytes() + bytes_diff);
        self.rewrite_data(&stat_path, usage.to_bytes());
    }

    /// `updateQuotaForPath`: the stats node of `path` set to the node count and
    /// data bytes of its subtree, the node itself included.
    fn recount_quota(&mut self, path: &str) {
        let (mut count, mut bytes) = (0i64, 0i64);
        let mut stack = vec![path.to_owned()];
        while let Some(p) = stack.pop() {
            let Some(node) = self.get(&p) else { continue };
            count += 1;
            bytes += node.data.as_ref().map_or(0, |d| d.len() as i64);
            stack.extend(node.children.iter().map(|c| path::child(&p, c)));
        }
        let stat_path = quota::stat_path(path);
        if self.id_of(&stat_path).is_some() {
            self.rewrite_data(&stat_path, StatsTrack::usage(count, bytes).to_bytes());
        }
    }

    /// `setupQuota` after a snapshot load: every leaf `.../zookeeper_limits`
    /// under /zookeeper/quota names a quota'd path, whose stats are recounted.
    fn setup_quotas(&mut self) {
        self.quotas.clear();
        let suffix = format!("/{}", quota::LIMIT_NODE);
        let prefix = format!("{QUOTA}/");
        let mut limits = Vec::new();
        let mut walk = self.walk_after(Some(QUOTA));
        while let Some((p, n)) = walk.next_ref() {
            if !p.starts_with(&prefix) {
                break;
            }
            if n.children.is_empty() && p.ends_with(&suffix) {
                limits.push(p[QUOTA.len()..p.find(&suffix).unwrap()].to_string());
            }
        }
        for real in limits {
            self.recount_quota(&real);
            self.quotas.add(&real);
        }
    }
}

fn slot_mut(slots: &mut Slots, id: NodeId) -> &mut Node {
    slots[id as usize].as_mut().expect("a linked node id names a live slot")
}

/// Node slots in pages of a fixed size. Growing never moves a node: no copy
/// of the whole table and no second table beside it while a big tree grows
/// or loads, and a page is only touched as far as it is filled.
#[derive(Clone, Default)]
struct Slots {
    pages: Vec<Vec<Option<Node>>>,
}

const SLOTS_PER_PAGE: usize = 1024;

impl Slots {
    fn len(&self) -> usize {
        self.pages.last().map_or(0, |last| (self.pages.len() - 1) * SLOTS_PER_PAGE + last.len())
    }

    fn push(&mut self, slot: Option<Node>) {
        match self.pages.last_mut() {
            Some(last) if last.len() < SLOTS_PER_PAGE => last.push(slot),
            // The first page grows as needed (small trees stay small), later ones are allocated whole.
            last => {
                let mut page = if last.is_none() { Vec::new() } else { Vec::with_capacity(SLOTS_PER_PAGE) };
                page.push(slot);
                self.pages.push(page);
            }
        }
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = Option<Node>;
    fn index(&self, i: usize) -> &Option<Node> {
        &self.pages[i / SLOTS_PER_PAGE][i % SLOTS_PER_PAGE]
    }
}

impl std::ops::IndexMut<usize> for Slots {
    fn index_mut(&mut self, i: usize) -> &mut Option<Node> {
        &mut self.pages[i / SLOTS_PER_PAGE][i % SLOTS_PER_PAGE]
    }
}

/// A depth-first walk that builds each path in one buffer.
struct Walk<'a> {
    tree: &'a DataTree,
    path: String,
    /// Per level: the parent's path length in `path`, and its children left to visit.
    stack: Vec<(usize, btree_map::Range<'a, CompactString, NodeId>)>,
    root_pending: bool,
}

impl<'a> Walk<'a> {
    fn next_ref(&mut self) -> Option<(&str, &'a Node)> {
        if std::mem::take(&mut self.root_pending) {
            let root = self.tree.node(ROOT_ID);
            self.stack.push((0, root.children.all()));
            return Some((ROOT, root));
        }
        loop {
            let (base, children) = self.stack.last_mut()?;
            let Some((name, &id)) = children.next() else {
                self.stack.pop();
                continue;
            };
            self.path.truncate(*base);
            self.path.push('/');
            self.path.push_str(name);
            let node = self.tree.node(id);
            self.stack.push((self.path.len(), node.children.all()));
            return Some((&self.path, node));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with(paths: &[&str]) -> DataTree {
        let mut t = DataTree::new();
        for (i, p) in paths.iter().enumerate() {
            let parent_cv = t.get(path::parent(p)).unwrap().stat.cversion + 1;
            t.create(p, Some(b"d".to_vec()), vec![Acl::world_all()], 0, parent_cv, i as i64 + 1, 100, &mut Vec::new()).unwrap();
        }
        t
    }

    #[test]
    fn digest_follows_every_change_and_matches_a_recomputation() {
        let mut t = DataTree::new();
        let empty = t.digest();
        let mut tr = Vec::new();
        t.create("/a", Some(b"x".to_vec()), vec![Acl::world_all()], 0, 1, 5, 1, &mut tr).unwrap();
        t.create("/a/b", None, vec![Acl::world_all()], 7, 1, 6, 2, &mut tr).unwrap();
        assert_ne!(t.digest(), empty);
        assert_eq!(t.digest(), t.compute_digest());
        let before = t.digest();
        t.set_data("/a", Some(b"y".to_vec()), 1, 7, 3, &mut tr).unwrap();
        assert_ne!(t.digest(), before, "data is part of the digest");
        t.set_acl("/a/b", vec![Acl::world_all()], 1).unwrap();
        assert_eq!(t.create("/a/b", None, vec![], 0, 2, 8, 4, &mut tr), Err(Code::NodeExists));
        t.delete("/a/b", 9, &mut tr).unwrap();
        assert_eq!(t.digest(), t.compute_digest());
        // Two trees built by the same changes agree; a different change does not.
        let mut u = DataTree::new();
        u.create("/a", Some(b"x".to_vec()), vec![Acl::world_all()], 0, 1, 5, 1, &mut tr).unwrap();
        let mut v = DataTree::new();
        v.create("/a", Some(b"z".to_vec()), vec![Acl::world_all()], 0, 1, 5, 1, &mut tr).unwrap();
        assert_ne!(u.digest(), v.digest());
    }

    #[test]
    fn starts_like_zookeeper() {
        let t = DataTree::new();
        let root = t.get("/").unwrap().stat();
        assert_eq!((root.num_children, root.cversion), (1, -1));
        assert_eq!(t.get("/zookeeper").unwrap().stat().cversion, -2);
        assert_eq!(t.node_count(), 4);
    }

    #[test]
    fn create_updates_parent_and_reports_triggers() {
        let mut t = DataTree::new();
        let mut trig = Vec::new();
        let stat = t.create("/a", None, vec![Acl::world_all()], 0, 1, 7, 1000, &mut trig).unwrap();
        assert_eq!((stat.czxid, stat.mzxid, stat.pzxid, stat.ctime, stat.data_length), (7, 7, 7, 1000, 0));
        assert_eq!(trig, vec![("/a".into(), event::NODE_CREATED), ("/".into(), event::NODE_CHILDREN_CHANGED)]);
        let root = t.get("/").unwrap();
        assert_eq!(root.stat.pzxid, 7);
        assert_eq!(root.stat().num_children, 2);
        assert_eq!(t.create("/a", None, vec![], 0, 2, 8, 0, &mut trig), Err(Code::NodeExists));
        assert_eq!(t.create("/x/y", None, vec![], 0, 1, 8, 0, &mut trig), Err(Code::NoNode));
    }

    #[test]
    fn visible_cversion_counts_creates_and_deletes() {
        let mut t = tree_with(&["/p", "/p/a", "/p/b"]);
        assert_eq!(t.get("/p").unwrap().stat().cversion, 2);
        t.delete("/p/a", 10, &mut Vec::new()).unwrap();
        let p = t.get("/p").unwrap();
        assert_eq!((p.stat().cversion, p.stat.cversion, p.stat.pzxid), (3, 2, 10));
    }

    #[test]
    fn ephemeral_container_and_ttl_indexes() {
        let mut t = DataTree::new();
        let mut trig = Vec::new();
        t.create("/e", None, vec![Acl::world_all()], 42, 1, 1, 0, &mut trig).unwrap();
        t.create("/c", None, vec![Acl::world_all()], owner::CONTAINER, 2, 2, 0, &mut trig).unwrap();
        let s = t.create("/t", None, vec![Acl::world_all()], owner::ttl(500), 3, 3, 0, &mut trig).unwrap();
        assert_eq!(s.ephemeral_owner, 0, "TTL owners read as 0");
        assert_eq!(t.get("/e").unwrap().stat().ephemeral_owner, 42);
        assert_eq!(t.ephemerals_of(42), vec!["/e".to_string()]);
        assert_eq!(t.containers().count(), 1);
        assert_eq!(t.ttl_nodes().count(), 1);
        for p in ["/e", "/c", "/t"] {
            t.delete(p, 9, &mut trig).unwrap();
        }
        assert!(t.ephemerals_of(42).is_empty());
        assert_eq!(t.containers().count() + t.ttl_nodes().count(), 0);
    }

    #[test]
    fn set_data_tracks_size_and_acl_is_interned() {
        let mut t = tree_with(&["/a", "/b"]);
        let before = t.approximate_data_size();
        t.set_data("/a", Some(vec![0; 10]), 1, 5, 200, &mut Vec::new()).unwrap();
        assert_eq!(t.approximate_data_size(), before + 9);
        assert!(Arc::ptr_eq(&t.get("/a").unwrap().acl, &t.get("/b").unwrap().acl));
        assert_eq!(t.descendant_count("/"), 5);
    }

    fn mk(t: &mut DataTree, path: &str, data: &[u8], zxid: i64) {
        let parent_cv = t.get(path::parent(path)).unwrap().stat.cversion + 1;
        t.create(path, Some(data.to_vec()), vec![Acl::world_all()], 0, parent_cv, zxid, 100, &mut Vec::new()).unwrap();
    }

    fn text(t: &DataTree, path: &str) -> String {
        String::from_utf8(t.get(path).unwrap().data().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn quota_stats_follow_creates_sets_and_deletes_without_touching_their_stat() {
        let mut t = DataTree::new();
        mk(&mut t, "/a", b"ab", 1);
        mk(&mut t, "/a/b", b"xyz", 2);
        mk(&mut t, "/ab", b"outside", 3);
        mk(&mut t, "/zookeeper/quota/a", b"", 4);
        mk(&mut t, "/zookeeper/quota/a/zookeeper_limits", b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=3", 5);
        // The stats node's own data is replaced by the subtree's usage, /a included.
        mk(&mut t, "/zookeeper/quota/a/zookeeper_stats", b"count=0,bytes=0", 6);
        assert_eq!(text(&t, "/zookeeper/quota/a/zookeeper_stats"), "count=2,bytes=5");
        assert_eq!(t.quota_prefix("/a/b/c").as_deref(), Some("/a"));
        assert_eq!(t.quota_prefix("/ab"), None);
        mk(&mut t, "/a/b/c", b"hello", 7);
        mk(&mut t, "/ab/x", b"ignored", 8);
        assert_eq!(text(&t, "/zookeeper/quota/a/zookeeper_stats"), "count=3,bytes=10");
        t.set_data("/a/b", Some(b"x".to_vec()), 1, 9, 200, &mut Vec::new()).unwrap();
        assert_eq!(text(&t, "/zookeeper/quota/a/zookeeper_stats"), "count=3,bytes=8");
        t.delete("/a/b/c", 10, &mut Vec::new()).unwrap();
        assert_eq!(text(&t, "/zookeeper/quota/a/zookeeper_stats"), "count=2,bytes=3");
        let stats = t.get("/zookeeper/quota/a/zookeeper_stats").unwrap().stat();
        assert_eq!((stats.mzxid, stats.version, stats.data_length), (6, 0, 15), "only the data changes");
        assert_eq!(t.digest(), t.compute_digest());
        assert_eq!(t.approximate_data_size(), t.nodes_after(None, usize::MAX).map(|(p, n)| DataTree::node_size(&p, &n.data)).sum::<u64>());
        // Deleting the limits node ends the tracking; the stats node stays as it was.
        t.delete("/zookeeper/quota/a/zookeeper_limits", 11, &mut Vec::new()).unwrap();
        mk(&mut t, "/a/d", b"zz", 12);
        assert_eq!(text(&t, "/zookeeper/quota/a/zookeeper_stats"), "count=2,bytes=3");
        assert_eq!(t.quota_prefix("/a"), None);
    }

    #[test]
    fn restore_rebuilds_quota_paths_and_recounts_usage() {
        let mut t = DataTree::new();
        mk(&mut t, "/q", b"1234", 1);
        mk(&mut t, "/q/r", b"5", 2);
        mk(&mut t, "/zookeeper/quota/q", b"", 3);
        mk(&mut t, "/zookeeper/quota/q/zookeeper_limits", b"count=5,bytes=-1", 4);
        mk(&mut t, "/zookeeper/quota/q/zookeeper_stats", b"", 5);
        // A stale stats text, as a fuzzy snapshot may hold: recounted on load.
        t.set_data("/zookeeper/quota/q/zookeeper_stats", Some(b"count=99,bytes=99".to_vec()), 1, 6, 0, &mut Vec::new()).unwrap();
        let mut u = DataTree::new();
        for (p, n) in t.nodes_after(None, usize::MAX) {
            u.restore_node(&p, n.data().map(<[u8]>::to_vec), n.acl.clone(), n.stat);
        }
        u.finish_restore();
        assert_eq!(text(&u, "/zookeeper/quota/q/zookeeper_stats"), "count=2,bytes=5");
        assert_eq!(u.digest(), t.digest(), "stats texts are derived and left out of the digest");
        assert_eq!(u.quota_paths().collect::<Vec<_>>(), vec!["/q"]);
        mk(&mut u, "/q/s", b"", 7);
        assert_eq!(text(&u, "/zookeeper/quota/q/zookeeper_stats"), "count=3,bytes=5");
        assert_eq!(u.digest(), u.compute_digest());
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;

    /// Members compare digests across versions: the value is the checksum
    /// of path, data and each Stat field in turn, however it is computed.
    #[test]
    fn a_nodes_hash_is_the_checksum_of_path_data_and_each_stat_field_in_order() {
        let stat = NodeStat { czxid: 1, mzxid: 2, pzxid: 3, ctime: 4, mtime: -5, ephemeral_owner: 6, version: 7, cversion: -8, aversion: 9 };
        let node = Node { data: Some(b"data".to_vec().into_boxed_slice()), acl: Arc::from(Vec::new()), stat, children: Children::default() };
        let mut crc = crc32c::crc32c_append(crc32c::crc32c(b"/a/b"), b"data");
        for v in [1i64, 2, 3, 4, -5, 6] {
            crc = crc32c::crc32c_append(crc, &v.to_be_bytes());
        }
        for v in [7i32, -8, 9] {
            crc = crc32c::crc32c_append(crc, &v.to_be_bytes());
        }
        assert_eq!(node_hash("/a/b", &node), crc as u64);
    }
}

#[cfg(test)]
mod slots_tests {
    use super::*;

    #[test]
    fn slots_span_pages_and_keep_every_node_where_it_was_put() {
        let node =
            |v: i32| Some(Node { data: None, acl: Arc::from(Vec::new()), stat: NodeStat { version: v, ..NodeStat::default() }, children: Children::default() });
        let mut slots = Slots::default();
        let n = 2 * SLOTS_PER_PAGE + 5;
        for i in 0..n {
            slots.push(node(i as i32));
            assert_eq!(slots.len(), i + 1);
        }
        assert_eq!(slots.pages.len(), 3);
        assert!(slots.pages[1..].iter().all(|p| p.capacity() == SLOTS_PER_PAGE), "later pages never grow");
        for i in [0, SLOTS_PER_PAGE - 1, SLOTS_PER_PAGE, n - 1] {
            assert_eq!(slots[i].as_ref().unwrap().stat.version, i as i32);
        }
        slots[SLOTS_PER_PAGE] = None;
        assert!(slots[SLOTS_PER_PAGE].is_none() && slots[SLOTS_PER_PAGE + 1].is_some());
    }

    #[test]
    fn a_tree_of_several_pages_finds_frees_and_reuses_its_nodes() {
        let mut t = DataTree::new();
        let n = 3 * SLOTS_PER_PAGE;
        for i in 0..n {
            t.create(&format!("/n{i}"), Some(i.to_string().into_bytes()), vec![Acl::world_all()], 0, i as i32 + 1, i as i64 + 1, 0, &mut Vec::new()).unwrap();
        }
        for i in (0..n).step_by(7) {
            assert_eq!(t.get(&format!("/n{i}")).unwrap().data(), Some(i.to_string().as_bytes()));
        }
        let slots = t.slots.len();
        t.delete(&format!("/n{}", SLOTS_PER_PAGE + 3), n as i64 + 1, &mut Vec::new()).unwrap();
        t.create("/again", None, vec![Acl::world_all()], 0, n as i32 + 1, n as i64 + 2, 0, &mut Vec::new()).unwrap();
        assert_eq!(t.slots.len(), slots, "the freed slot is reused");
        assert!(t.get("/again").is_some() && t.get(&format!("/n{}", SLOTS_PER_PAGE + 3)).is_none());
        assert_eq!(t.digest(), t.compute_digest());
    }
}

#[cfg(test)]
mod walk_tests {
    use super::*;

    fn tree(paths: &[&str]) -> DataTree {
        let mut t = DataTree::new();
        for (i, p) in paths.iter().enumerate() {
            t.create(p, Some(p.as_bytes().to_vec()), vec![Acl::world_all()], 0, 1, i as i64 + 1, 0, &mut Vec::new()).unwrap();
        }
        t
    }

    fn paths(t: &DataTree, after: Option<&str>) -> Vec<String> {
        t.nodes_after(after, usize::MAX).map(|(p, _)| p).collect()
    }

    #[test]
    fn walks_depth_first_with_each_subtree_contiguous() {
        let t = tree(&["/a", "/a-x", "/a/b", "/a/b/c", "/b"]);
        let all = paths(&t, None);
        assert_eq!(all, ["/", "/a", "/a/b", "/a/b/c", "/a-x", "/b", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"]);
        assert_eq!(all.len(), t.node_count());
        // Resuming after any node gives the rest of the same order.
        for (i, p) in all.iter().enumerate() {
            assert_eq!(paths(&t, Some(p)), all[i + 1..], "after {p}");
        }
    }

    #[test]
    fn resumes_after_a_path_that_no_longer_exists() {
        let mut t = tree(&["/a", "/a/b", "/a/b/c", "/a/d", "/e"]);
        t.delete("/a/b/c", 10, &mut Vec::new()).unwrap();
        t.delete("/a/b", 11, &mut Vec::new()).unwrap();
        assert_eq!(paths(&t, Some("/a/b/c")), ["/a/d", "/e", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"]);
        assert_eq!(paths(&t, Some("/a/b")), paths(&t, Some("/a/b/c")));
        assert_eq!(paths(&t, Some("/a/a")), paths(&t, Some("/a/b/c")), "a name that never existed");
        assert_eq!(paths(&t, Some("/zz/y")), Vec::<String>::new());
        assert_eq!(paths(&t, Some("/zookeeper/quota")), Vec::<String>::new());
    }

    #[test]
    fn a_chunked_walk_sees_every_node_that_lives_throughout_exactly_once() {
        let mut t = DataTree::new();
        let mut zxid = 1;
        let mut mk = |t: &mut DataTree, p: &str| {
            zxid += 1;
            t.create(p, None, vec![Acl::world_all()], 0, 1, zxid, 0, &mut Vec::new()).unwrap();
        };
        for i in 0..20 {
            mk(&mut t, &format!("/n{i:02}"));
            mk(&mut t, &format!("/n{i:02}/c"));
        }
        let stable: Vec<String> = paths(&t, None).into_iter().filter(|p| !p.starts_with("/n0")).collect();
        let (mut seen, mut cursor, mut round) = (Vec::new(), None::<String>, 0);
        loop {
            let chunk: Vec<String> = t.nodes_after(cursor.as_deref(), 3).map(|(p, _)| p).collect();
            let Some(last) = chunk.last().cloned() else { break };
            seen.extend(chunk);
            cursor = Some(last);
            // Between chunks the tree changes: the /n0x subtrees go and new ones come.
            round += 1;
            if round <= 10 {
                let victim = format!("/n{:02}", round - 1);
                t.delete(&format!("{victim}/c"), 100 + round, &mut Vec::new()).unwrap();
                t.delete(&victim, 100 + round, &mut Vec::new()).unwrap();
                mk(&mut t, &format!("/m{round:02}"));
            }
        }
        for p in &stable {
            assert_eq!(seen.iter().filter(|s| *s == p).count(), 1, "{p} in {seen:?}");
        }
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "no node twice");
    }

    #[test]
    fn restore_skips_a_node_without_parent_and_says_so() {
        let mut t = DataTree::new();
        let open = t.intern_acl(vec![Acl::world_all()]);
        t.restore_node("/a", Some(b"x".to_vec()), open.clone(), NodeStat { czxid: 3, ..Default::default() });
        t.restore_node("/lost/child", None, open.clone(), NodeStat::default());
        t.restore_node("/a/b", None, open.clone(), NodeStat { ephemeral_owner: 9, ..Default::default() });
        assert_eq!(t.finish_restore(), 1);
        assert!(t.get("/lost/child").is_none());
        assert_eq!(t.node_count(), 6);
        assert_eq!(t.get("/a").unwrap().children.iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(t.ephemerals_of(9), ["/a/b"]);
        assert_eq!(t.approximate_data_size(), t.nodes_after(None, usize::MAX).map(|(p, n)| DataTree::node_size(&p, &n.data)).sum::<u64>());
        // Restoring a node again replaces it in place and keeps its children.
        t.restore_node("/a", Some(b"yz".to_vec()), open, NodeStat::default());
        assert_eq!((t.get("/a").unwrap().data(), t.get("/a").unwrap().children.len()), (Some(&b"yz"[..]), 1));
        assert_eq!(t.finish_restore(), 0);
    }

    #[test]
    fn deleting_a_parent_frees_what_is_left_below_it() {
        let mut t = tree(&["/a", "/a/b", "/a/b/c"]);
        t.create("/a/e", None, vec![Acl::world_all()], 77, 1, 9, 0, &mut Vec::new()).unwrap();
        let before = t.node_count();
        t.delete("/a", 20, &mut Vec::new()).unwrap();
        assert_eq!(t.node_count(), before - 4);
        assert!(t.ephemerals_of(77).is_empty());
        assert_eq!(t.digest(), t.compute_digest());
        // Freed slots are reused.
        let slots = t.slots.len();
        let _ = tree(&[]);
        t.create("/z", None, vec![Acl::world_all()], 0, 1, 21, 0, &mut Vec::new()).unwrap();
        assert_eq!(t.slots.len(), slots);
    }

    /// The path index names exactly the nodes linked in the tree, each to its node.
    fn assert_index_matches_links(t: &DataTree) {
        let mut walked = 0;
        let mut walk = t.walk_after(None);
        while let Some((p, n)) = walk.next_ref() {
            walked += 1;
            assert!(t.get(p).is_some_and(|found| std::ptr::eq(found, n)), "{p} is found as the node linked there");
        }
        assert_eq!(walked, t.node_count());
        assert_eq!(t.index.len() + 1, t.node_count(), "one entry per node but the root, none left over");
    }

    #[test]
    fn the_path_index_follows_creates_deletes_of_subtrees_reuse_and_restores() {
        let mut t = tree(&["/a", "/a/b", "/a/b/c", "/a/d", "/x", "/x/a"]);
        assert_index_matches_links(&t);
        t.delete("/a", 20, &mut Vec::new()).unwrap();
        assert_index_matches_links(&t);
        assert!(t.get("/a/b/c").is_none() && t.get("/a/d").is_none() && t.get("/x/a").is_some());
        // Freed slots are reused under other paths; the old paths stay gone.
        t.create("/y", None, vec![Acl::world_all()], 0, 2, 21, 0, &mut Vec::new()).unwrap();
        t.create("/y/b", None, vec![Acl::world_all()], 0, 1, 22, 0, &mut Vec::new()).unwrap();
        assert_index_matches_links(&t);
        assert!(t.get("/a/b").is_none());
        assert_eq!(t.create("/y", None, vec![Acl::world_all()], 0, 3, 23, 0, &mut Vec::new()), Err(Code::NodeExists));
        assert_index_matches_links(&t);
        // A restore, a node given twice (a fuzzy snapshot) and one without its parent.
        let mut r = DataTree::new();
        let acl = r.intern_acl(vec![Acl::world_all()]);
        for p in ["/y", "/y/b", "/y/b", "/x", "/gone/child"] {
            r.restore_node(p, None, acl.clone(), NodeStat::default());
        }
        r.finish_restore();
        assert_index_matches_links(&r);
        assert!(r.get("/y/b").is_some() && r.get("/gone/child").is_none());
    }
}
