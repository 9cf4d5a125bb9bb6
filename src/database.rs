//! The replicated state (ZooKeeper's `ZKDatabase`): the tree, the session
//! table and the last applied zxid. `apply` is the one function every replica
//! runs, in zxid order, for every transaction.

use crate::error::Code;
use crate::proto::Stat;
use crate::tree::{DataTree, Trigger};
use crate::txn::{Txn, TxnHeader};
use std::collections::{BTreeMap, BTreeSet};

/// What applying one transaction produced, for the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResult {
    Done,
    Created { path: String, stat: Stat },
    Stat(Stat),
    Multi(Vec<TxnResult>),
    Error(i32),
}

#[derive(Default, Clone)]
pub struct Database {
    pub tree: DataTree,
    /// Live sessions and their negotiated timeouts.
    sessions: BTreeMap<i64, i32>,
    /// Live sessions ZooKeeper created (imported from its files): their
    /// clients hold ZooKeeper's passwords, which stay valid for them only.
    zookeeper_sessions: BTreeSet<i64>,
    last_zxid: i64,
}

impl Database {
    /// A database as a snapshot recorded it.
    pub fn restore(tree: DataTree, sessions: impl IntoIterator<Item = (i64, i32)>, last_zxid: i64) -> Database {
        Database { tree, sessions: sessions.into_iter().collect(), zookeeper_sessions: BTreeSet::new(), last_zxid }
    }

    /// A restored backup's zxid (the admin `restore` command).
    pub fn set_last_zxid(&mut self, zxid: i64) {
        self.last_zxid = zxid;
    }

    /// Marks sessions as created by ZooKeeper (after an import; a closeSession unmarks).
    pub fn mark_sessions_from_zookeeper(&mut self, ids: impl IntoIterator<Item = i64>) {
        self.zookeeper_sessions.extend(ids);
    }

    pub fn is_zookeeper_session(&self, session_id: i64) -> bool {
        self.zookeeper_sessions.contains(&session_id)
    }

    pub fn zookeeper_sessions(&self) -> &BTreeSet<i64> {
        &self.zookeeper_sessions
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn session_timeout(&self, session_id: i64) -> Option<i32> {
        self.sessions.get(&session_id).copied()
    }

    pub fn sessions(&self) -> &BTreeMap<i64, i32> {
        &self.sessions
    }

    pub fn apply(&mut self, hdr: &TxnHeader, txn: &Txn, triggers: &mut Vec<Trigger>) -> TxnResult {
        self.last_zxid = self.last_zxid.max(hdr.zxid);
        match txn {
            Txn::CreateSession { timeout_ms } => {
                self.sessions.insert(hdr.session_id, *timeout_ms);
                TxnResult::Done
            }
            Txn::CloseSession { ephemerals } => {
                for path in ephemerals {
                    // Already gone is fine: a replay may meet a later state.
                    let _ = self.tree.delete(path, hdr.zxid, triggers);
                }
                self.sessions.remove(&hdr.session_id);
                self.zookeeper_sessions.remove(&hdr.session_id);
                TxnResult::Done
            }
            Txn::Multi(subs) => {
                if subs.iter().any(|t| matches!(t, Txn::Error { .. })) {
                    let codes = subs.iter().map(|t| TxnResult::Error(if let Txn::Error { code } = t { *code } else { 0 }));
                    return TxnResult::Multi(codes.collect());
                }
                TxnResult::Multi(subs.iter().map(|t| self.apply_op(hdr, t, triggers)).collect())
            }
            other => self.apply_op(hdr, other, triggers),
        }
    }

    fn apply_op(&mut self, hdr: &TxnHeader, txn: &Txn, triggers: &mut Vec<Trigger>) -> TxnResult {
        let t = &mut self.tree;
        let result = match txn {
            Txn::Create { path, data, acl, ephemeral_owner, parent_cversion } => t
                .create(path, data.clone(), acl.clone(), *ephemeral_owner, *parent_cversion, hdr.zxid, hdr.time_ms, triggers)
                .map(|stat| TxnResult::Created { path: path.clone(), stat }),
            Txn::Delete { path } => t.delete(path, hdr.zxid, triggers).map(|_| TxnResult::Done),
            Txn::SetData { path, data, version } => t.set_data(path, data.clone(), *version, hdr.zxid, hdr.time_ms, triggers).map(TxnResult::Stat),
            Txn::SetAcl { path, acl, version } => t.set_acl(path, acl.clone(), *version).map(TxnResult::Stat),
            // As ZooKeeper, the config node's version is -1 after a reconfig.
            Txn::Reconfig { data } => t.set_data(crate::tree::CONFIG, Some(data.clone()), -1, hdr.zxid, hdr.time_ms, triggers).map(TxnResult::Stat),
            Txn::Check { path, .. } => t.get(path).map(|n| TxnResult::Stat(n.stat())).ok_or(Code::NoNode),
            Txn::Error { code } => Ok(TxnResult::Error(*code)),
            Txn::CreateSession { .. } | Txn::CloseSession { .. } | Txn::Multi(_) => Ok(TxnResult::Error(Code::MarshallingError as i32)),
        };
        result.unwrap_or_else(|code| TxnResult::Error(code as i32))
    }
}
