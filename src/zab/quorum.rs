//! Majority quorums over the voting members (ZooKeeper's
//! QuorumMaj). Observers replicate but never count. While a reconfig is
//! proposed but not known committed, a quorum must be a majority of the old
//! voters and of the new ones (joint consensus).

use super::ServerId;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    voters: BTreeSet<ServerId>,
    /// The proposed configs' voters, during a reconfig (normally one).
    proposed: Vec<BTreeSet<ServerId>>,
}

impl Quorum {
    pub fn new(voters: impl IntoIterator<Item = ServerId>) -> Quorum {
        let voters: BTreeSet<ServerId> = voters.into_iter().collect();
        assert!(!voters.is_empty(), "an ensemble needs at least one voter");
        Quorum { voters, proposed: Vec::new() }
    }

    /// Majorities of the `current` voters and of each proposed config's.
    pub fn joint(current: impl IntoIterator<Item = ServerId>, proposed: impl IntoIterator<Item = BTreeSet<ServerId>>) -> Quorum {
        Quorum { proposed: proposed.into_iter().filter(|p| !p.is_empty()).collect(), ..Quorum::new(current) }
    }

    /// A voter of any of the configs.
    pub fn is_voter(&self, id: ServerId) -> bool {
        self.voters.contains(&id) || self.proposed.iter().any(|p| p.contains(&id))
    }

    pub fn voters(&self) -> impl Iterator<Item = ServerId> + '_ {
        let all: BTreeSet<ServerId> = self.voters.iter().chain(self.proposed.iter().flatten()).copied().collect();
        all.into_iter()
    }

    /// True when `ids` hold a strict majority of the voters (of both
    /// configs, during a reconfig). Duplicates and non-voters are ignored.
    pub fn is_quorum(&self, ids: impl IntoIterator<Item = ServerId>) -> bool {
        let ids: BTreeSet<ServerId> = ids.into_iter().collect();
        let majority = |of: &BTreeSet<ServerId>| of.intersection(&ids).count() * 2 > of.len();
        majority(&self.voters) && self.proposed.iter().all(majority)
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

    #[test]
    fn zab_joint_quorum_needs_majorities_of_both_configs() {
        let q = Quorum::joint([1, 2, 3], [BTreeSet::from([3, 4, 5])]);
        assert!(q.is_voter(5) && q.is_voter(1) && !q.is_voter(6));
        assert_eq!(q.voters().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert!(!q.is_quorum([1, 2]), "no majority of the new voters");
        assert!(!q.is_quorum([4, 5]), "no majority of the old voters");
        assert!(q.is_quorum([2, 3, 4]));
    }
}
