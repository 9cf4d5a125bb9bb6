//! Counted mailboxes. Every message an actor receives from another goes in
//! as `Counted<M>`, which raises the receiver's depth when it is sent and
//! lowers it when the handler takes it out (or when it is dropped undelivered),
//! so a depth is an exact count of queued messages whatever the send path.
//! The generated handler also times the handling and catches a panic, which
//! it hands to the actor's supervision (`Supervision::panicked`).
//!
//! Actors implement `Serve<M>` instead of actix's `Handler<M>` and list their
//! messages in `mailbox!(Actor: M1, M2, ...)`. Nothing outside this module
//! holds a raw `Addr`, so nothing can send around the count.

use crate::registry::ActorStats;
use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix::WeakRecipient;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// A message in transit, holding its place in the receiver's depth.
pub struct Counted<M> {
    msg: M,
    _ticket: Ticket,
}

/// A message's place in the depth: one, or the items a batch carries.
struct Ticket(Arc<ActorStats>, u64);

impl Ticket {
    fn new(stats: &Arc<ActorStats>) -> Ticket {
        Ticket::weighing(stats, 1)
    }

    fn weighing(stats: &Arc<ActorStats>, items: u64) -> Ticket {
        stats.queued(items);
        Ticket(stats.clone(), items)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.dequeued(self.1);
    }
}

/// The handler panicked; the sender of a request sees its mailbox closed.
#[derive(Debug)]
pub struct Panicked;

impl<M: Message> Message for Counted<M>
where
    M::Result: Send,
{
    type Result = Result<M::Result, Panicked>;
}

/// What an actor does with one kind of message (actix's `Handler`, minus the
/// bookkeeping the generated handler does).
pub trait Serve<M: Message>: Actor {
    fn serve(&mut self, msg: M, ctx: &mut Self::Context) -> M::Result;
}

/// How an actor is supervised: its counters, its logger, and what it does
/// when one of its handlers panicked (by its kind's policy).
pub trait Supervision: Actor {
    fn stats(&self) -> &Arc<ActorStats>;
    fn log(&self) -> &slog::Logger;
    fn panicked(&mut self, ctx: &mut Self::Context);
    /// After each handled message, stream item or timer: hand on what the
    /// handling gathered (the processor sends its outputs in one batch).
    fn after_each(&mut self, _ctx: &mut Self::Context) {}
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(non-text panic)".into())
}

/// The body of every generated handler: leave the queue, time, catch.
pub fn handle<A, M>(act: &mut A, m: Counted<M>, ctx: &mut A::Context, serve: fn(&mut A, M, &mut A::Context) -> M::Result) -> Result<M::Result, Panicked>
where
    A: Supervision,
    M: Message,
    M::Result: Send,
{
    let Counted { msg, _ticket } = m;
    drop(_ticket);
    guarded(act, ctx, |act, ctx| serve(act, msg, ctx)).ok_or(Panicked)
}

/// Runs `body` timed and with panics caught; a panic goes to the actor's
/// supervision and gives None. For stream items and timers as well as messages.
pub fn guarded<A, R>(act: &mut A, ctx: &mut A::Context, body: impl FnOnce(&mut A, &mut A::Context) -> R) -> Option<R>
where
    A: Supervision,
{
    let stats = act.stats().clone();
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| body(&mut *act, &mut *ctx)));
    stats.handled_in(started.elapsed());
    match result {
        Ok(v) => {
            act.after_each(ctx);
            Some(v)
        }
        Err(p) => {
            slog::error!(act.log(), "actor handler panicked; its supervision policy decides"; "kind" => stats.kind, "instance" => &stats.instance, "panic" => panic_text(&*p));
            act.panicked(ctx);
            None
        }
    }
}

/// `mailbox!(Actor: M1, M2)`: the counted, guarded handlers of an actor.
macro_rules! mailbox {
    ($actor:ty: $($msg:ty),* $(,)?) => {$(
        impl actix::Handler<crate::mailbox::Counted<$msg>> for $actor {
            type Result = actix::MessageResult<crate::mailbox::Counted<$msg>>;

            fn handle(&mut self, m: crate::mailbox::Counted<$msg>, ctx: &mut <Self as actix::Actor>::Context) -> Self::Result {
                actix::MessageResult(crate::mailbox::handle(self, m, ctx, <Self as crate::mailbox::Serve<$msg>>::serve))
            }
        }
    )*};
}
pub(crate) use mailbox;

/// An actor's address that counts what is put in its mailbox.
pub struct Mailbox<A: Actor> {
    addr: Addr<A>,
    pub stats: Arc<ActorStats>,
}

impl<A: Actor> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Mailbox { addr: self.addr.clone(), stats: self.stats.clone() }
    }
}

impl<A: Actor> Mailbox<A> {
    pub fn new(addr: Addr<A>, stats: Arc<ActorStats>) -> Mailbox<A> {
        Mailbox { addr, stats }
    }

    /// Enqueues whatever the depth: for messages that must not be lost and
    /// whose senders are bounded by other means (see each kind's policy).
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        self.addr.do_send(Counted { msg, _ticket: Ticket::new(&self.stats) });
    }

    /// Enqueues a batch that counts as `items` in the depth (so a depth
    /// stays a count of requests or outputs, however they were batched).
    pub fn do_send_batch<M>(&self, msg: M, items: usize)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        self.addr.do_send(Counted { msg, _ticket: Ticket::weighing(&self.stats, items as u64) });
    }

    /// Enqueues unless the mailbox is at its capacity.
    pub fn try_send<M>(&self, msg: M) -> Result<(), M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        if self.full() {
            return Err(msg);
        }
        self.do_send(msg);
        Ok(())
    }

    /// A request; a handler that panicked answers as a closed mailbox.
    pub fn send<M>(&self, msg: M) -> impl Future<Output = Result<M::Result, MailboxError>> + 'static
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        let request = self.addr.send(Counted { msg, _ticket: Ticket::new(&self.stats) });
        async move {
            match request.await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(Panicked)) => Err(MailboxError::Closed),
                Err(e) => Err(e),
            }
        }
    }

    /// Whether the mailbox holds at least its kind's capacity.
    pub fn full(&self) -> bool {
        self.stats.full()
    }

    /// A counted address for one message type.
    pub fn inbox<M>(&self) -> Inbox<M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        Inbox { to: self.addr.clone().recipient(), stats: self.stats.clone() }
    }

    /// An address for `M` that keeps neither the actor's mailbox nor its
    /// stats alive, for what the stats themselves hold (the fault injector):
    /// strong references there form a cycle that leaks both with every actor.
    pub fn weak_inbox<M>(&self) -> WeakInbox<M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        WeakInbox { to: self.addr.downgrade().recipient(), stats: Arc::downgrade(&self.stats) }
    }
}

/// A counted address that does not keep its actor alive (see `Mailbox::weak_inbox`).
pub struct WeakInbox<M: Message + Send>
where
    M::Result: Send,
{
    to: WeakRecipient<Counted<M>>,
    stats: Weak<ActorStats>,
}

impl<M: Message + Send + 'static> WeakInbox<M>
where
    M::Result: Send,
{
    /// Sends if the actor still runs; false if it is gone.
    pub fn do_send(&self, msg: M) -> bool {
        let (Some(to), Some(stats)) = (self.to.upgrade(), self.stats.upgrade()) else { return false };
        if !to.connected() {
            return false;
        }
        to.do_send(Counted { msg, _ticket: Ticket::new(&stats) });
        true
    }
}

/// A counted address for one message type (actix's `Recipient`).
pub struct Inbox<M: Message + Send>
where
    M::Result: Send,
{
    to: Recipient<Counted<M>>,
    pub stats: Arc<ActorStats>,
}

impl<M: Message + Send> Clone for Inbox<M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Inbox { to: self.to.clone(), stats: self.stats.clone() }
    }
}

impl<M: Message + Send + 'static> Inbox<M>
where
    M::Result: Send,
{
    pub fn do_send(&self, msg: M) {
        self.to.do_send(Counted { msg, _ticket: Ticket::new(&self.stats) });
    }

    /// Enqueues unless the mailbox is at its capacity.
    pub fn try_send(&self, msg: M) -> Result<(), M> {
        if self.stats.full() {
            return Err(msg);
        }
        self.do_send(msg);
        Ok(())
    }

    /// Whether the actor still runs (a stopped one drops what is sent).
    pub fn connected(&self) -> bool {
        self.to.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Fault, Registry};

    struct Echo {
        me: Arc<ActorStats>,
        log: slog::Logger,
        panics: usize,
    }

    impl Actor for Echo {
        type Context = Context<Self>;
    }

    impl Supervision for Echo {
        fn stats(&self) -> &Arc<ActorStats> {
            &self.me
        }
        fn log(&self) -> &slog::Logger {
            &self.log
        }
        fn panicked(&mut self, _: &mut Context<Self>) {
            self.panics += 1;
        }
    }

    #[derive(Message)]
    #[rtype(result = "usize")]
    struct Ask(bool);

    impl Serve<Ask> for Echo {
        fn serve(&mut self, Ask(panic): Ask, _: &mut Context<Self>) -> usize {
            assert!(!panic, "asked to panic");
            self.panics
        }
    }

    mailbox!(Echo: Ask);

    #[actix_rt::test]
    async fn a_weak_inbox_in_the_stats_does_not_keep_a_stopped_actor_alive() {
        let registry = Registry::default();
        let stats = registry.register("session", "1");
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let mb = Mailbox::new(Echo { me: stats.clone(), log, panics: 0 }.start(), stats.clone());
        // What `supervise::injectable` does: the stats hold a way to reach their actor.
        let inbox = mb.weak_inbox::<Ask>();
        stats.set_injector(move |_| inbox.do_send(Ask(false)));
        assert!(stats.inject(Fault::Stop), "reaches the running actor");
        assert_eq!(mb.send(Ask(false)).await.unwrap(), 0);
        let (watch, alive) = (Arc::downgrade(&stats), Arc::downgrade(&mb.stats));
        // A message left queued when the actor stops holds the stats too.
        mb.do_send(Ask(false));
        registry.unregister(&stats);
        drop((mb, stats));
        for _ in 0..100 {
            if watch.upgrade().is_none() {
                break;
            }
            actix_rt::task::yield_now().await;
        }
        assert!(watch.upgrade().is_none() && alive.upgrade().is_none(), "the stats (and the mailbox they reach) are freed with the actor");
    }

    #[actix_rt::test]
    async fn depth_is_exact_and_a_panic_is_caught() {
        let registry = Registry::default();
        let stats = registry.register("dispatcher", "0");
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let addr = Echo { me: stats.clone(), log, panics: 0 }.start();
        let mb = Mailbox::new(addr, stats.clone());
        // Queued but not yet handled: the actor runs only when we await.
        let pending: Vec<_> = (0..5).map(|_| mb.send(Ask(false))).collect();
        assert_eq!(stats.depth(), 5);
        for p in pending {
            p.await.unwrap();
        }
        assert_eq!(stats.depth(), 0);
        assert!(mb.send(Ask(true)).await.is_err(), "a panicking handler answers as a closed mailbox");
        assert_eq!(mb.send(Ask(false)).await.unwrap(), 1, "the actor lives on and saw its panic");
        assert_eq!(stats.handled(), 7);
    }
}
