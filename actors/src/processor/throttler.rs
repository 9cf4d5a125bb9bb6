//! ZooKeeper's throttles in the processor: the connection throttle on each
//! connect request (`zookeeper.connection_throttle_*`, BlueThrottle) and the
//! request throttler (`zookeeper.request_throttle_*`): while as many requests
//! as `request_throttle_max_requests` are in process (transactions waiting
//! for the log or the quorum), new ones wait in arrival order; a waiting
//! request whose connection closed is dropped (`request_throttle_drop_stale`),
//! and one that waited past `throttled_op_wait_time` is answered ThrottledOp.

use crate::messages::{Connect, Submit, ToConn};
use crate::processor::{Caller, Processor};
use actix::prelude::*;
use slog::info;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use warden_core::error::Code;
use warden_core::proto::Request;
use warden_core::server::{reply_frame, Output, Reply};
use warden_core::throttle::{ConnectKind, ConnectionThrottle, ThrottleSettings};

pub struct Throttles {
    settings: ThrottleSettings,
    connections: ConnectionThrottle,
    waiting: VecDeque<(Submit, Instant)>,
    stall_timer: bool,
    /// xorshift64 state for BLUE's random drop (seeded from getrandom).
    rng: u64,
}

impl Throttles {
    pub fn new(settings: &ThrottleSettings, now_ms: i64) -> Throttles {
        let mut seed = [0u8; 8];
        let _ = getrandom::fill(&mut seed);
        Throttles {
            settings: settings.clone(),
            connections: ConnectionThrottle::new(settings, now_ms),
            waiting: VecDeque::new(),
            stall_timer: false,
            rng: u64::from_le_bytes(seed) | 1,
        }
    }

    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// zookeeper.request_throttle_max_requests (0: the throttler is off).
    pub fn max_requests(&self) -> u32 {
        self.settings.request_max_requests
    }
}

/// RequestThrottler's `isThrottlable`: pings and session requests never fail as throttled.
fn throttlable(r: &Request) -> bool {
    !matches!(r, Request::Ping | Request::CloseSession)
}

impl Processor {
    /// ZooKeeperServer.processConnectRequest's `connThrottle.checkLimit`:
    /// false if the connection was refused (and is being closed).
    pub(crate) fn admit_connection(&mut self, msg: &Connect) -> bool {
        if !self.throttles.connections.enabled() {
            return true;
        }
        let kind = match (msg.request.session_id, self.config.local_sessions_enabled && !self.config.is_standalone()) {
            (0, true) => ConnectKind::NewLocal,
            (0, false) => ConnectKind::NewGlobal,
            _ => ConnectKind::Renew,
        };
        let need = self.throttles.connections.needed(kind);
        let random = self.throttles.random();
        if self.throttles.connections.check_limit(need, crate::clock::wall_clock_ms(), random) {
            return true;
        }
        self.stats.connection_rejected.fetch_add(1, Relaxed);
        info!(self.log, "connection refused by the connection throttle"; "conn" => msg.conn_id, "deficit" => self.throttles.connections.deficit());
        msg.conn.do_send(ToConn::Close { frame: None, reason: "connection throttled (zookeeper.connection_throttle_tokens)" });
        false
    }

    /// Transactions this server waits for (its own and those it forwarded).
    fn in_process(&self) -> usize {
        self.routes.len() + self.zab.as_ref().map_or(0, |z| z.forwarded.len())
    }

    /// The request throttler's gate: Some(msg) to serve now, None if it waits.
    pub(crate) fn throttle_gate(&mut self, msg: Submit, ctx: &mut Context<Self>) -> Option<Submit> {
        let max = self.throttles.settings.request_max_requests as usize;
        if max == 0 || (self.throttles.waiting.is_empty() && self.in_process() < max) {
            return Some(msg);
        }
        self.throttles.waiting.push_back((msg, Instant::now()));
        self.stats.throttle_queue.store(self.throttles.waiting.len() as u64, Relaxed);
        self.arm_stall_timer(ctx);
        None
    }

    fn arm_stall_timer(&mut self, ctx: &mut Context<Self>) {
        if self.throttles.stall_timer || self.throttles.waiting.is_empty() {
            return;
        }
        self.throttles.stall_timer = true;
        let stall = Duration::from_millis(self.throttles.settings.request_stall_time_ms.max(1));
        ctx.run_later(stall, |act, ctx| {
            act.throttles.stall_timer = false;
            act.stats.request_throttle_waits.fetch_add(1, Relaxed);
            act.release_throttled(ctx);
            act.flush_log(ctx);
        });
    }

    /// Serves waiting requests, oldest first, while fewer than the maximum are in process.
    pub(crate) fn release_throttled(&mut self, ctx: &mut Context<Self>) {
        let max = self.throttles.settings.request_max_requests as usize;
        while !self.throttles.waiting.is_empty() {
            let stale = self.throttles.settings.request_drop_stale && !self.throttles.waiting[0].0.conn.mailbox.connected();
            if !stale && self.in_process() >= max {
                break;
            }
            let Some((msg, since)) = self.throttles.waiting.pop_front() else { break };
            if stale {
                // The connection is gone: nobody waits for the answer, and serving it could reorder its session.
                self.stats.stale_requests_dropped.fetch_add(1, Relaxed);
                continue;
            }
            let wait_limit = self.throttles.settings.throttled_op_wait_time_ms;
            if wait_limit > 0
                && since.elapsed() > Duration::from_millis(wait_limit)
                && throttlable(&msg.request)
                && !self.in_flight.contains_key(&msg.session_id)
            {
                self.stats.throttled_ops.fetch_add(1, Relaxed);
                let zxid = self.core.db.last_zxid();
                let frame = reply_frame(msg.xid, zxid, Code::ThrottledOp as i32, |_| {});
                let caller = Caller::of(&msg);
                self.answer(caller, Output { reply: Reply::Frame(frame), zxid, ..Default::default() });
                continue;
            }
            self.admit(msg, ctx);
        }
        self.stats.throttle_queue.store(self.throttles.waiting.len() as u64, Relaxed);
        self.arm_stall_timer(ctx);
    }
}
