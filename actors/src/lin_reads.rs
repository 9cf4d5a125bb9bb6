//! warden.linearizableReads on the I/O threads. A plain read (no watch) of a
//! connection with nothing outstanding at the processor waits on its own
//! I/O thread for a read index and is answered there, like a local read,
//! once the tree has applied that index. The reads of every connection that
//! arrive while one request for an index is out share the next one, so one
//! trip to the leader serves a whole round trip's reads. Any other request
//! behind waiting reads takes them to the processor, in order, whose own
//! read index and apply fence keep them from seeing that session's later
//! writes; the index they waited for here is then unused.

use crate::mailbox::Inbox;
use crate::messages::{ConnAddr, ToConn, ToZab};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Marks the read-index requests made for I/O threads (the processor's own count up from 1).
pub const IO_READS: u64 = 1 << 63;

/// How long a read may wait for its index before it is refused: twice
/// syncLimit, by when the leader has answered or stepped down.
pub fn read_index_limit(config: &warden_core::config::Config) -> Duration {
    Duration::from_millis(config.tick_time_ms.max(1) as u64 * config.sync_limit.max(1) as u64 * 2)
}

/// Where a connection sends its next request, in its session's order.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A plain read: waits here for a read index.
    Wait,
    /// Behind reads waiting here: they go to the processor first, then this
    /// request (the processor keeps a read's index from covering its
    /// session's later write). Holding it here instead would stall a
    /// pipelining session's writes for a read-index round trip.
    HandOver,
    /// Answered here at once or sent to the processor, as without linearizable reads.
    Go,
}

/// `indexed`: a plain read while I/O threads may answer reads behind an
/// index; `rides`: a ping, which waits with reads already waiting (its
/// reply must follow theirs) rather than take them to the processor. A
/// read waits here only while nothing of its session is at the processor,
/// and nothing overtakes a waiting read.
pub fn route(waiting: bool, indexed: bool, rides: bool, at_processor: u32) -> Route {
    match (waiting, indexed, rides) {
        (true, true, _) | (true, false, true) => Route::Wait,
        (true, false, false) => Route::HandOver,
        (false, true, _) if at_processor == 0 => Route::Wait,
        _ => Route::Go,
    }
}

/// Which batch a read joins, when a batch is asked, and who waits for it.
/// At most one batch is asked at a time; reads arriving meanwhile gather in
/// the next.
#[derive(Debug)]
pub struct Board<W> {
    /// The batch new reads join; not asked yet.
    gathering: u64,
    asked: Option<(u64, Instant)>,
    /// Who waits for which batch, in joining order.
    waiters: Vec<(u64, W)>,
}

impl<W> Default for Board<W> {
    fn default() -> Self {
        Board { gathering: 1, asked: None, waiters: Vec::new() }
    }
}

impl<W> Board<W> {
    /// Joins the gathering batch; `who` is registered unless `registered`
    /// says it already waits for that batch. Returns the batch, and the
    /// batch to ask for now if none is out.
    pub fn join(&mut self, registered: Option<u64>, who: impl FnOnce() -> W, now: Instant) -> (u64, Option<u64>) {
        let id = self.gathering;
        if registered != Some(id) {
            self.waiters.push((id, who()));
        }
        let ask = self.asked.is_none().then(|| self.ask(now));
        (id, ask)
    }

    fn ask(&mut self, now: Instant) -> u64 {
        let id = self.gathering;
        self.asked = Some((id, now));
        self.gathering += 1;
        id
    }

    /// The batch asked is answered (an index or a refusal): who waited for
    /// it, and the next batch to ask if reads gathered meanwhile. An answer
    /// to a batch no longer out (refused as overdue, abandoned) is ignored.
    pub fn answered(&mut self, id: u64, now: Instant) -> (Vec<W>, Option<u64>) {
        if self.asked.map(|a| a.0) != Some(id) {
            return (Vec::new(), None);
        }
        self.asked = None;
        let waiting = std::mem::take(&mut self.waiters);
        let (done, rest): (Vec<_>, Vec<_>) = waiting.into_iter().partition(|(b, _)| *b <= id);
        self.waiters = rest;
        let next = (!self.waiters.is_empty()).then(|| self.ask(now));
        (done.into_iter().map(|(_, w)| w).collect(), next)
    }

    /// The batch out for longer than `limit`, if any.
    pub fn overdue(&self, now: Instant, limit: Duration) -> Option<u64> {
        self.asked.filter(|(_, at)| now.saturating_duration_since(*at) > limit).map(|(id, _)| id)
    }

    /// The member stopped serving: everyone waiting, and nothing out.
    pub fn abandon(&mut self) -> Vec<W> {
        self.asked = None;
        self.gathering += 1;
        std::mem::take(&mut self.waiters).into_iter().map(|(_, w)| w).collect()
    }
}

/// The board the I/O threads and the broadcast actor share.
pub struct ReadIndexBoard {
    board: Mutex<Board<ConnAddr>>,
    zab: OnceLock<Inbox<ToZab>>,
    /// Beyond this a batch is refused: the leader answers within a heartbeat round or steps down.
    limit: Duration,
}

impl ReadIndexBoard {
    pub fn new(limit: Duration) -> ReadIndexBoard {
        ReadIndexBoard { board: Mutex::default(), zab: OnceLock::new(), limit }
    }

    /// The broadcast actor, which asks the leader.
    pub fn connect(&self, zab: Inbox<ToZab>) {
        let _ = self.zab.set(zab);
    }

    /// A connection's reads join the gathering batch (which is asked at
    /// once when no other is out). Returns the batch they wait for.
    pub fn join(&self, registered: Option<u64>, conn: &ConnAddr) -> u64 {
        let (id, ask) = self.board.lock().unwrap().join(registered, || conn.clone(), Instant::now());
        if let (Some(ask), Some(zab)) = (ask, self.zab.get()) {
            zab.do_send(ToZab::ReadIndex { id: IO_READS | ask });
        }
        id
    }

    /// The broadcast actor: batch `id` got `index` (None: refused). Tells
    /// its connections; returns the next batch to ask for (with `IO_READS`).
    pub fn answered(&self, id: u64, index: Option<i64>) -> Option<u64> {
        let batch = id & !IO_READS;
        let (done, next) = self.board.lock().unwrap().answered(batch, Instant::now());
        for conn in done {
            conn.mailbox.do_send(ToConn::ReadIndex { batch, index });
        }
        next.map(|n| IO_READS | n)
    }

    /// The broadcast actor, each tick: the batch out for too long, to refuse.
    pub fn overdue(&self) -> Option<u64> {
        self.board.lock().unwrap().overdue(Instant::now(), self.limit).map(|id| IO_READS | id)
    }

    /// The member stopped serving: every waiting connection is refused.
    pub fn abandon(&self) {
        let waiting = self.board.lock().unwrap().abandon();
        for conn in waiting {
            conn.mailbox.do_send(ToConn::ReadIndex { batch: u64::MAX, index: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_overtakes_a_waiting_read_and_reads_wait_only_with_nothing_at_the_processor() {
        // (waiting, indexed, a ping, at the processor)
        assert_eq!(route(false, true, false, 0), Route::Wait, "a read with nothing ahead waits for its index here");
        assert_eq!(route(false, true, false, 2), Route::Go, "a read behind requests at the processor follows them there");
        assert_eq!(route(true, false, false, 0), Route::HandOver, "a write behind waiting reads takes them to the processor first");
        assert_eq!(route(true, true, false, 0), Route::Wait, "reads pile up behind a waiting read");
        assert_eq!(route(true, false, true, 0), Route::Wait, "a ping behind waiting reads waits with them");
        assert_eq!(route(false, false, true, 0), Route::Go, "a ping alone goes at once");
        assert_eq!(route(false, false, false, 0), Route::Go, "without waiting reads a write goes at once");
    }

    #[test]
    fn one_batch_is_out_at_a_time_and_reads_arriving_meanwhile_share_the_next() {
        let now = Instant::now();
        let mut b: Board<&str> = Board::default();
        assert_eq!(b.join(None, || "a", now), (1, Some(1)), "nothing out: asked at once");
        assert_eq!(b.join(None, || "b", now), (2, None), "batch 1 is out: b gathers in 2");
        assert_eq!(b.join(Some(2), || "b-again", now), (2, None), "b already waits for 2");
        assert_eq!(b.join(None, || "c", now), (2, None));
        assert_eq!(b.answered(2, now), (vec![], None), "an answer to a batch not out is ignored");
        assert_eq!(b.answered(1, now), (vec!["a"], Some(2)), "batch 2 is asked as soon as 1 is answered");
        assert_eq!(b.join(Some(1), || "a", now), (3, None), "a, waiting again, gathers in 3");
        assert_eq!(b.answered(2, now), (vec!["b", "c"], Some(3)));
        assert_eq!(b.answered(3, now), (vec!["a"], None));
        assert_eq!(b.join(None, || "d", now), (4, Some(4)));
    }

    #[test]
    fn an_overdue_batch_is_found_and_abandoning_returns_every_waiter() {
        let now = Instant::now();
        let mut b: Board<&str> = Board::default();
        assert_eq!(b.overdue(now, Duration::from_secs(1)), None);
        b.join(None, || "a", now);
        b.join(None, || "b", now);
        assert_eq!(b.overdue(now + Duration::from_millis(500), Duration::from_secs(1)), None);
        assert_eq!(b.overdue(now + Duration::from_secs(2), Duration::from_secs(1)), Some(1));
        assert_eq!(b.abandon(), vec!["a", "b"]);
        assert_eq!(b.answered(1, now), (vec![], None), "a late answer finds nothing out");
        let (id, ask) = b.join(None, || "c", now);
        assert_eq!(ask, Some(id), "after abandoning, the next read asks at once");
        assert!(id > 2, "a fresh batch, not one a late answer could match");
    }
}
