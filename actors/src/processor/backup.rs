//! The processor's side of backup and restore (ZooKeeper 3.9's admin
//! `snapshot` and `restore` commands): a copy of the database at one zxid for
//! a backup, and a restored database installed once a snapshot of it is
//! durable, with requests held meanwhile (as ZooKeeper's restoreLatch).

use crate::mailbox::Serve;
use crate::messages::{CopyDatabase, RestoreDatabase, SnapshotPart, ToConn};
use crate::processor::{Processor, Route};
use actix::prelude::*;
use slog::{info, warn};
use warden_core::database::Database;
use warden_core::snapshot::SnapshotWriter;

impl Serve<CopyDatabase> for Processor {
    fn serve(&mut self, _: CopyDatabase, _: &mut Context<Self>) -> Database {
        // One copy at one zxid; encoding and sending happen off this thread.
        self.core.db.clone()
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
        let (mut writer, header) = SnapshotWriter::begin(&db);
        let mut items = Vec::new();
        while !writer.is_done() {
            items.extend(writer.next_items(&db.tree, db.tree.node_count() + 1, usize::MAX));
        }
        self.snapshotter.do_send(SnapshotPart::Begin { zxid, bytes: header });
        let written = self.snapshotter.send(SnapshotPart::End(items));
        let nodes = db.tree.node_count();
        // Held (ctx.wait): no request is served until the restored data is durable and installed.
        ctx.wait(actix::fut::wrap_future(written).map(move |res, act: &mut Processor, _ctx: &mut Context<Processor>| {
            match res.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(()) => {
                    act.install_restored(db, zxid);
                    info!(act.log, "restored from a backup"; "zxid" => format!("{zxid:#x}"), "nodes" => nodes);
                    let _ = reply.send(Ok(zxid));
                }
                Err(e) => {
                    warn!(act.log, "restore failed: its snapshot could not be written; the data is unchanged"; "error" => &e);
                    let _ = reply.send(Err(format!("the restored snapshot could not be written: {e}")));
                }
            }
        }));
    }
}

impl Processor {
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
