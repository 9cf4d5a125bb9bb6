//! The shell's session with the server and the printing of watch events.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use zookeeper_client as zk;

use super::format;

/// Where asynchronous output (watch events) goes: through rustyline's external printer while
/// a prompt is being edited, else straight to stdout. `printwatches off` mutes it.
#[derive(Clone)]
pub struct Printer {
    external: Arc<Mutex<Option<Box<dyn rustyline::ExternalPrinter + Send>>>>,
    enabled: Arc<AtomicBool>,
}

impl Printer {
    pub fn new() -> Self {
        Printer { external: Arc::new(Mutex::new(None)), enabled: Arc::new(AtomicBool::new(true)) }
    }

    pub fn set_external(&self, printer: Box<dyn rustyline::ExternalPrinter + Send>) {
        *self.external.lock().unwrap() = Some(printer);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    /// Prints a watcher message, if watches are being printed.
    pub fn watch(&self, msg: String) {
        if self.enabled() {
            self.print(msg);
        }
    }

    pub fn print(&self, msg: String) {
        let mut external = self.external.lock().unwrap();
        if let Some(p) = external.as_mut() {
            if p.print(msg.clone()).is_ok() {
                return;
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(msg.as_bytes());
        let _ = out.flush();
    }
}

/// One open session and the tasks printing its events.
pub struct Conn {
    pub client: zk::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Conn {
    /// Opens a session; waits at most `timeout` for it.
    pub async fn open(host: &str, timeout: Duration, readonly: bool) -> Result<Conn, String> {
        let connector = zk::Client::connector().with_session_timeout(timeout).with_readonly(readonly).with_fail_eagerly();
        match tokio::time::timeout(timeout, connector.connect(host)).await {
            Ok(Ok(client)) => Ok(Conn { client, tasks: Vec::new() }),
            Ok(Err(e)) => Err(format!("Unable to connect to {host}: {e}")),
            Err(_) => Err(format!("Unable to connect to {host}: timed out after {}ms", timeout.as_millis())),
        }
    }

    /// Prints session state changes (`WATCHER::` … `type:None`) until the session ends.
    pub fn print_state_changes(&mut self, printer: Printer) {
        let mut watcher = self.client.state_watcher();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let state = watcher.changed().await;
                printer.watch(format::watcher_message(&state.to_string(), "None", ""));
                if state.is_terminated() {
                    break;
                }
            }
        }));
    }

    /// Prints the event of a one-shot watch when it fires.
    pub fn print_oneshot(&mut self, watcher: zk::OneshotWatcher, printer: Printer) {
        self.tasks.push(tokio::spawn(async move {
            let event = watcher.changed().await;
            if event.event_type != zk::EventType::Session {
                printer.watch(format::event_message(&event));
            }
        }));
    }

    /// Prints every event of a persistent (or persistent recursive) watch.
    pub fn print_persistent(&mut self, mut watcher: zk::PersistentWatcher, printer: Printer) {
        self.tasks.push(tokio::spawn(async move {
            loop {
                let event = watcher.changed().await;
                if event.event_type == zk::EventType::Session {
                    // Session changes are printed by the state task; after a terminal state
                    // the watcher must not be polled again.
                    if event.session_state.is_terminated() {
                        break;
                    }
                    continue;
                }
                printer.watch(format::event_message(&event));
            }
        }));
    }

    /// zkCli's `ZooKeeper.States` name for the prompt.
    pub fn state_name(&self) -> &'static str {
        match self.client.state() {
            zk::SessionState::SyncConnected => "CONNECTED",
            zk::SessionState::ConnectedReadOnly => "CONNECTEDREADONLY",
            zk::SessionState::Disconnected => "CONNECTING",
            zk::SessionState::AuthFailed => "AUTH_FAILED",
            zk::SessionState::Expired | zk::SessionState::Closed => "CLOSED",
        }
    }

    pub fn alive(&self) -> bool {
        !self.client.state().is_terminated()
    }

    /// Closes the session and waits (briefly) for the server to confirm, so that its
    /// ephemeral nodes are gone when this returns.
    pub async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        let mut state = self.client.state_watcher();
        drop(self.client);
        let _ = tokio::time::timeout(Duration::from_secs(3), async move {
            while !state.peek_state().is_terminated() {
                state.changed().await;
            }
        })
        .await;
    }
}
