//! Majority quorums over the voting members (ZooKeeper's
//! QuorumMaj). Observers replicate but never count.

use super::ServerId;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    voters: BTreeSet<ServerId>,
}

impl Quorum {
    pub fn new(voters: impl IntoIterator<Item = ServerId>) -> Quorum {
        let voters: BTreeSet<ServerId> = voters.into_iter().collect();
        assert!(!voters.is_empty(), "an ensemble needs at least one voter");
        Quorum { voters }
    }

    pub fn is_voter(&self, id: ServerId) -> bool {
        self.voters.contains(&id)
    }

    pub fn voters(&self) -> impl Iterator<Item = ServerId> + '_ {
        self.voters.iter().copied()
    }

    /// True when the voters among `ids` are a strict majority. Duplicates
    /// and non-voters are ignored.
    pub fn is_quorum(&self, ids: impl IntoIterator<Item = ServerId>) -> bool {
        let voting: BTreeSet<ServerId> = ids.into_iter().filter(|id| self.is_voter(*id)).collect();
        voting.len() * 2 > self.voters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zab_majority_ignores_observers_and_duplicates() {
        let q = Quorum::new([1, 2, 3]);
        assert!(!q.is_quorum([1]));
        assert!(!q.is_quorum([1, 1, 9, 10]));
        assert!(q.is_quorum([1, 3]));
        let q4 = Quorum::new([1, 2, 3, 4]);
        assert!(!q4.is_quorum([1, 2]));
        assert!(q4.is_quorum([1, 2, 4]));
    }
}
