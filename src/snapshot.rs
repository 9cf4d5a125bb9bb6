//! Snapshot format: a header, then checksummed records (`record.rs`) holding
//! MessagePack items — Begin (zxid + session table), ACL tables, node chunks,
//! End. A snapshot is fuzzy: nodes are written in path-order chunks while the
//! tree keeps changing, and replaying the log from `Begin.zxid + 1` makes the
//! loaded tree exact (every txn applies idempotently over a newer node).

use crate::database::Database;
use crate::proto::Acl;
use crate::record::{self, RecordReader};
use crate::tree::{DataTree, NodeStat};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

pub const MAGIC: &[u8; 8] = b"WRDNSNP1";

/// About what a node's Stat and framing add to its path and data when encoded.
const NODE_OVERHEAD_BYTES: usize = 80;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub path: String,
    #[serde(with = "serde_bytes")]
    pub data: Option<Vec<u8>>,
    /// Index into the ACL tables written before this node.
    pub acl: u32,
    pub stat: NodeStat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapItem {
    Begin {
        zxid: i64,
        sessions: Vec<(i64, i32)>,
        /// Sessions ZooKeeper created (their passwords are ZooKeeper's); absent in older snapshots.
        #[serde(default)]
        zookeeper_sessions: Vec<i64>,
    },
    Acls(Vec<(u32, Vec<Acl>)>),
    Nodes(Vec<NodeRecord>),
    End {
        nodes: u64,
    },
}

fn frame(item: &SnapItem, out: &mut Vec<u8>) {
    record::encode(&rmp_serde::to_vec(item).expect("snapshot items always serialize"), out);
}

/// Produces a snapshot chunk by chunk, resuming after the last path written.
pub struct SnapshotWriter {
    pub zxid: i64,
    last_path: Option<String>,
    acl_ids: HashMap<Vec<Acl>, u32>,
    nodes: u64,
    done: bool,
}

impl SnapshotWriter {
    /// Starts a snapshot of `db` as it is now; returns the first bytes to write.
    pub fn begin(db: &Database) -> (SnapshotWriter, Vec<u8>) {
        let mut out = MAGIC.to_vec();
        let sessions = db.sessions().iter().map(|(k, v)| (*k, *v)).collect();
        let zookeeper_sessions = db.zookeeper_sessions().iter().copied().collect();
        frame(&SnapItem::Begin { zxid: db.last_zxid(), sessions, zookeeper_sessions }, &mut out);
        let w = SnapshotWriter { zxid: db.last_zxid(), last_path: None, acl_ids: HashMap::new(), nodes: 0, done: false };
        (w, out)
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Every ACL numbered so far, by the number its nodes carry.
    pub fn acl_table(&self) -> Vec<(u32, Vec<Acl>)> {
        let mut table: Vec<_> = self.acl_ids.iter().map(|(acl, id)| (*id, acl.clone())).collect();
        table.sort_unstable_by_key(|(id, _)| *id);
        table
    }

    /// The next up-to-`max_nodes` nodes as framed bytes; after the last node,
    /// the End record (then `is_done`).
    pub fn next_chunk(&mut self, tree: &DataTree, max_nodes: usize) -> Vec<u8> {
        encode_items(&self.next_items(tree, max_nodes, usize::MAX))
    }

    /// The next items, unencoded: copying nodes out is all that must happen
    /// where the tree lives; encoding can happen on another thread. Stops
    /// after `max_nodes` nodes or once about `max_bytes` are copied (at
    /// least one node), so a chunk's size does not depend on the tree's.
    pub fn next_items(&mut self, tree: &DataTree, max_nodes: usize, max_bytes: usize) -> Vec<SnapItem> {
        let mut out = Vec::new();
        let mut new_acls = Vec::new();
        let mut nodes = Vec::with_capacity(max_nodes.min(4096));
        let mut bytes = 0usize;
        for (path, node) in tree.nodes_after(self.last_path.as_deref(), max_nodes) {
            if bytes >= max_bytes {
                break;
            }
            bytes += path.len() + node.data.as_ref().map_or(0, |d| d.len()) + NODE_OVERHEAD_BYTES;
            let next_id = self.acl_ids.len() as u32;
            let acl = *self.acl_ids.entry(node.acl.to_vec()).or_insert_with(|| {
                new_acls.push((next_id, node.acl.to_vec()));
                next_id
            });
            nodes.push(NodeRecord { path: path.to_owned(), data: node.data.as_ref().map(|d| d.to_vec()), acl, stat: node.stat });
        }
        if !new_acls.is_empty() {
            out.push(SnapItem::Acls(new_acls));
        }
        match nodes.last() {
            Some(last) => {
                self.last_path = Some(last.path.clone());
                self.nodes += nodes.len() as u64;
                out.push(SnapItem::Nodes(nodes));
            }
            None => {
                out.push(SnapItem::End { nodes: self.nodes });
                self.done = true;
            }
        }
        out
    }
}

/// The whole database as one snapshot file's bytes (a leader's SNAP to a
/// learner: taken between transactions, so not fuzzy).
pub fn encode_all(db: &Database) -> Vec<u8> {
    let mut out = Vec::new();
    write_all(db, &mut out).expect("writing to memory cannot fail");
    out
}

/// The whole database as a snapshot written to `out` chunk by chunk, so
/// memory holds one chunk, not an encoded copy of the tree.
pub fn write_all(db: &Database, mut out: impl std::io::Write) -> std::io::Result<()> {
    let (mut w, header) = SnapshotWriter::begin(db);
    out.write_all(&header)?;
    while !w.is_done() {
        out.write_all(&w.next_chunk(&db.tree, 10_000))?;
    }
    out.flush()
}

/// Frames items as snapshot records.
pub fn encode_items(items: &[SnapItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        frame(item, &mut out);
    }
    out
}

/// Why a snapshot cannot be used; `offset` is the byte where reading failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotError {
    pub offset: usize,
    pub reason: String,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

pub struct LoadedSnapshot {
    /// The last zxid applied when the snapshot began; replay starts after it.
    pub zxid: i64,
    pub db: Database,
    pub nodes: u64,
    /// Nodes skipped for want of a parent (see `DataTree::restore_node`).
    pub skipped: u64,
}

/// Reads and fully verifies a snapshot.
pub fn load(bytes: &[u8]) -> Result<LoadedSnapshot, SnapshotError> {
    load_from(bytes)
}

/// Reads and fully verifies a snapshot from a stream (a file), holding one
/// record at a time besides the tree it builds.
pub fn load_from(mut input: impl std::io::Read) -> Result<LoadedSnapshot, SnapshotError> {
    let fail = |offset, reason: String| SnapshotError { offset, reason };
    let mut magic = [0u8; MAGIC.len()];
    if input.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(fail(0, "not a Warden snapshot (bad magic)".into()));
    }
    let mut records = RecordReader::new(input, MAGIC.len());
    let mut tree = DataTree::new();
    let mut acls: HashMap<u32, Arc<[Acl]>> = HashMap::new();
    // The Begin record: zxid, sessions, sessions ZooKeeper created.
    type Begin = (i64, Vec<(i64, i32)>, Vec<i64>);
    let mut begin: Option<Begin> = None;
    let mut count = 0u64;
    while let Some((offset, payload)) = records.next_record().map_err(|b| fail(b.offset, b.reason))? {
        let item: SnapItem = rmp_serde::from_slice(payload).map_err(|e| fail(offset, format!("undecodable item: {e}")))?;
        match (item, &begin) {
            (SnapItem::Begin { zxid, sessions, zookeeper_sessions }, None) => begin = Some((zxid, sessions, zookeeper_sessions)),
            (SnapItem::Begin { .. }, Some(_)) => return Err(fail(offset, "second Begin record".into())),
            (_, None) => return Err(fail(offset, "record before Begin".into())),
            (SnapItem::Acls(list), _) => acls.extend(list.into_iter().map(|(id, acl)| (id, tree.intern_acl(acl)))),
            (SnapItem::Nodes(nodes), _) => {
                for n in nodes {
                    let acl = acls.get(&n.acl).cloned().ok_or_else(|| fail(offset, format!("node {} names unknown ACL {}", n.path, n.acl)))?;
                    tree.restore_node(&n.path, n.data, acl, n.stat);
                    count += 1;
                }
            }
            (SnapItem::End { nodes }, Some((zxid, sessions, from_zookeeper))) => {
                if nodes != count {
                    return Err(fail(offset, format!("End says {nodes} nodes, found {count}")));
                }
                let skipped = tree.finish_restore();
                let mut db = Database::restore(tree, sessions.iter().copied(), *zxid);
                db.mark_sessions_from_zookeeper(from_zookeeper.iter().copied());
                return Ok(LoadedSnapshot { zxid: *zxid, db, nodes: count - skipped, skipped });
            }
        }
    }
    Err(fail(records.position(), "snapshot ends without its End record (incomplete)".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Id;
    use crate::txn::{Txn, TxnHeader};

    fn db_with(n: usize) -> Database {
        let mut db = Database::default();
        let mut zxid = 0;
        let mut apply = |db: &mut Database, txn: Txn| {
            zxid += 1;
            db.apply(&TxnHeader { session_id: 5, cxid: 0, zxid, time_ms: 1 }, &txn, &mut Vec::new());
        };
        apply(&mut db, Txn::CreateSession { timeout_ms: 4000 });
        let secret = vec![Acl { perms: 1, id: Id::new("digest", "u:x") }];
        for i in 0..n {
            let acl = if i % 2 == 0 { vec![Acl::world_all()] } else { secret.clone() };
            apply(
                &mut db,
                Txn::Create {
                    path: format!("/n{i:04}"),
                    data: Some(vec![i as u8; 3]),
                    acl,
                    ephemeral_owner: if i == 3 { 5 } else { 0 },
                    parent_cversion: i as i32 + 1,
                },
            );
        }
        db
    }

    fn write_all(db: &Database, chunk: usize) -> Vec<u8> {
        let (mut w, mut bytes) = SnapshotWriter::begin(db);
        while !w.is_done() {
            bytes.extend(w.next_chunk(&db.tree, chunk));
        }
        bytes
    }

    #[test]
    fn round_trip_restores_tree_sessions_and_indexes() {
        let db = db_with(25);
        let bytes = write_all(&db, 7);
        let loaded = load(&bytes).unwrap();
        assert_eq!(loaded.zxid, db.last_zxid());
        assert_eq!(loaded.db.tree.node_count(), db.tree.node_count());
        assert_eq!(loaded.db.session_timeout(5), Some(4000));
        for p in ["/", "/n0003", "/n0010", "/zookeeper/config"] {
            let (a, b) = (db.tree.get(p).unwrap(), loaded.db.tree.get(p).unwrap());
            assert_eq!(a.stat(), b.stat(), "{p}");
            assert_eq!(a.acl, b.acl, "{p}");
            assert_eq!(a.data, b.data, "{p}");
        }
        assert_eq!(loaded.db.tree.ephemerals_of(5), vec!["/n0003".to_string()]);
        assert_eq!(loaded.db.tree.approximate_data_size(), db.tree.approximate_data_size());
    }

    #[test]
    fn snapshots_from_before_zookeeper_sessions_still_load() {
        #[derive(Serialize)]
        enum OldItem {
            Begin { zxid: i64, sessions: Vec<(i64, i32)> },
        }
        let bytes = rmp_serde::to_vec(&OldItem::Begin { zxid: 9, sessions: vec![(5, 4000)] }).unwrap();
        let item: SnapItem = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(item, SnapItem::Begin { zxid: 9, sessions: vec![(5, 4000)], zookeeper_sessions: vec![] });
        let mut db = db_with(3);
        db.mark_sessions_from_zookeeper([5]);
        let loaded = load(&write_all(&db, 2)).unwrap();
        assert!(loaded.db.is_zookeeper_session(5));
        assert!(!loaded.db.is_zookeeper_session(6));
    }

    #[test]
    fn incomplete_or_damaged_snapshots_are_refused_with_an_offset() {
        let bytes = write_all(&db_with(10), 4);
        let err = load(&bytes[..bytes.len() - 3]).err().unwrap();
        assert!(err.reason.contains("past the end") || err.reason.contains("without"), "{err}");
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        let err = load(&flipped).err().unwrap();
        assert!(err.offset > 0 && err.offset <= 40, "{err}");
        assert!(load(b"garbage!").is_err());
    }

    #[test]
    fn fuzzy_snapshot_plus_replay_equals_the_live_tree() {
        // Changes made between chunks are covered by replaying the log.
        let mut db = db_with(10);
        let (mut w, mut bytes) = SnapshotWriter::begin(&db);
        bytes.extend(w.next_chunk(&db.tree, 6));
        let mut log = Vec::new();
        let first = db.last_zxid() + 1;
        for (zxid, txn) in (first..).zip([
            Txn::Delete { path: "/n0001".into() },
            Txn::Create { path: "/n0002/c".into(), data: None, acl: vec![Acl::world_all()], ephemeral_owner: 0, parent_cversion: 1 },
            Txn::SetData { path: "/n0009".into(), data: Some(b"new".to_vec()), version: 1 },
            Txn::Create { path: "/zz".into(), data: None, acl: vec![Acl::world_all()], ephemeral_owner: 0, parent_cversion: 12 },
            Txn::CloseSession { ephemerals: vec!["/n0003".into()] },
        ]) {
            let hdr = TxnHeader { session_id: 5, cxid: 0, zxid, time_ms: 2 };
            db.apply(&hdr, &txn, &mut Vec::new());
            log.push((hdr, txn));
        }
        while !w.is_done() {
            bytes.extend(w.next_chunk(&db.tree, 6));
        }
        let mut loaded = load(&bytes).unwrap();
        for (hdr, txn) in log.iter().filter(|(h, _)| h.zxid > loaded.zxid) {
            loaded.db.apply(hdr, txn, &mut Vec::new());
        }
        assert_eq!(loaded.db.tree.node_count(), db.tree.node_count());
        for (path, node) in db.tree.nodes_after(None, usize::MAX) {
            let got = loaded.db.tree.get(&path).unwrap_or_else(|| panic!("{path} missing"));
            assert_eq!(got.stat(), node.stat(), "{path}");
            assert_eq!(got.data, node.data, "{path}");
        }
        assert_eq!(loaded.db.session_timeout(5), None);
        assert_eq!(loaded.db.last_zxid(), db.last_zxid());
        // A learner compares tree digests with its leader's once it has caught up.
        assert_eq!(loaded.db.tree.digest(), db.tree.digest());
    }

    #[test]
    fn chunks_are_bounded_by_bytes_whatever_the_node_count() {
        let mut db = db_with(0);
        for (zxid, i) in (db.last_zxid() + 1..).zip(0..20) {
            let hdr = TxnHeader { session_id: 5, cxid: 0, zxid, time_ms: 1 };
            let txn =
                Txn::Create { path: format!("/big{i:02}"), data: Some(vec![7; 100_000]), acl: vec![Acl::world_all()], ephemeral_owner: 0, parent_cversion: 1 };
            db.apply(&hdr, &txn, &mut Vec::new());
        }
        let (mut w, mut bytes) = SnapshotWriter::begin(&db);
        let mut chunks = 0;
        while !w.is_done() {
            let chunk = encode_items(&w.next_items(&db.tree, 10_000, 250_000));
            // At most one node past the budget.
            assert!(chunk.len() < 250_000 + 100_000 + 1000, "{}", chunk.len());
            bytes.extend(chunk);
            chunks += 1;
        }
        assert!(chunks >= 7, "2 MB in chunks of 250 kB: {chunks}");
        let loaded = load_from(std::io::BufReader::new(&bytes[..])).unwrap();
        assert_eq!(loaded.db.tree.node_count(), db.tree.node_count());
        assert_eq!(loaded.db.tree.digest(), db.tree.digest());
    }
}
