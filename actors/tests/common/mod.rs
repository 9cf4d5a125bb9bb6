//! Test harness: runs a real `warden` process on a loopback port with a private data
//! directory, and stops it (SIGTERM, then SIGKILL) when dropped.

#![allow(dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const START_DEADLINE: Duration = Duration::from_secs(10);
const STOP_DEADLINE: Duration = Duration::from_secs(5);

pub struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// Keep `dir` when dropped (it belongs to the test, for restarts).
    keep_dir: bool,
}

pub fn unique_dir() -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("warden-e2e-{}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos);
    std::env::temp_dir().join(name)
}

#[path = "../../../tests/support/ports.rs"]
mod ports;
#[allow(unused_imports)] // not every test binary numbers ports from a base
pub use ports::{free_port, free_ports};

impl Server {
    /// Starts a server and waits until it answers `ruok` with `imok`.
    pub fn start() -> Server {
        // The free-port probe can race with other processes; retry a few times.
        let mut last_error = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start warden: {last_error}");
    }

    fn try_start() -> Result<Server, String> {
        Self::start_in(&unique_dir(), free_port(), &[]).map(|mut s| {
            s.keep_dir = false;
            s
        })
    }

    /// Starts a server on `dir/data` and `port` (a restart when the dir has
    /// data); the dir is left in place when the server is dropped.
    pub fn start_in(dir: &std::path::Path, port: u16, extra: &[(&str, &str)]) -> Result<Server, String> {
        let dir = dir.to_path_buf();
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| format!("create {}: {e}", data_dir.display()))?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("warden.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.arg("server")
            .args(["--set", &format!("clientPort={port}")])
            .args(["--set", "clientPortAddress=127.0.0.1"])
            .args(["--set", &format!("dataDir={}", data_dir.display())])
            .args(["--set", "4lw.commands.whitelist=*"])
            .args(["--set", "tickTime=200"])
            .args(["--set", "znode.container.checkIntervalMs=200"])
            // TTL nodes need extended types (ZooKeeper's default is off).
            .args(["--set", "zookeeper.extendedTypesEnabled=true"]);
        // Test-specific settings last, so they override the defaults above.
        for (k, v) in extra {
            cmd.args(["--set", &format!("{k}={v}")]);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::from(log)).stderr(Stdio::from(log2)).spawn().map_err(|e| format!("spawn warden: {e}"))?;
        let mut server = Server { child, port, dir, keep_dir: true };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("warden exited early with {status}; log:\n{}", server.log()));
            }
            if let Ok(answer) = server.four_letter("ruok") {
                if answer == "imok" {
                    return Ok(server);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("warden did not answer ruok within {START_DEADLINE:?}; log:\n{}", server.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process with `signal` (e.g. "KILL", "TERM") and waits for it.
    pub fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(&pid).status();
        self.child.wait().expect("wait for warden")
    }

    /// The exit status, if the process has ended by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Connect string for `zookeeper_client::Client::connect`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends a four-letter word on a fresh connection and returns the whole answer.
    pub fn four_letter(&self, cmd: &str) -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(cmd.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("warden.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        // Only signal a process we have not reaped yet: a reaped pid may be reused.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").arg("-TERM").arg(&pid).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if std::thread::panicking() {
            eprintln!("---- warden log (port {}) ----\n{}\n---- end of warden log ----", self.port, self.log());
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `warden` with `args` to completion (for starts that must fail).
pub fn run_warden(args: &[&str], deadline: Duration) -> (std::process::ExitStatus, String) {
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_warden")).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn warden");
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut out);
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            return (status, out);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("warden {args:?} still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One admin-endpoint request on `port`; (status, body).
pub fn admin(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// Awaits `fut`, failing the test if it takes longer than `secs` seconds.
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs}s waiting for {what}"),
    }
}

/// Polls `check` every 50 ms until it returns true or `deadline` passes; returns the last result.
pub async fn eventually<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub mod ensemble;

/// What the client tests run against: one server, or — with
/// WARDEN_TEST_ENSEMBLE=N — an N-member ensemble whose member 1 (a follower
/// when histories are equal, since the highest id leads) the client uses.
pub struct Target {
    single: Option<Server>,
    ensemble: Option<ensemble::Ensemble>,
}

impl Target {
    pub fn start() -> Target {
        match std::env::var("WARDEN_TEST_ENSEMBLE").ok().and_then(|n| n.parse::<u64>().ok()).filter(|n| *n > 1) {
            Some(n) => {
                let e = ensemble::Ensemble::start(n, 0, &[]);
                e.wait_serving(Duration::from_secs(30));
                Target { single: None, ensemble: Some(e) }
            }
            None => Target { single: Some(Server::start()), ensemble: None },
        }
    }

    fn server(&self) -> &Server {
        match (&self.single, &self.ensemble) {
            (Some(s), _) => s,
            (None, Some(e)) => e.member(1).server.as_ref().expect("member 1 runs"),
            _ => unreachable!(),
        }
    }

    pub fn connect_string(&self) -> String {
        self.server().connect_string()
    }

    pub fn four_letter(&self, cmd: &str) -> std::io::Result<String> {
        self.server().four_letter(cmd)
    }
}
