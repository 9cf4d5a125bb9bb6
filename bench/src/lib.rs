//! warden-bench: a load generator speaking ZooKeeper's client protocol with
//! its own asynchronous, pipelined connections, for comparing Warden with
//! Apache ZooKeeper. The binary is a thin wrapper over [`run`].
pub mod ceiling;
pub mod cli;
pub mod client;
pub mod procstat;
pub mod report;
pub mod scale;
pub mod workload;

pub use cli::{Config, Limit, Workload};
pub use report::Report;
pub use workload::{run, run_async, BenchError};
