
#[cfg(test)]
mod tests {
    #[test]
    fn window_scales_with_the_leader_clock() {
        let (lo, hi) = super::window(4000, 200, 1.0);
        assert_eq!((lo.as_millis(), hi.as_millis()), (3700, 5900));
        let (lo, hi) = super::window(4000, 200, 2.0);
        assert_eq!((lo.as_millis(), hi.as_millis()), (1700, 3700));
    }
}
