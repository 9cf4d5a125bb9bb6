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
