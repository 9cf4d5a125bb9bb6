//! Reading Apache ZooKeeper's files in place: the newest ZooKeeper snapshot
//! that verifies and ZooKeeper's logs after it, converted to Warden's
//! transactions. Nothing here writes: ZooKeeper's files stay as they were.

use crate::data_files::{kind_of, list_kind, read_segment};
use slog::{info, warn, Logger};
use std::path::{Path, PathBuf};
use warden_core::database::Database;
use warden_core::txn::{LogEntry, Txn};
use warden_core::txnlog::LOG_PREFIX;
use warden_core::zkfiles::snap::Compression;
use warden_core::zkfiles::{self, FileKind};

pub struct Imported {
    /// The snapshot's tree; `entries` are not applied to it.
    pub db: Database,
    pub snapshot_zxid: i64,
    pub entries: Vec<LogEntry>,
    /// Sessions ZooKeeper created: in the snapshot or by a logged createSession.
    pub sessions: Vec<i64>,
}

/// ZooKeeper's snapshots, plain or compressed (`snapshot.compression.method`), newest first.
fn snapshots(dir: &Path) -> Vec<(i64, Compression, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<_> = rd
        .flatten()
        .filter_map(|e| {
            let (zxid, c) = zkfiles::snap::parse_name(&e.file_name().into_string().ok()?)?;
            Some((zxid, c, e.path()))
        })
        .filter(|(_, c, p)| *c != Compression::None || kind_of(p) == FileKind::ZooKeeper)
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.0));
    out
}

fn epoch(zxid: i64) -> i64 {
    zxid >> 32
}

/// ZooKeeper's data in `snap_dir`/`log_dir` (both `version-2`), or None if
/// there is none. Damage stops with the file and offset, except a torn last
/// record of a log, which ZooKeeper too reads as the end of that file.
pub fn import(snap_dir: &Path, log_dir: &Path, log: &Logger) -> Result<Option<Imported>, String> {
    let snaps = snapshots(snap_dir);
    let logs = list_kind(log_dir, LOG_PREFIX, |k| k == FileKind::ZooKeeper);
    if snaps.is_empty() && logs.is_empty() {
        return Ok(None);
    }
    let mut loaded = None;
    for (zxid, compression, path) in &snaps {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let result = zkfiles::snap::decompress(&bytes, *compression).and_then(|b| zkfiles::snap::load(&b, *zxid));
        match result {
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
