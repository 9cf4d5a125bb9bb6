//! Tree digests across the ensemble: the leader sends the digest after its
//! last applied zxid; a learner compares at the same zxid and stops if it
//! differs (it diverged and must not serve).

use super::DIGEST_MEMORY;
use crate::messages::ToZab;
use crate::processor::Processor;
use warden_core::zab::{Message, Zxid};

impl Processor {
    /// Leader: the digest after the last applied zxid, to every learner.
    pub(super) fn send_digest(&mut self) {
        if !self.is_leader() {
            return;
        }
        let (zxid, digest) = (self.core.db.last_zxid(), self.core.db.tree.digest());
        let Some(z) = self.zab.as_mut() else { return };
        if zxid == z.digest_sent_for {
            return;
        }
        z.digest_sent_for = zxid;
        z.broadcast().do_send(ToZab::ToLearners(Message::Digest { zxid, digest }));
    }

    /// Learner: compares the leader's digest with ours at the same zxid.
    pub(super) fn check_digest(&mut self, zxid: Zxid, leader_digest: u64) {
        let Some(z) = self.zab.as_mut() else { return };
        let mine = z.applied_digests.iter().rev().find(|(zx, _)| *zx == zxid).map(|(_, d)| *d);
        match mine {
            Some(d) if d != leader_digest => {
                let msg = format!("the tree after zxid {zxid:#x} differs from the leader's (digest {d:#x}, leader {leader_digest:#x}): this member diverged");
                self.fatal(msg)
            }
            Some(_) => z.digests_checked += 1,
            None if zxid > self.core.db.last_zxid() => z.expected_digest = Some((zxid, leader_digest)),
            None => {} // older than what we remember, or skipped by a SNAP
        }
    }

    /// After each applied transaction on a learner: remember its digest, and
    /// check the leader's if it was waiting for this zxid.
    pub(super) fn note_applied_digest(&mut self, zxid: Zxid) {
        if self.is_leader() {
            return;
        }
        let digest = self.core.db.tree.digest();
        let Some(z) = self.zab.as_mut() else { return };
        if zxid <= z.fuzzy_until {
            // Still catching up on a fuzzy SNAP: the tree may be ahead of zxid.
            z.expected_digest = z.expected_digest.filter(|(want, _)| *want > zxid);
            return;
        }
        if z.applied_digests.len() >= DIGEST_MEMORY {
            z.applied_digests.pop_front();
        }
        z.applied_digests.push_back((zxid, digest));
        if let Some((want, d)) = z.expected_digest {
            if want <= zxid {
                z.expected_digest = None;
                if want == zxid {
                    self.check_digest(want, d);
                }
            }
        }
    }
}
