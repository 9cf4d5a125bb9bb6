//! A userspace TCP proxy on one member-to-member link. The dialing member is
//! configured with the proxy's port for its peer, so the harness decides
//! whether bytes flow. No `tc netem` here; this is root-free and portable.
//!
//! Partition modes:
//! - `Blackhole`: connections stay open but nothing is forwarded (as a real
//!   partition: no RST, peers must notice by their own timeouts); new
//!   connections are accepted and held silent. On heal they are closed.
//! - `Reset`: every connection is closed at once and new ones are closed on accept.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    Open,
    Blackhole,
    Reset,
}

pub struct Proxy {
    pub port: u16,
    state: watch::Sender<LinkState>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr, delay: Duration) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = watch::channel(LinkState::Open);
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { continue };
                let rx = rx.clone();
                tokio::spawn(serve(conn, target, rx, delay));
            }
        });
        Ok(Proxy { port, state: tx, task })
    }

    pub fn set(&self, s: LinkState) {
        self.state.send_replace(s);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits until the link is open again.
async fn until_open(rx: &mut watch::Receiver<LinkState>) {
    while *rx.borrow_and_update() != LinkState::Open {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Waits until the link stops being open; returns the new state.
async fn until_cut(rx: &mut watch::Receiver<LinkState>) -> LinkState {
    loop {
        let s = *rx.borrow_and_update();
        if s != LinkState::Open {
            return s;
        }
        if rx.changed().await.is_err() {
            // The proxy is gone: treat as a reset.
            return LinkState::Reset;
        }
    }
}

async fn serve(conn: TcpStream, target: SocketAddr, mut rx: watch::Receiver<LinkState>, delay: Duration) {
    let _ = conn.set_nodelay(true);
    let initial = *rx.borrow();
    match initial {
        LinkState::Reset => return,
        LinkState::Blackhole => {
            // Accepted but silent; dropped (closed) when the link heals.
            until_open(&mut rx).await;
            return;
        }
        LinkState::Open => {}
    }
    let Ok(Ok(upstream)) = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await else { return };
    let _ = upstream.set_nodelay(true);
    let (mut a_rd, mut a_wr) = conn.into_split();
    let (mut b_rd, mut b_wr) = upstream.into_split();
    let forward = async {
        tokio::select! {
            _ = pump(&mut a_rd, &mut b_wr, delay) => {},
            _ = pump(&mut b_rd, &mut a_wr, delay) => {},
        }
    };
    let mut rx2 = rx.clone();
    tokio::select! {
        _ = forward => {},
        s = until_cut(&mut rx2) => {
            if s == LinkState::Blackhole {
                // Hold both sockets open and silent until healed.
                until_open(&mut rx).await;
            }
        }
    }
    // Dropping the halves closes both connections.
}

async fn pump(rd: &mut tokio::net::tcp::OwnedReadHalf, wr: &mut tokio::net::tcp::OwnedWriteHalf, delay: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if wr.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
