//! Supervision: what happens when an actor fails (a handler panicked, or
//! the actor stopped), by its kind's live policy. A kind either restarts
//! (each rebuilds from its source of truth, see the README's table) up to
//! `max_restarts` in `window_ms`, or escalates: the node fail-stops with
//! exit status 70 and a service manager starts it again from the disk.

use crate::mailbox::{Counted, Mailbox, Supervision};
use crate::registry::{ActorStats, Fault, RestartVerdict, Strategy};
use actix::dev::ToEnvelope;
use actix::prelude::*;
use slog::{error, warn, Logger};
use std::time::{Duration, Instant};

/// Exit status when an actor fails beyond its policy (EX_SOFTWARE).
pub const GIVE_UP_EXIT_CODE: i32 = 70;

/// Fail-stop: nothing more is served from state a failure may have left
/// half-changed. Everything acknowledged is already durable.
pub fn escalate(stats: &ActorStats, log: &Logger, why: &str) -> ! {
    error!(log, "actor failed beyond its supervision policy; stopping the node"; "kind" => stats.kind, "instance" => &stats.instance, "why" => why);
    eprintln!("warden: the {} actor failed beyond its supervision policy ({why}); exit status {GIVE_UP_EXIT_CODE}", stats.kind);
    // Let the async log drain print the lines above.
    std::thread::sleep(Duration::from_millis(100));
    std::process::exit(GIVE_UP_EXIT_CODE);
}

/// Counts a failure and returns the backoff before the rebuilt actor runs,
/// or escalates.
pub fn decide(stats: &ActorStats, log: &Logger) -> Duration {
    match stats.policy.on_restart(Instant::now()) {
        RestartVerdict::Restart { backoff } => {
            warn!(log, "supervisor restarts actor"; "kind" => stats.kind, "instance" => &stats.instance, "backoff_ms" => backoff.as_millis() as u64);
            backoff
        }
        RestartVerdict::GiveUp { restarts_in_window } => {
            let why = match stats.policy.strategy() {
                Strategy::Escalate => "its strategy is escalate".to_string(),
                Strategy::Restart => format!("{restarts_in_window} restarts within window_ms"),
            };
            escalate(stats, log, &why)
        }
    }
}

/// From `actix::Supervised::restarting`: count, then hold the restarted
/// actor for the backoff (or escalate).
pub fn restarting<A>(stats: &ActorStats, log: &Logger, ctx: &mut Context<A>)
where
    A: Actor<Context = Context<A>>,
{
    let backoff = decide(stats, log);
    if !backoff.is_zero() {
        ctx.wait(actix::fut::wrap_future(actix::clock::sleep(backoff)));
    }
}

/// An injected fault, as the actor's own handler experiences it.
pub fn inject<A>(act: &mut A, fault: Fault, ctx: &mut A::Context)
where
    A: Supervision,
    A::Context: ActorContext,
{
    warn!(act.log(), "fault injected by the operator"; "fault" => format!("{fault:?}"));
    match fault {
        Fault::Panic => panic!("fault injected by the operator"),
        Fault::Stop => ctx.stop(),
        Fault::Stall(d) => std::thread::sleep(d),
    }
}

/// Lets the admin endpoint inject faults into this instance.
pub fn injectable<A>(mb: &Mailbox<A>)
where
    A: Actor + Handler<Counted<Fault>>,
    A::Context: ToEnvelope<A, Counted<Fault>>,
{
    // Weak: the stats hold the injector, and outlive nothing through it.
    let inbox = mb.weak_inbox::<Fault>();
    mb.stats.set_injector(move |f| inbox.do_send(f));
}

/// For an actor run under actix's `Supervisor`: a panic stops it, and the
/// supervisor's `restarting` (see `supervised!`) counts and rebuilds.
/// `supervised!(Actor, after_each = method)` also calls `method` after each
/// handled message (see `Supervision::after_each`).
macro_rules! supervised {
    ($actor:ty) => {
        crate::supervise::supervised!($actor, after_each = _none);
    };
    ($actor:ty, after_each = $after:ident) => {
        impl crate::mailbox::Supervision for $actor {
            fn stats(&self) -> &std::sync::Arc<crate::registry::ActorStats> {
                &self.me
            }
            fn log(&self) -> &slog::Logger {
                &self.log
            }
            fn panicked(&mut self, ctx: &mut actix::Context<Self>) {
                actix::ActorContext::stop(ctx);
            }
            crate::supervise::supervised!(@after $after);
        }

        impl actix::Supervised for $actor {
            fn restarting(&mut self, ctx: &mut actix::Context<Self>) {
                crate::supervise::restarting::<Self>(&self.me, &self.log, ctx);
                crate::supervise::Rebuild::rebuild(self, ctx);
            }
        }

        impl crate::mailbox::Serve<crate::registry::Fault> for $actor {
            fn serve(&mut self, f: crate::registry::Fault, ctx: &mut actix::Context<Self>) {
                crate::supervise::inject(self, f, ctx);
            }
        }
    };
    (@after _none) => {};
    (@after $after:ident) => {
        fn after_each(&mut self, ctx: &mut actix::Context<Self>) {
            self.$after(ctx);
        }
    };
}
pub(crate) use supervised;

/// How a restarted actor rebuilds its state from its source of truth.
pub trait Rebuild: Actor {
    fn rebuild(&mut self, ctx: &mut Self::Context);
}
