//! Per I/O thread: the requests and session touches its connections produce
//! in one turn of the thread's event loop, handed on as one message each.
//! A thousand connections that each read one request cost the processor one
//! wake-up per turn, not a thousand (each cross-thread wake is a syscall).
//!
//! The first item of a turn spawns the flush as a task; the connections
//! already woken in this turn run before it, so their items join the batch.

use crate::deps::Deps;
use crate::messages::{Submit, Submits, Tracking};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

/// Touches wait at most this long, so a thread sends the tracker (a
/// different thread) at most one message per interval, not one per turn.
/// Far below any session timeout (at least 2 × tickTime).
const TOUCH_FLUSH_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Pending {
    submits: Vec<Submit>,
    touches: Vec<i64>,
    /// Where to send them; set while a flush is scheduled.
    deps: Option<Arc<Deps>>,
    /// A flush of the touches is scheduled for the end of the interval.
    touch_flush: bool,
}

thread_local! {
    static PENDING: RefCell<Pending> = RefCell::default();
}

/// Queues requests (one connection's, in order) for this turn's batch.
pub fn submit(deps: &Arc<Deps>, submits: impl IntoIterator<Item = Submit>) {
    with_pending(deps, |p| p.submits.extend(submits));
}

/// Queues a session touch; sent with the others of the next
/// `TOUCH_FLUSH_INTERVAL`.
pub fn touch(deps: &Arc<Deps>, session_id: i64) {
    let schedule = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.touches.push(session_id);
        !std::mem::replace(&mut p.touch_flush, true)
    });
    if schedule {
        let deps = deps.clone();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(TOUCH_FLUSH_INTERVAL).await;
            let touches = PENDING.with(|p| {
                let mut p = p.borrow_mut();
                p.touch_flush = false;
                std::mem::take(&mut p.touches)
            });
            // A full tracker skips these touches; the next packets touch again.
            let _ = deps.tracker.try_send(Tracking::Touches(touches));
        });
    }
}

fn with_pending(deps: &Arc<Deps>, add: impl FnOnce(&mut Pending)) {
    let schedule = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        add(&mut p);
        p.deps.replace(deps.clone()).is_none()
    });
    if schedule {
        actix_rt::spawn(async { flush() });
    }
}

fn flush() {
    let (submits, deps) = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        (std::mem::take(&mut p.submits), p.deps.take())
    });
    let Some(deps) = deps else { return };
    if !submits.is_empty() {
        let n = submits.len();
        deps.stats.outstanding.fetch_add(n as i64, std::sync::atomic::Ordering::Relaxed);
        // Bounded by the read gate (`connection::gated`): no connection reads
        // while the processor's mailbox is full.
        deps.processor.do_send_batch(Submits(submits), n);
    }
}
