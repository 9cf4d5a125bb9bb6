//! The session tracker actor: owns the expiry queue, hears touches from
//! connections and tells the processor when a session has timed out.

use crate::mailbox::{Inbox, Serve};
use crate::messages::Retrack;
use crate::messages::{Expire, ExpireTo, Tracking};
use crate::registry::{ActorStats, Fault};
use actix::prelude::*;
use slog::Logger;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::session::ExpiryQueue;

pub struct Tracker {
    queue: ExpiryQueue,
    timeouts: HashMap<i64, i32>,
    epoch: Instant,
    tick: Duration,
    expire_to: Option<Inbox<Expire>>,
    retrack: Option<Inbox<Retrack>>,
    /// False on an ensemble learner (or while looking): only the leader expires.
    expiring: bool,
    /// Learner: where touched sessions are sent, batched each half tick.
    forward_to: Option<Inbox<crate::messages::Touches>>,
    touched: std::collections::HashSet<i64>,
    /// Local sessions, expired here even when not `expiring`.
    local: std::collections::HashSet<i64>,
    me: Arc<ActorStats>,
    log: Logger,
}

impl Tracker {
    pub fn new(tick_ms: u32, me: Arc<ActorStats>, log: Logger) -> Tracker {
        Tracker {
            queue: ExpiryQueue::new(tick_ms),
            timeouts: HashMap::new(),
            epoch: Instant::now(),
            tick: Duration::from_millis(tick_ms.max(1) as u64),
            expire_to: None,
            retrack: None,
            expiring: true,
            forward_to: None,
            touched: Default::default(),
            local: Default::default(),
            me,
            log,
        }
    }

    fn now_ms(&self) -> i64 {
        self.epoch.elapsed().as_millis() as i64
    }
}

impl Actor for Tracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick / 2, |act, ctx| {
            crate::mailbox::guarded(act, ctx, |act, _| act.forward_touches());
        });
        ctx.run_interval(self.tick, |act, ctx| {
            crate::mailbox::guarded(act, ctx, |act, _| act.expire_due());
        });
    }
}

impl Tracker {
    fn forward_touches(&mut self) {
        if let Some(to) = &self.forward_to {
            if !self.touched.is_empty() {
                to.do_send(crate::messages::Touches(self.touched.drain().collect()));
            }
        }
    }

    fn expire_due(&mut self) {
        let act = self;
        {
            let now = act.now_ms();
            for session_id in act.queue.expire(now) {
                if !act.expiring && !act.local.contains(&session_id) {
                    // Not ours to expire (the leader's is): keep its clock running.
                    if let Some(t) = act.timeouts.get(&session_id) {
                        act.queue.touch(session_id, *t, now);
                    }
                    continue;
                }
                act.local.remove(&session_id);
                act.timeouts.remove(&session_id);
                if let Some(to) = &act.expire_to {
                    to.do_send(Expire { session_id });
                }
            }
        }
    }
}

crate::supervise::supervised!(Tracker);
crate::mailbox::mailbox!(Tracker: Tracking, ExpireTo, Fault);

/// The processor's session table is the truth: a restarted tracker starts
/// empty and asks for every session again (each gets a fresh clock, as
/// under a new leader).
impl crate::supervise::Rebuild for Tracker {
    fn rebuild(&mut self, _: &mut Context<Self>) {
        self.queue = ExpiryQueue::new(self.tick.as_millis() as u32);
        self.timeouts.clear();
        self.touched.clear();
        self.local.clear();
        if let Some(r) = &self.retrack {
            r.do_send(Retrack);
        }
    }
}

impl Serve<Tracking> for Tracker {
    fn serve(&mut self, msg: Tracking, _: &mut Context<Self>) {
        let now = self.now_ms();
        match msg {
            Tracking::Track { session_id, timeout_ms } => {
                self.local.remove(&session_id);
                self.timeouts.insert(session_id, timeout_ms);
                self.queue.touch(session_id, timeout_ms, now);
            }
            Tracking::Touches(sessions) => {
                for session_id in sessions {
                    if self.forward_to.is_some() {
                        self.touched.insert(session_id);
                    }
                    if let Some(t) = self.timeouts.get(&session_id) {
                        self.queue.touch(session_id, *t, now);
                    }
                }
            }
            Tracking::Untrack { session_id } => {
                self.timeouts.remove(&session_id);
                self.queue.remove(session_id);
                self.local.remove(&session_id);
            }
            Tracking::TrackLocal { session_id, timeout_ms } => {
                self.local.insert(session_id);
                self.timeouts.insert(session_id, timeout_ms);
                self.queue.touch(session_id, timeout_ms, now);
            }
            Tracking::Mode { expire, forward_to } => {
                self.expiring = expire;
                self.forward_to = forward_to;
                self.touched.clear();
                if expire {
                    // A new leader starts every clock afresh (the caller re-tracks).
                    for (session_id, t) in &self.timeouts {
                        self.queue.touch(*session_id, *t, now);
                    }
                }
            }
        }
    }
}

impl Serve<ExpireTo> for Tracker {
    fn serve(&mut self, msg: ExpireTo, _: &mut Context<Self>) {
        self.expire_to = Some(msg.expire);
        self.retrack = Some(msg.retrack);
    }
}
