//! Wall-clock time for znode ctime/mtime and session bookkeeping: the only
//! reading of the clock the actors hand to the pure core.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, as ZooKeeper's `Time.currentWallTime`.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
