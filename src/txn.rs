//! Transactions: the validated, deterministic state changes that the request
//! preparer produces and every replica applies in zxid order.

use crate::proto::Acl;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnHeader {
    pub session_id: i64,
    pub cxid: i32,
    pub zxid: i64,
    pub time_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Txn {
    CreateSession {
        timeout_ms: i32,
    },
    /// Closing deletes the session's ephemerals; the list is fixed at prep time.
    CloseSession {
        ephemerals: Vec<String>,
    },
    Create {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        ephemeral_owner: i64,
        parent_cversion: i32,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        #[serde(with = "serde_bytes")]
        data: Option<Vec<u8>>,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    /// All sub-transactions succeed together; a failed multi holds only `Error`s.
    Multi(Vec<Txn>),
    /// A membership change: the new `/zookeeper/config` text (ZooKeeper logs
    /// it as a SetDataTxn of type reconfig).
    Reconfig {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A rejected write still takes a zxid, as in ZooKeeper.
    Error {
        code: i32,
    },
}

/// One transaction as logged and replicated: what happened, and where in
/// the total order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub hdr: TxnHeader,
    pub txn: Txn,
}

impl LogEntry {
    pub fn encode(&self) -> Vec<u8> {
        rmp_serde::to_vec(self).expect("transactions always serialize")
    }

    pub fn decode(bytes: &[u8]) -> Result<LogEntry, String> {
        rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// `Stat.ephemeralOwner` encodings (`EphemeralType`).
pub mod owner {
    pub const CONTAINER: i64 = i64::MIN;
    const TTL_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
    pub const TTL_MAX_MS: i64 = 0x00ff_ffff_ffff;

    pub fn ttl(ttl_ms: i64) -> i64 {
        TTL_MASK | ttl_ms
    }

    /// The TTL of a TTL node, or None for any other owner value.
    pub fn ttl_of(owner: i64) -> Option<i64> {
        if owner & TTL_MASK == TTL_MASK && owner != -1 && (owner >> 40) & 0xffff == 0 {
            Some(owner & TTL_MAX_MS)
        } else {
            None
        }
    }

    /// A plain ephemeral: owned by a live session.
    pub fn is_session(owner: i64) -> bool {
        owner != 0 && owner != CONTAINER && ttl_of(owner).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn log_entries_round_trip() {
        use super::*;
        let e = LogEntry {
            hdr: TxnHeader { session_id: 7, cxid: 3, zxid: 42, time_ms: 1000 },
            txn: Txn::Multi(vec![
                Txn::Create { path: "/a".into(), data: Some(vec![0, 255, 7]), acl: vec![Acl::world_all()], ephemeral_owner: 7, parent_cversion: 1 },
                Txn::SetData { path: "/a".into(), data: None, version: 1 },
                Txn::Error { code: -101 },
            ]),
        };
        assert_eq!(LogEntry::decode(&e.encode()).unwrap(), e);
        assert!(LogEntry::decode(&[0xc1]).is_err());
    }

    #[test]
    fn ephemeral_owner_encodings() {
        assert_eq!(owner::ttl(1000) as u64, 0xff00_0000_0000_03e8);
        assert_eq!(owner::ttl_of(owner::ttl(1000)), Some(1000));
        assert_eq!(owner::ttl_of(owner::CONTAINER), None);
        assert!(owner::is_session(0x0100_0000_0000_0001));
        assert!(!owner::is_session(owner::CONTAINER));
        assert!(!owner::is_session(owner::ttl(5)));
        assert!(!owner::is_session(0));
    }
}
