//! `warden`: a ZooKeeper-compatible coordination service built from actix actors.

mod codec;
mod connection;
mod dispatcher;
mod listener;
mod messages;
mod node;
mod processor;
mod snapshotter;
mod storage;
mod stats;
mod tracker;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "warden", version, about = "A ZooKeeper-compatible coordination service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node. With no --config, the embedded default: 127.0.0.1:2181, data in ./data.
    Server {
        /// Warden TOML or ZooKeeper zoo.cfg (detected by content and extension).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override any zoo.cfg key or ZooKeeper system property, e.g. --set clientPort=2182.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server { config, set } => run_server(config, set),
    };
    if let Err(message) = result {
        eprintln!("warden: {message}");
        std::process::exit(1);
    }
}

fn run_server(config: Option<PathBuf>, set: Vec<String>) -> Result<(), String> {
    let sets = set.iter().map(|s| warden_core::config::parse_set_flag(s)).collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
    let (config, warnings) = warden_core::config::load(config.as_deref(), &sets).map_err(|e| e.to_string())?;
    node::run(config, warnings)
}
