//! When a reply may skip the watch dispatcher: only when everything handed
//! to it before is already on the connections' write queues, so a reply can
//! never overtake a notification or an earlier reply. The processor then
//! writes a lone reply itself (one thread crossing fewer), and an I/O thread
//! answers a plain read itself (`LocalReads`: no crossing at all).

use crate::messages::ConnHandle;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use warden_core::proto::{Id, PlainRead, Request};
use warden_core::shared_db::{DbReader, DbView};

/// Batches the processor handed to the dispatcher whose frames are not yet
/// queued on their connections.
#[derive(Default)]
pub struct DeliveryGate {
    in_transit: AtomicU64,
    /// The database epoch whose results the processor has all written or
    /// handed over (with `in_transit` at zero: all on the write queues).
    handed_epoch: AtomicU64,
    /// Whether this member serves local reads now (standalone, or serving
    /// in an ensemble without linearizable reads or the request throttler).
    local_reads: AtomicBool,
    /// Whether plain reads may wait for a read index on their I/O thread
    /// (serving in an ensemble with linearizable reads, no throttler).
    indexed_reads: AtomicBool,
}

impl DeliveryGate {
    /// The processor, before sending the dispatcher a batch.
    pub fn handed_over(&self) {
        self.in_transit.fetch_add(1, Ordering::SeqCst);
    }

    /// The processor: the results of every change up to `epoch` are written
    /// or handed over (after `handed_over` for the batch holding the last).
    pub fn handed_up_to(&self, epoch: u64) {
        self.handed_epoch.store(epoch, Ordering::SeqCst);
    }

    /// Whether every watch event a database at `epoch` has caused is on the
    /// connections' write queues.
    fn settled(&self, epoch: u64) -> bool {
        // Epoch first: a batch handed over before it was stored is then counted.
        self.handed_epoch.load(Ordering::SeqCst) == epoch && self.in_transit.load(Ordering::SeqCst) == 0
    }

    /// The processor, after each message: whether I/O threads may answer reads.
    pub fn allow_local_reads(&self, allowed: bool) {
        self.local_reads.store(allowed, Ordering::Release);
    }

    /// The processor, after each message: whether I/O threads may answer reads behind a read index.
    pub fn allow_indexed_reads(&self, allowed: bool) {
        self.indexed_reads.store(allowed, Ordering::Release);
    }

    /// The dispatcher, once `batches` handed over are on the write queues.
    pub fn delivered(&self, batches: u64) {
        if batches > 0 {
            // Release: the frames queued before are seen by whoever reads zero.
            self.in_transit.fetch_sub(batches, Ordering::Release);
        }
    }

    /// Nothing handed to the dispatcher is still on its way.
    pub fn is_clear(&self) -> bool {
        self.in_transit.load(Ordering::Acquire) == 0
    }
}

/// An I/O thread's view of the committed database, to answer a plain read
/// (getData, exists, getChildren without a watch) without the processor.
pub struct LocalReads {
    db: DbReader,
    gate: std::sync::Arc<DeliveryGate>,
    /// warden.linearizableReads: where reads get their read index.
    pub board: std::sync::Arc<crate::lin_reads::ReadIndexBoard>,
}

impl LocalReads {
    pub fn new(db: DbReader, gate: std::sync::Arc<DeliveryGate>, board: std::sync::Arc<crate::lin_reads::ReadIndexBoard>) -> LocalReads {
        LocalReads { db, gate, board }
    }

    /// Whether `read` may wait here for a read index (`lin_reads`) rather than go to the processor.
    pub fn waits_for_index(&self, read: PlainRead) -> bool {
        !read.watch && self.gate.indexed_reads.load(Ordering::Acquire)
    }

    /// Reads (and pings behind them) that got read index `index`, in order: appended to `out` if
    /// the tree has applied the index (else `NotApplied`) and, if the
    /// session ever set a watch, every event the state read here caused is
    /// queued on it. Stops at the first that cannot be answered here;
    /// returns how many were.
    pub fn answer_indexed<'a>(
        &self,
        conn: &ConnHandle,
        session_id: i64,
        index: i64,
        reads: impl Iterator<Item = (i32, &'a Request, &'a [Id])>,
        out: &mut Vec<u8>,
    ) -> Result<usize, NotApplied> {
        let view = self.db.view();
        if view.last_zxid() < index {
            return Err(NotApplied);
        }
        if conn.watching.load(Ordering::Acquire) && !self.gate.settled(view.epoch) {
            return Ok(0);
        }
        let answer = |(xid, req, auth): &(i32, &Request, &[Id])| match req {
            // A ping that waited behind the reads: answered after them, as the processor would.
            Request::Ping if view.session_timeout(session_id).is_some() => {
                warden_core::server::append_reply_frame(out, warden_core::proto::xid::PING, view.last_zxid(), 0, |_| {});
                true
            }
            _ => warden_core::server::read_without_watch(&view, session_id, *xid, auth, req, out),
        };
        Ok(reads.take_while(answer).count())
    }

    /// Appends the reply to `read` to `out` if it may be answered here and
    /// now: the connection has no request still unanswered (its order
    /// holds), and if its session ever set a watch, every watch event the
    /// state read here caused is already queued on it (a client sees the
    /// event before the data). Says whether it did. The read-locked view is
    /// taken into `view` if there is none, and left there: a run of reads
    /// shares one lock (two atomic operations each were 4 % of a read's CPU).
    #[allow(clippy::too_many_arguments)] // a read, its connection and session, and the run's lock
    pub fn answer<'a>(
        &'a self,
        view: &mut Option<DbView<'a>>,
        conn: &ConnHandle,
        session_id: i64,
        xid: i32,
        read: PlainRead,
        auth: &[Id],
        out: &mut Vec<u8>,
    ) -> bool {
        if read.watch || !self.gate.local_reads.load(Ordering::Acquire) || conn.unanswered.load(Ordering::Acquire) != 0 {
            return false;
        }
        let view = view.get_or_insert_with(|| self.db.view());
        if conn.watching.load(Ordering::Acquire) && !self.gate.settled(view.epoch) {
            return false;
        }
        warden_core::server::answer_read(view, session_id, xid, auth, read, out)
    }
}

/// The tree has not applied a read index yet.
#[derive(Debug)]
pub struct NotApplied;

/// Marks batches delivered when dropped: each I/O thread's share of a flush
/// holds a clone, so the last one to finish writing releases the gate.
pub struct Delivered {
    gate: std::sync::Arc<DeliveryGate>,
    batches: u64,
}

impl Delivered {
    pub fn new(gate: std::sync::Arc<DeliveryGate>, batches: u64) -> Delivered {
        Delivered { gate, batches }
    }
}

impl Drop for Delivered {
    fn drop(&mut self) {
        self.gate.delivered(self.batches);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_watching_sessions_read_waits_until_every_change_is_handed_on_and_delivered() {
        let gate = DeliveryGate::default();
        assert!(gate.settled(0));
        assert!(!gate.settled(1), "a change applied whose results the processor still holds");
        gate.handed_over();
        gate.handed_up_to(1);
        assert!(!gate.settled(1), "its batch is still at the dispatcher");
        gate.delivered(1);
        assert!(gate.settled(1));
        assert!(!gate.settled(2), "the next change");
    }

    #[test]
    fn the_gate_opens_only_when_every_batch_is_delivered() {
        let gate = Arc::new(DeliveryGate::default());
        assert!(gate.is_clear());
        gate.handed_over();
        gate.handed_over();
        assert!(!gate.is_clear());
        let token = Arc::new(Delivered::new(gate.clone(), 2));
        let share = token.clone();
        drop(token);
        assert!(!gate.is_clear(), "one I/O thread's share is still writing");
        drop(share);
        assert!(gate.is_clear());
    }
}
