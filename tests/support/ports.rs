//! Loopback ports for test servers.
//!
//! Binding port 0 hands out a port from the kernel's ephemeral range, where
//! any outgoing connection (a test client, a peer link) may take it again
//! before the server binds it: CI once lost a test to exactly that. Ports
//! here come from below the ephemeral range and are never handed out twice
//! by one process, so parallel tests in one binary cannot collide either.

#![allow(dead_code)] // each crate uses what it needs

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const FIRST: u32 = 20_000;
const SPAN: u32 = 12_000; // 20000..32000, below Linux's default 32768..60999

static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);

/// A loopback port that is free now and that this process has not handed out before.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `n` consecutive such ports (for tools that number ports from a base).
pub fn free_ports(n: u32) -> u16 {
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        // Different processes start at different places in the span.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let seed = (std::process::id().wrapping_mul(7919) ^ nanos) % SPAN;
        let _ = NEXT.compare_exchange(u32::MAX, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    for _ in 0..SPAN {
        let first = NEXT.fetch_add(n, Ordering::Relaxed) % SPAN;
        if first + n > SPAN {
            continue;
        }
        if (0..n).all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, (FIRST + first + i) as u16)).is_ok()) {
            return (FIRST + first) as u16;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + SPAN)
}
