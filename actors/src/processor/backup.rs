//! The processor's side of backup and restore (ZooKeeper 3.9's admin
//! `snapshot` and `restore` commands): a backup's walk of the tree, piece by
//! piece between other work, ended by what makes it exact
//! (`zkfiles::backup`); and a restored database installed once a snapshot
//! of it is durable, with requests held meanwhile (as ZooKeeper's restoreLatch).

use crate::mailbox::Serve;
use crate::messages::{BackupPiece, RestoreDatabase, SnapshotPart, TakeBackup, ToConn};
use crate::processor::ensemble::{SNAP_PIECE_BYTES as PIECE_BYTES, SNAP_PIECE_NODES as PIECE_NODES};
use crate::processor::{Processor, Route};
use actix::prelude::*;
use slog::{info, warn};
use std::time::Instant;
use tokio::sync::mpsc;
use warden_core::database::Database;
use warden_core::snapshot::SnapshotWriter;
use warden_core::zkfiles::backup::BackupTail;

/// A backup's walk in progress; `id` tells it from a later one.
pub(crate) struct BackupWalk {
    id: u64,
    writer: SnapshotWriter,
    out: mpsc::Sender<BackupPiece>,
    pieces: u32,
    started: Instant,
}

impl Serve<TakeBackup> for Processor {
    fn serve(&mut self, TakeBackup { out }: TakeBackup, ctx: &mut Context<Self>) -> Result<(), String> {
        if self.backup.is_some() && self.core.db.tree.is_tracking_changes() {
            return Err("a backup is already being taken; retry when it is done".into());
        }
        self.backups_started += 1;
        let id = self.backups_started;
        self.backup = Some(id);
        self.core.db.write(|db| db.tree.track_changes());
        let (writer, header) = SnapshotWriter::begin(&self.core.db);
        let walk = BackupWalk { id, writer, out, pieces: 0, started: Instant::now() };
        // The channel is new and holds two: this cannot be full.
        if walk.out.try_send(BackupPiece::Header(header)).is_err() {
            self.end_backup(id);
            return Err("the backup's receiver went away".into());
        }
        self.backup_step(walk, ctx);
        Ok(())
    }
}

impl Serve<RestoreDatabase> for Processor {
    fn serve(&mut self, RestoreDatabase { mut db, reply }: RestoreDatabase, ctx: &mut Context<Self>) {
        if self.zab.is_some() {
            let _ = reply.send(Err(
                "restore works on a standalone node: restore an ensemble member by member with `warden restore --data-dir` while it is stopped".into(),
            ));
            return;
        }
        if self.snapshot.is_some() {
            let _ = reply.send(Err("a snapshot is being written; retry when it is done".into()));
            return;
        }
        // Zxids never go back: the restored state takes the newest of its own
        // zxid and every zxid this node has handed out, so the log's older
        // entries fall below its snapshot and are never replayed over it.
        let zxid = db.last_zxid().max(self.core.next_zxid() - 1);
        db.set_last_zxid(zxid);
        let nodes = db.tree.node_count();
        // Written piece by piece, each sent once the last is on disk: memory holds a piece, not a second tree.
        let snapshotter = self.snapshotter.clone();
        let written = async move {
            let (mut writer, header) = SnapshotWriter::begin(&db);
            let mut part = SnapshotPart::Begin { zxid, bytes: header };
            loop {
                let last = matches!(part, SnapshotPart::End(_));
                if let Err(e) = snapshotter.send(part).await.map_err(|e| e.to_string()).and_then(|r| r) {
                    return (db, Err(e));
                }
                if last {
                    return (db, Ok(()));
                }
                let items = writer.next_items(&db.tree, PIECE_NODES, PIECE_BYTES);
                part = if writer.is_done() { SnapshotPart::End(items) } else { SnapshotPart::Chunk(items) };
            }
        };
        // Held (ctx.wait): no request is served until the restored data is durable and installed.
        ctx.wait(actix::fut::wrap_future(written).map(move |(db, res), act: &mut Processor, _ctx: &mut Context<Processor>| match res {
            Ok(()) => {
                act.install_restored(db, zxid);
                info!(act.log, "restored from a backup"; "zxid" => format!("{zxid:#x}"), "nodes" => nodes);
                let _ = reply.send(Ok(zxid));
            }
            Err(e) => {
                warn!(act.log, "restore failed: its snapshot could not be written; the data is unchanged"; "error" => &e);
                let _ = reply.send(Err(format!("the restored snapshot could not be written: {e}")));
            }
        }));
    }
}

impl Processor {
    /// Copies the walk's next piece; after the last, takes the tail in the
    /// same turn, so nothing changes between the walk's end and it.
    fn backup_step(&mut self, mut walk: BackupWalk, ctx: &mut Context<Self>) {
        let mut pieces = Vec::with_capacity(2);
        if self.backup != Some(walk.id) || !self.core.db.tree.is_tracking_changes() {
            pieces.push(BackupPiece::Failed("the node's data was replaced during the backup (a snapshot from the leader, or a restore); retry".into()));
        } else {
            pieces.push(BackupPiece::Items(walk.writer.next_items(&self.core.db.tree, PIECE_NODES, PIECE_BYTES)));
            if walk.writer.is_done() {
                let changed = self.core.db.write(|db| db.tree.take_changes());
                self.backup = None;
                pieces.push(BackupPiece::Tail(Box::new(BackupTail::take(&self.core.db, &walk.writer, changed))));
            }
        }
        let failed = matches!(pieces[0], BackupPiece::Failed(_));
        walk.pieces += 1;
        let send = async move {
            for piece in pieces {
                walk.out.send(piece).await.map_err(|_| walk.id)?;
            }
            Ok(walk)
        };
        ctx.spawn(actix::fut::wrap_future(send).map(move |res, act: &mut Self, ctx: &mut Context<Self>| match res {
            Ok(walk) if failed => act.end_backup(walk.id),
            Ok(walk) if walk.writer.is_done() => info!(act.log, "backup walk done"; "zxid" => format!("{:#x}", act.core.db.last_zxid()),
                "pieces" => walk.pieces, "ms" => walk.started.elapsed().as_millis() as u64),
            Ok(walk) => {
                crate::mailbox::guarded(act, ctx, |act, ctx| act.backup_step(walk, ctx));
            }
            Err(id) => {
                warn!(act.log, "backup abandoned: its receiver went away");
                act.end_backup(id);
            }
        }));
    }

    /// Stops walk `id`'s change tracking, if it is still the current walk.
    fn end_backup(&mut self, id: u64) {
        if self.backup == Some(id) {
            self.backup = None;
            self.core.db.write(|db| db.tree.take_changes());
        }
    }

    /// Swaps the database in; every client reconnects to the restored state
    /// (sessions it holds live on, others expire), as waiting work is dropped.
    fn install_restored(&mut self, db: Database, zxid: i64) {
        let before: Vec<i64> = self.core.db.sessions().keys().copied().collect();
        let after: Vec<(i64, i32)> = db.sessions().iter().map(|(k, v)| (*k, *v)).collect();
        for route in std::mem::take(&mut self.routes).into_values() {
            if let Route::Request(c) = route {
                c.conn.do_send(ToConn::Close { frame: None, reason: "the node was restored from a backup" });
            }
        }
        self.in_flight.clear();
        self.core.install(db);
        self.core.set_next_zxid(zxid + 1);
        self.txns_since_snapshot = 0;
        if let Some(log) = &self.txn_log {
            log.roll(zxid + 1);
        }
        for session_id in before {
            self.tracker.do_send(crate::messages::Tracking::Untrack { session_id });
        }
        for (session_id, timeout_ms) in after {
            self.tracker.do_send(crate::messages::Tracking::Track { session_id, timeout_ms });
        }
        self.send_outbound();
        self.dispatcher.do_send(crate::messages::CloseAll);
    }
}
