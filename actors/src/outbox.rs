//! A connection's outgoing bytes: frames queue in a channel and one task
//! writes whatever has gathered with a single syscall, so replies batch
//! naturally under load. The queue is bounded in bytes: a client that stops
//! reading is cut off instead of growing the server's memory without limit.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

/// Bytes a connection may have queued but unwritten before it is closed.
pub const MAX_PENDING_BYTES: usize = 32 << 20;

/// A connection's write side. Clones share it: the session handler writes
/// its own answers, the dispatcher writes replies and notifications straight
/// in (no hop through the handler), all in one order on the socket.
#[derive(Clone)]
pub struct Outbox {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pending: Arc<AtomicUsize>,
    /// Signalled to drop queued data and reset (a dropped Outbox is not an abort).
    abort: Arc<Notify>,
    lane: Arc<Lane>,
}

/// Who may write to the socket now: the writer task, or a thread writing a
/// frame itself (`send_now`) while nothing is queued, which saves waking
/// the connection's I/O thread for a lone reply.
struct Lane {
    state: AtomicU8,
    /// The plain TCP socket for direct writes; -1 where they are off (TLS).
    fd: RawFd,
    /// What a direct write could not finish; the writer task sends it first.
    leftover: Mutex<Vec<u8>>,
    /// Wakes the writer task for a leftover.
    kick: Notify,
}

const FREE: u8 = 0;
const TASK: u8 = 1;
const DIRECT: u8 = 2;
/// The writer task is gone and the fd may be closed and reused: never write.
const RETIRED: u8 = 3;

impl Lane {
    /// The writer task waits out a direct write (one non-blocking syscall).
    fn hold_for_task(&self) {
        while self.state.compare_exchange(FREE, TASK, Acquire, Relaxed).is_err() {
            if self.state.load(Relaxed) == RETIRED {
                return;
            }
            std::thread::yield_now();
        }
    }

    fn release(&self) {
        self.state.store(FREE, Release);
    }

    /// Before the socket is dropped: no direct write may start after this.
    fn retire(&self) {
        loop {
            match self.state.compare_exchange(FREE, RETIRED, Acquire, Relaxed) {
                Ok(_) => return,
                Err(TASK) | Err(RETIRED) => return self.state.store(RETIRED, Release),
                Err(_) => std::thread::yield_now(),
            }
        }
    }

    fn take_leftover(&self) -> Vec<u8> {
        std::mem::take(&mut *self.leftover.lock().unwrap())
    }
}

/// Queued after the last frame: the writer flushes up to it and closes.
/// (Frames are never empty, so the empty buffer is free to mean this.)
const CLOSE: Vec<u8> = Vec::new();

enum Wake {
    Frame(Vec<u8>),
    /// A direct write left bytes behind.
    Kick,
    End,
}

impl Outbox {
    /// Starts the writer task on the current (actix) arbiter. `socket` is a
    /// plain or TLS write half; `fd` is its TCP socket, for resets, and for
    /// direct writes when `direct` (plain TCP only: TLS must go through `socket`).
    pub fn start<W: AsyncWrite + Unpin + 'static>(mut socket: W, fd: RawFd, direct: bool) -> Outbox {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending = Arc::new(AtomicUsize::new(0));
        let counter = pending.clone();
        let abort = Arc::new(Notify::new());
        let aborted = abort.clone();
        let lane = Arc::new(Lane { state: AtomicU8::new(FREE), fd: if direct { fd } else { -1 }, leftover: Mutex::new(Vec::new()), kick: Notify::new() });
        let lane_w = lane.clone();
        actix_rt::spawn(async move {
            let lane = lane_w;
            // Grown only when frames gather, and given back after a burst:
            // an idle connection holds no write buffer.
            let mut batch = Vec::new();
            let mut closing = false;
            // Writes the bytes and uncounts them; an error ends the task, an abort resets.
            macro_rules! write_out {
                ($bytes:expr) => {{
                    let bytes: &[u8] = &$bytes;
                    tokio::select! {
                        r = socket.write_all(bytes) => if r.is_err() { break },
                        _ = aborted.notified() => { lane.retire(); return reset(socket, fd) },
                    }
                    counter.fetch_sub(bytes.len(), Relaxed);
                }};
            }
            while !closing {
                let wake = tokio::select! {
                    f = rx.recv() => match f { Some(f) if !f.is_empty() => Wake::Frame(f), _ => Wake::End },
                    _ = lane.kick.notified() => Wake::Kick,
                    _ = aborted.notified() => { lane.retire(); return reset(socket, fd) },
                };
                lane.hold_for_task();
                let leftover = lane.take_leftover();
                let first = match wake {
                    Wake::Frame(f) => f,
                    Wake::Kick | Wake::End => {
                        closing = matches!(wake, Wake::End);
                        if !leftover.is_empty() {
                            write_out!(leftover);
                        }
                        lane.release();
                        continue;
                    }
                };
                if batch.capacity() > (256 << 10) {
                    batch = Vec::new();
                }
                batch.clear();
                let mut next = rx.try_recv().ok();
                if next.is_none() && leftover.is_empty() {
                    // One frame: written as it is, no copy.
                    write_out!(first);
                    lane.release();
                    continue;
                }
                batch.extend_from_slice(&leftover);
                batch.extend_from_slice(&first);
                while let Some(frame) = next.take() {
                    if frame.is_empty() {
                        closing = true;
                        break;
                    }
                    batch.extend_from_slice(&frame);
                    if batch.len() >= (1 << 20) {
                        break;
                    }
                    next = rx.try_recv().ok();
                }
                write_out!(batch);
                lane.release();
            }
            lane.retire();
            let _ = socket.shutdown().await;
        });
        Outbox { tx: Some(tx), pending, abort, lane }
    }

    /// Writes a frame on the calling thread when nothing is queued or being
    /// written (one non-blocking syscall; what the socket does not take goes
    /// to the writer task first); otherwise queues it as `send` does.
    pub fn send_now(&self, frame: Vec<u8>) -> bool {
        let lane = &self.lane;
        if lane.fd < 0 || self.tx.is_none() || frame.is_empty() || self.pending.load(Acquire) != 0 {
            return self.send(frame);
        }
        if lane.state.compare_exchange(FREE, DIRECT, Acquire, Relaxed).is_err() {
            return self.send(frame);
        }
        // Queued between the check and taking the lane: those go first.
        if self.pending.load(Acquire) != 0 {
            lane.release();
            return self.send(frame);
        }
        // SAFETY: the lane is held, so the writer task is alive (not RETIRED)
        // and the fd is open; the buffer is valid for its length.
        let n = unsafe { libc::send(lane.fd, frame.as_ptr() as *const libc::c_void, frame.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        let written = usize::try_from(n).unwrap_or(0);
        if written < frame.len() {
            // A full socket buffer (or an error the writer task will meet).
            let rest = &frame[written..];
            if self.pending.fetch_add(rest.len(), Relaxed) + rest.len() > MAX_PENDING_BYTES {
                lane.release();
                return false;
            }
            lane.leftover.lock().unwrap().extend_from_slice(rest);
            lane.release();
            lane.kick.notify_one();
        } else {
            lane.release();
        }
        true
    }

    /// Queues frames; false if the client is too far behind (or gone).
    pub fn send(&self, frames: Vec<u8>) -> bool {
        let Some(tx) = &self.tx else { return false };
        if frames.is_empty() {
            return true;
        }
        if self.pending.fetch_add(frames.len(), Relaxed) + frames.len() > MAX_PENDING_BYTES {
            return false;
        }
        tx.send(frames).is_ok()
    }

    /// Flushes what is queued, then closes the socket (whoever else still
    /// holds a clone: what they send later is dropped).
    pub fn close(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(CLOSE);
        }
    }

    /// Drops what is queued and resets the connection at once.
    pub fn abort(&mut self) {
        self.tx = None;
        self.abort.notify_one();
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.load(Relaxed)
    }

    /// The queued byte count, for the read gate.
    pub fn pending_counter(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }
}

/// Closes with RST, discarding unsent data (for clients cut off as too slow):
/// zero linger on the socket, set while `socket` still keeps the fd open.
fn reset<W>(socket: W, fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: fd is open (owned by the stream behind `socket`); linger is a valid option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(socket);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[actix_rt::test]
    async fn clones_write_in_order_and_close_ends_the_socket_whoever_holds_a_clone() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut out = Outbox::start(server, -1, false);
        let dispatcher_side = out.clone();
        assert!(out.send(b"one,".to_vec()));
        assert!(dispatcher_side.send(b"two,".to_vec()));
        assert!(out.send(b"three".to_vec()));
        out.close();
        let mut seen = Vec::new();
        // EOF arrives although `dispatcher_side` still holds a sender.
        client.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"one,two,three");
        assert!(!out.send(b"late".to_vec()), "the closing side cannot send");
        assert_eq!(out.pending_bytes(), 0);
        drop(dispatcher_side);
    }

    /// Frame i: its number then i % 251 filler bytes; every 500th is 6 MiB,
    /// more than a loopback socket buffer takes at once (tcp_wmem's 4 MiB
    /// ceiling), so a direct write of it is cut short.
    fn numbered(i: u32) -> Vec<u8> {
        let len = if i % 500 == 2 { 6 << 20 } else { (i % 251) as usize };
        let mut f = (len as u32 + 4).to_be_bytes().to_vec();
        f.extend_from_slice(&i.to_be_bytes());
        f.extend(std::iter::repeat_n(i as u8, len));
        f
    }

    #[actix_rt::test]
    async fn direct_and_queued_writes_from_other_threads_arrive_whole_and_in_order() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&server);
        let (_read, write) = server.into_split();
        let mut out = Outbox::start(write, fd, true);
        let (direct, queued) = (out.clone(), out.clone());
        const FRAMES: u32 = 3000;
        // One thread alternates direct and queued frames: their order is the
        // order they were handed over. Mostly it lets the queue drain first,
        // so the direct path is taken (and cut short by the big frames).
        let writer = std::thread::spawn(move || {
            for i in 0..FRAMES {
                let drained = std::time::Instant::now() + std::time::Duration::from_millis(50);
                while i % 3 != 0 && direct.pending_bytes() > 0 && std::time::Instant::now() < drained {
                    std::thread::yield_now();
                }
                let sent = if i % 2 == 0 { direct.send_now(numbered(i)) } else { queued.send(numbered(i)) };
                assert!(sent, "frame {i} refused");
            }
        });
        let mut seen = 0;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        while seen < FRAMES {
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {seen} frames");
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 4 {
                let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                if buf.len() < 4 + len {
                    break;
                }
                assert_eq!(buf[4..8], seen.to_be_bytes(), "frame {seen} out of order");
                assert_eq!(&buf[8..4 + len], &numbered(seen)[8..], "frame {seen} damaged");
                buf.drain(..4 + len);
                seen += 1;
            }
        }
        writer.join().unwrap();
        assert_eq!(out.pending_bytes(), 0);
        let late = out.clone();
        out.close();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // The writer task is gone (the fd may be reused): no direct write may start.
        assert_eq!(late.lane.state.load(Relaxed), RETIRED);
        assert!(late.lane.state.compare_exchange(FREE, DIRECT, Acquire, Relaxed).is_err());
    }
}
