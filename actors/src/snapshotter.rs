//! The snapshotter actor, on its own thread (SyncArbiter): writes the chunks
//! of a fuzzy snapshot the processor produces, makes the file durable and
//! visible atomically (temp file, fsync, rename, fsync dir), and purges old
//! snapshots and logs (autopurge).

use crate::mailbox::{Serve, Supervision};
use crate::messages::{Purge, SnapshotPart};
use crate::registry::Fault;
use crate::storage::{check_not_foreign, fsync_dir, list_warden};
use actix::prelude::*;
use slog::{info, warn, Logger};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;
use warden_core::snapshot::encode_items;
use warden_core::txnlog::{self, LOG_PREFIX, SNAPSHOT_PREFIX};

struct InProgress {
    out: BufWriter<File>,
    tmp: PathBuf,
    target: PathBuf,
    started: Instant,
    bytes: u64,
}

pub struct Snapshotter {
    snap_dir: PathBuf,
    log_dir: PathBuf,
    retain: usize,
    current: Option<InProgress>,
    me: std::sync::Arc<crate::registry::ActorStats>,
    log: Logger,
}

impl Snapshotter {
    pub fn new(snap_dir: PathBuf, log_dir: PathBuf, retain: usize, me: std::sync::Arc<crate::registry::ActorStats>, log: Logger) -> Snapshotter {
        Snapshotter { snap_dir, log_dir, retain, current: None, me, log }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let cur = self.current.as_mut().ok_or("no snapshot in progress")?;
        cur.bytes += bytes.len() as u64;
        cur.out.write_all(bytes).map_err(|e| format!("writing {}: {e}", cur.tmp.display()))
    }

    fn finish(&mut self) -> Result<(), String> {
        let cur = self.current.take().ok_or("no snapshot in progress")?;
        let fail = |e: std::io::Error| format!("finishing {}: {e}", cur.tmp.display());
        let file = cur.out.into_inner().map_err(|e| fail(e.into_error()))?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&cur.tmp, &cur.target).map_err(fail)?;
        fsync_dir(&self.snap_dir).map_err(fail)?;
        info!(self.log, "snapshot written"; "file" => cur.target.display().to_string(), "bytes" => cur.bytes, "ms" => cur.started.elapsed().as_millis() as u64);
        Ok(())
    }

    /// autopurge: keep `retain` snapshots and the logs they need.
    pub fn purge(&self) {
        // Only Warden's files: ZooKeeper's (read in place at a migration) are never deleted.
        let snaps = list_warden(&self.snap_dir, SNAPSHOT_PREFIX);
        let logs = list_warden(&self.log_dir, LOG_PREFIX);
        let (old_snaps, old_logs) =
            txnlog::purge_plan(&snaps.iter().map(|s| s.0).collect::<Vec<_>>(), &logs.iter().map(|l| l.0).collect::<Vec<_>>(), self.retain);
        for (zxid, path) in snaps.iter().filter(|s| old_snaps.contains(&s.0)).chain(logs.iter().filter(|l| old_logs.contains(&l.0))) {
            match std::fs::remove_file(path) {
                Ok(()) => info!(self.log, "purged"; "file" => path.display().to_string(), "zxid" => format!("{zxid:#x}")),
                Err(e) => warn!(self.log, "purge failed"; "file" => path.display().to_string(), "error" => %e),
            }
        }
    }
}

impl Actor for Snapshotter {
    type Context = SyncContext<Self>;
}

crate::mailbox::mailbox!(Snapshotter: SnapshotPart, Purge, crate::messages::EncodeSnapChunk, Fault);

/// A failed snapshotter is replaced by a fresh one (SyncArbiter calls the
/// factory again): the snapshot it was writing is abandoned (its temp file
/// removed), the processor hears the failure and snapshots again at the
/// next snapCount.
impl Supervision for Snapshotter {
    fn stats(&self) -> &std::sync::Arc<crate::registry::ActorStats> {
        &self.me
    }
    fn log(&self) -> &Logger {
        &self.log
    }
    fn panicked(&mut self, ctx: &mut SyncContext<Self>) {
        self.fail(ctx);
    }
}

impl Snapshotter {
    fn fail(&mut self, ctx: &mut SyncContext<Self>) {
        if let Some(cur) = self.current.take() {
            let _ = std::fs::remove_file(&cur.tmp);
        }
        let backoff = crate::supervise::decide(&self.me, &self.log);
        // This is the snapshotter's own thread.
        std::thread::sleep(backoff);
        ctx.stop();
    }
}

impl Serve<Fault> for Snapshotter {
    fn serve(&mut self, f: Fault, ctx: &mut SyncContext<Self>) {
        match f {
            Fault::Stop => self.fail(ctx),
            f => crate::supervise::inject(self, f, ctx),
        }
    }
}

impl Serve<SnapshotPart> for Snapshotter {
    fn serve(&mut self, part: SnapshotPart, _: &mut SyncContext<Self>) -> Result<(), String> {
        let result = match part {
            SnapshotPart::Begin { zxid, bytes } => {
                let name = txnlog::snapshot_name(zxid);
                let target = self.snap_dir.join(&name);
                let tmp = self.snap_dir.join(format!("{name}.tmp"));
                // A ZooKeeper snapshot of the same zxid stays; the log covers this one.
                if let Err(e) = check_not_foreign(&target) {
                    warn!(self.log, "snapshot skipped"; "reason" => %e);
                    return Err(e.to_string());
                }
                let file = File::create(&tmp).map_err(|e| format!("creating {}: {e}", tmp.display()))?;
                self.current = Some(InProgress { out: BufWriter::with_capacity(1 << 20, file), tmp, target, started: Instant::now(), bytes: 0 });
                self.write(&bytes)
            }
            SnapshotPart::Chunk(items) => self.write(&encode_items(&items)),
            SnapshotPart::End(items) => self.write(&encode_items(&items)).and_then(|_| self.finish()),
        };
        if result.is_err() {
            if let Some(cur) = self.current.take() {
                let _ = std::fs::remove_file(&cur.tmp);
            }
        }
        result
    }
}

impl Serve<Purge> for Snapshotter {
    fn serve(&mut self, _: Purge, _: &mut SyncContext<Self>) {
        self.purge();
    }
}

impl Serve<crate::messages::EncodeSnapChunk> for Snapshotter {
    fn serve(&mut self, msg: crate::messages::EncodeSnapChunk, _: &mut SyncContext<Self>) -> crate::messages::SnapChunkFrame {
        let mut data = msg.header;
        data.extend(encode_items(&msg.items));
        let (crc, bytes) = (crc32c::crc32c_append(msg.crc, &data), data.len() as u64);
        let frame = crate::peer_link::encode(&warden_core::zab::Message::SnapChunk { data });
        crate::messages::SnapChunkFrame { frame, crc, bytes }
    }
}
