//! Request -> transaction (ZooKeeper's `PrepRequestProcessor`): every check a
//! write must pass, in ZooKeeper's order, against the tree plus the changes
//! of earlier ops of the same multi.

use crate::acl;
use crate::error::{Code, ZkResult};
use crate::path;
use crate::proto::{perms, Acl, CreateOp, CreateRequest, Id, Request};
use crate::tree::{DataTree, Node};
use crate::txn::{owner, Txn};
use std::collections::HashMap;
use std::sync::Arc;

pub struct PrepCtx<'a> {
    pub session_id: i64,
    pub auth: &'a [Id],
    pub extended_types_enabled: bool,
}

/// The part of a node that preparation looks at.
#[derive(Clone)]
struct View {
    version: i32,
    create_count: i32,
    aversion: i32,
    owner: i64,
    num_children: usize,
    acl: Arc<[Acl]>,
}

impl View {
    fn of(n: &Node) -> View {
        View {
            version: n.stat.version,
            create_count: n.stat.cversion,
            aversion: n.stat.aversion,
            owner: n.stat.ephemeral_owner,
            num_children: n.children.len(),
            acl: n.acl.clone(),
        }
    }
}

/// The tree as earlier ops of this request left it (ZooKeeper's ChangeRecords).
struct Overlay<'a> {
    tree: &'a DataTree,
    changes: HashMap<String, Option<View>>,
}

impl Overlay<'_> {
    fn get(&self, path: &str) -> Option<View> {
        match self.changes.get(path) {
            Some(v) => v.clone(),
            None => self.tree.get(path).map(View::of),
        }
    }

    fn node(&self, path: &str) -> ZkResult<View> {
        self.get(path).ok_or(Code::NoNode)
    }

    fn set(&mut self, path: &str, view: Option<View>) {
        self.changes.insert(path.to_owned(), view);
    }
}

pub fn prepare(tree: &DataTree, ctx: &PrepCtx, req: &Request) -> Txn {
    let mut ov = Overlay { tree, changes: HashMap::new() };
    match req {
        Request::CloseSession => Txn::CloseSession { ephemerals: tree.ephemerals_of(ctx.session_id) },
        Request::Multi(ops) => prepare_multi(&mut ov, ctx, ops),
        other => prepare_op(&mut ov, ctx, other).unwrap_or_else(|code| Txn::Error { code: code as i32 }),
    }
}

/// The reaper's delete of an empty container or expired TTL node.
pub fn prepare_delete_container(tree: &DataTree, path: &str) -> Txn {
    let check = || -> ZkResult<Txn> {
        let node = tree.get(path).ok_or(Code::NoNode)?;
        if !node.children.is_empty() {
            return Err(Code::NotEmpty);
        }
        if owner::is_session(node.stat.ephemeral_owner) {
            return Err(Code::BadVersion);
        }
        Ok(Txn::Delete { path: path.to_owned() })
    };
    check().unwrap_or_else(|code| Txn::Error { code: code as i32 })
}

fn prepare_multi(ov: &mut Overlay, ctx: &PrepCtx, ops: &[Request]) -> Txn {
    let mut txns = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        match prepare_op(ov, ctx, op) {
            Ok(t) => txns.push(t),
            Err(code) => {
                // Ops before the failure report 0, the failure its code, the rest -2.
                let mut failed: Vec<Txn> = (0..i).map(|_| Txn::Error { code: 0 }).collect();
                failed.push(Txn::Error { code: code as i32 });
                failed.extend((i + 1..ops.len()).map(|_| Txn::Error { code: Code::RuntimeInconsistency as i32 }));
                return Txn::Multi(failed);
            }
        }
    }
    Txn::Multi(txns)
}

fn check_version(current: i32, expected: i32) -> ZkResult<i32> {
    if expected != -1 && expected != current {
        return Err(Code::BadVersion);
    }
    // ZooKeeper skips -1, which means "any version" on the wire.
    Ok(if current.wrapping_add(1) == -1 { 0 } else { current.wrapping_add(1) })
}

fn valid_path(p: &str) -> ZkResult<()> {
    path::validate(p).map_err(|_| Code::BadArguments)
}

fn prepare_op(ov: &mut Overlay, ctx: &PrepCtx, req: &Request) -> ZkResult<Txn> {
    match req {
        Request::Create(c) => prepare_create(ov, ctx, c),
        Request::Delete { path, version } => {
            if !path.contains('/') || path.contains('\0') || DataTree::is_special(path) {
                return Err(Code::BadArguments);
            }
            let parent_path = path::parent(path);
            let mut parent = ov.node(parent_path)?;
            acl::check(&parent.acl, perms::DELETE, ctx.auth)?;
            let node = ov.node(path)?;
            check_version(node.version, *version)?;
            if node.num_children > 0 {
                return Err(Code::NotEmpty);
            }
            parent.num_children -= 1;
            ov.set(parent_path, Some(parent));
            ov.set(path, None);
            Ok(Txn::Delete { path: path.clone() })
        }
        Request::SetData { path, data, version } => {
            valid_path(path)?;
            let mut node = ov.node(path)?;
            acl::check(&node.acl, perms::WRITE, ctx.auth)?;
            let new_version = check_version(node.version, *version)?;
            node.version = new_version;
            ov.set(path, Some(node));
            Ok(Txn::SetData { path: path.clone(), data: data.clone(), version: new_version })
        }
        Request::SetAcl { path, acl: requested, version } => {
            valid_path(path)?;
            let fixed = acl::fixup(requested, ctx.auth)?;
            let mut node = ov.node(path)?;
            acl::check(&node.acl, perms::ADMIN, ctx.auth)?;
            let new_version = check_version(node.aversion, *version)?;
            node.aversion = new_version;
            node.acl = fixed.clone().into();
            ov.set(path, Some(node));
            Ok(Txn::SetAcl { path: path.clone(), acl: fixed, version: new_version })
        }
        Request::Check { path, version } => {
            valid_path(path)?;
            let node = ov.node(path)?;
            acl::check(&node.acl, perms::READ, ctx.auth)?;
            Ok(Txn::Check { path: path.clone(), version: check_version(node.version, *version)? })
        }
        _ => Err(Code::Unimplemented),
    }
}

/// CreateMode flags: (ephemeral, sequential, container, ttl).
fn create_mode(flags: i32) -> ZkResult<(bool, bool, bool, bool)> {
    Ok(match flags {
        0 => (false, false, false, false),
        1 => (true, false, false, false),
        2 => (false, true, false, false),
        3 => (true, true, false, false),
        4 => (false, false, true, false),
        5 => (false, false, false, true),
        6 => (false, true, false, true),
        _ => return Err(Code::BadArguments),
    })
}

fn prepare_create(ov: &mut Overlay, ctx: &PrepCtx, c: &CreateRequest) -> ZkResult<Txn> {
    let (ephemeral, sequential, _container, ttl_mode) = create_mode(c.flags)?;
    if ttl_mode && !ctx.extended_types_enabled {
        return Err(Code::Unimplemented);
    }
    // EphemeralType.validateTTL: a TTL only with a TTL mode, and in range.
    if ttl_mode && (c.ttl_ms <= 0 || c.ttl_ms > owner::TTL_MAX_MS) || !ttl_mode && c.ttl_ms >= 0 {
        return Err(Code::BadArguments);
    }
    let Some(last_slash) = c.path.rfind('/') else { return Err(Code::BadArguments) };
    if c.path.contains('\0') {
        return Err(Code::BadArguments);
    }
    let parent_path = if last_slash == 0 { "/" } else { &c.path[..last_slash] };
    let acl = acl::fixup(&c.acl, ctx.auth)?;
    let mut parent = ov.node(parent_path)?;
    acl::check(&parent.acl, perms::CREATE, ctx.auth)?;
    let path = if sequential { format!("{}{:010}", c.path, parent.create_count) } else { c.path.clone() };
    valid_path(&path)?;
    if ov.get(&path).is_some() {
        return Err(Code::NodeExists);
    }
    if owner::is_session(parent.owner) {
        return Err(Code::NoChildrenForEphemerals);
    }
    let ephemeral_owner = match c.op {
        CreateOp::Container => owner::CONTAINER,
        CreateOp::Ttl => owner::ttl(c.ttl_ms),
        _ if ephemeral => ctx.session_id,
        _ => 0,
    };
    parent.create_count = parent.create_count.wrapping_add(1);
    parent.num_children += 1;
    let parent_cversion = parent.create_count;
    ov.set(parent_path, Some(parent));
    let view = View { version: 0, create_count: 0, aversion: 0, owner: ephemeral_owner, num_children: 0, acl: acl.clone().into() };
    ov.set(&path, Some(view));
    Ok(Txn::Create { path, data: c.data.clone(), acl, ephemeral_owner, parent_cversion })
}
