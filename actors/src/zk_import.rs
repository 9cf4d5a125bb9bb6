//! Reading Apache ZooKeeper's files in place: the newest ZooKeeper snapshot
//! that verifies and ZooKeeper's logs after it, converted to Warden's
//! transactions. Nothing here writes: ZooKeeper's files stay as they were.

use crate::storage::{list_kind, read_segment};
use slog::{info, warn, Logger};
use std::path::{Path, PathBuf};
use warden_core::database::Database;
use warden_core::txn::{LogEntry, Txn};
use warden_core::txnlog::{LOG_PREFIX, SNAPSHOT_PREFIX};
use warden_core::zkfiles::{self, FileKind};

pub struct Imported {
    /// The snapshot's tree; `entries` are not applied to it.
    pub db: Database,
    pub snapshot_zxid: i64,
    pub entries: Vec<LogEntry>,
    /// Sessions ZooKeeper created: in the snapshot or by a logged createSession.
    pub sessions: Vec<i64>,
}

/// `snapshot.<hex>.gz` / `.snappy` (`snapshot.compression.method`): Warden
/// reads only uncompressed snapshots.
fn compressed_snapshots(dir: &Path) -> Vec<(i64, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".snappy"))?;
            Some((warden_core::txnlog::parse_name(stem, SNAPSHOT_PREFIX)?, e.path()))
        })
        .collect()
}

fn epoch(zxid: i64) -> i64 {
    zxid >> 32
}

/// ZooKeeper's data in `snap_dir`/`log_dir` (both `version-2`), or None if
/// there is none. Damage stops with the file and offset, except a torn last
/// record of a log, which ZooKeeper too reads as the end of that file.
pub fn import(snap_dir: &Path, log_dir: &Path, log: &Logger) -> Result<Option<Imported>, String> {
    let zk = |k: FileKind| k == FileKind::ZooKeeper;
    let snaps = list_kind(snap_dir, SNAPSHOT_PREFIX, zk);
    let logs = list_kind(log_dir, LOG_PREFIX, zk);
    let compressed = compressed_snapshots(snap_dir);
    if snaps.is_empty() && logs.is_empty() && compressed.is_empty() {
        return Ok(None);
    }
    let newest_plain = snaps.last().map_or(-1, |s| s.0);
    if let Some((_, path)) = compressed.iter().filter(|c| c.0 >= newest_plain).max() {
        return Err(format!(
            "{} is a compressed ZooKeeper snapshot, which Warden does not read: restart ZooKeeper once with \
             zookeeper.snapshot.compression.method=CHECKED and let it take a snapshot (snapCount), then start Warden",
            path.display()
        ));
    }
    let mut loaded = None;
    for (zxid, path) in snaps.iter().rev() {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        match zkfiles::snap::load(&bytes, *zxid) {
            Ok(s) => {
                info!(log, "loaded a ZooKeeper snapshot"; "file" => path.display().to_string(), "zxid" => format!("{zxid:#x}"), "nodes" => s.nodes, "sessions" => s.db.sessions().len());
                loaded = Some(s);
                break;
            }
            // As ZooKeeper's FileSnap: an invalid snapshot is skipped for an older one.
            Err(e) => warn!(log, "ZooKeeper snapshot does not verify, trying an older one"; "file" => path.display().to_string(), "error" => e.to_string()),
        }
    }
    let Some(snap) = loaded else {
        return Err(format!("{} holds ZooKeeper files but no ZooKeeper snapshot that verifies (see the log)", snap_dir.display()));
    };
    let mut converter = zkfiles::log::Converter::new(&snap.db.tree);
    let mut sessions: Vec<i64> = snap.db.sessions().keys().copied().collect();
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut last = snap.zxid;
    // As FileTxnLog.getLogFiles: the newest log starting at or before the snapshot's next zxid, and every later one.
    let start = logs.iter().rposition(|(first, _)| *first <= snap.zxid + 1).unwrap_or(0);
    for (_, path) in &logs[start..] {
        let bytes = read_segment(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let scan = zkfiles::log::scan(&bytes).map_err(|b| format!("{} at byte {}: {}", path.display(), b.offset, b.reason))?;
        for rec in scan.records {
            let zxid = rec.hdr.zxid;
            if zxid <= last {
                continue;
            }
            // Within an epoch zxids are consecutive; a new epoch starts its own count.
            if epoch(zxid) == epoch(last) && zxid != last + 1 {
                return Err(format!("{} at byte {}: zxid {zxid:#x} follows {last:#x}; ZooKeeper transactions are missing", path.display(), rec.offset));
            }
            let entry = converter.convert(rec);
            if let Txn::CreateSession { .. } = entry.txn {
                sessions.push(entry.hdr.session_id);
            }
            last = zxid;
            entries.push(entry);
        }
        if let Some(bad) = scan.bad {
            if !bad.torn {
                return Err(format!("{} is damaged at byte {}: {}", path.display(), bad.offset, bad.reason));
            }
            warn!(log, "a ZooKeeper log ends in a torn record (a write a crash interrupted); reading stops there, as ZooKeeper's does"; "file" => path.display().to_string(), "offset" => bad.offset, "reason" => bad.reason);
        }
    }
    info!(log, "read ZooKeeper's logs"; "files" => logs.len() - start, "transactions" => entries.len(), "last_zxid" => format!("{last:#x}"));
    Ok(Some(Imported { db: snap.db, snapshot_zxid: snap.zxid, entries, sessions }))
}
