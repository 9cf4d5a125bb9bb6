//! The request processor actor: owns the data tree and session table (the
//! pure `Core`), assigns zxids, and hands every result to the dispatcher in
//! order. It also runs the container/TTL reaper.

use crate::dispatcher::Dispatcher;
use crate::messages::{Connect, Dispatch, Expire, Submit, TakeSnapshot, ToConn, Tracking};
use crate::stats::ServerStats;
use crate::tracker::Tracker;
use actix::prelude::*;
use slog::{info, Logger};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_core::config::Config;
use warden_core::fourlw::ServerSnapshot;
use warden_core::server::{ConnectOutcome, Core, RequestCtx};

pub fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub struct Processor {
    core: Core,
    dispatcher: Addr<Dispatcher>,
    tracker: Addr<Tracker>,
    config: Arc<Config>,
    stats: Arc<ServerStats>,
    log: Logger,
}

impl Processor {
    pub fn new(core: Core, dispatcher: Addr<Dispatcher>, tracker: Addr<Tracker>, config: Arc<Config>, stats: Arc<ServerStats>, log: Logger) -> Processor {
        Processor { core, dispatcher, tracker, config, stats, log }
    }

    /// ContainerManager: delete empty containers and idle TTL nodes, at most
    /// znode.container.maxPerMinute per minute.
    fn reap(&mut self) {
        let interval_ms = self.config.container_check_interval_ms.max(1);
        let budget = ((self.config.container_max_per_minute as u64 * interval_ms) / 60_000).max(1) as usize;
        let now = wall_clock_ms();
        for path in self.core.reap_candidates(now).into_iter().take(budget) {
            if let Some(output) = self.core.reap(&path, now) {
                info!(self.log, "reaped container or TTL node"; "path" => &path);
                self.dispatcher.do_send(Dispatch::Output { conn: None, session_id: 0, output, received: None });
            }
        }
    }
}

impl Actor for Processor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_millis(self.config.container_check_interval_ms.max(1));
        ctx.run_interval(every, |act, _| act.reap());
    }
}

impl Handler<Connect> for Processor {
    type Result = ();

    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        match self.core.connect(&msg.request, wall_clock_ms()) {
            ConnectOutcome::Accepted { frame, session_id, timeout_ms, created } => {
                info!(self.log, "session established"; "session" => format!("0x{session_id:x}"), "timeout_ms" => timeout_ms, "new" => created, "conn" => msg.conn_id);
                self.tracker.do_send(Tracking::Track { session_id, timeout_ms });
                self.dispatcher.do_send(Dispatch::Attach { session_id, conn_id: msg.conn_id, conn: msg.conn, timeout_ms, frame });
            }
            ConnectOutcome::Expired { frame } => {
                info!(self.log, "refused reattach to an unknown or expired session, or with a wrong password"; "session" => format!("0x{:x}", msg.request.session_id));
                msg.conn.do_send(ToConn::Close { frame: Some(frame), reason: "session expired" });
            }
            ConnectOutcome::Refused(why) => {
                info!(self.log, "refused connection"; "reason" => &why);
                msg.conn.do_send(ToConn::Close { frame: None, reason: "client zxid ahead of server" });
            }
        }
    }
}

impl Handler<Submit> for Processor {
    type Result = ();

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) {
        let ctx = RequestCtx { session_id: msg.session_id, xid: msg.xid, auth: &msg.auth, now_ms: wall_clock_ms() };
        let output = self.core.process(&ctx, &msg.request);
        if let Some(closed) = output.session_closed {
            info!(self.log, "session closed by client"; "session" => format!("0x{closed:x}"));
            self.tracker.do_send(Tracking::Untrack { session_id: closed });
        }
        self.dispatcher.do_send(Dispatch::Output { conn: Some(msg.conn), session_id: msg.session_id, output, received: Some(msg.received) });
    }
}

impl Handler<Expire> for Processor {
    type Result = ();

    fn handle(&mut self, msg: Expire, _: &mut Context<Self>) {
        if let Some(output) = self.core.expire(msg.session_id, wall_clock_ms()) {
            info!(self.log, "expiring session"; "session" => format!("0x{:x}", msg.session_id));
            self.dispatcher.do_send(Dispatch::Output { conn: None, session_id: msg.session_id, output, received: None });
        }
    }
}

impl Handler<TakeSnapshot> for Processor {
    type Result = MessageResult<TakeSnapshot>;

    fn handle(&mut self, _: TakeSnapshot, _: &mut Context<Self>) -> Self::Result {
        let db = &self.core.db;
        let mut s = ServerSnapshot {
            warden_version: env!("CARGO_PKG_VERSION").to_string(),
            mode: "standalone".into(),
            last_zxid: db.last_zxid(),
            node_count: db.tree.node_count() as u64,
            ephemerals_count: db.tree.ephemeral_count() as u64,
            approximate_data_size: db.tree.approximate_data_size(),
            global_sessions: db.sessions().len() as u64,
            conf: crate::node::zookeeper_conf(&self.config),
            env: crate::node::environment(),
            ..Default::default()
        };
        self.stats.fill(&mut s);
        MessageResult(s)
    }
}
