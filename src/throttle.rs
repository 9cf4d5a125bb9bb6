//! ZooKeeper's throttles, as pure state: the connection throttle (a token
//! bucket with BLUE random early drop, `BlueThrottle`) and the request
//! throttler's settings (`RequestThrottler`). Time and randomness are inputs.

/// `zookeeper.connection_throttle_*` and `zookeeper.request_throttle_*`,
/// `zookeeper.throttled_op_wait_time`; ZooKeeper's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleSettings {
    /// Bucket size; 0 disables connection throttling.
    pub connection_tokens: i64,
    pub connection_fill_time_ms: i64,
    pub connection_fill_count: i64,
    /// -1 disables BLUE's random drop.
    pub connection_freeze_time_ms: i64,
    pub connection_drop_increase: f64,
    pub connection_drop_decrease: f64,
    pub connection_decrease_ratio: f64,
    pub connection_weight_enabled: bool,
    pub global_session_weight: i64,
    pub local_session_weight: i64,
    pub renew_session_weight: i64,
    /// Requests in process at which new ones wait; 0 disables the throttler.
    pub request_max_requests: u32,
    pub request_stall_time_ms: u64,
    pub request_drop_stale: bool,
    /// A request that waited longer than this is answered ThrottledOp; 0: never.
    pub throttled_op_wait_time_ms: u64,
}

/// The rates are finite (the config parser refuses NaN), so equality is total.
impl Eq for ThrottleSettings {}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            connection_tokens: 0,
            connection_fill_time_ms: 1,
            connection_fill_count: 1,
            connection_freeze_time_ms: -1,
            connection_drop_increase: 0.02,
            connection_drop_decrease: 0.002,
            connection_decrease_ratio: 0.0,
            connection_weight_enabled: false,
            global_session_weight: 3,
            local_session_weight: 1,
            renew_session_weight: 2,
            request_max_requests: 0,
            request_stall_time_ms: 100,
            request_drop_stale: true,
            throttled_op_wait_time_ms: 0,
        }
    }
}

/// What kind of connect request asks for tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectKind {
    NewGlobal,
    NewLocal,
    Renew,
}

/// BlueThrottle: `max_tokens` refilled by `fill_count` per `fill_time`; with
/// a freeze time, connections are also dropped at random with a probability
/// that rises while the bucket is empty and falls while it is (nearly) full.
#[derive(Debug, Clone)]
pub struct ConnectionThrottle {
    max_tokens: i64,
    fill_time: i64,
    fill_count: i64,
    tokens: i64,
    last_time: i64,
    freeze_time: i64,
    last_freeze: i64,
    drop_increase: f64,
    drop_decrease: f64,
    decrease_point: f64,
    drop: f64,
    weights: Option<(i64, i64, i64)>,
}

impl ConnectionThrottle {
    pub fn new(s: &ThrottleSettings, now_ms: i64) -> ConnectionThrottle {
        // As BlueThrottle's static setup: odd weights are corrected, and with
        // weights on the configured tokens are for global sessions.
        let local = if s.local_session_weight <= 0 { 1 } else { s.local_session_weight };
        let global = if s.global_session_weight <= 0 { 3 } else { s.global_session_weight.max(local) };
        let renew = if s.renew_session_weight <= 0 { 2 } else { s.renew_session_weight.max(local) };
        let scale = if s.connection_weight_enabled { global } else { 1 };
        let max_tokens = s.connection_tokens * scale;
        ConnectionThrottle {
            max_tokens,
            fill_time: s.connection_fill_time_ms.max(1),
            fill_count: s.connection_fill_count * scale,
            tokens: max_tokens,
            last_time: now_ms,
            freeze_time: s.connection_freeze_time_ms,
            last_freeze: now_ms,
            drop_increase: s.connection_drop_increase,
            drop_decrease: s.connection_drop_decrease,
            decrease_point: s.connection_decrease_ratio,
            drop: 0.0,
            weights: s.connection_weight_enabled.then_some((global, local, renew)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.max_tokens != 0
    }

    pub fn needed(&self, kind: ConnectKind) -> i64 {
        match (self.weights, kind) {
            (None, _) => 1,
            (Some((g, _, _)), ConnectKind::NewGlobal) => g,
            (Some((_, l, _)), ConnectKind::NewLocal) => l,
            (Some((_, _, r)), ConnectKind::Renew) => r,
        }
    }

    /// `checkLimit`: may this connection in? `random` is uniform in [0, 1).
    pub fn check_limit(&mut self, need: i64, now_ms: i64, random: f64) -> bool {
        if self.max_tokens == 0 {
            return true;
        }
        let diff = now_ms - self.last_time;
        if diff > self.fill_time {
            let refill = diff.saturating_mul(self.fill_count) / self.fill_time;
            self.tokens = self.tokens.saturating_add(refill).min(self.max_tokens);
            self.last_time = now_ms;
        }
        if self.freeze_time != -1 && !self.check_blue(now_ms, random) {
            return false;
        }
        if self.tokens < need {
            return false;
        }
        self.tokens -= need;
        true
    }

    fn check_blue(&mut self, now_ms: i64, random: f64) -> bool {
        let length = self.max_tokens - self.tokens;
        let threshold = (self.max_tokens as f64 * self.decrease_point).round() as i64;
        if now_ms - self.last_freeze > self.freeze_time {
            if length == self.max_tokens && self.drop < 1.0 {
                self.drop = (self.drop + self.drop_increase).min(1.0);
            } else if length <= threshold && self.drop > 0.0 {
                self.drop = (self.drop - self.drop_decrease).max(0.0);
            }
            self.last_freeze = now_ms;
        }
        random >= self.drop
    }

    pub fn deficit(&self) -> i64 {
        self.max_tokens - self.tokens
    }

    pub fn drop_chance(&self) -> f64 {
        self.drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(tokens: i64) -> ThrottleSettings {
        ThrottleSettings { connection_tokens: tokens, connection_fill_time_ms: 1000, connection_fill_count: 1, ..Default::default() }
    }

    #[test]
    fn zero_tokens_means_no_throttle() {
        let mut t = ConnectionThrottle::new(&ThrottleSettings::default(), 0);
        assert!(!t.enabled());
        assert!((0..10_000).all(|_| t.check_limit(1, 0, 0.5)));
    }

    #[test]
    fn the_bucket_empties_and_refills_at_its_rate() {
        let mut t = ConnectionThrottle::new(&bucket(3), 0);
        assert!(t.check_limit(1, 0, 0.5) && t.check_limit(1, 0, 0.5) && t.check_limit(1, 0, 0.5));
        assert!(!t.check_limit(1, 0, 0.5));
        assert_eq!(t.deficit(), 3);
        // Refill happens only once more than fill_time has passed.
        assert!(!t.check_limit(1, 1000, 0.5));
        // 2,001 ms since the last refill: two tokens.
        assert!(t.check_limit(1, 2001, 0.5) && t.check_limit(1, 2001, 0.5));
        assert!(!t.check_limit(1, 2001, 0.5));
        // Never above the bucket size, however long the pause.
        assert!((0..3).all(|_| t.check_limit(1, 1_000_000, 0.5)));
        assert!(!t.check_limit(1, 1_000_000, 0.5));
    }

    #[test]
    fn weights_make_new_global_sessions_cost_more() {
        let s = ThrottleSettings { connection_weight_enabled: true, ..bucket(2) };
        let mut t = ConnectionThrottle::new(&s, 0);
        assert_eq!((t.needed(ConnectKind::NewGlobal), t.needed(ConnectKind::NewLocal), t.needed(ConnectKind::Renew)), (3, 1, 2));
        // Two global sessions' worth: 6 tokens.
        assert!(t.check_limit(3, 0, 0.5) && t.check_limit(2, 0, 0.5) && t.check_limit(1, 0, 0.5));
        assert!(!t.check_limit(1, 0, 0.5));
        let odd = ThrottleSettings { global_session_weight: 0, local_session_weight: 5, renew_session_weight: 1, ..s };
        let t = ConnectionThrottle::new(&odd, 0);
        // As BlueThrottle: a non-positive global weight is 3 even below the local one; renew is raised to local.
        assert_eq!((t.needed(ConnectKind::NewGlobal), t.needed(ConnectKind::NewLocal), t.needed(ConnectKind::Renew)), (3, 5, 5));
    }

    #[test]
    fn blue_raises_the_drop_chance_while_the_bucket_is_empty() {
        let s = ThrottleSettings { connection_freeze_time_ms: 10, connection_drop_increase: 0.5, connection_drop_decrease: 0.25, ..bucket(1) };
        let mut t = ConnectionThrottle::new(&s, 0);
        assert!(t.check_limit(1, 0, 0.9));
        // Empty for a freeze period: the drop chance rises to 0.5, a draw below it is refused.
        assert!(!t.check_limit(1, 11, 0.4));
        assert_eq!(t.drop_chance(), 0.5);
        // Refilled (and so below the decrease point 0): it falls again.
        assert!(t.check_limit(1, 2000, 0.3));
        assert_eq!(t.drop_chance(), 0.25);
    }
}
