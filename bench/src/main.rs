use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use warden_bench::cli::{parse_servers, Cli, Command};
use warden_bench::{client, report, Report};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(cmd) => helper(cmd),
        None => bench(cli.bench),
    }
}

/// Exit 0: clean run; 2: finished but with unexpected errors; 1: could not run.
fn bench(args: warden_bench::cli::BenchArgs) -> ExitCode {
    let cfg = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warden-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let report = match warden_bench::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warden-bench: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report.to_text());
    if let Some(path) = &cfg.json {
        if let Err(e) = std::fs::write(path, report.to_json() + "\n") {
            eprintln!("warden-bench: writing {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if report.unexpected_errors > 0 {
        eprintln!("warden-bench: {} unexpected errors", report.unexpected_errors);
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// Kills `pid` and tries a sequential create through each server in turn
/// until one is acknowledged; the time from the kill to that reply.
async fn first_write_after_kill(servers: &[String], pid: i32, timeout: Duration) -> Result<f64, String> {
    let killed = Instant::now();
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(format!("cannot kill pid {pid}: {}", std::io::Error::last_os_error()));
    }
    let mut last_err = String::new();
    while killed.elapsed() < timeout {
        for addr in servers {
            let attempt = async {
                let mut s = client::Session::connect(addr, 30_000, Duration::from_millis(300)).await.map_err(|e| e.to_string())?;
                let reply = s
                    .call(
                        warden_core::proto::op::CREATE,
                        |w| client::body::create(w, "/failover-", b"", client::flags::PERSISTENT_SEQUENTIAL),
                        Duration::from_millis(500),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = s.close(Duration::from_millis(200)).await;
                if reply.err == 0 {
                    Ok(())
                } else {
                    Err(format!("create answered {}", client::error_name(reply.err)))
                }
            };
            match attempt.await {
                Ok(()) => return Ok(killed.elapsed().as_secs_f64() * 1000.0),
                Err(e) => last_err = format!("{addr}: {e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(format!("no write acknowledged within {timeout:?}; last error {last_err}"))
}

fn helper(cmd: Command) -> ExitCode {
    match cmd {
        Command::Ready { servers, timeout } => {
            let servers = match parse_servers(&servers) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("warden-bench: {e}");
                    return ExitCode::from(1);
                }
            };
            let start = Instant::now();
            let deadline = start + Duration::from_secs_f64(timeout.max(0.0));
            let rt = runtime();
            for addr in &servers {
                let mut last_err = String::new();
                let ok = rt.block_on(async {
                    while Instant::now() < deadline {
                        match client::Session::connect(addr, 30_000, Duration::from_secs(2)).await {
                            Ok(s) => {
                                let _ = s.close(Duration::from_secs(2)).await;
                                return true;
                            }
                            Err(e) => last_err = e.to_string(),
                        }
                        // Fine-grained: start-up times are measured with this.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    false
                });
                if !ok {
                    eprintln!("warden-bench: {addr} not serving after {timeout} s: {last_err}");
                    return ExitCode::from(1);
                }
            }
            println!("{}", start.elapsed().as_millis());
            ExitCode::SUCCESS
        }
        Command::Failover { servers, kill_pid, timeout } => {
            let servers = match parse_servers(&servers) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("warden-bench: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime().block_on(first_write_after_kill(&servers, kill_pid, Duration::from_secs_f64(timeout))) {
                Ok(ms) => {
                    println!("{ms:.1}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("warden-bench: failover: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::FourLetter { server, word } => match runtime().block_on(client::four_letter(&server, &word, Duration::from_secs(10))) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("warden-bench: {server}: {e}");
                ExitCode::from(1)
            }
        },
        Command::Summarize { ratio, files } => {
            let mut reports = Vec::new();
            for f in &files {
                match std::fs::read_to_string(f).map_err(|e| e.to_string()).and_then(|t| Report::from_json(&t)) {
                    Ok(r) => reports.push(r),
                    Err(e) => {
                        eprintln!("warden-bench: {}: {e}", f.display());
                        return ExitCode::from(1);
                    }
                }
            }
            let ratio = ratio.as_deref().and_then(|r| r.split_once('/'));
            print!("{}", report::summarize(&reports, ratio));
            ExitCode::SUCCESS
        }
        Command::WaitRead { server, path, timeout } => match runtime().block_on(client::wait_read(&server, &path, Duration::from_secs_f64(timeout.max(0.0)))) {
            Ok(ms) => {
                println!("{ms}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("warden-bench: {server}: {e}");
                ExitCode::from(1)
            }
        },
        Command::ScaleClients(args) => warden_bench::scale::run(args),
        Command::CeilingServer { port, value_size } => match warden_bench::ceiling::run(port, value_size) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("warden-bench: ceiling server: {e}");
                ExitCode::from(1)
            }
        },
        Command::FreePort => match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => {
                println!("{}", a.port());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("warden-bench: {e}");
                ExitCode::from(1)
            }
        },
    }
}
