//! A counter and a persistent watcher. One writer creates `/chaos/ctr/vK`
//! for K = 1, 2, ... (K advances only once vK is known to exist); one client
//! holds a persistent recursive watch on `/chaos/ctr`. While that client
//! stays connected it must see every K exactly once and in order, with
//! increasing zxids; across a disconnection ZooKeeper may drop events
//! (ZOOKEEPER-4698: no replay for persistent watches), so a gap is allowed
//! only where the watcher saw `Disconnected` or had to start a new session,
//! and only for values created before the watch was back (the highest K read
//! right after re-adding it). Across a disconnection an event may also come
//! again, the same K with the same zxid: a notification does not advance the
//! client's last-seen zxid (ZooKeeper's ClientCnxn neither), so the client may
//! reconnect to a member that had not applied it yet, which then fires it.

use crate::workload::{self, Ctx};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use zookeeper_client::{Acls, AddWatchMode, CreateMode, Error, EventType, SessionState};

pub const CTR: &str = "/chaos/ctr";

#[derive(Debug, Clone)]
pub enum Seen {
    Created {
        k: u64,
        zxid: i64,
    },
    /// The watcher lost its connection or session: events may be missing here.
    Gap(String),
    /// The watch added again (after a reconnect or in a new session), and the
    /// highest K present at a read just after: every later K must be seen.
    Reconnected(u64),
}

pub type Log = Arc<Mutex<Vec<Seen>>>;

fn parse_k(path: &str) -> Option<u64> {
    path.strip_prefix(CTR)?.strip_prefix("/v")?.parse().ok()
}

pub fn node(k: u64) -> String {
    format!("{CTR}/v{k:08}")
}

pub async fn writer(ctx: Arc<Ctx>) {
    let mut k = 1u64;
    let mut client = None;
    while !ctx.stop.load(Ordering::Relaxed) {
        if client.is_none() {
            let addrs = ctx.connect.read().unwrap().clone();
            client = workload::connect(&addrs, Duration::from_secs(5)).await;
            continue;
        }
        let zk = client.as_ref().unwrap();
        let r = tokio::time::timeout(workload::OP_TIMEOUT, zk.create(&node(k), b"", &CreateMode::Persistent.with_acls(Acls::anyone_all()))).await;
        match r {
            Ok(Ok(_)) | Ok(Err(Error::NodeExists)) => k += 1,
            Ok(Err(Error::SessionExpired | Error::ClientClosed)) => client = None,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Registers the watch, then returns the task that records what it sees
/// until `done` is set.
pub async fn watcher(ctx: Arc<Ctx>, log: Log, done: Arc<std::sync::atomic::AtomicBool>) -> Result<tokio::task::JoinHandle<()>, String> {
    let addrs = ctx.connect.read().unwrap().clone();
    let zk = workload::connect(&addrs, Duration::from_secs(30)).await.ok_or("watcher: no connection")?;
    let w = zk.watch(CTR, AddWatchMode::PersistentRecursive).await.map_err(|e| format!("watch {CTR}: {e}"))?;
    Ok(tokio::spawn(async move {
        // Sessions held open (dropping a client closes its session).
        let (mut held, mut w) = (vec![zk], w);
        loop {
            let ev = tokio::select! {
                ev = w.changed() => ev,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if done.load(Ordering::Relaxed) { return; }
                    continue;
                }
            };
            match ev.event_type {
                EventType::NodeCreated => {
                    if let Some(k) = parse_k(&ev.path) {
                        log.lock().unwrap().push(Seen::Created { k, zxid: ev.zxid });
                    }
                }
                EventType::Session if ev.session_state == SessionState::Disconnected => log.lock().unwrap().push(Seen::Gap("disconnected".into())),
                EventType::Session if ev.session_state == SessionState::SyncConnected => {
                    // zookeeper-client 0.11.2 re-sends persistent watches with
                    // SetWatches (not SetWatches2), which drops them (see
                    // chaos/findings): add the watch again ourselves.
                    let zk = held.last().unwrap().clone();
                    match zk.watch(CTR, AddWatchMode::PersistentRecursive).await {
                        Ok(nw) => {
                            w = nw;
                            if let Some(b) = highest(&zk).await {
                                log.lock().unwrap().push(Seen::Reconnected(b));
                            }
                        }
                        Err(e) => log.lock().unwrap().push(Seen::Gap(format!("re-adding the watch: {e}"))),
                    }
                }
                EventType::Session if ev.session_state.is_terminated() => {
                    log.lock().unwrap().push(Seen::Gap(format!("session ended: {:?}", ev.session_state)));
                    // A new session and a new watch; what happened meanwhile is not seen.
                    loop {
                        if done.load(Ordering::Relaxed) {
                            return;
                        }
                        let addrs = ctx.connect.read().unwrap().clone();
                        if let Some(c) = workload::connect(&addrs, Duration::from_secs(5)).await {
                            if let Ok(nw) = c.watch(CTR, AddWatchMode::PersistentRecursive).await {
                                let b = highest(&c).await;
                                held.push(c);
                                w = nw;
                                if let Some(b) = b {
                                    log.lock().unwrap().push(Seen::Reconnected(b));
                                }
                                break;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }))
}

/// The highest K present now (0 if none); None if the read failed.
async fn highest(zk: &zookeeper_client::Client) -> Option<u64> {
    let names = tokio::time::timeout(workload::OP_TIMEOUT, zk.list_children(CTR)).await.ok()?.ok()?;
    Some(names.iter().filter_map(|n| n.strip_prefix('v')?.parse().ok()).max().unwrap_or(0))
}

/// Checks the watcher's view against the counter's final value `last`
/// (every vK for K in 1..=last present in the final tree).
pub fn check(seen: &[Seen], present: &std::collections::BTreeSet<u64>) -> Result<String, String> {
    let mut problems = Vec::new();
    let last = present.iter().next_back().copied().unwrap_or(0);
    if present.len() as u64 != last {
        problems.push(format!("counter nodes not contiguous: {} nodes, highest v{last}", present.len()));
    }
    let (mut prev, mut prev_zxid, mut gap_before) = (0u64, 0i64, false);
    // Once the watch is back, every K above `floor` must be seen.
    let (mut connected, mut floor) = (true, 0u64);
    let (mut events, mut gaps) = (0, std::collections::BTreeMap::<&str, u64>::new());
    // Every (K, zxid) seen, and whether a disconnection came since the last event.
    let (mut seen_at, mut gap_since, mut again) = (std::collections::BTreeMap::<u64, i64>::new(), false, 0u64);
    for s in seen {
        match s {
            Seen::Reconnected(b) => (connected, floor) = (true, *b),
            Seen::Gap(why) => {
                gap_before = true;
                gap_since = true;
                connected = false;
                *gaps.entry(why.as_str()).or_default() += 1;
            }
            Seen::Created { k, zxid } => {
                events += 1;
                if gap_since && *k <= prev && seen_at.get(k) == Some(zxid) {
                    again += 1; // the same event again after a reconnect (module doc)
                    continue;
                }
                gap_since = false;
                seen_at.insert(*k, *zxid);
                if *k <= prev {
                    problems.push(format!("v{k} seen after v{prev}: duplicate or out of order"));
                } else if *k != prev + 1 && !gap_before {
                    problems.push(format!("v{} .. v{} never seen while connected (between v{prev} and v{k})", prev + 1, k - 1));
                } else if gap_before && connected && *k > prev.max(floor) + 1 {
                    problems.push(format!("v{} .. v{} never seen though created after the watch was back (at v{floor})", prev.max(floor) + 1, k - 1));
                }
                if *zxid <= prev_zxid {
                    problems.push(format!("v{k} zxid {zxid:#x} not after {prev_zxid:#x}"));
                }
                if !present.contains(k) {
                    problems.push(format!("v{k} seen created but absent from the final tree"));
                }
                (prev, prev_zxid, gap_before) = (*k, *zxid, false);
            }
        }
    }
    // Events lost while disconnected are allowed; after reconnecting the
    // watch must deliver again, up to the counter's last value.
    if prev != last && connected && (!gap_before || last > floor) {
        let state = if gap_before { "reconnected after a gap, " } else { "" };
        problems.push(format!("the watcher ({state}connected at the end) last saw v{prev}, the counter ended at v{last}"));
    }
    if problems.is_empty() {
        Ok(format!(
            "persistent watch: {events} events for a counter at {last}, in order, none twice while connected ({again} again after a reconnect), none missed while connected (gaps: {gaps:?})"
        ))
    } else {
        problems.truncate(30);
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(k: u64) -> Seen {
        Seen::Created { k, zxid: k as i64 * 10 }
    }

    fn present(n: u64) -> std::collections::BTreeSet<u64> {
        (1..=n).collect()
    }

    #[test]
    fn complete_in_order_passes() {
        assert!(check(&[created(1), created(2), created(3)], &present(3)).is_ok());
    }

    #[test]
    fn duplicate_and_reorder_fail() {
        assert!(check(&[created(1), created(2), created(2), created(3)], &present(3)).unwrap_err().contains("duplicate"));
        assert!(check(&[created(2), created(1), created(3)], &present(3)).is_err());
    }

    #[test]
    fn the_same_event_again_only_after_a_reconnect() {
        // Reconnected to a member that applied v2 after the watcher saw it: v2 fires again.
        let again = [created(1), created(2), Seen::Gap("disconnected".into()), Seen::Reconnected(1), created(2), created(3)];
        assert!(check(&again, &present(3)).is_ok());
        // But not while connected, and not with another zxid.
        assert!(check(&[created(1), created(2), created(2), created(3)], &present(3)).is_err());
        let other = [created(1), created(2), Seen::Gap("disconnected".into()), Seen::Created { k: 2, zxid: 99 }, created(3)];
        assert!(check(&other, &present(3)).unwrap_err().contains("duplicate"));
    }

    #[test]
    fn a_gap_only_across_a_disconnection() {
        assert!(check(&[created(1), created(3)], &present(3)).unwrap_err().contains("never seen while connected"));
        let ok = [created(1), Seen::Gap("disconnected".into()), Seen::Reconnected(2), created(3)];
        assert!(check(&ok, &present(3)).is_ok());
        let late = [created(1), Seen::Gap("disconnected".into()), Seen::Reconnected(2), created(5)];
        assert!(check(&late, &present(5)).unwrap_err().contains("v3 .. v4 never seen though created after the watch was back"));
    }

    #[test]
    fn a_reconnected_watcher_must_reach_the_last_value() {
        let seen = [created(1), Seen::Gap("disconnected".into()), Seen::Reconnected(2)];
        assert!(check(&seen, &present(5)).unwrap_err().contains("counter ended at v5"));
        // Everything after v1 was created before the watch was back: may be unseen.
        let seen = [created(1), Seen::Gap("disconnected".into()), Seen::Reconnected(5)];
        assert!(check(&seen, &present(5)).is_ok());
        // Still disconnected at the end: the rest may be unseen.
        assert!(check(&[created(1), Seen::Gap("disconnected".into())], &present(5)).is_ok());
    }

    #[test]
    fn phantom_and_backward_zxid_fail() {
        assert!(check(&[created(1), created(2)], &present(1)).is_err());
        let seen = [Seen::Created { k: 1, zxid: 50 }, Seen::Created { k: 2, zxid: 40 }];
        assert!(check(&seen, &present(2)).unwrap_err().contains("zxid"));
    }
}
