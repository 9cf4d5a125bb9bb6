//! The data tree (ZooKeeper's `DataTree`): znodes, their persisted stats, and the
//! indexes of ephemerals, containers and TTL nodes. Applying a transaction
//! returns the watch triggers it causes instead of firing them.

use crate::error::{Code, ZkResult};
use crate::path;
use crate::proto::{Acl, Stat};
use crate::quota::{self, QuotaPaths, StatsTrack};
use crate::txn::owner;
use crate::watch::event;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    pub children: BTreeSet<Box<str>>,
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

/// Clone: a backup (the admin `snapshot` command) copies the tree at one zxid.
#[derive(Clone)]
pub struct DataTree {
    /// Ordered, so a fuzzy snapshot can walk it in chunks, resuming after the
    /// last path it wrote while the tree keeps changing in between.
    nodes: BTreeMap<Box<str>, Node>,
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
    for v in [s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime, s.ephemeral_owner] {
        crc = crc32c::crc32c_append(crc, &v.to_be_bytes());
    }
    for v in [s.version, s.cversion, s.aversion] {
        crc = crc32c::crc32c_append(crc, &v.to_be_bytes());
    }
    crc as u64
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
            nodes: BTreeMap::new(),
            ephemerals: HashMap::new(),
            containers: HashSet::new(),
            ttls: HashSet::new(),
            acl_cache: HashMap::new(),
            data_bytes: 0,
            digest: 0,
            quotas: QuotaPaths::default(),
        };
        let open = t.intern_acl(vec![Acl::world_all()]);
        let read_only = t.intern_acl(vec![Acl { perms: crate::proto::perms::READ, ..Acl::world_all() }]);
        for (p, acl) in [(ROOT, &open), (ZOOKEEPER, &open), (QUOTA, &open), (CONFIG, &read_only)] {
            let mut stat = NodeStat::default();
            if p == CONFIG {
                // ZooKeeper sets its ACL with version -1 (ZOOKEEPER-2014).
                stat.aversion = -1;
            }
            let node = Node { data: Some(Box::new([])), acl: acl.clone(), stat, children: BTreeSet::new() };
            t.data_bytes += Self::node_size(p, &node.data);
            t.nodes.insert(p.into(), node);
            if p != ROOT {
                // System nodes are linked in without counting as creates (cversion -1 on /, as ZooKeeper).
                t.nodes.get_mut(path::parent(p)).unwrap().children.insert(path::name(p).into());
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
        self.nodes.iter().fold(0u64, |d, (p, n)| d.wrapping_add(node_hash(p, n)))
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
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
        let Some(node) = self.nodes.get(path) else { return 0 };
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
        if self.nodes.contains_key(path) {
            // Replaying over a fuzzy snapshot that already holds the node: the
            // parent still moves forward, as ZooKeeper's processTxn does.
            if let Some(parent) = self.nodes.get_mut(parent_path) {
                if parent_cversion > parent.stat.cversion {
                    let before = node_hash(parent_path, parent);
                    parent.stat.cversion = parent_cversion;
                    parent.stat.pzxid = zxid;
                    self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(parent_path, parent));
                }
            }
            return Err(Code::NodeExists);
        }
        let acl = self.intern_acl(acl);
        let parent = self.nodes.get_mut(parent_path).ok_or(Code::NoNode)?;
        parent.children.insert(path::name(path).into());
        // Replays may see an older create: only ever move cversion forward.
        if parent_cversion > parent.stat.cversion {
            let before = node_hash(parent_path, parent);
            parent.stat.cversion = parent_cversion;
            parent.stat.pzxid = zxid;
            self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(parent_path, parent));
        }
        let stat = NodeStat { czxid: zxid, mzxid: zxid, pzxid: zxid, ctime: time_ms, mtime: time_ms, ephemeral_owner, ..Default::default() };
        let node = Node { data: data.map(Vec::into_boxed_slice), acl, stat, children: BTreeSet::new() };
        self.data_bytes += Self::node_size(path, &node.data);
        let client_stat = node.stat();
        self.digest = self.digest.wrapping_add(node_hash(path, &node));
        self.nodes.insert(path.into(), node);
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
        let bytes = self.nodes[path].data.as_ref().map_or(0, |d| d.len() as i64);
        self.update_quota_usage(path, bytes, 1);
        triggers.push((path.to_owned(), event::NODE_CREATED));
        triggers.push((parent_path.to_owned(), event::NODE_CHILDREN_CHANGED));
        Ok(client_stat)
    }

    pub fn delete(&mut self, path: &str, zxid: i64, triggers: &mut Vec<Trigger>) -> ZkResult<()> {
        let parent_path = path::parent(path);
        // The parent's pzxid moves even if the child is already gone (replay).
        if let Some(parent) = self.nodes.get_mut(parent_path) {
            parent.children.remove(path::name(path));
            if zxid > parent.stat.pzxid {
                let before = node_hash(parent_path, parent);
                parent.stat.pzxid = zxid;
                self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(parent_path, parent));
            }
        }
        let node = self.nodes.remove(path).ok_or(Code::NoNode)?;
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
        if parent_path.starts_with(ZOOKEEPER) && path::name(path) == quota::LIMIT_NODE {
            if let Some(real) = parent_path.get(QUOTA.len()..) {
                self.quotas.remove(real);
            }
        }
        self.update_quota_usage(path, -(node.data.as_ref().map_or(0, |d| d.len() as i64)), -1);
        triggers.push((path.to_owned(), event::NODE_DELETED));
        triggers.push((parent_path.to_owned(), event::NODE_CHILDREN_CHANGED));
        Ok(())
    }

    pub fn set_data(&mut self, path: &str, data: Option<Vec<u8>>, version: i32, zxid: i64, time_ms: i64, triggers: &mut Vec<Trigger>) -> ZkResult<Stat> {
        let node = self.nodes.get_mut(path).ok_or(Code::NoNode)?;
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
        let node = self.nodes.get_mut(path).ok_or(Code::NoNode)?;
        let before = node_hash(path, node);
        node.acl = acl;
        node.stat.aversion = aversion;
        self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(path, node));
        Ok(node.stat())
    }

    /// Up to `max` nodes in path order strictly after `after` (from the start
    /// when None): the fuzzy snapshot's cursor.
    pub fn nodes_after(&self, after: Option<&str>, max: usize) -> impl Iterator<Item = (&str, &Node)> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.nodes.range::<str, _>((lower, Bound::Unbounded)).take(max).map(|(k, v)| (&**k, v))
    }

    /// Inserts a node read from a snapshot; children links and indexes are
    /// rebuilt by `finish_restore`.
    pub fn restore_node(&mut self, path: &str, data: Option<Vec<u8>>, acl: Vec<Acl>, stat: NodeStat) {
        let acl = self.intern_acl(acl);
        let node = Node { data: data.map(Vec::into_boxed_slice), acl, stat, children: BTreeSet::new() };
        if let Some(old) = self.nodes.insert(path.into(), node) {
            self.data_bytes -= Self::node_size(path, &old.data);
        }
        self.data_bytes += Self::node_size(path, &self.nodes[path].data);
    }

    /// Rebuilds children sets and the ephemeral/container/TTL indexes after
    /// nodes were restored from a snapshot.
    pub fn finish_restore(&mut self) {
        let paths: Vec<(Box<str>, i64)> = self.nodes.iter().map(|(p, n)| (p.clone(), n.stat.ephemeral_owner)).collect();
        self.ephemerals.clear();
        self.containers.clear();
        self.ttls.clear();
        for n in self.nodes.values_mut() {
            n.children.clear();
        }
        for (p, o) in paths {
            if &*p != ROOT {
                if let Some(parent) = self.nodes.get_mut(path::parent(&p)) {
                    parent.children.insert(path::name(&p).into());
                }
            }
            if o == owner::CONTAINER {
                self.containers.insert(p.to_string());
            } else if owner::ttl_of(o).is_some() {
                self.ttls.insert(p.to_string());
            } else if o != 0 {
                self.ephemerals.entry(o).or_default().insert(p.to_string());
            }
        }
        self.setup_quotas();
        self.digest = self.compute_digest();
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
        let Some(node) = self.nodes.get_mut(path) else { return };
        let before = node_hash(path, node);
        let new_data = Some(data.into_boxed_slice());
        self.data_bytes = self.data_bytes + Self::node_size(path, &new_data) - Self::node_size(path, &node.data);
        node.data = new_data;
        self.digest = self.digest.wrapping_sub(before).wrapping_add(node_hash(path, node));
    }

    /// `updateQuotaStat`: adds the change to the stats node of the quota that
    /// governs `path`. An unreadable stats node is left alone (ZooKeeper would throw).
    fn update_quota_usage(&mut self, path: &str, bytes_diff: i64, count_diff: i64) {
        let Some(prefix) = self.quotas.max_prefix(path) else { return };
        let stat_path = quota::stat_path(&prefix);
        let Some(node) = self.nodes.get(&*stat_path) else { return };
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
            let Some(node) = self.nodes.get(&*p) else { continue };
            count += 1;
            bytes += node.data.as_ref().map_or(0, |d| d.len() as i64);
            stack.extend(node.children.iter().map(|c| path::child(&p, c)));
        }
        let stat_path = quota::stat_path(path);
        if self.nodes.contains_key(&*stat_path) {
            self.rewrite_data(&stat_path, StatsTrack::usage(count, bytes).to_bytes());
        }
    }

    /// `setupQuota` after a snapshot load: every leaf `.../zookeeper_limits`
    /// under /zookeeper/quota names a quota'd path, whose stats are recounted.
    fn setup_quotas(&mut self) {
        self.quotas.clear();
        let suffix = format!("/{}", quota::LIMIT_NODE);
        let prefix = format!("{QUOTA}/");
        let limits: Vec<String> = self
            .nodes
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, n)| n.children.is_empty() && p.ends_with(&suffix))
            .map(|(p, _)| p[QUOTA.len()..p.find(&suffix).unwrap()].to_string())
            .collect();
        for real in limits {
            self.recount_quota(&real);
            self.quotas.add(&real);
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
        assert_eq!(t.approximate_data_size(), t.nodes.iter().map(|(p, n)| DataTree::node_size(p, &n.data)).sum::<u64>());
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
            u.restore_node(p, n.data().map(<[u8]>::to_vec), n.acl.to_vec(), n.stat);
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
