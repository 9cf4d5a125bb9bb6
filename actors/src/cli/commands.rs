//! The shell's state and its commands, each with zkCli 3.8's syntax, output and messages.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use zookeeper_client as zk;

use super::conn::{Conn, Printer};
use super::format;

/// zkCli's usage lines, sorted as its command map is (case-sensitively).
pub const USAGES: &[(&str, &str)] = &[
    ("addWatch", "addWatch [-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] - default is PERSISTENT_RECURSIVE"),
    ("addauth", "addauth scheme auth"),
    ("close", "close "),
    ("connect", "connect host:port"),
    ("create", "create [-s] [-e] [-c] [-t ttl] path [data] [acl]"),
    ("delete", "delete [-v version] path"),
    ("deleteall", "deleteall path [-b batch size]"),
    ("delquota", "delquota [-n|-b|-N|-B] path"),
    ("get", "get [-s] [-w] path"),
    ("getAcl", "getAcl [-s] path"),
    ("getAllChildrenNumber", "getAllChildrenNumber path"),
    ("getEphemerals", "getEphemerals path"),
    ("history", "history "),
    ("listquota", "listquota path"),
    ("ls", "ls [-s] [-w] [-R] path"),
    ("printwatches", "printwatches on|off"),
    ("quit", "quit "),
    ("redo", "redo cmdno"),
    ("set", "set [-s] [-v version] path data"),
    ("setAcl", "setAcl [-s] [-v version] [-R] path acl"),
    ("setquota", "setquota -n|-b|-N|-B val path"),
    ("stat", "stat [-w] path"),
    ("sync", "sync path"),
    ("version", "version "),
    ("whoami", "whoami "),
];

pub fn usage_text() -> String {
    let mut s = String::from("warden cli -server host:port [-timeout ms] [-r] cmd args\n");
    for (_, usage) in USAGES {
        s.push('\t');
        s.push_str(usage);
        s.push('\n');
    }
    s
}

pub(super) fn usage_of(cmd: &str) -> String {
    USAGES.iter().find(|(name, _)| *name == cmd).map(|(_, u)| u.to_string()).unwrap_or_default()
}

/// How a command failed: the text goes to stderr; `NotFound` exits 127 as zkCli does.
pub enum Failure {
    /// Exit code 1; an empty message prints nothing.
    Error(String),
    NotFound(String),
}

pub(super) type CmdResult = Result<(), Failure>;

pub(super) fn err<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Error(msg.into()))
}

/// Whether the shell goes on after a command.
#[derive(PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// Parsed options of one command: flags and valued options (`-v 3`), plus positionals.
pub(super) struct Parsed {
    pub(super) opts: HashMap<char, String>,
    pub(super) args: Vec<String>,
}

impl Parsed {
    pub(super) fn has(&self, c: char) -> bool {
        self.opts.contains_key(&c)
    }
}

/// A commons-cli style parse: options anywhere, flags may be bundled (`-sw`), a valued
/// option takes the rest of its token or the next one, `--` ends options. Tokens that are
/// negative numbers are positionals.
pub(super) fn parse(tokens: &[String], flags: &str, valued: &str) -> Result<Parsed, Failure> {
    let mut opts = HashMap::new();
    let mut args = Vec::new();
    let mut it = tokens.iter();
    while let Some(tok) = it.next() {
        if tok == "--" {
            args.extend(it.by_ref().cloned());
            break;
        }
        if !tok.starts_with('-') || tok.len() == 1 || tok.parse::<f64>().is_ok() {
            args.push(tok.clone());
            continue;
        }
        let body: Vec<char> = tok[1..].chars().collect();
        let mut i = 0;
        while i < body.len() {
            let c = body[i];
            if valued.contains(c) {
                let rest: String = body[i + 1..].iter().collect();
                let value = if !rest.is_empty() {
                    rest
                } else {
                    match it.next() {
                        Some(v) => v.clone(),
                        None => return err(format!("Missing argument for option: {c}")),
                    }
                };
                opts.insert(c, value);
                break;
            } else if flags.contains(c) {
                opts.insert(c, String::new());
                i += 1;
            } else {
                return err(format!("Unrecognized option: -{c}"));
            }
        }
    }
    Ok(Parsed { opts, args })
}

pub(super) fn check_path(path: &str, sequential: bool) -> CmdResult {
    format::validate_path(path, sequential).map_err(Failure::Error)
}

fn int_opt(p: &Parsed, c: char, what: &str) -> Result<Option<i32>, Failure> {
    match p.opts.get(&c) {
        None => Ok(None),
        Some(v) => match v.parse::<i32>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => err(format!("{what} must be a number: {v}")),
        },
    }
}

/// ZooKeeper's `KeeperException.Code` message for codes zkCli does not reword.
fn keeper_code(e: &zk::Error) -> String {
    use zk::Error::*;
    match e {
        ConnectionLoss | ClientClosed | NoHosts => "ConnectionLoss".into(),
        Timeout => "OperationTimeout".into(),
        SessionExpired => "Session expired".into(),
        AuthFailed => "AuthFailed".into(),
        SessionMoved => "Session moved".into(),
        NoWatcher => "No such watcher".into(),
        QuotaExceeded => "Quota has exceeded".into(),
        Throttled => "Op throttled due to high load".into(),
        MarshallingError => "MarshallingError".into(),
        Unimplemented => "Unimplemented".into(),
        ReconfigDisabled => "Reconfig is disabled".into(),
        RuntimeInconsistent => "RuntimeInconsistency".into(),
        InvalidAcl => "InvalidACL".into(),
        other => other.to_string(),
    }
}

/// zkCli's `CliWrapperException` wording for a failed request on `path`.
pub(super) fn zk_error(e: zk::Error, path: &str) -> Failure {
    use zk::Error::*;
    Failure::Error(match e {
        NoNode => format!("Node does not exist: {path}"),
        NoChildrenForEphemerals => format!("Ephemerals cannot have children: {path}"),
        NodeExists => format!("Node already exists: {path}"),
        NotEmpty => format!("Node not empty: {path}"),
        NotReadOnly => format!("Not a read-only call: {path}"),
        InvalidAcl => format!("Acl is not valid : {path}"),
        NoAuth => format!("Insufficient permission : {path}"),
        BadArguments(_) => format!("Arguments are not valid : {path}"),
        BadVersion => format!("version No is not valid : {path}"),
        other => format!("KeeperErrorCode = {} for {path}", keeper_code(&other)),
    })
}

fn join_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The subtree under `root` in breadth-first order (children sorted), as zkCli's
/// `ZKUtil.listSubTreeBFS`. Nodes that vanish meanwhile are skipped.
async fn subtree(client: &zk::Client, root: &str) -> Result<Vec<String>, Failure> {
    let mut out = Vec::new();
    let mut queue = VecDeque::from([root.to_string()]);
    while let Some(node) = queue.pop_front() {
        let mut children = match client.list_children(&node).await {
            Ok(c) => c,
            Err(zk::Error::NoNode) if node != root => continue,
            Err(e) => return Err(zk_error(e, &node)),
        };
        children.sort();
        queue.extend(children.iter().map(|c| join_path(&node, c)));
        out.push(node);
    }
    Ok(out)
}

pub struct Shell {
    pub host: String,
    pub timeout: Duration,
    pub readonly: bool,
    pub conn: Option<Conn>,
    pub printer: Printer,
    /// Print session events (`WATCHER::` … `type:None`), as an interactive zkCli does.
    pub announce: bool,
    pub history: BTreeMap<usize, String>,
    pub count: usize,
    pub exit_code: i32,
}

impl Shell {
    pub fn new(host: String, timeout: Duration, readonly: bool, announce: bool) -> Shell {
        Shell { host, timeout, readonly, conn: None, printer: Printer::new(), announce, history: BTreeMap::new(), count: 0, exit_code: 0 }
    }

    pub fn prompt(&self) -> String {
        let state = self.conn.as_ref().map(|c| c.state_name()).unwrap_or("CLOSED");
        format!("[zk: {}({}) {}] ", self.host, state, self.count)
    }

    /// Connects to `self.host`, replacing any current session.
    pub async fn connect(&mut self) -> Result<(), String> {
        self.close().await;
        let mut conn = Conn::open(&self.host, self.timeout, self.readonly).await?;
        if self.announce {
            let state = if conn.client.session().is_readonly() { "ConnectedReadOnly" } else { "SyncConnected" };
            self.printer.watch(format::watcher_message(state, "None", ""));
            conn.print_state_changes(self.printer.clone());
        }
        self.conn = Some(conn);
        Ok(())
    }

    pub async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
            if self.announce {
                self.printer.watch(format::watcher_message("Closed", "None", ""));
            }
        }
    }

    /// Runs one interactive line: history, `redo`, then the command. Blank lines are ignored.
    pub async fn execute_line(&mut self, line: &str) -> Flow {
        let mut tokens = format::tokenize(line);
        if tokens.is_empty() {
            return Flow::Continue;
        }
        self.history.insert(self.count, line.to_string());
        if tokens[0] == "redo" {
            let target = tokens.get(1).and_then(|n| n.parse::<usize>().ok()).and_then(|n| self.history.get(&n));
            match target {
                None => {
                    if tokens.len() < 2 {
                        eprintln!("{}", usage_of("redo"));
                    } else {
                        eprintln!("Command index out of range");
                    }
                    self.exit_code = 1;
                    self.count += 1;
                    return Flow::Continue;
                }
                Some(prev) => {
                    let prev = prev.clone();
                    let redone = format::tokenize(&prev);
                    if redone.first().map(String::as_str) == Some("redo") {
                        eprintln!("No redoing redos");
                        self.exit_code = 1;
                        self.count += 1;
                        return Flow::Continue;
                    }
                    self.history.insert(self.count, prev);
                    tokens = redone;
                }
            }
        }
        let flow = self.execute(&tokens).await;
        self.count += 1;
        flow
    }

    /// Runs one command (its name first), prints its output and records its exit code.
    pub async fn execute(&mut self, tokens: &[String]) -> Flow {
        if tokens.is_empty() {
            return Flow::Continue;
        }
        let result = self.dispatch(&tokens[0], &tokens[1..]).await;
        self.exit_code = match result {
            Ok(Flow::Quit) => return Flow::Quit,
            Ok(Flow::Continue) => 0,
            Err(Failure::Error(msg)) => {
                if !msg.is_empty() {
                    eprintln!("{msg}");
                }
                1
            }
            Err(Failure::NotFound(cmd)) => {
                eprint!("{}", usage_text());
                eprintln!("Command not found: Command not found {cmd}");
                127
            }
        };
        Flow::Continue
    }

    async fn dispatch(&mut self, cmd: &str, args: &[String]) -> Result<Flow, Failure> {
        // Commands that need no session.
        match cmd {
            "quit" => {
                self.close().await;
                self.exit_code = 0;
                return Ok(Flow::Quit);
            }
            "help" => {
                eprint!("{}", usage_text());
                return Ok(Flow::Continue);
            }
            "history" => {
                let from = self.count.saturating_sub(10);
                for (i, line) in self.history.range(from..=self.count) {
                    println!("{i} - {line}");
                }
                return Ok(Flow::Continue);
            }
            "printwatches" => {
                match args.first().map(String::as_str) {
                    None => println!("printwatches is {}", if self.printer.enabled() { "on" } else { "off" }),
                    Some(v) => self.printer.set_enabled(v == "on"),
                }
                return Ok(Flow::Continue);
            }
            "version" => {
                println!("Warden CLI version: {}", env!("CARGO_PKG_VERSION"));
                return Ok(Flow::Continue);
            }
            "close" => {
                self.close().await;
                return Ok(Flow::Continue);
            }
            "connect" => {
                if let Some(host) = args.first() {
                    self.host = host.clone();
                }
                self.connect().await.map_err(Failure::Error)?;
                return Ok(Flow::Continue);
            }
            "redo" => return err(usage_of("redo")),
            _ => {}
        }
        if !USAGES.iter().any(|(name, _)| *name == cmd) {
            return Err(Failure::NotFound(cmd.to_string()));
        }
        let alive = self.conn.as_ref().map(|c| c.alive()).unwrap_or(false);
        if !alive {
            println!("Not connected");
            return err("");
        }
        let conn = self.conn.as_mut().unwrap();
        let client = conn.client.clone();
        let printer = self.printer.clone();
        match cmd {
            "ls" => ls(&client, conn, printer, args).await,
            "get" => get(&client, conn, printer, args).await,
            "set" => set(&client, args).await,
            "create" => create(&client, args).await,
            "delete" => delete(&client, args).await,
            "deleteall" => deleteall(&client, args).await,
            "stat" => stat(&client, conn, printer, args).await,
            "getAcl" => get_acl(&client, args).await,
            "setAcl" => set_acl(&client, args).await,
            "addauth" => addauth(&client, args).await,
            "sync" => sync(&client, args).await,
            "addWatch" => add_watch(&client, conn, printer, args).await,
            "getEphemerals" => get_ephemerals(&client, args).await,
            "getAllChildrenNumber" => children_number(&client, args).await,
            "whoami" => whoami(&client).await,
            "setquota" => super::quota::setquota(&client, args).await,
            "listquota" => super::quota::listquota(&client, args).await,
            "delquota" => super::quota::delquota(&client, args).await,
            _ => Err(Failure::NotFound(cmd.to_string())),
        }
        .map(|()| Flow::Continue)
    }
}

async fn ls(client: &zk::Client, conn: &mut Conn, printer: Printer, args: &[String]) -> CmdResult {
    let mut p = parse(args, "swR", "")?;
    if p.args.is_empty() {
        return err(usage_of("ls"));
    }
    let mut watch = p.has('w');
    if p.args.len() > 1 {
        eprintln!("'ls path [watch]' has been deprecated. Please use 'ls [-w] path' instead.");
        watch = true;
        p.args.truncate(1);
    }
    let path = &p.args[0];
    check_path(path, false)?;
    if p.has('R') {
        for node in subtree(client, path).await? {
            println!("{node}");
        }
        return Ok(());
    }
    let (mut children, stat) = match (watch, p.has('s')) {
        (false, false) => (client.list_children(path).await.map_err(|e| zk_error(e, path))?, None),
        (false, true) => {
            let (c, s) = client.get_children(path).await.map_err(|e| zk_error(e, path))?;
            (c, Some(s))
        }
        (true, _) => {
            let (c, s, w) = client.get_and_watch_children(path).await.map_err(|e| zk_error(e, path))?;
            conn.print_oneshot(w, printer);
            (c, if p.has('s') { Some(s) } else { None })
        }
    };
    children.sort();
    println!("{}", format::java_list(&children));
    if let Some(s) = stat {
        print!("{}", format::stat(&s));
    }
    Ok(())
}

async fn get(client: &zk::Client, conn: &mut Conn, printer: Printer, args: &[String]) -> CmdResult {
    let p = parse(args, "sw", "")?;
    if p.args.is_empty() {
        return err(usage_of("get"));
    }
    let path = &p.args[0];
    check_path(path, false)?;
    // `get path watch` is the deprecated spelling of `get -w path`.
    let (data, stat) = if p.has('w') || p.args.len() > 1 {
        let (d, s, w) = client.get_and_watch_data(path).await.map_err(|e| zk_error(e, path))?;
        conn.print_oneshot(w, printer);
        (d, s)
    } else {
        client.get_data(path).await.map_err(|e| zk_error(e, path))?
    };
    println!("{}", String::from_utf8_lossy(&data));
    if p.has('s') {
        print!("{}", format::stat(&stat));
    }
    Ok(())
}

async fn set(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "s", "v")?;
    if p.args.len() < 2 {
        return err(usage_of("set"));
    }
    let version = int_opt(&p, 'v', "version")?;
    let path = &p.args[0];
    check_path(path, false)?;
    let stat = client.set_data(path, p.args[1].as_bytes(), version).await.map_err(|e| zk_error(e, path))?;
    if p.has('s') {
        print!("{}", format::stat(&stat));
    }
    Ok(())
}

async fn create(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "sec", "t")?;
    if p.args.is_empty() {
        return err(usage_of("create"));
    }
    let (has_e, has_s, has_c, has_t) = (p.has('e'), p.has('s'), p.has('c'), p.has('t'));
    if has_c && (has_e || has_s) {
        return err("-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential.");
    }
    let ttl = match p.opts.get(&'t') {
        None => 0,
        Some(v) => v.parse::<i64>().or_else(|_| err("-t argument must be a long value"))?,
    };
    if has_t && has_e {
        return err("TTLs cannot be used with Ephemeral znodes");
    }
    if has_t && has_c {
        return err("TTLs cannot be used with Container znodes");
    }
    if has_t && !(1..=0xFF_FFFF_FFFF).contains(&ttl) {
        return err("ttl must be positive and cannot be larger than: 1099511627775");
    }
    let mode = match (has_e, has_s, has_c) {
        (true, true, _) => zk::CreateMode::EphemeralSequential,
        (true, false, _) => zk::CreateMode::Ephemeral,
        (false, true, _) => zk::CreateMode::PersistentSequential,
        (false, false, true) => zk::CreateMode::Container,
        (false, false, false) => zk::CreateMode::Persistent,
    };
    let path = &p.args[0];
    check_path(path, has_s)?;
    let data = p.args.get(1).map(|d| d.as_bytes()).unwrap_or_default();
    let acls = match p.args.get(2) {
        None => zk::Acls::anyone_all().to_vec(),
        Some(s) => {
            let (acls, warnings) = format::parse_acl(s);
            for w in warnings {
                eprintln!("{w}");
            }
            if acls.is_empty() {
                eprintln!("KeeperErrorCode = InvalidACL");
                return err("Acl is not valid : null");
            }
            acls
        }
    };
    if path == "/" {
        return Err(zk_error(zk::Error::NodeExists, path));
    }
    let mut options = mode.with_acls(zk::Acls::new(&acls));
    if has_t {
        options = options.with_ttl(Duration::from_millis(ttl as u64));
    }
    match client.create(path, data, &options).await {
        Ok((_, seq)) => {
            let created = if has_s { format!("{path}{seq}") } else { path.clone() };
            eprintln!("Created {created}");
            Ok(())
        }
        Err(zk::Error::InvalidAcl) => {
            eprintln!("KeeperErrorCode = InvalidACL for {path}");
            Err(zk_error(zk::Error::InvalidAcl, path))
        }
        Err(e) => Err(zk_error(e, path)),
    }
}

async fn delete(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "", "v")?;
    if p.args.is_empty() {
        return err(usage_of("delete"));
    }
    let version = int_opt(&p, 'v', "version")?;
    let path = &p.args[0];
    check_path(path, false)?;
    if path == "/" {
        return Err(zk_error(zk::Error::BadArguments(&"can not delete root node"), path));
    }
    client.delete(path, version).await.map_err(|e| zk_error(e, path))
}

async fn deleteall(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "", "b")?;
    if p.args.is_empty() {
        return err(usage_of("deleteall"));
    }
    if let Some(b) = p.opts.get(&'b') {
        if b.parse::<i32>().map(|n| n <= 0).unwrap_or(true) {
            return err(format!("batch size must be a positive number: {b}"));
        }
    }
    let path = &p.args[0];
    check_path(path, false)?;
    let nodes = subtree(client, path).await?;
    // Requests of one session are applied in order, so deepest-first pipelining is safe.
    let pending: Vec<_> = nodes.iter().rev().filter(|n| n.as_str() != "/").map(|n| client.delete(n, None)).collect();
    let mut failed = path == "/";
    for result in futures_util::future::join_all(pending).await {
        match result {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(_) => failed = true,
        }
    }
    if failed {
        eprintln!("Failed to delete some node(s) in the subtree!");
    }
    Ok(())
}

async fn stat(client: &zk::Client, conn: &mut Conn, printer: Printer, args: &[String]) -> CmdResult {
    let p = parse(args, "w", "")?;
    if p.args.is_empty() {
        return err(usage_of("stat"));
    }
    let mut watch = p.has('w');
    if p.args.len() > 1 {
        eprintln!("'stat path [watch]' has been deprecated. Please use 'stat [-w] path' instead.");
        watch = true;
    }
    let path = &p.args[0];
    check_path(path, false)?;
    let stat = if watch {
        let (s, w) = client.check_and_watch_stat(path).await.map_err(|e| zk_error(e, path))?;
        conn.print_oneshot(w, printer);
        s
    } else {
        client.check_stat(path).await.map_err(|e| zk_error(e, path))?
    };
    match stat {
        Some(s) => {
            print!("{}", format::stat(&s));
            Ok(())
        }
        None => Err(zk_error(zk::Error::NoNode, path)),
    }
}

async fn get_acl(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "s", "")?;
    if p.args.is_empty() {
        return err(usage_of("getAcl"));
    }
    let path = &p.args[0];
    check_path(path, false)?;
    let (acls, stat) = client.get_acl(path).await.map_err(|e| zk_error(e, path))?;
    for acl in &acls {
        print!("{}", format::acl_entry(acl));
    }
    if p.has('s') {
        print!("{}", format::stat(&stat));
    }
    Ok(())
}

async fn set_acl(client: &zk::Client, args: &[String]) -> CmdResult {
    let p = parse(args, "sR", "v")?;
    if p.args.len() < 2 {
        return err(usage_of("setAcl"));
    }
    let version = int_opt(&p, 'v', "version")?;
    let path = &p.args[0];
    check_path(path, false)?;
    let (acls, warnings) = format::parse_acl(&p.args[1]);
    for w in warnings {
        eprintln!("{w}");
    }
    if acls.is_empty() {
        return err("Acl is not valid : null");
    }
    if p.has('R') {
        let mut failure = None;
        for node in subtree(client, path).await? {
            if let Err(e) = client.set_acl(&node, &acls, version).await {
                if let Failure::Error(msg) = zk_error(e, &node) {
                    eprintln!("{msg}");
                }
                failure = Some(Failure::Error(format!("Failed to set the ACL of some node(s) under {path}")));
            }
        }
        return failure.map_or(Ok(()), Err);
    }
    let stat = client.set_acl(path, &acls, version).await.map_err(|e| zk_error(e, path))?;
    if p.has('s') {
        print!("{}", format::stat(&stat));
    }
    Ok(())
}

async fn addauth(client: &zk::Client, args: &[String]) -> CmdResult {
    if args.is_empty() {
        return err(usage_of("addauth"));
    }
    let auth = args.get(1).map(|a| a.as_bytes()).unwrap_or_default();
    client.auth(&args[0], auth).await.map_err(|e| Failure::Error(format!("KeeperErrorCode = {}", keeper_code(&e))))
}

async fn sync(client: &zk::Client, args: &[String]) -> CmdResult {
    let Some(path) = args.first() else {
        return err(usage_of("sync"));
    };
    check_path(path, false)?;
    client.sync(path).await.map_err(|e| zk_error(e, path))?;
    println!("Sync is OK");
    Ok(())
}

async fn add_watch(client: &zk::Client, conn: &mut Conn, printer: Printer, args: &[String]) -> CmdResult {
    let p = parse(args, "", "m")?;
    let mode = match p.opts.get(&'m').map(String::as_str) {
        None | Some("PERSISTENT_RECURSIVE") => zk::AddWatchMode::PersistentRecursive,
        Some("PERSISTENT") => zk::AddWatchMode::Persistent,
        Some(_) => return err(usage_of("addWatch")),
    };
    let Some(path) = p.args.first() else {
        return err(usage_of("addWatch"));
    };
    check_path(path, false)?;
    let watcher = client.watch(path, mode).await.map_err(|e| zk_error(e, path))?;
    conn.print_persistent(watcher, printer);
    Ok(())
}

async fn get_ephemerals(client: &zk::Client, args: &[String]) -> CmdResult {
    let path = args.first().map(String::as_str).unwrap_or("/");
    check_path(path, false)?;
    let nodes = client.list_ephemerals(path).await.map_err(|e| zk_error(e, path))?;
    println!("{}", format::java_list(&nodes));
    Ok(())
}

async fn children_number(client: &zk::Client, args: &[String]) -> CmdResult {
    let Some(path) = args.first() else {
        return err(usage_of("getAllChildrenNumber"));
    };
    check_path(path, false)?;
    let n = client.count_descendants_number(path).await.map_err(|e| zk_error(e, path))?;
    println!("{n}");
    Ok(())
}

async fn whoami(client: &zk::Client) -> CmdResult {
    let users = client.list_auth_users().await.map_err(|e| Failure::Error(format!("KeeperErrorCode = {}", keeper_code(&e))))?;
    println!("Auth scheme: User");
    for u in users {
        println!("{}: {}", u.scheme(), u.user());
    }
    Ok(())
}
