//! warden.linearizableReads on a member: each data read waits for a read
//! index (`warden_core::zab::read_index`) instead of a write through the
//! log. The reads arriving in one turn of the processor share one request
//! (a batch), asked before any write of that turn leaves, so a batch's
//! index never covers a later write of its own sessions. A read is served
//! once its session's earlier requests are answered and the tree has applied
//! its index; until then a later write of the same session is not applied
//! (the read must not see it), which holds the apply queue for at most one
//! heartbeat round and only for sessions that pipeline a read between writes.
//! Most plain reads never come here: they wait on their I/O thread
//! (`crate::lin_reads`); this path takes watch-setting reads and reads
//! behind their session's requests at the processor.

use crate::mailbox::Serve;
use crate::messages::{AwaitApplied, ConnAddr, Submit, ToConn, ToZab};
use crate::processor::{InFlight, Processor, WriteKey};
use actix::Context;
use slog::warn;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use warden_core::txn::LogEntry;

#[derive(Default)]
pub(crate) struct ReadBatches {
    last: u64,
    /// The batch this turn's reads join (asked at the end of the turn).
    open: Option<u64>,
    /// Asked, not yet ready, in order: id, index once known, sessions (one entry per read), when.
    asked: VecDeque<(u64, Option<i64>, Vec<i64>, Instant)>,
    /// Batches up to here may be served.
    ready_through: u64,
    /// Committed entries held back by a session's read that must not see them.
    pub(super) held: VecDeque<LogEntry>,
    /// Connections whose reads got a read index this tree has not applied
    /// yet (`lin_reads`): zxid, their batch, who.
    applied_waiters: Vec<(i64, u64, ConnAddr)>,
}

impl ReadBatches {
    /// Asked batches still without an index after `limit`.
    fn stale(&self, now: Instant, limit: Duration) -> Vec<u64> {
        self.asked.iter().filter(|b| b.1.is_none() && now.saturating_duration_since(b.3) > limit).map(|b| b.0).collect()
    }
}

impl Serve<AwaitApplied> for Processor {
    fn serve(&mut self, msg: AwaitApplied, _: &mut Context<Self>) {
        let Some(z) = self.zab.as_mut() else { return };
        z.reads.applied_waiters.push((msg.zxid, msg.batch, msg.conn));
        self.wake_applied_waiters();
    }
}

impl Processor {
    /// Tells the connections waiting for the tree to reach their read index that it has.
    pub(crate) fn wake_applied_waiters(&mut self) {
        let Some(z) = self.zab.as_mut() else { return };
        if z.reads.applied_waiters.is_empty() {
            return;
        }
        let applied = self.core.db.last_zxid();
        z.reads.applied_waiters.retain(|(zxid, batch, conn)| {
            if *zxid > applied {
                return true;
            }
            conn.mailbox.do_send(ToConn::ReadIndex { batch: *batch, index: Some(*zxid) });
            false
        });
    }

    /// Whether I/O threads may answer plain reads behind a read index
    /// (`lin_reads`): linearizable reads while serving with a leader, no throttler.
    pub(crate) fn serves_indexed_reads(&self) -> bool {
        let throttled = self.throttles.max_requests() > 0;
        let serving = self.zab.as_ref().is_some_and(|z| z.serving && z.leader.is_some());
        self.config.linearizable_reads && serving && !throttled
    }

    /// A data read under linearizableReads: behind a read index, in its session's order.
    pub(crate) fn read_behind_index(&mut self, msg: Submit) {
        let Some(z) = self.zab.as_mut() else { return };
        if !z.serving || z.leader.is_none() {
            return msg.conn.do_send(ToConn::Close { frame: None, reason: "no leader" });
        }
        let r = &mut z.reads;
        let id = *r.open.get_or_insert_with(|| {
            r.last += 1;
            r.asked.push_back((r.last, None, Vec::new(), Instant::now()));
            r.last
        });
        if let Some(batch) = r.asked.back_mut() {
            batch.2.push(msg.session_id);
        }
        let queue = self.in_flight.entry(msg.session_id).or_default();
        queue.push_back(InFlight::Write(WriteKey::ReadIndex(id)));
        queue.push_back(InFlight::ReadAfterBarrier(msg));
    }

    /// Asks for the open batch's index; before any write leaves and at the end of a turn.
    pub(crate) fn ask_read_index(&mut self) {
        let Some(z) = self.zab.as_mut() else { return };
        if let Some(id) = z.reads.open.take() {
            z.broadcast().do_send(ToZab::ReadIndex { id });
        }
    }

    pub(super) fn on_read_ready(&mut self, id: u64, zxid: i64) {
        let Some(z) = self.zab.as_mut() else { return };
        if let Some(batch) = z.reads.asked.iter_mut().find(|b| b.0 == id) {
            batch.1 = Some(zxid);
        }
        self.gathering_replies(Self::release_ready_reads);
    }

    /// A batch without an index after `limit` (the leader answers within a
    /// heartbeat round, or steps down within syncLimit): its reads are
    /// refused rather than left fencing their sessions' writes for good.
    pub(crate) fn refuse_stale_reads(&mut self, limit: Duration) {
        let Some(z) = self.zab.as_mut() else { return };
        for id in z.reads.stale(Instant::now(), limit) {
            warn!(self.log, "no read index within the limit; refusing the batch's reads"; "batch" => id, "limit_ms" => limit.as_millis() as u64);
            self.on_read_refused(id);
        }
    }

    /// No index for these reads (this member stopped serving): their clients reconnect elsewhere.
    pub(super) fn on_read_refused(&mut self, id: u64) {
        let Some(z) = self.zab.as_mut() else { return };
        let Some(at) = z.reads.asked.iter().position(|b| b.0 == id) else { return };
        let (_, _, sessions, _) = z.reads.asked.remove(at).expect("found");
        for sid in sessions {
            for entry in self.in_flight.remove(&sid).into_iter().flatten() {
                if let InFlight::Read(m) | InFlight::ReadAfterBarrier(m) = entry {
                    m.conn.do_send(ToConn::Close { frame: None, reason: "no read index: the server lost its leader" });
                }
            }
        }
        self.release_ready_reads();
    }

    /// The read-index placeholder at the front of a session's queue, if its batch may be served.
    pub(crate) fn ready_placeholder(&self, session_id: i64) -> Option<WriteKey> {
        let z = self.zab.as_ref()?;
        match self.in_flight.get(&session_id)?.front()? {
            InFlight::Write(WriteKey::ReadIndex(b)) if *b <= z.reads.ready_through => Some(WriteKey::ReadIndex(*b)),
            _ => None,
        }
    }

    /// Serves the batches whose index is applied, in order, then applies
    /// what their reads held back.
    pub(super) fn release_ready_reads(&mut self) {
        let applied = self.core.db.last_zxid();
        loop {
            let Some(z) = self.zab.as_mut() else { return };
            match z.reads.asked.front() {
                Some((_, Some(index), _, _)) if *index <= applied => {}
                _ => break,
            }
            let (id, _, sessions, _) = z.reads.asked.pop_front().expect("checked");
            z.reads.ready_through = id;
            for sid in sessions {
                if let Some(key) = self.ready_placeholder(sid) {
                    self.release_reads_after(sid, key);
                }
            }
        }
        self.apply_held();
    }

    /// A committed entry must wait while its session's queue starts with a
    /// read that is not served yet (that read was asked before this write).
    pub(super) fn fenced(&self, entry: &LogEntry) -> bool {
        matches!(self.in_flight.get(&entry.hdr.session_id).and_then(|q| q.front()), Some(InFlight::Write(WriteKey::ReadIndex(_))))
    }

    /// Applies every held entry, fence or not: Zab needs the tree at its
    /// applied zxid now (a SNAP for a learner). A read still waiting then
    /// sees its session's later write — rare, and replication comes first.
    pub(crate) fn apply_all_held(&mut self) {
        while let Some(entry) = self.zab.as_mut().and_then(|z| z.reads.held.pop_front()) {
            self.apply_one(entry);
        }
    }

    /// Leadership lost (every read's client was closed): nothing fences any more.
    pub(super) fn forget_reads(&mut self) {
        let Some(z) = self.zab.as_mut() else { return };
        z.reads.open = None;
        z.reads.asked.clear();
        z.reads.applied_waiters.clear();
        self.apply_held();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_batches_without_an_index_past_the_limit_are_stale() {
        let now = Instant::now();
        let limit = Duration::from_millis(100);
        let long_ago = now - Duration::from_millis(500);
        let mut reads = ReadBatches::default();
        reads.asked.push_back((1, Some(7), vec![1], long_ago)); // answered, not yet applied
        reads.asked.push_back((2, None, vec![2], long_ago)); // never answered
        reads.asked.push_back((3, None, vec![3], now - Duration::from_millis(50))); // still within the limit
        reads.asked.push_back((4, None, vec![4], long_ago));
        assert_eq!(reads.stale(now, limit), vec![2, 4]);
        assert!(reads.stale(now, Duration::from_secs(1)).is_empty());
    }
}
