//! Loopback ports for test servers.
//!
//! Binding port 0 hands out a port from the kernel's ephemeral range, where
//! any outgoing connection (a test client, a peer link) may take it again
//! before the server binds it: CI once lost a test to exactly that. Ports
//! here come from below the ephemeral range and are never handed out twice
//! by one process, so parallel tests in one binary cannot collide either.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const FIRST: u32 = 20_000;
const SPAN: u32 = 12_000; // 20000..32000, below Linux's default 32768..60999

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A loopback port that is free now and that this process has not handed out before.
pub fn free_port() -> u16 {
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        // Different processes start at different places in the span.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let seed = (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}
