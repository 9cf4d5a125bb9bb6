//! Leader: a learner's SNAP streamed out of the live tree in bounded pieces,
//! as ZooKeeper's LearnerHandler streams its snapshot. The copy is fuzzy:
//! the processor copies one piece per step and serves everything else
//! between steps, commits included; the proposals that follow the snapshot
//! on the link bring the learner's tree to exact. A step's piece goes to the
//! snapshotter to be encoded, then into the link's stream, which takes it
//! once the socket took the last: memory is a few pieces, whatever the tree.

use crate::messages::{EncodeSnapChunk, SnapChunkFrame};
use crate::processor::Processor;
use actix::prelude::*;
use bytes::Bytes;
use slog::{info, warn};
use std::time::Instant;
use tokio::sync::mpsc;
use warden_core::snapshot::SnapshotWriter;
use warden_core::zab::{Message, ServerId, Zxid};

/// A piece of the stream holds about this many bytes (one node more at
/// most), which keeps every peer frame far below the frame limit.
pub(crate) const PIECE_BYTES: usize = 4 << 20;
/// ...and at most this many nodes, so one step stays short.
pub(crate) const PIECE_NODES: usize = 20_000;

pub(crate) struct SnapStream {
    to: ServerId,
    zxid: Zxid,
    writer: SnapshotWriter,
    /// The file header, sent with the first piece.
    header: Vec<u8>,
    out: mpsc::Sender<Bytes>,
    crc: u32,
    bytes: u64,
    pieces: u32,
    /// The last zxid applied when a piece was copied.
    fuzzy_until: Zxid,
    started: Instant,
}

impl Processor {
    /// Leader: stream the tree, which is at `zxid` now, to learner `to`.
    pub(crate) fn snapshot_for(&mut self, to: ServerId, zxid: Zxid, out: mpsc::Sender<Bytes>, ctx: &mut Context<Self>) {
        // Entries a linearizable read holds back are committed: the tree must have them.
        self.apply_all_held();
        if self.core.db.last_zxid() != zxid {
            self.fatal(format!("SNAP for {to} at {zxid:#x}, but the database is at {:#x}", self.core.db.last_zxid()));
        }
        // The channel is new and holds two: this cannot be full.
        if out.try_send(crate::peer_link::encode(&Message::SnapStart { zxid })).is_err() {
            return; // the link has no connection any more
        }
        let (writer, header) = SnapshotWriter::begin(&self.core.db);
        let stream = SnapStream { to, zxid, writer, header, out, crc: 0, bytes: 0, pieces: 0, fuzzy_until: zxid, started: Instant::now() };
        self.snap_stream_step(stream, ctx);
    }

    fn snap_stream_step(&mut self, mut s: SnapStream, ctx: &mut Context<Self>) {
        let items = s.writer.next_items(&self.core.db.tree, PIECE_NODES, PIECE_BYTES);
        s.fuzzy_until = self.core.db.last_zxid();
        let encoded = self.snapshotter.send(EncodeSnapChunk { header: std::mem::take(&mut s.header), items, crc: s.crc });
        let send = async move {
            let SnapChunkFrame { frame, crc, bytes } = encoded.await.map_err(|e| format!("the snapshotter did not answer: {e}"))?;
            (s.crc, s.bytes, s.pieces) = (crc, s.bytes + bytes, s.pieces + 1);
            s.out.send(frame).await.map_err(|_| "the link to the learner closed".to_string())?;
            if s.writer.is_done() {
                let end = Message::SnapEnd { bytes: s.bytes, crc: s.crc, fuzzy_until: s.fuzzy_until };
                s.out.send(crate::peer_link::encode(&end)).await.map_err(|_| "the link to the learner closed".to_string())?;
            }
            Ok::<_, String>(s)
        };
        ctx.spawn(actix::fut::wrap_future(send).map(|res, act: &mut Self, ctx: &mut Context<Self>| match res {
            Ok(s) if s.writer.is_done() => info!(act.log, "sent a snapshot to a learner";
                "to" => s.to, "zxid" => format!("{:#x}", s.zxid), "fuzzy_until" => format!("{:#x}", s.fuzzy_until),
                "bytes" => s.bytes, "pieces" => s.pieces, "ms" => s.started.elapsed().as_millis() as u64),
            Ok(s) => {
                crate::mailbox::guarded(act, ctx, |act, ctx| act.snap_stream_step(s, ctx));
            }
            // The learner resyncs when it reconnects.
            Err(e) => warn!(act.log, "snapshot stream to a learner abandoned"; "reason" => e),
        }));
    }
}
