//! Sessions outside the replicated path: read-only mode (a member without
//! quorum serving read-only clients) and local sessions (localSessionsEnabled).

use super::{Forward, ForwardOp};
use crate::clock::wall_clock_ms;
use crate::messages::{Submit, Tracking};
use crate::processor::{Caller, Processor};
use actix::prelude::*;
use slog::info;
use warden_core::proto::Request;
use warden_core::server::RequestCtx;
use warden_core::zab::Message;

impl Processor {
    pub(super) fn enter_read_only(&mut self, round: u64) {
        let Some(z) = self.zab.as_mut() else { return };
        if z.serving || z.read_only || z.looking_round != round {
            return;
        }
        z.read_only = true;
        // Local sessions expire here; global ones are left to the next leader.
        self.tracker.do_send(Tracking::Mode { expire: true, forward_to: None });
        info!(self.log, "no quorum: serving read-only clients (readonlymode.enabled)");
    }

    /// Read-only mode: refuse writes with NotReadOnly, end local sessions on
    /// closeSession, answer reads from this member's (possibly stale) tree.
    pub(crate) fn serve_read_only(&mut self, msg: Submit) {
        use warden_core::server::{reply_frame, Output, Reply};
        let zxid = self.core.db.last_zxid();
        let caller = Caller::of(&msg);
        if self.core.refused_read_only(msg.session_id, &msg.request) {
            let frame = reply_frame(msg.xid, zxid, warden_core::error::Code::NotReadOnly as i32, |_| {});
            return self.answer(caller, Output { reply: Reply::Frame(frame), zxid, ..Default::default() });
        }
        if matches!(msg.request, Request::CloseSession) {
            self.core.close_local_session(msg.session_id);
            self.tracker.do_send(Tracking::Untrack { session_id: msg.session_id });
            let frame = reply_frame(msg.xid, zxid, 0, |_| {});
            return self.answer(caller, Output { reply: Reply::Frame(frame), zxid, session_closed: Some(msg.session_id), ..Default::default() });
        }
        let rctx = RequestCtx { session_id: msg.session_id, xid: msg.xid, auth: &msg.auth, now_ms: wall_clock_ms() };
        if let warden_core::server::Processed::Done(out) = self.core.process(&rctx, msg.request) {
            self.answer(caller, out);
        }
    }

    /// closeSession of a local session: it ends here, nothing is logged.
    pub(crate) fn close_local(&mut self, msg: Submit) {
        use warden_core::server::{reply_frame, Output, Reply};
        let zxid = self.core.db.last_zxid();
        self.core.close_local_session(msg.session_id);
        self.tracker.do_send(Tracking::Untrack { session_id: msg.session_id });
        let caller = Caller::of(&msg);
        let frame = reply_frame(msg.xid, zxid, 0, |_| {});
        self.answer(caller, Output { reply: Reply::Frame(frame), zxid, session_closed: Some(msg.session_id), ..Default::default() });
    }

    /// localSessionsUpgradingEnabled: before a local session's first
    /// ephemeral, it becomes global — a CreateSession through the leader,
    /// ahead of the create on the same FIFO path.
    pub(crate) fn upgrade_local_session(&mut self, session_id: i64, ctx: &mut Context<Self>) {
        let Some(timeout_ms) = self.core.begin_upgrade(session_id) else { return };
        info!(self.log, "upgrading a local session to a global one"; "session" => format!("0x{session_id:x}"));
        if self.is_leader() {
            if self.prime_zxid() {
                self.core.create_session(session_id, timeout_ms, wall_clock_ms());
                self.flush_log(ctx);
            }
        } else if let Some(z) = self.zab.as_ref() {
            let fwd = Forward { session_id, cxid: 0, auth: Vec::new(), op: ForwardOp::CreateSession { timeout_ms }, local: false };
            z.send_to_leader(Message::Request(fwd));
        }
    }
}
