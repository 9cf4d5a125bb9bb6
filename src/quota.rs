//! Quotas as ZooKeeper 3.7+ keeps them: the `StatsTrack` text in
//! `/zookeeper/quota/<path>/zookeeper_limits` and `.../zookeeper_stats`, the
//! set of quota'd paths (DataTree's `pTrie`), and the enforcement check of
//! `ZooKeeperServer.checkQuota`.

use crate::tree::{DataTree, QUOTA};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub const LIMIT_NODE: &str = "zookeeper_limits";
pub const STAT_NODE: &str = "zookeeper_stats";

const COUNT: &str = "count";
const BYTES: &str = "bytes";
const COUNT_HARD: &str = "countHardLimit";
const BYTES_HARD: &str = "byteHardLimit";

/// `/zookeeper/quota<path>`, as ZooKeeper's `Quotas.quotaPath` (a plain concatenation).
pub fn quota_path(path: &str) -> String {
    format!("{QUOTA}{path}")
}

pub fn limit_path(path: &str) -> String {
    format!("{QUOTA}{path}/{LIMIT_NODE}")
}

pub fn stat_path(path: &str) -> String {
    format!("{QUOTA}{path}/{STAT_NODE}")
}

/// ZooKeeper's `StatsTrack`: `key=long` pairs; a missing key reads as -1.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsTrack {
    values: BTreeMap<String, i64>,
}

impl StatsTrack {
    /// Parses `count=1,bytes=2=;countHardLimit=3`: pairs split on runs of `,`
    /// or `;`, each pair on `=` (Java's split, so trailing empty parts vanish
    /// and an empty value reads as -1). Empty text is an empty tracker.
    pub fn parse(data: &[u8]) -> Result<StatsTrack, String> {
        let text = std::str::from_utf8(data).map_err(|_| "quota text is not UTF-8".to_string())?;
        let mut values = BTreeMap::new();
        if text.is_empty() {
            return Ok(StatsTrack { values });
        }
        let mut pairs: Vec<&str> = text.split([',', ';']).collect();
        // Java's String.split drops trailing empty strings; empties between runs of separators are one separator.
        while pairs.last() == Some(&"") {
            pairs.pop();
        }
        for (i, pair) in pairs.iter().enumerate() {
            if pair.is_empty() && i > 0 {
                continue;
            }
            let mut kv: Vec<&str> = pair.split('=').collect();
            while kv.last() == Some(&"") {
                kv.pop();
            }
            if kv.len() < 2 {
                return Err(format!("quota pair without a value: {pair:?}"));
            }
            let value = if kv[1].is_empty() { -1 } else { kv[1].parse::<i64>().map_err(|_| format!("quota value is not a number: {pair:?}"))? };
            values.insert(kv[0].to_string(), value);
        }
        Ok(StatsTrack { values })
    }

    /// Limits as zkCli's setquota starts them: every field -1.
    pub fn unlimited() -> StatsTrack {
        let mut s = StatsTrack::default();
        for k in [COUNT, BYTES, COUNT_HARD, BYTES_HARD] {
            s.values.insert(k.into(), -1);
        }
        s
    }

    /// Usage as the stats node holds it: only count and bytes.
    pub fn usage(count: i64, bytes: i64) -> StatsTrack {
        let mut s = StatsTrack::default();
        s.set_count(count);
        s.set_bytes(bytes);
        s
    }

    fn get(&self, key: &str) -> i64 {
        self.values.get(key).copied().unwrap_or(-1)
    }

    pub fn count(&self) -> i64 {
        self.get(COUNT)
    }
    pub fn bytes(&self) -> i64 {
        self.get(BYTES)
    }
    pub fn count_hard_limit(&self) -> i64 {
        self.get(COUNT_HARD)
    }
    pub fn byte_hard_limit(&self) -> i64 {
        self.get(BYTES_HARD)
    }
    pub fn set_count(&mut self, v: i64) {
        self.values.insert(COUNT.into(), v);
    }
    pub fn set_bytes(&mut self, v: i64) {
        self.values.insert(BYTES.into(), v);
    }
    pub fn set_count_hard_limit(&mut self, v: i64) {
        self.values.insert(COUNT_HARD.into(), v);
    }
    pub fn set_byte_hard_limit(&mut self, v: i64) {
        self.values.insert(BYTES_HARD.into(), v);
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl fmt::Display for StatsTrack {
    /// `count=N,bytes=N` first (3.4 parsers read only those), then, after a
    /// spurious `=` that old parsers ignore, the other keys sorted, `;`-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{COUNT}={},{BYTES}={}", self.count(), self.bytes())?;
        let mut rest = self.values.iter().filter(|(k, _)| *k != COUNT && *k != BYTES).peekable();
        if rest.peek().is_some() {
            f.write_str("=")?;
            for (k, v) in rest {
                write!(f, ";{k}={v}")?;
            }
        }
        Ok(())
    }
}

/// The paths that have a limits node (ZooKeeper's `PathTrie` of quota'd
/// paths), keyed by their non-empty components.
#[derive(Debug, Clone, Default)]
pub struct QuotaPaths {
    paths: BTreeSet<String>,
}

fn normalise(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.trim().is_empty()).collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

impl QuotaPaths {
    pub fn add(&mut self, path: &str) {
        if let Some(p) = normalise(path) {
            self.paths.insert(p);
        }
    }

    /// Removes the path and, as the trie drops the whole branch, every quota'd path below it.
    pub fn remove(&mut self, path: &str) {
        let Some(p) = normalise(path) else { return };
        let below = format!("{p}/");
        self.paths.retain(|q| *q != p && !q.starts_with(&below));
    }

    pub fn clear(&mut self) {
        self.paths.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.paths.iter()
    }

    /// The deepest quota'd path that is `path` or one of its ancestors
    /// (`getMaxPrefixWithQuota`); never the root.
    pub fn max_prefix(&self, path: &str) -> Option<String> {
        if self.paths.is_empty() {
            return None;
        }
        let mut prefix = String::new();
        let mut best = None;
        for part in path.split('/').filter(|p| !p.trim().is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            if self.paths.contains(&prefix) {
                best = Some(prefix.clone());
            }
        }
        best
    }
}

/// What the quota check found: messages ZooKeeper logs (at WARN), and
/// whether a hard limit refuses the request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub messages: Vec<String>,
    pub exceeded: bool,
}

/// `checkQuota(lastPrefix, bytesDiff, countDiff)`: count first (a hard count
/// refusal stops there), then bytes; a hard limit, if set, replaces the soft one.
pub fn judge(prefix: &str, limits: &StatsTrack, usage: &StatsTrack, bytes_diff: i64, count_diff: i64) -> Verdict {
    let mut v = Verdict::default();
    let check_count = count_diff != 0 && (limits.count() > -1 || limits.count_hard_limit() > -1);
    let check_bytes = bytes_diff != 0 && (limits.bytes() > -1 || limits.byte_hard_limit() > -1);
    if check_count {
        let new_count = usage.count() + count_diff;
        let hard = limits.count_hard_limit() > -1;
        let limit = if hard { limits.count_hard_limit() } else { limits.count() };
        if new_count > limit {
            let kind = if hard { "hard" } else { "soft" };
            v.messages.push(format!("Quota exceeded: {prefix} [current count={new_count}, {kind}CountLimit={limit}]"));
            if hard {
                v.exceeded = true;
                return v;
            }
        }
    }
    if check_bytes {
        let new_bytes = usage.bytes() + bytes_diff;
        let hard = limits.byte_hard_limit() > -1;
        let limit = if hard { limits.byte_hard_limit() } else { limits.bytes() };
        if new_bytes > limit {
            let kind = if hard { "hard" } else { "soft" };
            v.messages.push(format!("Quota exceeded: {prefix} [current bytes={new_bytes}, {kind}ByteLimit={limit}]"));
            v.exceeded |= hard;
        }
    }
    v
}

/// The check of a create (`count_diff` 1) or setData (0) at `path` against
/// the committed tree, as ZooKeeper reads limits and usage from its DataTree.
pub fn check(tree: &DataTree, path: &str, bytes_diff: i64, count_diff: i64) -> Verdict {
    let Some(prefix) = tree.quota_prefix(path) else { return Verdict::default() };
    let read = |p: &str| tree.get(p).map(|n| StatsTrack::parse(n.data().unwrap_or_default()));
    let limits = match read(&limit_path(&prefix)) {
        Some(Ok(l)) => l,
        Some(Err(e)) => return Verdict { messages: vec![format!("Unreadable limit node for quota {}: {e}", limit_path(&prefix))], exceeded: false },
        None => return Verdict { messages: vec![format!("Missing limit node for quota {}", limit_path(&prefix))], exceeded: false },
    };
    let usage = match read(&stat_path(&prefix)) {
        Some(Ok(u)) => u,
        Some(Err(e)) => return Verdict { messages: vec![format!("Unreadable stat node {}: {e}", stat_path(&prefix))], exceeded: false },
        None => return Verdict { messages: vec![format!("Missing node for stat {}", stat_path(&prefix))], exceeded: false },
    };
    judge(&prefix, &limits, &usage, bytes_diff, count_diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(s: &str) -> StatsTrack {
        StatsTrack::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn formats_as_zookeeper_with_hard_limits_after_the_compat_equals() {
        assert_eq!(StatsTrack::unlimited().to_string(), "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=-1");
        assert_eq!(StatsTrack::usage(3, 10).to_string(), "count=3,bytes=10");
        assert_eq!(StatsTrack::default().to_string(), "count=-1,bytes=-1");
        let mut l = StatsTrack::unlimited();
        l.set_count_hard_limit(5);
        assert_eq!(l.to_string(), "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=5");
    }

    #[test]
    fn parses_every_form_zookeeper_writes_and_reads() {
        let s = st("count=2,bytes=7=;byteHardLimit=100;countHardLimit=3");
        assert_eq!((s.count(), s.bytes(), s.byte_hard_limit(), s.count_hard_limit()), (2, 7, 100, 3));
        // 3.4-style, separators in runs, a trailing separator, missing keys.
        let s = st("count=4,bytes=5");
        assert_eq!((s.count(), s.bytes(), s.count_hard_limit()), (4, 5, -1));
        assert_eq!(st("count=1;;,bytes=2,").bytes(), 2);
        assert_eq!(st("count==9").count(), -1, "an empty value is -1");
        assert_eq!(st("").count(), -1);
        // Unknown keys survive a round trip, sorted after count and bytes.
        assert_eq!(st("zeta=1,count=1,bytes=0,alpha=2").to_string(), "count=1,bytes=0=;alpha=2;zeta=1");
        for (text, round) in [("count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2", true), ("count=0,bytes=0", true)] {
            assert_eq!(st(text).to_string() == text, round);
        }
    }

    #[test]
    fn rejects_what_zookeeper_cannot_parse() {
        for bad in ["count", "count=x", ",count=1", "count=1.5", "\u{ff}"] {
            assert!(StatsTrack::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(StatsTrack::parse(&[0xff]).is_err());
    }

    #[test]
    fn max_prefix_is_the_deepest_quota_by_components_and_removal_drops_the_branch() {
        let mut q = QuotaPaths::default();
        assert_eq!(q.max_prefix("/a"), None);
        q.add("/a");
        q.add("/a/b/c");
        q.add("");
        assert_eq!(q.max_prefix("/a"), Some("/a".into()));
        assert_eq!(q.max_prefix("/a/b"), Some("/a".into()));
        assert_eq!(q.max_prefix("/a/b/c/d"), Some("/a/b/c".into()));
        assert_eq!(q.max_prefix("/ab"), None, "components, not string prefixes");
        assert_eq!(q.max_prefix("/"), None);
        q.remove("/a/b");
        assert_eq!(q.max_prefix("/a/b/c/d"), Some("/a".into()), "the branch under /a/b is gone");
        q.remove("/a");
        assert!(q.is_empty());
    }

    #[test]
    fn judge_follows_checkquota() {
        let usage = StatsTrack::usage(2, 10);
        let mut soft = StatsTrack::unlimited();
        soft.set_count(2);
        soft.set_bytes(10);
        let v = judge("/q", &soft, &usage, 1, 1);
        assert!(!v.exceeded);
        assert_eq!(
            v.messages,
            vec!["Quota exceeded: /q [current count=3, softCountLimit=2]".to_string(), "Quota exceeded: /q [current bytes=11, softByteLimit=10]".to_string()]
        );
        // No diff, no check; within the limit, nothing.
        assert_eq!(judge("/q", &soft, &usage, 0, 0), Verdict::default());
        assert_eq!(judge("/q", &soft, &StatsTrack::usage(0, 0), 5, 1), Verdict::default());
        // A hard count refusal stops before the bytes are looked at.
        let mut hard = soft.clone();
        hard.set_count_hard_limit(2);
        let v = judge("/q", &hard, &usage, 1, 1);
        assert!(v.exceeded);
        assert_eq!(v.messages, vec!["Quota exceeded: /q [current count=3, hardCountLimit=2]".to_string()]);
        // The hard limit replaces the soft one: above soft, within hard, passes silently.
        let mut hb = StatsTrack::unlimited();
        hb.set_bytes(1);
        hb.set_byte_hard_limit(20);
        assert_eq!(judge("/q", &hb, &usage, 5, 0), Verdict::default());
        let v = judge("/q", &hb, &usage, 11, 0);
        assert!(v.exceeded);
        assert_eq!(v.messages, vec!["Quota exceeded: /q [current bytes=21, hardByteLimit=20]".to_string()]);
        // As ZooKeeper, shrinking data while over a hard limit is refused too (any non-zero diff is checked).
        assert!(judge("/q", &hb, &StatsTrack::usage(1, 50), -1, 0).exceeded);
    }
}
