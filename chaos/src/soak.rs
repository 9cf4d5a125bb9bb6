//! Resource sampling for long runs: every member's RSS and open fds (from
//! /proc, by pid) and its actors' mailbox depths (the admin endpoint's
//! `/metrics`). A process "grows without bound" when, over at least five
//! samples of its lifetime, its last RSS exceeds the largest of the first
//! half by more than half plus 16 MiB plus 1 KiB per znode the tree gained
//! meanwhile (the workload's queue only grows: data, not a leak), or its fds
//! by more than 64, or its summed mailbox depth is above 1000 in each of the
//! last three samples.

use crate::cluster::{Cluster, Id, ADMIN_TOKEN};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub rss_kib: u64,
    pub fds: u64,
    pub mailbox: Option<u64>,
    /// Znodes in the member's tree (`warden_znode_count`).
    pub znodes: Option<u64>,
}

/// What a znode of the workload may cost in RSS.
const KIB_PER_ZNODE: u64 = 1;

#[derive(Default)]
pub struct Resources {
    /// (member, pid) -> samples of that process's life.
    pub series: BTreeMap<(Id, u32), Vec<Sample>>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

fn fds(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// The summed mailbox depth and the znode count from the member's `/metrics`.
async fn metrics(addr: std::net::SocketAddr) -> (Option<u64>, Option<u64>) {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let Ok(Ok(text)) = tokio::time::timeout(Duration::from_secs(3), io).await else { return (None, None) };
    let value = |l: &str| l.rsplit(' ').next()?.parse::<f64>().ok();
    let depths: Vec<f64> = text.lines().filter(|l| l.starts_with("warden_actor_mailbox_depth{")).filter_map(value).collect();
    let znodes = text.lines().find(|l| l.starts_with("warden_znode_count ")).and_then(value).map(|v| v as u64);
    ((!depths.is_empty()).then(|| depths.iter().sum::<f64>() as u64), znodes)
}

impl Resources {
    /// Samples every running member; returns one line per member.
    pub async fn sample(&mut self, c: &Cluster) -> Vec<String> {
        let mut lines = Vec::new();
        for id in c.ids() {
            let Some(pid) = c.pid(id) else { continue };
            if c.member(id).stopped {
                continue;
            }
            let (Some(rss), Some(fd)) = (rss_kib(pid), fds(pid)) else { continue };
            let (mb, znodes) = metrics(c.admin_addr(id)).await;
            let s = Sample { rss_kib: rss, fds: fd, mailbox: mb, znodes };
            self.series.entry((id, pid)).or_default().push(s);
            let shown = |v: Option<u64>| v.map(|m| m.to_string()).unwrap_or("?".into());
            lines.push(format!("member {id} pid {pid}: rss {} MiB, fds {fd}, mailbox depth {}, znodes {}", rss / 1024, shown(mb), shown(znodes)));
        }
        lines
    }

    /// The processes that grew without bound (the rule in the module doc).
    pub fn growth(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ((id, pid), v) in &self.series {
            if v.len() < 5 {
                continue;
            }
            let first = &v[..v.len() / 2];
            let last = v.last().unwrap();
            let rss0 = first.iter().map(|s| s.rss_kib).max().unwrap();
            let fd0 = first.iter().map(|s| s.fds).max().unwrap();
            // The tree's growth since the first half's largest count is data, not a leak.
            let znodes0 = first.iter().filter_map(|s| s.znodes).max().unwrap_or(0);
            let data_kib = last.znodes.unwrap_or(0).saturating_sub(znodes0) * KIB_PER_ZNODE;
            if last.rss_kib > rss0 + rss0 / 2 + 16 * 1024 + data_kib {
                out.push(format!("member {id} pid {pid}: RSS {} KiB at the end vs at most {rss0} KiB in the first half", last.rss_kib));
            }
            if last.fds > fd0 + 64 {
                out.push(format!("member {id} pid {pid}: {} fds at the end vs at most {fd0} in the first half", last.fds));
            }
            if v[v.len() - 3..].iter().all(|s| s.mailbox.unwrap_or(0) > 1000) {
                out.push(format!("member {id} pid {pid}: mailbox depth above 1000 in the last three samples"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss_mib: &[u64], fds: u64, mailbox: u64) -> Resources {
        let mut r = Resources::default();
        r.series.insert((1, 100), rss_mib.iter().map(|m| Sample { rss_kib: m * 1024, fds, mailbox: Some(mailbox), znodes: Some(1000) }).collect());
        r
    }

    #[test]
    fn flat_and_short_series_pass() {
        assert!(series(&[20, 24, 22, 25, 23, 24], 40, 0).growth().is_empty());
        assert!(series(&[20, 200], 40, 0).growth().is_empty(), "fewer than five samples are not judged");
    }

    #[test]
    fn growth_and_full_mailboxes_fail() {
        assert_eq!(series(&[20, 30, 40, 60, 80, 100], 40, 0).growth().len(), 1);
        assert_eq!(series(&[20, 20, 20, 20, 20], 40, 5000).growth().len(), 1);
    }

    #[test]
    fn rss_that_follows_the_tree_is_data_but_more_is_a_leak() {
        // 20 -> 100 MiB while the tree gains 80,000 znodes (1 KiB each allowed): data.
        let mut r = series(&[20, 30, 40, 60, 80, 100], 40, 0);
        let counts = [1_000u64, 17_000, 33_000, 49_000, 65_000, 81_000];
        for (s, n) in r.series.get_mut(&(1, 100)).unwrap().iter_mut().zip(counts) {
            s.znodes = Some(n);
        }
        assert!(r.growth().is_empty(), "{:?}", r.growth());
        // The same RSS with a tree that stays put: a leak.
        for s in r.series.get_mut(&(1, 100)).unwrap() {
            s.znodes = Some(1_000);
        }
        assert_eq!(r.growth().len(), 1);
    }
}
