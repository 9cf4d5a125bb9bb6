//! Session expiry timing. A raw client opens a session, creates an
//! ephemeral and goes silent (socket closed, no closeSession), as a crashed
//! client does. Another client watches the node vanish. ZooKeeper's leader
//! expires a session once its own clock says the timeout T has passed since
//! the last touch, rounded up to the next tick (SessionTrackerImpl's expiry
//! buckets); a follower reports touches to the leader every half tick. So,
//! with the leader's clock running at rate r (1 unless it is under faketime;
//! a wall-clock step must not matter at all), the observed delay E must be
//! within [T/r - 300 ms, T/r + 2 ticks/r + 1500 ms] (the slack: polling, the
//! commit of the closeSession, a loaded CPU).

use crate::workload;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_core::jute::Writer;

pub const TIMEOUT_MS: i32 = 4000;

async fn frame(s: &mut TcpStream, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    out.put_i32(body.len() as i32);
    out.extend_from_slice(body);
    s.write_all(&out).await?;
    let len = s.read_i32().await?;
    if !(0..=1 << 20).contains(&len) {
        return Err(std::io::Error::other(format!("bad frame length {len}")));
    }
    let mut buf = vec![0; len as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// A session with an ephemeral `path` on `addr`, then silence. Returns the
/// negotiated timeout (ms) and the instant the socket closed.
async fn abandon_session(addr: SocketAddr, path: &str) -> Result<(i32, Instant), String> {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut req = Vec::new();
        req.put_i32(0); // protocol version
        req.put_i64(0); // last zxid seen
        req.put_i32(TIMEOUT_MS);
        req.put_i64(0); // session id: new
        req.put_buffer(Some(&[0u8; 16]));
        req.put_bool(false);
        let resp = frame(&mut s, &req).await?;
        let timeout = i32::from_be_bytes(resp[4..8].try_into().unwrap());
        let mut create = Vec::new();
        create.put_i32(1); // xid
        create.put_i32(warden_core::proto::op::CREATE);
        create.put_string(path);
        create.put_buffer(Some(b""));
        create.put_i32(1); // one ACL: world:anyone, all permissions
        create.put_i32(31);
        create.put_string("world");
        create.put_string("anyone");
        create.put_i32(1); // EPHEMERAL
        let reply = frame(&mut s, &create).await?;
        let err = i32::from_be_bytes(reply[12..16].try_into().unwrap());
        if err != 0 {
            return Err(std::io::Error::other(format!("create {path}: error {err}")));
        }
        drop(s);
        Ok((timeout, Instant::now()))
    };
    tokio::time::timeout(Duration::from_secs(10), io).await.map_err(|_| "timeout".to_string())?.map_err(|e| e.to_string())
}

/// Measures how long after going silent the session's ephemeral vanished.
/// Returns (negotiated timeout ms, observed delay).
pub async fn probe(session_addr: SocketAddr, observer_connect: &str, path: &str) -> Result<(i32, Duration), String> {
    let observer = workload::connect(observer_connect, Duration::from_secs(10)).await.ok_or("observer cannot connect")?;
    let (timeout, silent_at) = abandon_session(session_addr, path).await?;
    let end = silent_at + Duration::from_millis(timeout as u64 * 4 + 10_000);
    loop {
        // Errors and timeouts (a fault elsewhere) just mean: ask again.
        if let Ok(Ok(None)) = tokio::time::timeout(Duration::from_secs(2), observer.check_stat(path)).await {
            return Ok((timeout, silent_at.elapsed()));
        }
        if Instant::now() > end {
            return Err(format!("{path} still present {:?} after its session went silent", silent_at.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The allowed window for the observed delay (see the module doc).
pub fn window(timeout_ms: i32, tick_ms: u32, rate: f64) -> (Duration, Duration) {
    let t = timeout_ms as f64 / rate;
    let lo = (t - 300.0).max(0.0);
    let hi = t + 2.0 * tick_ms as f64 / rate + 1500.0;
    (Duration::from_millis(lo as u64), Duration::from_millis(hi as u64))
}

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
