//! The election actor (kind "election"): owns the pure `Elector` — fast
//! leader election rounds, answers to servers still looking, configs
//! adopted from peers. It runs on Zab's thread beside the broadcast
//! actor and the peer links. The broadcast actor asks for a round
//! (`ToElection::Elect`) and hears the outcome (`ToZab::Elected`); the links
//! bring it notifications and configs and carry its votes.

use crate::mailbox::{Inbox, Serve};
use crate::messages::PeerEvent;
use crate::messages::SendFrame;
use crate::messages::{ToElection, ToZab};
use crate::peer_link;
use crate::registry::{ActorStats, Fault};
use actix::prelude::*;
use slog::{info, Logger};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::zab::{Command, Config, Elector, Message, ServerId};

/// How often a round sees the clock (resends, the finalize wait).
const ELECTION_TICK: Duration = Duration::from_millis(20);

pub struct ElectionActor {
    elector: Elector,
    /// Set by `ToElection::Start`.
    broadcast: Option<Inbox<ToZab>>,
    /// The broadcast actor's links (it makes them; this actor sends on them).
    links: BTreeMap<ServerId, Inbox<SendFrame>>,
    /// The live connection generation per peer (events of older ones are stale).
    link_gen: HashMap<ServerId, u64>,
    started: Instant,
    me: Arc<ActorStats>,
    log: Logger,
}

impl ElectionActor {
    pub fn new(cfg: Config, me: Arc<ActorStats>, log: Logger) -> ElectionActor {
        ElectionActor { elector: Elector::new(cfg), broadcast: None, links: BTreeMap::new(), link_gen: HashMap::new(), started: Instant::now(), me, log }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn to_broadcast(&self, msg: ToZab) {
        if let Some(b) = &self.broadcast {
            b.do_send(msg);
        }
    }

    fn send(&self, to: ServerId, msg: &Message) {
        if let Some(link) = self.links.get(&to) {
            // A full link resets itself (see the broadcast actor); a lost
            // vote is resent by the round's timer.
            let _ = link.try_send(SendFrame(peer_link::encode(msg)));
        }
    }

    fn run_commands(&mut self, cmds: Vec<Command>) {
        for cmd in cmds {
            match cmd {
                Command::Send { to, msg } => self.send(to, &msg),
                Command::Broadcast { to, msg } => {
                    for id in to {
                        self.send(id, &msg);
                    }
                }
                Command::Elected { leader, vote } => {
                    info!(self.log, "election finished"; "leader" => leader, "zxid" => format!("{:#x}", vote.zxid), "epoch" => vote.epoch, "round" => vote.election_epoch);
                    self.to_broadcast(ToZab::Elected(vote));
                }
                Command::ConfigAdopted { data } => {
                    info!(self.log, "adopted a newer committed config from a peer");
                    self.to_broadcast(ToZab::ConfigAdopted(data));
                }
                other => slog::warn!(self.log, "the elector gave a command that is not an election's"; "command" => format!("{other:?}")),
            }
        }
    }
}

impl Actor for ElectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(ELECTION_TICK, |act, ctx| {
            crate::mailbox::guarded(act, ctx, |act, _| {
                let now = act.now_ms();
                let cmds = act.elector.on_tick(now);
                act.run_commands(cmds);
            });
        });
    }
}

crate::supervise::supervised!(ElectionActor);
crate::mailbox::mailbox!(ElectionActor: ToElection, PeerEvent, Fault);

/// A restarted election actor re-elects: it asks the broadcast actor for
/// the config in force, which then starts a new round (a member in a role
/// steps down first, as its old vote is gone). The link generations stay:
/// they are facts about the links, whose events keep arriving in order in
/// the same mailbox (clearing them would ignore every link that stays up).
impl crate::supervise::Rebuild for ElectionActor {
    fn rebuild(&mut self, _: &mut Context<Self>) {
        self.to_broadcast(ToZab::ElectionRestarted);
    }
}

impl Serve<ToElection> for ElectionActor {
    fn serve(&mut self, msg: ToElection, _: &mut Context<Self>) {
        match msg {
            ToElection::Start { broadcast } => self.broadcast = Some(broadcast),
            ToElection::Links(links) => self.links = links,
            ToElection::Elect(look) => {
                let now = self.now_ms();
                let cmds = self.elector.look(look, now);
                self.run_commands(cmds);
            }
            ToElection::ConfigActive { voters, observers, version, data } => self.elector.set_membership(voters, observers, version, data),
            ToElection::Reset(cfg) => self.elector = Elector::new(*cfg),
        }
    }
}

impl Serve<PeerEvent> for ElectionActor {
    fn serve(&mut self, ev: PeerEvent, _: &mut Context<Self>) {
        let cmds = match ev {
            PeerEvent::Up { peer, gen } => {
                if self.link_gen.insert(peer, gen).is_some() {
                    self.elector.on_disconnected(peer);
                }
                self.elector.on_connected(peer)
            }
            PeerEvent::Down { peer, gen } => {
                if self.link_gen.get(&peer) == Some(&gen) {
                    self.link_gen.remove(&peer);
                    self.elector.on_disconnected(peer);
                }
                return;
            }
            PeerEvent::Msg { peer, gen, msg } => {
                if self.link_gen.get(&peer) != Some(&gen) {
                    return;
                }
                match msg {
                    Message::Notification(n) => self.elector.on_notification(peer, n),
                    Message::Config { data } => self.elector.on_config(data),
                    _ => return,
                }
            }
        };
        self.run_commands(cmds);
    }
}
