
#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss: &[u64], fds: u64, mailbox: u64) -> Resources {
        let mut r = Resources::default();
        r.series.insert((1, 100), rss.iter().map(|m| Sample { rss_kib: m * 1024, fds, mailbox: Some(mailbox) }).collect());
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
}
