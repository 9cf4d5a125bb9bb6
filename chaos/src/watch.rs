
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
    fn a_gap_only_across_a_disconnection() {
        assert!(check(&[created(1), created(3)], &present(3)).unwrap_err().contains("never seen while connected"));
        let ok = [created(1), Seen::Gap("disconnected".into()), Seen::Reconnected, created(3)];
        assert!(check(&ok, &present(3)).is_ok());
    }

    #[test]
    fn a_reconnected_watcher_must_reach_the_last_value() {
        let seen = [created(1), Seen::Gap("disconnected".into()), Seen::Reconnected];
        assert!(check(&seen, &present(5)).unwrap_err().contains("counter ended at v5"));
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
