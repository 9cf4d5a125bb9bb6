//! Watch registry, as ZooKeeper's two `WatchManager`s (data and child) with
//! per-(session, path) modes. Triggering returns who to notify; sending is the
//! caller's job.

use std::collections::{HashMap, HashSet};

pub type SessionId = i64;

pub mod event {
    pub const NONE: i32 = -1;
    pub const NODE_CREATED: i32 = 1;
    pub const NODE_DELETED: i32 = 2;
    pub const NODE_DATA_CHANGED: i32 = 3;
    pub const NODE_CHILDREN_CHANGED: i32 = 4;
}

pub mod state {
    pub const SYNC_CONNECTED: i32 = 3;
    pub const EXPIRED: i32 = -112;
}

/// Client-side watch kinds of checkWatches/removeWatches (`WatcherType`).
pub mod watcher_type {
    pub const CHILDREN: i32 = 1;
    pub const DATA: i32 = 2;
    pub const ANY: i32 = 3;
    pub const PERSISTENT: i32 = 4;
    pub const PERSISTENT_RECURSIVE: i32 = 5;
}

/// addWatch modes (`AddWatchMode`).
pub mod add_mode {
    pub const PERSISTENT: i32 = 0;
    pub const PERSISTENT_RECURSIVE: i32 = 1;
}

const STANDARD: u8 = 1;
const PERSISTENT: u8 = 2;
const RECURSIVE: u8 = 4;

/// One manager: path -> sessions watching it, with each (session, path)'s modes.
#[derive(Default)]
struct Table {
    by_path: HashMap<String, HashMap<SessionId, u8>>,
    by_session: HashMap<SessionId, HashSet<String>>,
    recursive_count: usize,
    /// (session, path) entries, kept as they change: counting them by a walk
    /// would cost every dispatched batch time in proportion to the watches.
    entries: usize,
}

impl Table {
    fn add(&mut self, path: &str, sid: SessionId, mode: u8) {
        let modes = self.by_path.entry(path.to_owned()).or_default().entry(sid).or_insert(0);
        if *modes == 0 {
            self.entries += 1;
        }
        if mode == RECURSIVE && *modes & RECURSIVE == 0 {
            self.recursive_count += 1;
        }
        *modes |= mode;
        self.by_session.entry(sid).or_default().insert(path.to_owned());
    }

    /// Removes the given modes; true if any was present.
    fn remove(&mut self, path: &str, sid: SessionId, mode_mask: u8) -> bool {
        let Some(watchers) = self.by_path.get_mut(path) else { return false };
        let Some(modes) = watchers.get_mut(&sid) else { return false };
        let removed = *modes & mode_mask;
        if removed == 0 {
            return false;
        }
        if removed & RECURSIVE != 0 {
            self.recursive_count -= 1;
        }
        *modes &= !mode_mask;
        if *modes == 0 {
            self.entries -= 1;
            watchers.remove(&sid);
            if watchers.is_empty() {
                self.by_path.remove(path);
            }
            if let Some(paths) = self.by_session.get_mut(&sid) {
                paths.remove(path);
                if paths.is_empty() {
                    self.by_session.remove(&sid);
                }
            }
        }
        true
    }

    fn contains(&self, path: &str, sid: SessionId, mode_mask: u8) -> bool {
        self.by_path.get(path).and_then(|w| w.get(&sid)).is_some_and(|m| m & mode_mask != 0)
    }

    /// Who fires for a change at `path`: everyone on the path itself (one-shot
    /// watches are consumed), plus recursive watchers on any ancestor.
    fn trigger(&mut self, path: &str, out: &mut Vec<SessionId>) {
        if let Some(watchers) = self.by_path.get(path) {
            let consumed: Vec<SessionId> = watchers.iter().filter(|(_, m)| **m & STANDARD != 0).map(|(s, _)| *s).collect();
            out.extend(watchers.keys().copied());
            for sid in consumed {
                self.remove(path, sid, STANDARD);
            }
        }
        if self.recursive_count > 0 {
            let mut p = path;
            while p != "/" {
                p = crate::path::parent(p);
                if let Some(watchers) = self.by_path.get(p) {
                    out.extend(watchers.iter().filter(|(_, m)| **m & RECURSIVE != 0).map(|(s, _)| *s));
                }
            }
        }
    }

    fn remove_session(&mut self, sid: SessionId) {
        for path in self.by_session.remove(&sid).unwrap_or_default() {
            if let Some(watchers) = self.by_path.get_mut(&path) {
                if let Some(m) = watchers.remove(&sid) {
                    self.entries -= 1;
                    if m & RECURSIVE != 0 {
                        self.recursive_count -= 1;
                    }
                }
                if watchers.is_empty() {
                    self.by_path.remove(&path);
                }
            }
        }
    }

    fn count(&self) -> usize {
        #[cfg(test)]
        assert_eq!(self.entries, self.by_path.values().map(HashMap::len).sum::<usize>());
        self.entries
    }
}

/// A notification to deliver: (session, event type, path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub session_id: SessionId,
    pub event_type: i32,
    pub path: String,
}

/// What kind of one-shot watch a read leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// getData and exists (ZooKeeper keeps both in its data manager).
    Data,
    Child,
}

#[derive(Default)]
pub struct WatchManager {
    data: Table,
    child: Table,
}

impl WatchManager {
    pub fn add(&mut self, kind: WatchKind, path: &str, sid: SessionId) {
        match kind {
            WatchKind::Data => self.data.add(path, sid, STANDARD),
            WatchKind::Child => self.child.add(path, sid, STANDARD),
        }
    }

    /// addWatch: persistent watches see data and child events of the path;
    /// recursive ones see data events of the path and all its descendants.
    pub fn add_persistent(&mut self, path: &str, sid: SessionId, recursive: bool) {
        if recursive {
            self.data.add(path, sid, RECURSIVE);
        } else {
            self.data.add(path, sid, PERSISTENT);
            self.child.add(path, sid, PERSISTENT);
        }
    }

    /// Fires the watches a change of `event_type` at `path` triggers, in
    /// ZooKeeper's order, at most one notification per session.
    pub fn trigger(&mut self, path: &str, event_type: i32) -> Vec<Notification> {
        let mut sids = Vec::new();
        match event_type {
            event::NODE_CHILDREN_CHANGED => self.child.trigger(path, &mut sids),
            event::NODE_DELETED => {
                self.data.trigger(path, &mut sids);
                self.child.trigger(path, &mut sids);
            }
            _ => self.data.trigger(path, &mut sids),
        }
        let mut seen = HashSet::with_capacity(sids.len());
        sids.into_iter().filter(|s| seen.insert(*s)).map(|session_id| Notification { session_id, event_type, path: path.to_owned() }).collect()
    }

    fn masks(watcher_type: i32) -> Option<(u8, u8)> {
        // (data-table modes, child-table modes) a WatcherType names.
        match watcher_type {
            watcher_type::CHILDREN => Some((0, STANDARD)),
            watcher_type::DATA => Some((STANDARD, 0)),
            watcher_type::ANY => Some((STANDARD | PERSISTENT | RECURSIVE, STANDARD | PERSISTENT)),
            watcher_type::PERSISTENT => Some((PERSISTENT, PERSISTENT)),
            watcher_type::PERSISTENT_RECURSIVE => Some((RECURSIVE, 0)),
            _ => None,
        }
    }

    /// checkWatches: whether the session holds a watch of that type on the path.
    pub fn contains(&self, path: &str, sid: SessionId, watcher_type: i32) -> bool {
        Self::masks(watcher_type).is_some_and(|(d, c)| self.data.contains(path, sid, d) || self.child.contains(path, sid, c))
    }

    /// removeWatches: true if anything was removed.
    pub fn remove(&mut self, path: &str, sid: SessionId, watcher_type: i32) -> bool {
        let Some((d, c)) = Self::masks(watcher_type) else { return false };
        let removed_data = self.data.remove(path, sid, d);
        let removed_child = self.child.remove(path, sid, c);
        removed_data || removed_child
    }

    pub fn remove_session(&mut self, sid: SessionId) {
        self.data.remove_session(sid);
        self.child.remove_session(sid);
    }

    /// Number of (session, path) watch registrations, as `mntr`'s zk_watch_count.
    pub fn count(&self) -> usize {
        self.data.count() + self.child.count()
    }

    /// Paths watched by each session (`wchc`) and sessions per path (`wchp`).
    pub fn by_session(&self) -> HashMap<SessionId, Vec<String>> {
        let mut out: HashMap<SessionId, Vec<String>> = HashMap::new();
        for table in [&self.data, &self.child] {
            for (sid, paths) in &table.by_session {
                out.entry(*sid).or_default().extend(paths.iter().cloned());
            }
        }
        for paths in out.values_mut() {
            paths.sort();
            paths.dedup();
        }
        out
    }

    /// `wchs`, `wchc` and `wchp` text. Like ZooKeeper 3.8 they report the
    /// data/exists watches (its `dataWatches` manager) only.
    pub fn report(&self, cmd: &str) -> String {
        let t = &self.data;
        match cmd {
            "wchs" => format!(
                "{} connections watching {} paths\nTotal watches:{}\n",
                t.by_session.len(),
                t.by_path.len(),
                t.by_session.values().map(HashSet::len).sum::<usize>()
            ),
            "wchc" => {
                let mut sids: Vec<_> = t.by_session.iter().collect();
                sids.sort_by_key(|(sid, _)| **sid);
                sids.iter()
                    .map(|(sid, paths)| {
                        let mut paths: Vec<_> = paths.iter().collect();
                        paths.sort();
                        format!("0x{sid:x}\n{}", paths.iter().map(|p| format!("\t{p}\n")).collect::<String>())
                    })
                    .collect()
            }
            _ => {
                let mut paths: Vec<_> = t.by_path.iter().collect();
                paths.sort_by_key(|(p, _)| p.as_str());
                paths
                    .iter()
                    .map(|(path, sids)| {
                        let mut sids: Vec<_> = sids.keys().collect();
                        sids.sort();
                        format!("{path}\n{}", sids.iter().map(|s| format!("\t0x{s:x}\n")).collect::<String>())
                    })
                    .collect()
            }
        }
    }

    pub fn watched_paths(&self) -> usize {
        let mut paths: HashSet<&String> = self.data.by_path.keys().collect();
        paths.extend(self.child.by_path.keys());
        paths.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event::*;

    fn sessions(n: &[Notification]) -> Vec<SessionId> {
        let mut v: Vec<_> = n.iter().map(|n| n.session_id).collect();
        v.sort();
        v
    }

    #[test]
    fn the_count_follows_every_add_remove_trigger_and_session_end() {
        let mut w = WatchManager::default();
        w.add(WatchKind::Data, "/a", 1);
        w.add_persistent("/a", 1, true); // same (session, path): one entry, two modes
        w.add_persistent("/a", 2, false); // one entry in each table
        w.add(WatchKind::Child, "/b", 1);
        assert_eq!(w.count(), 4);
        w.trigger("/a", NODE_DATA_CHANGED); // the one-shot mode goes, the entry stays
        assert_eq!(w.count(), 4);
        assert!(w.remove("/a", 1, watcher_type::PERSISTENT_RECURSIVE));
        assert_eq!(w.count(), 3);
        w.remove_session(2);
        assert_eq!(w.count(), 1);
        w.remove_session(1);
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn one_shot_watches_fire_once() {
        let mut w = WatchManager::default();
        w.add(WatchKind::Data, "/a", 1);
        assert_eq!(sessions(&w.trigger("/a", NODE_DATA_CHANGED)), vec![1]);
        assert!(w.trigger("/a", NODE_DATA_CHANGED).is_empty());
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn delete_fires_data_and_child_watchers_once_each() {
        let mut w = WatchManager::default();
        w.add(WatchKind::Data, "/a", 1);
        w.add(WatchKind::Child, "/a", 1);
        w.add(WatchKind::Child, "/a", 2);
        let fired = w.trigger("/a", NODE_DELETED);
        assert_eq!(sessions(&fired), vec![1, 2]);
        assert!(fired.iter().all(|n| n.event_type == NODE_DELETED));
        assert_eq!(w.count(), 0);
    }

    #[test]
    fn child_events_only_reach_child_watchers() {
        let mut w = WatchManager::default();
        w.add(WatchKind::Data, "/p", 1);
        w.add(WatchKind::Child, "/p", 2);
        assert_eq!(sessions(&w.trigger("/p", NODE_CHILDREN_CHANGED)), vec![2]);
        assert_eq!(w.count(), 1);
    }

    #[test]
    fn persistent_watches_stay_and_see_children() {
        let mut w = WatchManager::default();
        w.add_persistent("/p", 1, false);
        for _ in 0..3 {
            assert_eq!(sessions(&w.trigger("/p", NODE_DATA_CHANGED)), vec![1]);
            assert_eq!(sessions(&w.trigger("/p", NODE_CHILDREN_CHANGED)), vec![1]);
        }
        assert!(w.trigger("/p/c", NODE_CREATED).is_empty());
    }

    #[test]
    fn recursive_watches_see_descendants_but_not_child_events() {
        let mut w = WatchManager::default();
        w.add_persistent("/r", 7, true);
        assert_eq!(sessions(&w.trigger("/r/a/b", NODE_CREATED)), vec![7]);
        assert_eq!(sessions(&w.trigger("/r", NODE_DATA_CHANGED)), vec![7]);
        assert!(w.trigger("/r", NODE_CHILDREN_CHANGED).is_empty());
        assert!(w.trigger("/rx", NODE_CREATED).is_empty());
        assert!(w.contains("/r", 7, watcher_type::PERSISTENT_RECURSIVE));
        assert!(!w.contains("/r", 7, watcher_type::DATA));
        assert!(w.remove("/r", 7, watcher_type::ANY));
        assert!(w.trigger("/r/a", NODE_CREATED).is_empty());
    }

    #[test]
    fn reports_data_watches_like_zookeeper() {
        let mut w = WatchManager::default();
        w.add(WatchKind::Data, "/a", 0x10);
        w.add(WatchKind::Data, "/b", 0x10);
        w.add(WatchKind::Data, "/a", 0x11);
        w.add(WatchKind::Child, "/c", 0x12);
        assert_eq!(w.report("wchs"), "2 connections watching 2 paths\nTotal watches:3\n");
        assert_eq!(w.report("wchc"), "0x10\n\t/a\n\t/b\n0x11\n\t/a\n");
        assert_eq!(w.report("wchp"), "/a\n\t0x10\n\t0x11\n/b\n\t0x10\n");
    }

    #[test]
    fn root_recursive_watch_sees_everything() {
        let mut w = WatchManager::default();
        w.add_persistent("/", 3, true);
        assert_eq!(sessions(&w.trigger("/x", NODE_DELETED)), vec![3]);
    }

    #[test]
    fn remove_by_type_and_session_cleanup() {
        let mut w = WatchManager::default();
        w.add(WatchKind::Data, "/a", 1);
        w.add(WatchKind::Child, "/a", 1);
        assert!(!w.remove("/a", 2, watcher_type::DATA));
        assert!(w.remove("/a", 1, watcher_type::CHILDREN));
        assert!(!w.contains("/a", 1, watcher_type::CHILDREN));
        assert!(w.contains("/a", 1, watcher_type::ANY));
        w.add_persistent("/b", 1, true);
        w.remove_session(1);
        assert_eq!(w.count(), 0);
        assert!(w.trigger("/b/c", NODE_CREATED).is_empty());
    }
}
