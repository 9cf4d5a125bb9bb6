//! ZooKeeper's audit log (`audit.enable`): which state changes are recorded
//! and the line each becomes, field for field as ZooKeeper's `AuditHelper`
//! and `AuditEvent` write them (tab-separated `key=value`, `result` last).

use crate::database::TxnResult;
use crate::proto::{Acl, CreateRequest, Id, Request};
use crate::txn::Txn;
use std::fmt::Write;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Invoked,
}

/// Who an event is attributed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A client request; its user and address are known where its connection
    /// is, so the core leaves them to the caller (`attribute`).
    Client,
    /// Filled in: the client connection's identities; its users and address
    /// (the `ip` identity) are read from them when the line is written, off
    /// the write path.
    Attributed(Arc<[Id]>),
    /// The server itself (ephemerals removed with their session, start, stop):
    /// the operating-system user running it.
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub session: Option<i64>,
    pub actor: Actor,
    pub operation: &'static str,
    pub znode: Option<String>,
    pub znode_type: Option<&'static str>,
    pub acl: Option<String>,
    pub result: Outcome,
}

pub const OP_START: &str = "serverStart";
pub const OP_STOP: &str = "serverStop";
const OP_CREATE: &str = "create";
const OP_DELETE: &str = "delete";
const OP_SET_DATA: &str = "setData";
const OP_SET_ACL: &str = "setAcl";
const OP_MULTI: &str = "multiOperation";
const OP_RECONFIG: &str = "reconfig";
const OP_EPHEMERAL_GONE: &str = "ephemeralZNodeDeletionOnSessionCloseOrExpire";

impl AuditEvent {
    fn new(session: Option<i64>, actor: Actor, operation: &'static str, znode: Option<String>, result: Outcome) -> AuditEvent {
        AuditEvent { session, actor, operation, znode, znode_type: None, acl: None, result }
    }

    /// serverStart / serverStop, by the server's user.
    pub fn server(operation: &'static str, result: Outcome) -> AuditEvent {
        AuditEvent::new(None, Actor::Server, operation, None, result)
    }

    /// Gives a client event its connection's identities (ZooKeeper's
    /// `Request.getUsersForAudit`, `getHostAddress`: the `ip` identity, which
    /// every connection has first).
    pub fn attribute(&mut self, auth: &Arc<[Id]>) {
        if self.actor == Actor::Client {
            self.actor = Actor::Attributed(auth.clone());
        }
    }

    /// The line ZooKeeper logs; `server_user` names the server's own user.
    pub fn line(&self, server_user: &str) -> String {
        let mut out = String::with_capacity(160);
        self.write_line(&mut out, server_user);
        out
    }

    /// Appends the line to `out` (no allocation of its own).
    pub fn write_line(&self, out: &mut String, server_user: &str) {
        if let Some(s) = self.session {
            let _ = write!(out, "session=0x{s:x}\t");
        }
        match &self.actor {
            Actor::Client => {}
            Actor::Attributed(auth) => {
                write_users(out, auth);
                push_field(out, "ip", auth.iter().find(|id| id.scheme == "ip").map_or("", |id| id.id.as_str()));
            }
            Actor::Server => push_field(out, "user", server_user),
        }
        push_field(out, "operation", self.operation);
        if let Some(z) = &self.znode {
            push_field(out, "znode", z);
        }
        if let Some(t) = self.znode_type {
            push_field(out, "znode_type", t);
        }
        if let Some(a) = &self.acl {
            push_field(out, "acl", a);
        }
        out.push_str(match self.result {
            Outcome::Success => "result=success",
            Outcome::Failure => "result=failure",
            Outcome::Invoked => "result=invoked",
        });
    }
}

fn push_field(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push('=');
    out.push_str(value);
    out.push('\t');
}

/// The `user=` field when there are users (as `users`), written in place.
fn write_users(out: &mut String, auth: &[Id]) {
    let mut first = true;
    for name in auth.iter().map(user_of).filter(|n| !n.trim().is_empty()) {
        out.push_str(if first { "user=" } else { "," });
        out.push_str(name);
        first = false;
    }
    if !first {
        out.push('\t');
    }
}

fn user_of(id: &Id) -> &str {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or(""),
        _ => id.id.as_str(),
    }
}

/// `AuthUtil.getUsers`: each id's user name, comma-separated; digest ids
/// name their user before the ':', other schemes are the user themselves.
pub fn users(auth: &[Id]) -> Option<String> {
    let names: Vec<&str> = auth.iter().map(user_of).filter(|n| !n.trim().is_empty()).collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// `ZKUtil.aclToString`: `scheme:id:perms` per entry, concatenated without a
/// separator (as ZooKeeper prints it).
pub fn acl_string(acl: &[Acl]) -> String {
    let mut s = String::new();
    for a in acl {
        s.push_str(&a.id.scheme);
        s.push(':');
        s.push_str(&a.id.id);
        s.push(':');
        for (bit, c) in [(4, 'c'), (8, 'd'), (1, 'r'), (2, 'w'), (16, 'a')] {
            if a.perms & bit != 0 {
                s.push(c);
            }
        }
    }
    s
}

/// `CreateMode.fromFlag(..).toString().toLowerCase()`.
fn create_mode(flags: i32) -> Option<&'static str> {
    Some(match flags {
        0 => "persistent",
        1 => "ephemeral",
        2 => "persistent_sequential",
        3 => "ephemeral_sequential",
        4 => "container",
        5 => "persistent_with_ttl",
        6 => "persistent_sequential_with_ttl",
        _ => return None,
    })
}

fn outcome(ok: bool) -> Outcome {
    if ok {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}

/// The events for a client request whose transaction was applied with
/// `result` (FinalRequestProcessor → AuditHelper.addAuditLog): creates,
/// deletes, setData, setACL, multi and reconfig; nothing for other requests.
pub fn for_request(session_id: i64, request: &Request, result: &TxnResult) -> Vec<AuditEvent> {
    let failed = matches!(result, TxnResult::Error(code) if *code != 0);
    let event = |op, znode: &str| AuditEvent::new(Some(session_id), Actor::Client, op, Some(znode.to_string()), outcome(!failed));
    // A successful create names the node made (sequential suffix included).
    let created = |c: &CreateRequest| match result {
        TxnResult::Created { path, .. } => path.clone(),
        _ => c.path.clone(),
    };
    match request {
        Request::Create(c) => {
            let mut e = event(OP_CREATE, &created(c));
            e.znode_type = create_mode(c.flags);
            vec![e]
        }
        Request::Delete { path, .. } => vec![event(OP_DELETE, path)],
        Request::SetData { path, .. } => vec![event(OP_SET_DATA, path)],
        Request::SetAcl { path, acl, .. } => {
            let mut e = event(OP_SET_ACL, path);
            e.acl = Some(acl_string(acl));
            vec![e]
        }
        // A committed reconfig is a setData of /zookeeper/config; a failed one names no node.
        Request::Reconfig { .. } => {
            let znode = (!failed).then(|| crate::tree::CONFIG.to_string());
            vec![AuditEvent::new(Some(session_id), Actor::Client, OP_RECONFIG, znode, outcome(!failed))]
        }
        Request::Multi(ops) => multi(session_id, ops, result),
        _ => Vec::new(),
    }
}

/// A committed multi logs each create, delete and setData; a failed one logs
/// one multiOperation failure without a znode.
fn multi(session_id: i64, ops: &[Request], result: &TxnResult) -> Vec<AuditEvent> {
    let results = match result {
        TxnResult::Multi(r) if !r.iter().any(|r| matches!(r, TxnResult::Error(c) if *c != 0)) => r,
        _ => return vec![AuditEvent::new(Some(session_id), Actor::Client, OP_MULTI, None, Outcome::Failure)],
    };
    let mut out = Vec::new();
    for (op, r) in ops.iter().zip(results) {
        let sub = for_request(session_id, op, r);
        out.extend(sub.into_iter().filter(|e| e.operation != OP_SET_ACL));
    }
    out
}

/// `DataTree.deleteNodes` when a session closes or expires: one event per
/// ephemeral, by the server, failure if the node was already gone.
pub fn for_session_end(session_id: i64, txn: &Txn, exists: impl Fn(&str) -> bool) -> Vec<AuditEvent> {
    let Txn::CloseSession { ephemerals } = txn else { return Vec::new() };
    ephemerals.iter().map(|p| AuditEvent::new(Some(session_id), Actor::Server, OP_EPHEMERAL_GONE, Some(p.clone()), outcome(exists(p)))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CreateOp, Stat};

    fn create(path: &str, flags: i32) -> Request {
        Request::Create(CreateRequest { op: CreateOp::Create2, path: path.into(), data: None, acl: vec![Acl::world_all()], flags, ttl_ms: -1 })
    }

    fn attributed(mut events: Vec<AuditEvent>) -> Vec<String> {
        let auth: Arc<[Id]> = vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "alice:hash=")].into();
        events.iter_mut().for_each(|e| e.attribute(&auth));
        events.iter().map(|e| e.line("zk")).collect()
    }

    #[test]
    fn a_sequential_create_names_the_node_made_and_its_mode() {
        let result = TxnResult::Created { path: "/q/n0000000007".into(), stat: Stat::default() };
        assert_eq!(
            attributed(for_request(0x1f, &create("/q/n", 3), &result)),
            ["session=0x1f\tuser=127.0.0.1,alice\tip=127.0.0.1\toperation=create\tznode=/q/n0000000007\tznode_type=ephemeral_sequential\tresult=success"]
        );
    }

    #[test]
    fn a_failed_write_names_the_requested_path_and_fails() {
        let lines = attributed(for_request(2, &create("/a", 0), &TxnResult::Error(-110)));
        assert_eq!(lines, ["session=0x2\tuser=127.0.0.1,alice\tip=127.0.0.1\toperation=create\tznode=/a\tznode_type=persistent\tresult=failure"]);
        let lines = attributed(for_request(2, &Request::Delete { path: "/a".into(), version: -1 }, &TxnResult::Error(-101)));
        assert_eq!(lines, ["session=0x2\tuser=127.0.0.1,alice\tip=127.0.0.1\toperation=delete\tznode=/a\tresult=failure"]);
    }

    #[test]
    fn set_acl_prints_the_acl_as_zookeeper_does() {
        let acl = vec![Acl::world_all(), Acl { perms: 1 | 16, id: Id::new("digest", "bob:x=") }];
        let req = Request::SetAcl { path: "/a".into(), acl, version: -1 };
        let lines = attributed(for_request(3, &req, &TxnResult::Stat(Stat::default())));
        assert_eq!(
            lines,
            ["session=0x3\tuser=127.0.0.1,alice\tip=127.0.0.1\toperation=setAcl\tznode=/a\tacl=world:anyone:cdrwadigest:bob:x=:ra\tresult=success"]
        );
    }

    #[test]
    fn reads_and_sessions_are_not_audited() {
        let get = Request::GetData { path: "/a".into(), watch: false };
        assert!(for_request(1, &get, &TxnResult::Done).is_empty());
        assert!(for_request(1, &Request::CloseSession, &TxnResult::Done).is_empty());
    }

    #[test]
    fn a_multi_logs_each_change_or_one_failure() {
        let ops = vec![create("/m", 0), Request::SetData { path: "/m".into(), data: None, version: -1 }, Request::Check { path: "/m".into(), version: 0 }];
        let ok = TxnResult::Multi(vec![TxnResult::Created { path: "/m".into(), stat: Stat::default() }, TxnResult::Stat(Stat::default()), TxnResult::Done]);
        let lines = attributed(for_request(4, &Request::Multi(ops.clone()), &ok));
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("operation=create\tznode=/m\tznode_type=persistent\tresult=success"));
        assert!(lines[1].contains("operation=setData\tznode=/m\tresult=success"));
        let failed = TxnResult::Multi(vec![TxnResult::Error(0), TxnResult::Error(-101), TxnResult::Error(-2)]);
        assert_eq!(
            attributed(for_request(4, &Request::Multi(ops), &failed)),
            ["session=0x4\tuser=127.0.0.1,alice\tip=127.0.0.1\toperation=multiOperation\tresult=failure"]
        );
    }

    #[test]
    fn ephemerals_of_an_ended_session_are_the_servers_events() {
        let txn = Txn::CloseSession { ephemerals: vec!["/e1".into(), "/gone".into()] };
        let lines: Vec<String> = for_session_end(0xab, &txn, |p| p == "/e1").iter().map(|e| e.line("zk")).collect();
        assert_eq!(
            lines,
            [
                "session=0xab\tuser=zk\toperation=ephemeralZNodeDeletionOnSessionCloseOrExpire\tznode=/e1\tresult=success",
                "session=0xab\tuser=zk\toperation=ephemeralZNodeDeletionOnSessionCloseOrExpire\tznode=/gone\tresult=failure"
            ]
        );
        assert_eq!(AuditEvent::server(OP_START, Outcome::Success).line("zk"), "user=zk\toperation=serverStart\tresult=success");
    }

    #[test]
    fn an_unauthenticated_client_is_its_address() {
        // ZooKeeper gives every connection its `ip` identity, so the address is also the user.
        let mut e = for_request(5, &Request::Delete { path: "/a".into(), version: -1 }, &TxnResult::Done);
        e[0].attribute(&vec![Id::new("ip", "10.0.0.1")].into());
        assert_eq!(e[0].line("zk"), "session=0x5\tuser=10.0.0.1\tip=10.0.0.1\toperation=delete\tznode=/a\tresult=success");
    }
}
