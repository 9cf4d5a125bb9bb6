//! Offline tools over a data dir, like ZooKeeper's LogFormatter and
//! SnapshotFormatter: `warden log dump`, `warden snapshot dump|verify` (on
//! Warden's files and on ZooKeeper's), `warden snapshot export --zookeeper`.

use crate::storage::{list, read_segment, version_dir};
use std::path::{Path, PathBuf};
use warden_core::snapshot;
use warden_core::txn::{LogEntry, Txn};
use warden_core::txnlog::{self, LOG_PREFIX};

fn data(d: &Option<Vec<u8>>) -> String {
    match d {
        None => "null".into(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
            _ => format!("#{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        },
    }
}

fn describe(txn: &Txn) -> String {
    match txn {
        Txn::CreateSession { timeout_ms } => format!("createSession timeout={timeout_ms}"),
        Txn::CloseSession { ephemerals } => format!("closeSession ephemerals={ephemerals:?}"),
        Txn::Create { path, data: d, acl, ephemeral_owner, parent_cversion } => {
            let acl: Vec<String> = acl.iter().map(|a| format!("{}:{}:{}", a.id.scheme, a.id.id, a.perms)).collect();
            format!("create '{path}' data={} acl={acl:?} owner={ephemeral_owner:#x} parentCversion={parent_cversion}", data(d))
        }
        Txn::Delete { path } => format!("delete '{path}'"),
        Txn::SetData { path, data: d, version } => format!("setData '{path}' data={} version={version}", data(d)),
        Txn::SetAcl { path, acl, version } => format!("setACL '{path}' acl={acl:?} aversion={version}"),
        Txn::Reconfig { data } => format!("reconfig {:?}", String::from_utf8_lossy(data)),
        Txn::Check { path, version } => format!("check '{path}' version={version}"),
        Txn::Multi(subs) => format!("multi [{}]", subs.iter().map(describe).collect::<Vec<_>>().join("; ")),
        Txn::Error { code } => format!("error {code}"),
    }
}

pub fn format_entry(e: &LogEntry) -> String {
    format!("time={} session={:#x} cxid={:#x} zxid={:#x} {}", e.hdr.time_ms, e.hdr.session_id, e.hdr.cxid, e.hdr.zxid, describe(&e.txn))
}

/// Segments to dump: a file, or every segment of a data (log) dir.
fn segments(target: &Path) -> Vec<PathBuf> {
    if target.is_file() {
        return vec![target.to_path_buf()];
    }
    let dir = if target.join("version-2").is_dir() { version_dir(target) } else { target.to_path_buf() };
    list(&dir, LOG_PREFIX).into_iter().map(|(_, p)| p).collect()
}

pub fn log_dump(target: &Path) -> Result<(), String> {
    let files = segments(target);
    if files.is_empty() {
        return Err(format!("no log segments in {}", target.display()));
    }
    let mut total = 0;
    for path in files {
        let bytes = read_segment(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("# {}", path.display());
        if warden_core::zkfiles::file_kind(&bytes[..bytes.len().min(8)]) == warden_core::zkfiles::FileKind::ZooKeeper {
            total += zookeeper_log_dump(&path, &bytes)?;
            continue;
        }
        let scan = txnlog::scan_segment(&bytes).map_err(|b| format!("{}: at byte {}: {}", path.display(), b.offset, b.reason))?;
        for e in &scan.entries {
            println!("{}", format_entry(e));
        }
        total += scan.entries.len();
        if let Some(bad) = scan.bad {
            let kind = if bad.torn { "torn tail (cut at next start)" } else { "DAMAGED" };
            println!("# {kind} at byte {}: {}", bad.offset, bad.reason);
        }
    }
    println!("# {total} transactions");
    Ok(())
}

/// A Warden snapshot, or ZooKeeper's (by magic; its zxid from the file name).
/// ZooKeeper's log, in the same format (closeSession without its list before 3.6).
fn zookeeper_log_dump(path: &Path, bytes: &[u8]) -> Result<usize, String> {
    use warden_core::zkfiles::log::{scan, ZkTxn};
    let scan = scan(bytes).map_err(|b| format!("{}: at byte {}: {}", path.display(), b.offset, b.reason))?;
    for rec in &scan.records {
        let e = match &rec.txn {
            ZkTxn::Txn(t) => LogEntry { hdr: rec.hdr, txn: t.clone() },
            ZkTxn::CloseSessionUnlisted => LogEntry { hdr: rec.hdr, txn: Txn::CloseSession { ephemerals: Vec::new() } },
        };
        println!("{}", format_entry(&e));
    }
    if let Some(bad) = scan.bad {
        let kind = if bad.torn { "torn tail (ZooKeeper and Warden stop reading there)" } else { "DAMAGED" };
        println!("# {kind} at byte {}: {}", bad.offset, bad.reason);
    }
    Ok(scan.records.len())
}

fn load(file: &Path) -> Result<snapshot::LoadedSnapshot, String> {
    use warden_core::zkfiles::{self, snap::Compression, FileKind};
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let zookeeper =
        zkfiles::snap::parse_name(name).filter(|(_, c)| *c != Compression::None || zkfiles::file_kind(&bytes[..bytes.len().min(8)]) == FileKind::ZooKeeper);
    match zookeeper {
        Some((zxid, c)) => {
            zkfiles::snap::decompress(&bytes, c).and_then(|b| zkfiles::snap::load(&b, zxid)).map_err(|e| format!("{} (ZooKeeper's): {e}", file.display()))
        }
        None => snapshot::load(&bytes).map_err(|e| format!("{}: {e}", file.display())),
    }
}

pub fn snapshot_dump(file: &Path) -> Result<(), String> {
    let s = load(file)?;
    println!("# snapshot of zxid {:#x}: {} nodes, {} sessions", s.zxid, s.nodes, s.db.sessions().len());
    for (path, node) in s.db.tree.nodes_after(None, usize::MAX) {
        let st = node.stat();
        println!(
            "{path}\n  cZxid={:#x} mZxid={:#x} pZxid={:#x} ctime={} mtime={} version={} cversion={} aversion={} ephemeralOwner={:#x} dataLength={} numChildren={}",
            st.czxid, st.mzxid, st.pzxid, st.ctime, st.mtime, st.version, st.cversion, st.aversion, node.stat.ephemeral_owner, st.data_length, st.num_children
        );
    }
    for (id, timeout) in s.db.sessions() {
        println!("session {id:#x} timeout={timeout}");
    }
    Ok(())
}

pub fn snapshot_verify(file: &Path) -> Result<(), String> {
    let s = load(file)?;
    println!("{}: valid snapshot of zxid {:#x}, {} nodes, {} sessions", file.display(), s.zxid, s.nodes, s.db.sessions().len());
    Ok(())
}

/// `warden snapshot export --zookeeper OUT DATADIR`: the state a stopped
/// node's data dir holds (its snapshot and every logged transaction, read
/// without changing anything), written as `OUT/version-2/snapshot.<zxid>` for ZooKeeper, with
/// the sessions and with `acceptedEpoch`/`currentEpoch` for an ensemble member.
pub fn snapshot_export_zookeeper(data_dir: &Path, log_dir: Option<&Path>, out: &Path) -> Result<(), String> {
    for d in [Some(data_dir), log_dir].into_iter().flatten() {
        if !version_dir(d).is_dir() {
            return Err(format!("{} holds no version-2 directory: not a data dir", d.display()));
        }
    }
    let quiet = slog::Logger::root(slog::Discard, slog::o!());
    // Every logged transaction, in order: zxids jump at epochs in an ensemble member's log.
    let recovered = crate::storage::recover_log_with(data_dir, log_dir.unwrap_or(data_dir), false, &quiet)?;
    let mut db = recovered.db;
    for e in &recovered.entries {
        db.apply(&e.hdr, &e.txn, &mut Vec::new());
    }
    let zxid = db.last_zxid();
    let target_dir = version_dir(out);
    std::fs::create_dir_all(&target_dir).map_err(|e| format!("cannot create {}: {e}", target_dir.display()))?;
    let target = target_dir.join(txnlog::snapshot_name(zxid));
    if target.exists() {
        return Err(format!("{} exists; export into an empty directory", target.display()));
    }
    let bytes = warden_core::zkfiles::snap::write(&db);
    let tmp = target_dir.join(format!("{}.tmp", txnlog::snapshot_name(zxid)));
    std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, &target)).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    // ZooKeeper refuses a currentEpoch older than its last zxid's epoch.
    let epoch_of_zxid = (zxid >> 32) as u32;
    for kind in [warden_core::zab::EpochKind::Accepted, warden_core::zab::EpochKind::Current] {
        let epoch = crate::broadcast::setup::read_epoch(data_dir, kind)?.max(epoch_of_zxid);
        crate::broadcast::setup::write_epoch(&target_dir, kind, epoch).map_err(|e| format!("cannot write an epoch file in {}: {e}", target_dir.display()))?;
    }
    println!(
        "{}: ZooKeeper snapshot of zxid {zxid:#x}, {} nodes, {} sessions, {} bytes",
        target.display(),
        db.tree.node_count(),
        db.sessions().len(),
        bytes.len()
    );
    Ok(())
}

/// `warden restore --data-dir DIR FILE`: makes a backup (ZooKeeper's snapshot
/// format or Warden's) the whole state of a stopped node. Its current files
/// are kept aside in `version-2.before-restore-<unix seconds>`, never
/// deleted; the epoch files carry on, at least the backup's epoch, so zxids
/// keep rising. Restore every member of an ensemble from the same backup.
pub fn restore_offline(backup: &Path, data_dir: &Path, log_dir: Option<&Path>) -> Result<(), String> {
    let file = std::fs::File::open(backup).map_err(|e| format!("cannot read {}: {e}", backup.display()))?;
    // SAFETY: read-only map of the operator's backup file; a tool run, not a server, reads it.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map {}: {e}", backup.display()))?;
    let db = warden_core::zkfiles::load_backup(&bytes).map_err(|e| format!("{}: {e}", backup.display()))?;
    drop(bytes);
    let zxid = db.last_zxid();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut epochs = Vec::new();
    for kind in [warden_core::zab::EpochKind::Accepted, warden_core::zab::EpochKind::Current] {
        epochs.push((kind, crate::broadcast::setup::read_epoch(data_dir, kind)?.max((zxid >> 32) as u32)));
    }
    let mut dirs = vec![data_dir];
    if let Some(l) = log_dir.filter(|l| *l != data_dir) {
        dirs.push(l);
    }
    for dir in &dirs {
        let current = version_dir(dir);
        if current.exists() {
            let aside = dir.join(format!("version-2.before-restore-{stamp}"));
            std::fs::rename(&current, &aside).map_err(|e| format!("cannot move {} aside: {e}", current.display()))?;
            println!("{} kept as {}", current.display(), aside.display());
        }
    }
    let target_dir = version_dir(data_dir);
    std::fs::create_dir_all(&target_dir).map_err(|e| format!("cannot create {}: {e}", target_dir.display()))?;
    let target = target_dir.join(txnlog::snapshot_name(zxid));
    let tmp = target_dir.join(format!("{}.tmp", txnlog::snapshot_name(zxid)));
    let write = || -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        warden_core::snapshot::write_all(&db, std::io::BufWriter::with_capacity(1 << 20, &f))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        crate::storage::fsync_dir(&target_dir)
    };
    write().map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    for (kind, epoch) in epochs {
        crate::broadcast::setup::write_epoch(&target_dir, kind, epoch).map_err(|e| format!("cannot write an epoch file in {}: {e}", target_dir.display()))?;
    }
    println!("{}: restored zxid {zxid:#x}, {} nodes, {} sessions", target.display(), db.tree.node_count(), db.sessions().len());
    Ok(())
}
