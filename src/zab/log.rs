//! The protocol's view of a server's storage: its two epochs, the tail of
//! the txn log kept in memory, how far it is committed and applied, and
//! which disk writes are still in flight. Every mutation also emits the
//! command that makes the runtime do the same on disk.
//!
//! Memory holds every entry after `applied` (they are needed to apply on
//! commit) plus up to `diff_window` applied ones, so that a lagging learner
//! can be sent a DIFF; anything older needs a SNAP.

use super::{Command, Durable, Epoch, EpochKind, Zxid};
use crate::txn::LogEntry;
use std::collections::VecDeque;

/// How the leader brings a learner up to date (LearnerHandler.syncFollower).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPlan {
    /// The learner's log is a prefix of ours: send what follows `from`.
    Diff { from: Zxid },
    /// The learner has an uncommitted tail we do not: cut it back to `to`,
    /// the last zxid we share, then send what follows.
    Trunc { to: Zxid },
    /// The learner is behind our in-memory window: send the database at
    /// `zxid` (our applied point), then what follows.
    Snap { zxid: Zxid },
}

#[derive(Debug)]
pub struct Store {
    pub accepted_epoch: Epoch,
    pub current_epoch: Epoch,
    /// Zxid just before `entries[0]`: the snapshot or the last trimmed entry.
    base: Zxid,
    entries: VecDeque<LogEntry>,
    committed: Zxid,
    applied: Zxid,
    /// Disk operations issued and not yet reported durable: (seq, zxid the
    /// durable log ends at once the operation completes).
    pending: VecDeque<(u64, Zxid)>,
    issued_seq: u64,
    durable_seq: u64,
    durable_zxid: Zxid,
    diff_window: usize,
}

impl Store {
    pub fn new(durable: Durable, diff_window: usize) -> Store {
        let base = durable.snapshot_zxid;
        let entries: VecDeque<LogEntry> = durable.log.into_iter().filter(|e| e.hdr.zxid > base).collect();
        assert!(entries.iter().zip(entries.iter().skip(1)).all(|(a, b)| a.hdr.zxid < b.hdr.zxid), "log out of zxid order");
        let last = entries.back().map_or(base, |e| e.hdr.zxid);
        Store {
            accepted_epoch: durable.accepted_epoch,
            current_epoch: durable.current_epoch,
            base,
            entries,
            committed: base,
            applied: base,
            pending: VecDeque::new(),
            issued_seq: 0,
            durable_seq: 0,
            durable_zxid: last,
            diff_window,
        }
    }

    /// Last zxid logged (durable or not): what votes and FOLLOWERINFO carry.
    pub fn last_zxid(&self) -> Zxid {
        self.entries.back().map_or(self.base, |e| e.hdr.zxid)
    }

    pub fn committed(&self) -> Zxid {
        self.committed
    }

    pub fn applied(&self) -> Zxid {
        self.applied
    }

    pub fn base(&self) -> Zxid {
        self.base
    }

    /// Last zxid of the durable log (valid once no truncation is pending).
    pub fn durable_zxid(&self) -> Zxid {
        self.durable_zxid
    }

    /// Sequence number of the last disk operation issued.
    pub fn issued_seq(&self) -> u64 {
        self.issued_seq
    }

    /// Every disk operation up to this sequence number is durable.
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    pub fn set_epoch(&mut self, kind: EpochKind, epoch: Epoch, out: &mut Vec<Command>) {
        match kind {
            EpochKind::Accepted => self.accepted_epoch = epoch,
            EpochKind::Current => self.current_epoch = epoch,
        }
        out.push(Command::PersistEpoch { kind, epoch });
    }

    fn issue(&mut self, zxid_after: Zxid) {
        self.issued_seq += 1;
        self.pending.push_back((self.issued_seq, zxid_after));
    }

    /// Logs entries that extend the log; the caller checked the order.
    pub fn append(&mut self, entries: Vec<LogEntry>, out: &mut Vec<Command>) {
        let mut last = self.last_zxid();
        for e in &entries {
            assert!(e.hdr.zxid > last, "append out of order: {:#x} after {:#x}", e.hdr.zxid, last);
            last = e.hdr.zxid;
        }
        self.entries.extend(entries.iter().cloned());
        self.issue(last);
        out.push(Command::AppendLog { entries });
    }

    /// Drops the entries after `to`. Refuses to cut a committed entry, or to
    /// truncate to a zxid this log does not hold (histories would splice).
    pub fn truncate(&mut self, to: Zxid, out: &mut Vec<Command>) -> Result<(), String> {
        if to < self.committed {
            return Err(format!("TRUNC to {to:#x} would cut committed {:#x}", self.committed));
        }
        if to != self.base && !self.contains(to) {
            return Err(format!("TRUNC to {to:#x}, which this log does not hold"));
        }
        while self.last_zxid() > to {
            self.entries.pop_back();
        }
        self.issue(to);
        out.push(Command::TruncateLog { to_zxid: to });
        Ok(())
    }

    /// A snapshot at `zxid` may replace everything: refused if it would
    /// take back a commit.
    pub fn check_snapshot(&self, zxid: Zxid) -> Result<(), String> {
        if zxid < self.committed {
            return Err(format!("SNAP at {zxid:#x} is older than committed {:#x}", self.committed));
        }
        Ok(())
    }

    /// Replaces everything with the leader's database at `zxid`, received
    /// as `bytes` with crc32c `crc` (see `Command::InstallSnapshot`).
    pub fn install_snapshot(&mut self, zxid: Zxid, bytes: u64, crc: u32, fuzzy_until: Zxid, out: &mut Vec<Command>) -> Result<(), String> {
        self.check_snapshot(zxid)?;
        self.entries.clear();
        self.base = zxid;
        self.committed = zxid;
        self.applied = zxid;
        self.issue(zxid);
        out.push(Command::InstallSnapshot { zxid, bytes, crc, fuzzy_until });
        Ok(())
    }

    /// The runtime finished the oldest outstanding disk operation.
    pub fn persisted(&mut self, zxid: Zxid) -> Result<(), String> {
        match self.pending.pop_front() {
            Some((seq, expected)) if expected == zxid => {
                self.durable_seq = seq;
                self.durable_zxid = zxid;
                Ok(())
            }
            Some((_, expected)) => Err(format!("disk reported {zxid:#x}, expected {expected:#x}")),
            None => Err(format!("disk reported {zxid:#x} with nothing outstanding")),
        }
    }

    /// Marks everything up to `zxid` committed and applies what is logged.
    pub fn commit(&mut self, zxid: Zxid, out: &mut Vec<Command>) {
        self.committed = self.committed.max(zxid);
        let upto = self.committed.min(self.last_zxid());
        if upto <= self.applied {
            return;
        }
        let start = self.entries.partition_point(|e| e.hdr.zxid <= self.applied);
        let end = self.entries.partition_point(|e| e.hdr.zxid <= upto);
        let batch: Vec<LogEntry> = self.entries.range(start..end).cloned().collect();
        self.applied = upto;
        out.push(Command::Apply { entries: batch });
        self.trim();
    }

    /// Forgets applied entries beyond the DIFF window.
    fn trim(&mut self) {
        let applied_count = self.entries.partition_point(|e| e.hdr.zxid <= self.applied);
        for _ in self.diff_window..applied_count {
            let e = self.entries.pop_front().expect("counted");
            self.base = e.hdr.zxid;
        }
    }

    pub fn contains(&self, zxid: Zxid) -> bool {
        self.entries.binary_search_by_key(&zxid, |e| e.hdr.zxid).is_ok()
    }

    /// Entries after `zxid`, which must be `base` or held in memory.
    pub fn entries_after(&self, zxid: Zxid) -> impl Iterator<Item = &LogEntry> {
        let start = self.entries.partition_point(|e| e.hdr.zxid <= zxid);
        self.entries.range(start..)
    }

    /// Chooses DIFF, TRUNC or SNAP for a learner whose log ends at `peer_last`.
    pub fn sync_plan(&self, peer_last: Zxid) -> SyncPlan {
        if peer_last == self.last_zxid() || peer_last == self.base || self.contains(peer_last) {
            return SyncPlan::Diff { from: peer_last };
        }
        if peer_last < self.base {
            return SyncPlan::Snap { zxid: self.applied };
        }
        // The learner holds zxids we do not: keep what we share (the largest
        // of our zxids not above its last), drop the rest. Our history holds
        // every committed entry, so this never cuts a committed one.
        let shared = self.entries.partition_point(|e| e.hdr.zxid <= peer_last);
        let to = if shared == 0 { self.base } else { self.entries[shared - 1].hdr.zxid };
        SyncPlan::Trunc { to }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{Txn, TxnHeader};
    use crate::zab::zxid::make;

    fn entry(zxid: Zxid) -> LogEntry {
        LogEntry { hdr: TxnHeader { session_id: 1, cxid: 0, zxid, time_ms: 0 }, txn: Txn::Error { code: 0 } }
    }

    fn store(zxids: &[Zxid], window: usize) -> Store {
        Store::new(Durable { accepted_epoch: 2, current_epoch: 2, snapshot_zxid: 0, log: zxids.iter().map(|z| entry(*z)).collect() }, window)
    }

    #[test]
    fn zab_sync_plan_diff_trunc_snap() {
        // History: 1:1 1:2 1:3 2:1 2:2, all applied; a window of 3 keeps 1:3 2:1 2:2.
        let mut s = store(&[make(1, 1), make(1, 2), make(1, 3), make(2, 1), make(2, 2)], 3);
        s.commit(make(2, 2), &mut Vec::new());
        assert_eq!(s.base(), make(1, 2));
        // Up to date, or a prefix inside the window: DIFF.
        assert_eq!(s.sync_plan(make(2, 2)), SyncPlan::Diff { from: make(2, 2) });
        assert_eq!(s.sync_plan(make(1, 3)), SyncPlan::Diff { from: make(1, 3) });
        assert_eq!(s.sync_plan(make(1, 2)), SyncPlan::Diff { from: make(1, 2) });
        // An uncommitted epoch-1 tail we never had: TRUNC to what we share.
        assert_eq!(s.sync_plan(make(1, 7)), SyncPlan::Trunc { to: make(1, 3) });
        // Ahead of us (a stale tail beyond our history): TRUNC to our end.
        assert_eq!(s.sync_plan(make(2, 9)), SyncPlan::Trunc { to: make(2, 2) });
        // Behind the window: SNAP at our applied point.
        assert_eq!(s.sync_plan(make(1, 1)), SyncPlan::Snap { zxid: make(2, 2) });
        assert_eq!(s.sync_plan(0), SyncPlan::Snap { zxid: make(2, 2) });
        let after: Vec<Zxid> = s.entries_after(make(1, 3)).map(|e| e.hdr.zxid).collect();
        assert_eq!(after, vec![make(2, 1), make(2, 2)]);
    }

    #[test]
    fn zab_truncate_never_cuts_committed() {
        let mut s = store(&[make(1, 1), make(1, 2), make(1, 3)], 10);
        let mut out = Vec::new();
        s.commit(make(1, 2), &mut out);
        assert!(s.truncate(make(1, 1), &mut out).is_err());
        assert!(s.truncate(make(1, 9), &mut out).is_err(), "not held");
        s.truncate(make(1, 2), &mut out).unwrap();
        assert_eq!(s.last_zxid(), make(1, 2));
        assert_eq!(out.last(), Some(&Command::TruncateLog { to_zxid: make(1, 2) }));
    }

    #[test]
    fn zab_disk_completions_are_fifo() {
        let mut s = store(&[], 10);
        let mut out = Vec::new();
        s.append(vec![entry(make(1, 1))], &mut out);
        s.append(vec![entry(make(1, 2))], &mut out);
        assert_eq!(s.durable_seq(), 0);
        assert!(s.persisted(make(1, 2)).is_err(), "completions come in issue order");
        let mut s = store(&[], 10);
        s.append(vec![entry(make(1, 1))], &mut out);
        s.persisted(make(1, 1)).unwrap();
        assert_eq!((s.durable_seq(), s.durable_zxid()), (1, make(1, 1)));
    }

    #[test]
    fn zab_commit_applies_in_order_once() {
        let mut s = store(&[make(1, 1), make(1, 2), make(1, 3)], 10);
        let mut out = Vec::new();
        s.commit(make(1, 2), &mut out);
        s.commit(make(1, 1), &mut out);
        s.commit(make(1, 9), &mut out); // beyond the log: applies what is there
        let applied: Vec<Zxid> = out
            .iter()
            .flat_map(|c| match c {
                Command::Apply { entries } => entries.iter().map(|e| e.hdr.zxid).collect(),
                _ => vec![],
            })
            .collect();
        assert_eq!(applied, vec![make(1, 1), make(1, 2), make(1, 3)]);
    }
}
