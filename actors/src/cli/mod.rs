//! `warden cli`: a ZooKeeper shell in the manner of zkCli.sh (3.8), built on the
//! `zookeeper-client` crate, so it talks to Warden or to any ZooKeeper server.
//!
//! `warden cli [-server host:port] [-timeout ms] [-r] [cmd args...]`: with a command, runs it
//! once and exits 0 on success, 1 on error (message on stderr), 127 for an unknown command.
//! Without one, an interactive prompt on a terminal, or one command per line from a pipe.

mod commands;
mod conn;
mod format;
mod quota;
mod shell;

use std::io::Write;
use std::time::Duration;

use commands::Shell;

struct Options {
    server: String,
    timeout_ms: u64,
    readonly: bool,
    help: bool,
    command: Vec<String>,
}

/// zkCli's option spelling (`-server`, `-timeout`, `-r`), plus `--server`/`--timeout` and
/// `--opt=value`. Options end at the first word not starting with `-`: the command.
fn parse_options(args: Vec<String>) -> Result<Options, String> {
    let mut opts = Options { server: "127.0.0.1:2181".into(), timeout_ms: 30_000, readonly: false, help: false, command: Vec::new() };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with('-') || arg == "-" {
            opts.command.push(arg);
            opts.command.extend(it);
            break;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| inline.clone().or_else(|| it.next()).ok_or_else(|| format!("{what} needs a value"));
        match name.as_str() {
            "-server" | "--server" => opts.server = value("-server")?,
            "-timeout" | "--timeout" => {
                let v = value("-timeout")?;
                opts.timeout_ms = v.parse().map_err(|_| format!("-timeout must be milliseconds, not {v:?}"))?;
            }
            "-r" | "--readonly" => opts.readonly = true,
            "-waitforconnection" => {}
            "-client-configuration" => {
                value("-client-configuration")?;
                eprintln!("warden cli: -client-configuration is ignored");
            }
            "-h" | "-help" | "--help" => opts.help = true,
            other => return Err(format!("unknown option {other} (see warden cli --help)")),
        }
    }
    Ok(opts)
}

/// Entry point of `warden cli`. Exits the process itself for non-zero exit codes.
pub fn run(args: Vec<String>) -> Result<(), String> {
    // Like other command-line tools, end quietly when stdout is a closed pipe (`| head`).
    // SAFETY: resetting a signal disposition before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let opts = parse_options(args)?;
    if opts.help {
        print!("{}", commands::usage_text());
        println!("Without a command: an interactive shell (or one command per line from stdin).");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start the runtime: {e}"))?;
    let timeout = Duration::from_millis(opts.timeout_ms.max(1));
    let code = runtime.block_on(async move {
        let mut shell = Shell::new(opts.server, timeout, opts.readonly, false);
        if opts.command.is_empty() {
            return shell::run(shell).await;
        }
        if let Err(e) = shell.connect().await {
            eprintln!("{e}");
            return 1;
        }
        shell.history.insert(0, opts.command.join(" "));
        shell.execute(&opts.command).await;
        shell.close().await;
        shell.exit_code
    });
    runtime.shutdown_background();
    let _ = std::io::stdout().flush();
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}
