//! A consistent backup of a live tree in ZooKeeper's snapshot format, in
//! bounded memory. The tree is walked piece by piece while it keeps changing
//! (a fuzzy Warden snapshot, written to a file), with the tree noting every
//! path a change touches meanwhile. At the walk's end, those paths' current
//! nodes (or their absence) make the `BackupTail`; merging the two in walk
//! order gives exactly the tree at the tail's zxid: a node no change touched
//! was the same all along, so the walk copied it as it is at the end.
//! Memory holds one record and the touched nodes, not the tree.

use super::snap::StreamWriter;
use crate::database::Database;
use crate::proto::Acl;
use crate::record::RecordReader;
use crate::snapshot::{NodeRecord, SnapItem, SnapshotWriter, MAGIC};
use crate::tree::NodeStat;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

/// A node as it is at the walk's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentNode {
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub stat: NodeStat,
}

/// What the walk alone cannot know, taken at its end in one step.
#[derive(Debug, Clone)]
pub struct BackupTail {
    /// The last zxid applied: the backup is the tree at this zxid.
    pub zxid: i64,
    pub sessions: Vec<(i64, i32)>,
    /// The ACLs the walk numbered, by number.
    pub acls: Vec<(u32, Vec<Acl>)>,
    /// Every path a change touched during the walk; None where it is gone.
    pub changed: Vec<(String, Option<CurrentNode>)>,
}

impl BackupTail {
    /// Taken from the live database right after `walk` is done, with the
    /// paths the tree noted since the walk began.
    pub fn take(db: &Database, walk: &SnapshotWriter, changed: HashSet<String>) -> BackupTail {
        let changed = changed
            .into_iter()
            .map(|path| {
                let now = db.tree.get(&path).map(|n| CurrentNode { data: n.data.as_ref().map(|d| d.to_vec()), acl: n.acl.to_vec(), stat: n.stat });
                (path, now)
            })
            .collect();
        BackupTail { zxid: db.last_zxid(), sessions: db.sessions().iter().map(|(k, v)| (*k, *v)).collect(), acls: walk.acl_table(), changed }
    }
}

/// The order of a depth-first walk with children by name: component by
/// component, so "/a/b" comes before "/a-c" (plain string order says otherwise).
pub fn walk_order(a: &str, b: &str) -> Ordering {
    if a == "/" || b == "/" {
        return (a != "/").cmp(&(b != "/"));
    }
    a.split('/').cmp(b.split('/'))
}

/// Writes the backup: `fuzzy` is the walk's Warden snapshot (as
/// `SnapshotWriter` made it), `tail` what was taken at its end. Returns the
/// bytes written.
pub fn write(fuzzy: impl Read, tail: BackupTail, out: impl Write) -> Result<u64, String> {
    let BackupTail { zxid, sessions, acls, mut changed } = tail;
    // ZooKeeper's ACL references: the walk's numbers + 1, then ACLs only touched nodes use.
    let mut ids: HashMap<Vec<Acl>, i64> = HashMap::new();
    let mut table: Vec<(i64, Vec<Acl>)> = Vec::new();
    let mut by_walk_number: HashMap<u32, i64> = HashMap::new();
    for (n, acl) in acls {
        let id = n as i64 + 1;
        by_walk_number.insert(n, id);
        ids.entry(acl.clone()).or_insert(id);
        table.push((id, acl));
    }
    for (_, now) in &changed {
        if let Some(node) = now {
            if !ids.contains_key(&node.acl) {
                let id = table.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
                ids.insert(node.acl.clone(), id);
                table.push((id, node.acl.clone()));
            }
        }
    }
    changed.sort_unstable_by(|a, b| walk_order(&a.0, &b.0));
    let refs: Vec<(i64, &[Acl])> = table.iter().map(|(id, acl)| (*id, &acl[..])).collect();
    let io = |e: std::io::Error| format!("cannot write the backup: {e}");
    let mut w = StreamWriter::begin(out, sessions.into_iter(), &refs).map_err(io)?;
    let mut pending = changed.into_iter().peekable();
    let emit_changed = |w: &mut StreamWriter<_>, path: &str, node: &CurrentNode| w.node(path, node.data.as_deref(), ids[&node.acl], &node.stat);
    for_each_walked_node(fuzzy, |walked| {
        // Touched nodes that sort before this one (created during the walk, or already passed).
        while let Some((path, _)) = pending.peek() {
            match walk_order(path, &walked.path) {
                Ordering::Less => {
                    if let Some((path, Some(node))) = pending.next() {
                        emit_changed(&mut w, &path, &node).map_err(io)?;
                    }
                }
                Ordering::Equal => {
                    // The walk's copy may predate a change: the tail's state wins.
                    if let Some((path, Some(node))) = pending.next() {
                        emit_changed(&mut w, &path, &node).map_err(io)?;
                    }
                    return Ok(());
                }
                Ordering::Greater => break,
            }
        }
        let acl = *by_walk_number.get(&walked.acl).ok_or_else(|| format!("node {} names ACL {}, which the walk did not number", walked.path, walked.acl))?;
        w.node(&walked.path, walked.data.as_deref(), acl, &walked.stat).map_err(io)
    })?;
    for (path, now) in pending {
        if let Some(node) = now {
            emit_changed(&mut w, &path, &node).map_err(io)?;
        }
    }
    let (_, bytes) = w.finish(Some(zxid)).map_err(io)?;
    Ok(bytes)
}

/// Calls `each` with every node of a Warden snapshot stream, in file order.
fn for_each_walked_node(mut input: impl Read, mut each: impl FnMut(NodeRecord) -> Result<(), String>) -> Result<(), String> {
    let mut magic = [0u8; MAGIC.len()];
    if input.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err("the walk's file is not a Warden snapshot".into());
    }
    let mut records = RecordReader::new(input, MAGIC.len());
    while let Some((offset, payload)) = records.next_record().map_err(|b| format!("the walk's file at byte {}: {}", b.offset, b.reason))? {
        match rmp_serde::from_slice(payload).map_err(|e| format!("the walk's file at byte {offset}: {e}"))? {
            SnapItem::Nodes(nodes) => nodes.into_iter().try_for_each(&mut each)?,
            SnapItem::End { .. } => return Ok(()),
            SnapItem::Begin { .. } | SnapItem::Acls(_) => {}
        }
    }
    Err("the walk's file ends before its End record".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, Id};
    use crate::snapshot::encode_items;
    use crate::txn::{Txn, TxnHeader};

    fn apply(db: &mut Database, txn: Txn) {
        let zxid = db.last_zxid() + 1;
        db.apply(&TxnHeader { session_id: 1, cxid: 0, zxid, time_ms: 1000 + zxid }, &txn, &mut Vec::new());
    }

    fn create(path: &str, data: &str) -> Txn {
        Txn::Create { path: path.into(), data: Some(data.as_bytes().to_vec()), acl: vec![Acl::world_all()], ephemeral_owner: 0, parent_cversion: 1 }
    }

    /// Walks `db` `nodes_per_step` nodes at a time, calling `between` after
    /// each step (the processor serving transactions between pieces); returns
    /// the backup's bytes.
    fn backup(db: &mut Database, nodes_per_step: usize, mut between: impl FnMut(&mut Database, usize)) -> Vec<u8> {
        db.tree.track_changes();
        let (mut walk, mut fuzzy) = SnapshotWriter::begin(db);
        let mut step = 0;
        while !walk.is_done() {
            fuzzy.extend(encode_items(&walk.next_items(&db.tree, nodes_per_step, usize::MAX)));
            between(db, step);
            step += 1;
        }
        let changed = db.tree.take_changes();
        let tail = BackupTail::take(db, &walk, changed);
        let mut out = Vec::new();
        let bytes = write(&fuzzy[..], tail, &mut out).unwrap();
        assert_eq!(bytes as usize, out.len());
        out
    }

    fn sample() -> Database {
        let mut db = Database::default();
        for p in ["/a", "/a-c", "/b", "/m", "/z"] {
            apply(&mut db, create(p, p));
            for c in ["x", "y", "y/q"] {
                apply(&mut db, create(&format!("{p}/{c}"), c));
            }
        }
        db
    }

    #[test]
    fn walk_order_is_the_trees_depth_first_order() {
        let db = sample();
        let walked: Vec<String> = db.tree.nodes_after(None, usize::MAX).map(|(p, _)| p).collect();
        let mut sorted = walked.clone();
        sorted.sort_by(|a, b| walk_order(a, b));
        assert_eq!(walked, sorted);
        assert_eq!(walk_order("/a/b", "/a-c"), Ordering::Less);
        assert_eq!(walk_order("/", "/a"), Ordering::Less);
        assert_eq!(walk_order("/a", "/a/b"), Ordering::Less);
    }

    #[test]
    fn a_backup_of_a_quiet_tree_is_its_snapshot() {
        let mut db = sample();
        let out = backup(&mut db, 3, |_, _| {});
        assert_eq!(out, super::super::snap::write_stream(&db), "same bytes as a whole-tree write");
    }

    #[test]
    fn a_backup_taken_while_the_tree_changes_is_the_tree_at_its_end() {
        let mut db = sample();
        let secret = vec![Acl { perms: 31, id: Id { scheme: "digest".into(), id: "u:p".into() } }];
        let out = backup(&mut db, 4, |db, step| match step {
            // Before the cursor, at it and after it: creates, deletes, data, ACLs.
            0 => {
                apply(db, Txn::SetData { path: "/z/x".into(), data: Some(b"late".to_vec()), version: 1 });
                apply(db, Txn::Delete { path: "/m/y/q".into() });
                apply(db, Txn::Delete { path: "/m/y".into() });
                apply(db, create("/a/w", "new before the cursor"));
                apply(db, create("/zz", "new after it"));
                apply(db, create("/zz/child", "and its child"));
            }
            1 => {
                apply(db, Txn::SetAcl { path: "/a/x".into(), acl: secret.clone(), version: 1 });
                apply(db, Txn::Delete { path: "/a/y/q".into() });
                apply(db, Txn::SetData { path: "/b/y/q".into(), data: None, version: 1 });
            }
            2 => {
                // Deleted and created again at the same path.
                apply(db, Txn::Delete { path: "/z/y/q".into() });
                apply(db, create("/z/y/q", "again"));
            }
            _ => {}
        });
        let loaded = super::super::snap::load_stream(&out).unwrap();
        let expected: Vec<_> = db.tree.nodes_after(None, usize::MAX).map(|(p, n)| (p, n.data.clone(), n.acl.to_vec(), n.stat)).collect();
        let got: Vec<_> = loaded.db.tree.nodes_after(None, usize::MAX).map(|(p, n)| (p, n.data.clone(), n.acl.to_vec(), n.stat)).collect();
        assert_eq!(got, expected);
        assert_eq!(loaded.db.last_zxid(), db.last_zxid());
        assert_eq!(loaded.db.sessions(), db.sessions());
    }

    #[test]
    fn a_walk_file_cut_short_is_refused() {
        let mut db = sample();
        db.tree.track_changes();
        let (mut walk, mut fuzzy) = SnapshotWriter::begin(&db);
        fuzzy.extend(encode_items(&walk.next_items(&db.tree, 5, usize::MAX)));
        let changed = db.tree.take_changes();
        let tail = BackupTail::take(&db, &walk, changed);
        let err = write(&fuzzy[..], tail, Vec::new()).unwrap_err();
        assert!(err.contains("before its End"), "{err}");
    }
}
