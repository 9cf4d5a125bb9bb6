//! What connection-side actors (listener, connections, I/O batches, admin)
//! need to reach, and the server snapshot the four-letter words and admin
//! commands report. Start-up (`node`) builds it; actors never import `node`.

use crate::conf_dump;
use crate::dispatcher::Dispatcher;
use crate::mailbox::Mailbox;
use crate::processor::Processor;
use crate::registry::Registry;
use crate::stats::ServerStats;
use crate::storage;
use crate::tracker::Tracker;
use slog::Logger;
use std::sync::Arc;
use warden_core::config::Config;

/// What every connection actor needs to reach.
pub struct Deps {
    pub processor: Mailbox<Processor>,
    pub dispatcher: Mailbox<Dispatcher>,
    pub tracker: Mailbox<Tracker>,
    pub registry: Arc<Registry>,
    pub config: Arc<Config>,
    pub stats: Arc<ServerStats>,
    pub log: Logger,
    /// Plain reads answered on the connection's own I/O thread.
    pub local_reads: Arc<crate::delivery::LocalReads>,
}

/// The numbers four-letter words and the admin commands report: the
/// processor's in-memory ones, then what needs the disk (directory sizes,
/// the conf's paths, the environment), read on a blocking thread rather
/// than an actor's.
pub fn server_snapshot(
    processor: &Mailbox<Processor>,
    word: &'static str,
    config: Arc<Config>,
) -> impl std::future::Future<Output = Result<warden_core::fourlw::ServerSnapshot, actix::MailboxError>> + 'static {
    let request = processor.send(crate::messages::ReportStats(word));
    async move {
        let mut s = request.await?;
        let from_disk = tokio::task::spawn_blocking(move || {
            let (data, logs) = (storage::version_dir(&config.data_dir), storage::version_dir(&config.data_log_dir));
            (conf_dump::zookeeper_conf(&config), conf_dump::environment(), conf_dump::dir_size(&data), conf_dump::dir_size(&logs))
        });
        if let Ok((conf, env, data_bytes, log_bytes)) = from_disk.await {
            (s.conf, s.env, s.data_dir_bytes, s.log_dir_bytes) = (conf, env, data_bytes, log_bytes);
        }
        Ok(s)
    }
}
