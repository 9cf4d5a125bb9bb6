//! Linearizable reads without a log write (`warden.linearizableReads`): a
//! read index. The leader notes its commit index when a read is asked, then
//! sends a heartbeat round; once a quorum (itself included) has answered a
//! round sent after the read was asked, no other leader can have committed
//! anything by then (it would need a quorum that had left this leader), so
//! serving the read from a tree that has applied that index is
//! linearizable. Reads asked while a round is out wait for the next one, so
//! one round serves every read of its interval. A learner asks the leader
//! and serves the read once it has applied the index it gets back. Its
//! request is itself such an answer (a voter following this leader after
//! the read began): where the leader and it make a quorum, as in an
//! ensemble of three, the leader answers it at once, without a round.

use super::{ServerId, Zxid};
use std::collections::BTreeSet;

/// Who asked: the leader's own runtime, or a learner (its id and request id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Local(u64),
    Learner(ServerId, u64),
}

/// Reads a round confirmed (with their index), and the next round to send.
pub type Confirmed = (Vec<(Reader, Zxid)>, Option<u64>);

#[derive(Debug, Default)]
pub struct ReadRounds {
    round: u64,
    in_flight: bool,
    /// Asked while a round was out: they need the next one.
    waiting: Vec<(Reader, Zxid)>,
    in_round: Vec<(Reader, Zxid)>,
    acks: BTreeSet<ServerId>,
}

impl ReadRounds {
    /// A read asked when the commit index is `committed`. Returns the round
    /// to send when one must start now.
    pub fn ask(&mut self, reader: Reader, committed: Zxid, me: ServerId) -> Option<u64> {
        self.waiting.push((reader, committed));
        (!self.in_flight).then(|| self.start(me))
    }

    fn start(&mut self, me: ServerId) -> u64 {
        self.round += 1;
        self.in_flight = true;
        self.in_round = std::mem::take(&mut self.waiting);
        self.acks = BTreeSet::from([me]);
        self.round
    }

    /// The round out, if any: sent again each tick and to each learner that
    /// starts forwarding, since the one sent may have gone down with a link
    /// that was replaced before the leader noticed.
    pub fn round_out(&self) -> Option<u64> {
        self.in_flight.then_some(self.round)
    }

    /// A learner answered heartbeat `round` (older rounds count for nothing).
    pub fn ack(&mut self, from: ServerId, round: u64) {
        if self.in_flight && round == self.round {
            self.acks.insert(from);
        }
    }

    /// If the acks of the round out make a quorum: the reads it confirmed
    /// (with their index), and the next round to send if reads wait for one.
    pub fn complete(&mut self, is_quorum: impl Fn(&BTreeSet<ServerId>) -> bool, me: ServerId) -> Option<Confirmed> {
        if !self.in_flight || !is_quorum(&self.acks) {
            return None;
        }
        self.in_flight = false;
        let done = std::mem::take(&mut self.in_round);
        let next = (!self.waiting.is_empty()).then(|| self.start(me));
        Some((done, next))
    }

    /// Leadership lost: every read not answered.
    pub fn abandon(&mut self) -> Vec<Reader> {
        self.in_flight = false;
        self.in_round.drain(..).chain(self.waiting.drain(..)).map(|(r, _)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn majority_of_three(acks: &BTreeSet<ServerId>) -> bool {
        acks.iter().filter(|id| (1..=3).contains(*id)).count() >= 2
    }

    #[test]
    fn a_read_is_confirmed_only_by_a_quorum_answering_a_round_sent_after_it() {
        let mut r = ReadRounds::default();
        assert_eq!(r.ask(Reader::Local(1), 10, 1), Some(1));
        assert!(r.complete(majority_of_three, 1).is_none(), "the leader alone is no quorum");
        r.ack(2, 0);
        assert!(r.complete(majority_of_three, 1).is_none(), "an answer to an older round does not count");
        // Asked while round 1 is out: waits for round 2.
        assert_eq!(r.ask(Reader::Learner(3, 7), 12, 1), None);
        r.ack(2, 1);
        let (done, next) = r.complete(majority_of_three, 1).unwrap();
        assert_eq!(done, vec![(Reader::Local(1), 10)]);
        assert_eq!(next, Some(2));
        r.ack(3, 1);
        assert!(r.complete(majority_of_three, 1).is_none(), "round 2 needs its own answers");
        r.ack(3, 2);
        let (done, next) = r.complete(majority_of_three, 1).unwrap();
        assert_eq!((done, next), (vec![(Reader::Learner(3, 7), 12)], None));
    }

    #[test]
    fn reads_asked_in_one_interval_share_a_round_and_leadership_loss_returns_them() {
        let mut r = ReadRounds::default();
        assert_eq!(r.ask(Reader::Local(1), 5, 1), Some(1));
        assert_eq!(r.ask(Reader::Local(2), 5, 1), None);
        assert_eq!(r.ask(Reader::Local(3), 6, 1), None);
        r.ack(3, 1);
        let (done, next) = r.complete(majority_of_three, 1).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(next, Some(2), "the two that waited go in one round");
        assert_eq!(r.ask(Reader::Local(4), 7, 1), None);
        let mut lost = r.abandon();
        lost.sort_by_key(|x| format!("{x:?}"));
        assert_eq!(lost, vec![Reader::Local(2), Reader::Local(3), Reader::Local(4)]);
        // A single member confirms at once.
        let mut solo = ReadRounds::default();
        let round = solo.ask(Reader::Local(9), 3, 1).unwrap();
        assert_eq!(round, 1);
        let (done, _) = solo.complete(|acks| acks.contains(&1), 1).unwrap();
        assert_eq!(done, vec![(Reader::Local(9), 3)]);
    }
}
