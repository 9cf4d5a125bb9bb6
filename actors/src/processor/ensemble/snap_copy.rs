//! Leader: a learner's SNAP copied out of the tree in steps, with client
//! requests served between them. So that the copy is exactly the tree at its
//! zxid, Zab's messages to the processor (commits above all) are held while
//! it runs and then handled in order; reads meanwhile see the tree as it was
//! at the zxid, and writes are prepared and proposed as usual (their commits
//! wait). The snapshotter encodes the items.

use crate::messages::{EncodeSnap, FromZab};
use crate::processor::Processor;
use actix::prelude::*;
use slog::info;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use warden_core::snapshot::{SnapItem, SnapshotWriter};
use warden_core::zab::{ServerId, Zxid};

/// Nodes copied per step; the processor serves its mailbox between steps.
const NODES_PER_STEP: usize = 10_000;

pub(crate) struct SnapCopy {
    to: ServerId,
    zxid: Zxid,
    writer: SnapshotWriter,
    header: Vec<u8>,
    items: Vec<SnapItem>,
    reply: tokio::sync::oneshot::Sender<bytes::Bytes>,
    started: Instant,
    steps: u32,
    /// Zab's messages that arrived during the copy, in order.
    held: VecDeque<FromZab>,
}

impl Processor {
    /// Holds a message from Zab while a SNAP copy runs; gives it back otherwise.
    pub(crate) fn hold_during_snap_copy(&mut self, msg: FromZab) -> Option<FromZab> {
        match self.zab.as_mut().and_then(|z| z.snap_copy.as_mut()) {
            Some(copy) => {
                copy.held.push_back(msg);
                None
            }
            None => Some(msg),
        }
    }

    /// Leader: the tree at `zxid` for a learner's SNAP.
    pub(crate) fn snapshot_for(&mut self, to: ServerId, zxid: Zxid, reply: tokio::sync::oneshot::Sender<bytes::Bytes>, ctx: &mut Context<Self>) {
        if self.core.db.last_zxid() != zxid {
            self.fatal(format!("SNAP for {to} at {zxid:#x}, but the database is at {:#x}", self.core.db.last_zxid()));
        }
        let (writer, header) = SnapshotWriter::begin(&self.core.db);
        let copy = SnapCopy { to, zxid, writer, header, items: Vec::new(), reply, started: Instant::now(), steps: 0, held: VecDeque::new() };
        if let Some(z) = self.zab.as_mut() {
            z.snap_copy = Some(Box::new(copy));
        }
        self.snap_copy_step(ctx);
    }

    fn snap_copy_step(&mut self, ctx: &mut Context<Self>) {
        let Some(copy) = self.zab.as_mut().and_then(|z| z.snap_copy.as_mut()) else { return };
        let items = copy.writer.next_items(&self.core.db.tree, NODES_PER_STEP);
        copy.items.extend(items);
        copy.steps += 1;
        if !copy.writer.is_done() {
            ctx.run_later(Duration::ZERO, |act, ctx| {
                crate::mailbox::guarded(act, ctx, |act, ctx| act.snap_copy_step(ctx));
            });
            return;
        }
        let copy = *self.zab.as_mut().and_then(|z| z.snap_copy.take()).expect("a copy in progress");
        info!(self.log, "sending a snapshot to a learner"; "to" => copy.to, "zxid" => format!("{:#x}", copy.zxid), "nodes" => copy.items.len(), "copy_ms" => copy.started.elapsed().as_millis() as u64, "steps" => copy.steps);
        let request = self.snapshotter.send(EncodeSnap { zxid: copy.zxid, header: copy.header, items: copy.items });
        let reply = copy.reply;
        actix_rt::spawn(async move {
            if let Ok(frame) = request.await {
                let _ = reply.send(frame);
            }
        });
        // What Zab said meanwhile, in order (a held SnapFor starts the next
        // copy, which then holds the rest).
        for msg in copy.held {
            if let Some(msg) = self.hold_during_snap_copy(msg) {
                self.on_zab(msg, ctx);
            }
        }
    }
}
