//! Starts the real `warden` binary (built by the test suite before `cargo test`)
//! and runs every workload for a few operations through the library API.
//! Counts and errors are asserted; timings never are.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use warden_bench::{Config, Report};

fn warden_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/warden");
    if !p.exists() {
        panic!(
            "warden binary not found at {} — build it first with `cargo build -p warden` \
             (tests/run.sh does this before `cargo test --workspace`)",
            p.display()
        );
    }
    p
}

#[path = "../../tests/support/ports.rs"]
mod ports;
use ports::free_port;

fn ruok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"ruok").is_err() {
        return false;
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out == b"imok"
}

/// A warden server on a free port and temp data dir, stopped by pid on drop.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let bin = warden_bin();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("warden-bench-smoke-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(bin)
            .args(["server", "--set"])
            .arg(format!("clientPort={port}"))
            .args(["--set", "clientPortAddress=127.0.0.1", "--set"])
            .arg(format!("dataDir={}", dir.display()))
            .args(["--set", "4lw.commands.whitelist=*", "--set", "maxClientCnxns=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn warden");
        let mut server = Server { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if ruok(port) {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("warden exited during startup: {status}");
            }
            if Instant::now() > deadline {
                panic!("warden did not answer ruok within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bench(server: &Server, args: &[&str]) -> Report {
    let pid = server.child.id().to_string();
    let addr = server.addr();
    let mut argv = vec!["warden-bench", "--servers", &addr, "--server-pid", &pid, "--request-timeout", "20"];
    argv.extend_from_slice(args);
    let cfg = Config::from_args(argv).expect("valid options");
    let report = warden_bench::run(&cfg).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert_eq!(report.unexpected_errors, 0, "{args:?}:\n{}", report.to_text());
    assert!(report.failures.is_empty(), "{args:?}:\n{}", report.to_text());
    let server_usage = report.server.as_ref().expect("server usage measured");
    assert!(server_usage.rss_kb.unwrap_or(0) > 0, "{}", report.to_text());
    assert!(server_usage.cpu_secs.is_some(), "{}", report.to_text());
    // The text and JSON forms are produced without panicking and agree.
    assert!(report.to_text().contains(&format!("ops          {}", report.ops)));
    let back = Report::from_json(&report.to_json()).unwrap();
    assert_eq!((back.ops, back.ok, back.latency_us.p99, back.errors.len()), (report.ops, report.ok, report.latency_us.p99, report.errors.len()));
    report
}

#[test]
fn every_workload_runs_against_warden() {
    let server = Server::start();
    let small = ["--connections", "3", "--outstanding", "8", "--keys", "50", "--value-size", "32"];
    for workload in ["create", "set", "get", "exists", "mixed", "multi"] {
        let mut args = small.to_vec();
        args.extend_from_slice(&["--workload", workload, "--ops", "300"]);
        let r = bench(&server, &args);
        assert_eq!(r.ops, 300, "{workload}:\n{}", r.to_text());
        assert_eq!(r.ok, 300, "{workload}:\n{}", r.to_text());
        assert!(r.errors.is_empty(), "{workload}:\n{}", r.to_text());
        assert_eq!(r.latency_us.count, 300);
    }

    let r = bench(&server, &["--workload", "session-churn", "--connections", "2", "--ops", "20"]);
    assert_eq!((r.ops, r.ok), (20, 20), "{}", r.to_text());

    let r = bench(&server, &["--workload", "watch-storm", "--watchers", "10", "--rounds", "5"]);
    assert_eq!((r.ops, r.ok), (5, 5), "{}", r.to_text());
    assert_eq!(r.extra.get("notifications"), Some(&50.0), "{}", r.to_text());

    // Populate twice: the second pass finds every node and counts NODEEXISTS as expected.
    let args = ["--workload", "populate", "--keys", "200", "--prefix", "/pop", "--connections", "2"];
    let r = bench(&server, &args);
    assert_eq!((r.ops, r.ok), (200, 200), "{}", r.to_text());
    let r = bench(&server, &args);
    assert_eq!((r.ops, r.ok), (200, 0), "{}", r.to_text());
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].expected && r.errors[0].code == -110 && r.errors[0].count == 200);

    // Delete removes each key once: populating again creates every one anew.
    let r = bench(&server, &["--workload", "delete", "--keys", "150", "--prefix", "/del", "--connections", "3", "--outstanding", "8"]);
    assert_eq!((r.ops, r.ok), (150, 150), "{}", r.to_text());
    let r = bench(&server, &["--workload", "populate", "--keys", "150", "--prefix", "/del"]);
    assert_eq!((r.ops, r.ok), (150, 150), "no key was left: {}", r.to_text());

    // A --duration run ends by itself and counts what it did; a tag names its shape in the report.
    let r = bench(&server, &["--workload", "get", "--keys", "20", "--duration", "0.3", "--connections", "2", "--workload-tag", "2x1"]);
    assert!(r.ops > 0 && r.ops == r.ok, "{}", r.to_text());
    assert_eq!(r.workload, "get 2x1");
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let port = free_port();
    let cfg = Config::from_args(["warden-bench", "--servers", &format!("127.0.0.1:{port}"), "--ops", "1", "--request-timeout", "2"]).unwrap();
    let err = warden_bench::run(&cfg).unwrap_err().to_string();
    assert!(err.contains("connect"), "{err}");
}

/// bench/scale.sh's modes: populate over parents, wait-read, scale-clients. The spread
/// watches only succeed if scale-clients and populate agree on the tree's layout.
#[test]
fn scale_modes_run_against_warden() {
    use clap::Parser;
    use warden_bench::cli::{Cli, Command};

    let server = Server::start();
    let r = bench(&server, &["--workload", "populate", "--keys", "300", "--parents", "7", "--prefix", "/tree", "--connections", "2"]);
    assert_eq!((r.ops, r.ok), (300, 300), "{}", r.to_text());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Key 299 lives under parent 299 % 7 = 5; a flat path does not exist.
    rt.block_on(warden_bench::client::wait_read(&server.addr(), "/tree/p5/k299", Duration::from_secs(10))).expect("layout p<i % parents>/k<i>");
    let err = rt.block_on(warden_bench::client::wait_read(&server.addr(), "/tree/k299", Duration::from_millis(200))).unwrap_err();
    assert!(err.contains("NONODE"), "{err}");

    let pid = server.child.id().to_string();
    let addr = server.addr();
    let argv = [
        "warden-bench",
        "scale-clients",
        "--server",
        &addr,
        "--server-pid",
        &pid,
        "--sources",
        "3",
        "--sessions",
        "60",
        "--churn-secs",
        "0.3",
        "--churn-parallel",
        "2",
        "--watchers-one",
        "20",
        "--fanout-rounds",
        "2",
        "--watches",
        "300",
        "--watch-sessions",
        "4",
        "--tree-size",
        "300",
        "--parents",
        "7",
        "--prefix",
        "/tree",
        "--timeout",
        "30",
    ];
    let Some(Command::ScaleClients(args)) = Cli::try_parse_from(argv).unwrap().command else { panic!("not parsed as scale-clients") };
    let report = rt.block_on(warden_bench::scale::run_async(args)).unwrap();
    let text = report.to_text();
    assert!(report.failures.is_empty(), "{text}");
    let fig = |k: &str| *report.figures.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
    assert_eq!(fig("sessions_opened"), 60.0, "{text}");
    assert_eq!(fig("watchers_one_sessions"), 20.0, "{text}");
    assert_eq!(fig("fanout_rounds"), 2.0, "{text}");
    // Both sides' CPU per fan-out round (ticks, so possibly zero here).
    assert!(fig("fanout_server_cpu_ms") >= 0.0 && fig("fanout_client_cpu_ms") >= 0.0, "{text}");
    assert!(fig("fanout_ms_median") > 0.0 && fig("fanout_ms_median") <= fig("fanout_ms_max"), "{text}");
    assert_eq!(fig("watches_set"), 300.0, "{text}");
    assert!(fig("churn_cycles") > 0.0, "{text}");
    assert!(fig("rss_kb_sessions") > 0.0, "{text}");
}
