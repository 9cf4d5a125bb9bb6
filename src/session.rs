//! Session bookkeeping: timeout negotiation, ids, passwords and the expiry
//! queue (ZooKeeper's `SessionTrackerImpl` + `ExpiryQueue`). Time is an input.

use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Clamps a requested timeout into [min, max], as `processConnectRequest`.
pub fn negotiate_timeout(requested_ms: i32, min_ms: u32, max_ms: u32) -> i32 {
    (requested_ms.max(min_ms as i32)).min(max_ms as i32)
}

/// The first session id of a server: `((now << 24) >>> 8) | (server_id << 56)`,
/// as ZooKeeper, so ids stay unique across restarts and servers.
pub fn initial_session_id(now_ms: i64, server_id: u8) -> i64 {
    let id = (((now_ms as u64) << 24) >> 8) as i64 | ((server_id as i64) << 56);
    if id == i64::MIN {
        id + 1
    } else {
        id
    }
}

/// A session's 16-byte password: a keyed hash of its id, so any holder of the
/// secret can check it and nobody without it can forge one.
pub fn password(secret: &[u8], session_id: i64) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(secret);
    h.update(session_id.to_be_bytes());
    h.finalize()[..16].to_vec()
}

/// Sessions grouped by expiry time, rounded up to whole ticks so one timer
/// pass expires a whole bucket.
#[derive(Default)]
pub struct ExpiryQueue {
    tick_ms: i64,
    buckets: BTreeMap<i64, HashSet<i64>>,
    deadline_of: HashMap<i64, i64>,
}

impl ExpiryQueue {
    pub fn new(tick_ms: u32) -> ExpiryQueue {
        ExpiryQueue { tick_ms: tick_ms.max(1) as i64, ..Default::default() }
    }

    fn round_up(&self, t: i64) -> i64 {
        (t / self.tick_ms + 1) * self.tick_ms
    }

    /// Moves the session's deadline to `now + timeout` (rounded up to a tick).
    pub fn touch(&mut self, session_id: i64, timeout_ms: i32, now_ms: i64) {
        let deadline = self.round_up(now_ms + timeout_ms as i64);
        match self.deadline_of.insert(session_id, deadline) {
            Some(old) if old == deadline => return,
            Some(old) => self.take_from_bucket(old, session_id),
            None => {}
        }
        self.buckets.entry(deadline).or_default().insert(session_id);
    }

    fn take_from_bucket(&mut self, deadline: i64, session_id: i64) {
        if let Some(b) = self.buckets.get_mut(&deadline) {
            b.remove(&session_id);
            if b.is_empty() {
                self.buckets.remove(&deadline);
            }
        }
    }

    pub fn remove(&mut self, session_id: i64) {
        if let Some(d) = self.deadline_of.remove(&session_id) {
            self.take_from_bucket(d, session_id);
        }
    }

    /// Removes and returns every session whose deadline is at or before `now`.
    pub fn expire(&mut self, now_ms: i64) -> Vec<i64> {
        let mut out = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now_ms {
                break;
            }
            for sid in entry.remove() {
                self.deadline_of.remove(&sid);
                out.push(sid);
            }
        }
        out.sort_unstable();
        out
    }

    pub fn len(&self) -> usize {
        self.deadline_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadline_of.is_empty()
    }

    pub fn contains(&self, session_id: i64) -> bool {
        self.deadline_of.contains_key(&session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_clamped() {
        assert_eq!(negotiate_timeout(100, 4000, 40000), 4000);
        assert_eq!(negotiate_timeout(99999, 4000, 40000), 40000);
        assert_eq!(negotiate_timeout(10000, 4000, 40000), 10000);
    }

    #[test]
    fn ids_are_positive_and_passwords_keyed() {
        let id = initial_session_id(1_700_000_000_000, 0);
        assert!(id > 0);
        assert_eq!(initial_session_id(1_700_000_000_000, 3) >> 56, 3);
        assert_eq!(password(b"k", id).len(), 16);
        assert_eq!(password(b"k", id), password(b"k", id));
        assert_ne!(password(b"k", id), password(b"other", id));
        assert_ne!(password(b"k", id), password(b"k", id + 1));
    }

    #[test]
    fn sessions_expire_by_bucket_and_touch_defers() {
        let mut q = ExpiryQueue::new(100);
        q.touch(1, 1000, 0);
        q.touch(2, 1000, 50);
        q.touch(3, 5000, 0);
        assert!(q.expire(1000).is_empty(), "deadlines round up to the next tick");
        q.touch(2, 1000, 900);
        assert_eq!(q.expire(1100), vec![1]);
        assert_eq!(q.expire(2000), vec![2]);
        q.remove(3);
        assert!(q.expire(10_000).is_empty());
        assert!(q.is_empty());
    }
}
