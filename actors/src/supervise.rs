//! Restart decisions for supervised actors, by their kind's live policy.

use crate::registry::{ActorStats, RestartVerdict};
use actix::prelude::*;
use slog::{error, warn, Logger};
use std::time::Instant;

/// Exit status when an actor keeps failing: the node stops rather than run
/// without it (fail-stop).
pub const GIVE_UP_EXIT_CODE: i32 = 70;

/// Called from `Supervised::restarting`: counts the restart and either delays
/// the restarted actor by the backoff or stops the node.
pub fn restarting<A>(stats: &ActorStats, log: &Logger, ctx: &mut A::Context)
where
    A: Actor,
    A::Context: AsyncContext<A>,
{
    match stats.policy.on_restart(Instant::now()) {
        RestartVerdict::Restart { backoff } => {
            warn!(log, "supervisor restarts actor"; "kind" => stats.kind, "instance" => &stats.instance, "backoff_ms" => backoff.as_millis() as u64);
            if !backoff.is_zero() {
                ctx.wait(actix::fut::wrap_future(actix::clock::sleep(backoff)));
            }
        }
        RestartVerdict::GiveUp { restarts_in_window } => {
            error!(log, "actor keeps failing, beyond its supervision policy; stopping the node"; "kind" => stats.kind, "restarts_in_window" => restarts_in_window);
            System::current().stop_with_code(GIVE_UP_EXIT_CODE);
        }
    }
}

/// Makes an actor with `me: Arc<ActorStats>` and `log: Logger` fields
/// supervised by its kind's policy, and stoppable by an injected fault.
macro_rules! supervised {
    ($actor:ty) => {
        impl actix::Supervised for $actor {
            fn restarting(&mut self, ctx: &mut actix::Context<Self>) {
                crate::supervise::restarting::<Self>(&self.me, &self.log, ctx);
            }
        }

        impl actix::Handler<crate::registry::InjectFault> for $actor {
            type Result = ();

            fn handle(&mut self, _: crate::registry::InjectFault, ctx: &mut actix::Context<Self>) {
                use actix::ActorContext;
                let _t = self.me.track();
                slog::warn!(self.log, "fault injected by the operator: stopping the actor");
                ctx.stop();
            }
        }
    };
}
pub(crate) use supervised;
