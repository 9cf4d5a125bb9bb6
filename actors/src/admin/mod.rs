//! The admin HTTP endpoint (actix-web on the node's runtime): ZooKeeper
//! AdminServer-style JSON at `/commands/<name>`, Prometheus text at
//! `/metrics`, every actor's mailbox at `/actors`, live supervision changes at
//! `PUT /actors/<kind>/supervision`, and the log level at `/log/level`.

use crate::deps::Deps;
use crate::messages::WatchData;
use crate::registry::{Fault, PolicyChange};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Map, Value};
use slog::{error, info, warn, Logger};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use warden_core::fourlw::{self, ServerSnapshot};

mod backup;

pub struct AdminState {
    pub deps: Arc<Deps>,
    pub level: Arc<AtomicUsize>,
    pub log: Logger,
    /// The backup and restore commands' one-per-interval limits.
    pub rate_limits: self::backup::RateLimits,
}

/// ZooKeeper's command names and their short (four-letter) aliases.
const COMMANDS: &[(&str, &str)] = &[
    ("ruok", "ruok"),
    ("server_stats", "srvr"),
    ("stats", "stat"),
    ("configuration", "conf"),
    ("environment", "envi"),
    ("monitor", "mntr"),
    ("connections", "cons"),
    ("dump", "dump"),
    ("dirs", "dirs"),
    ("watch_summary", "wchs"),
    ("watches", "wchc"),
    ("watches_by_path", "wchp"),
    ("is_read_only", "isro"),
    ("stat_reset", "srst"),
    ("connection_stat_reset", "crst"),
    ("snapshot", "snap"),
    ("restore", "rest"),
];

fn resolve(name: &str) -> Option<(&'static str, &'static str)> {
    COMMANDS.iter().copied().find(|(long, short)| *long == name || *short == name)
}

/// Starts the endpoint if enabled. A port that cannot be bound is logged and
/// the node runs on without it, as ZooKeeper's AdminServer does.
pub fn start(state: AdminState) {
    let config = state.deps.config.clone();
    if !config.admin_enable_server {
        return;
    }
    let host = config.admin_server_address.clone();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback && config.admin_token.is_none() {
        error!(state.log, "admin endpoint not started: it would listen beyond loopback without warden.adminToken"; "address" => &host);
        return;
    }
    let log = state.log.clone();
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::JsonConfig::default().error_handler(|e, _| {
                let message = e.to_string();
                actix_web::error::InternalError::from_response(e, HttpResponse::BadRequest().json(json!({ "error": message }))).into()
            }))
            .route("/commands", web::get().to(list_commands))
            // Before /commands/{name}: snapshot streams bytes, restore takes a body.
            .configure(self::backup::routes)
            .route("/commands/{name}", web::get().to(command))
            .route("/metrics", web::get().to(metrics))
            .route("/actors", web::get().to(actors))
            .route("/actors/{kind}/supervision", web::put().to(supervise))
            .route("/actors/{kind}/fault", web::post().to(fault))
            .route("/log/level", web::get().to(get_level))
            .route("/log/level", web::put().to(set_level))
    })
    .workers(1)
    .disable_signals();
    match server.bind((host.as_str(), config.admin_server_port)) {
        Ok(server) => {
            info!(log, "admin endpoint serving"; "address" => format!("{host}:{}", config.admin_server_port));
            actix_rt::spawn(server.run());
        }
        Err(e) => warn!(log, "admin endpoint not started"; "address" => format!("{host}:{}", config.admin_server_port), "error" => %e),
    }
}

/// Checks `Authorization: Bearer <warden.adminToken>` when a token is set.
#[allow(clippy::result_large_err)] // the refusal is the response itself, once per request
pub(crate) fn authorized(req: &HttpRequest, state: &AdminState) -> Result<(), HttpResponse> {
    let Some(token) = &state.deps.config.admin_token else { return Ok(()) };
    let given = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        Ok(())
    } else {
        Err(HttpResponse::Unauthorized().json(json!({ "error": "missing or wrong bearer token" })))
    }
}

macro_rules! guard {
    ($req:expr, $state:expr) => {
        if let Err(denied) = authorized(&$req, &$state) {
            return denied;
        }
    };
}

async fn list_commands(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    let names: Vec<&str> = COMMANDS.iter().map(|(long, _)| *long).collect();
    HttpResponse::Ok().json(json!({ "commands": names }))
}

async fn snapshot(state: &AdminState, word: &'static str) -> Result<ServerSnapshot, HttpResponse> {
    crate::deps::server_snapshot(&state.deps.processor, word, state.deps.config.clone())
        .await
        .map_err(|e| HttpResponse::ServiceUnavailable().json(json!({ "error": e.to_string() })))
}

/// A text value as JSON: numbers stay numbers.
fn value(v: &str) -> Value {
    if let Ok(n) = v.parse::<i64>() {
        return json!(n);
    }
    if let Ok(f) = v.parse::<f64>() {
        return json!(f);
    }
    json!(v)
}

fn pairs(list: &[(String, String)]) -> Map<String, Value> {
    list.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

async fn command(req: HttpRequest, path: web::Path<String>, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    let Some((name, word)) = resolve(&path) else {
        return HttpResponse::NotFound().json(json!({ "command": path.as_str(), "error": "Unknown command" }));
    };
    let mut body = Map::new();
    match word {
        "wchs" | "wchc" | "wchp" => {
            let data = match state.deps.dispatcher.send(WatchData).await {
                Ok(d) => d,
                Err(e) => return HttpResponse::ServiceUnavailable().json(json!({ "error": e.to_string() })),
            };
            match word {
                "wchs" => {
                    let paths: std::collections::BTreeSet<&String> = data.values().flatten().collect();
                    body.insert("num_connections".into(), json!(data.len()));
                    body.insert("num_paths".into(), json!(paths.len()));
                    body.insert("num_total_watches".into(), json!(data.values().map(Vec::len).sum::<usize>()));
                }
                "wchc" => {
                    let by: Map<String, Value> = data.iter().map(|(sid, p)| (sid.to_string(), json!(p))).collect();
                    body.insert("session_id_to_watched_paths".into(), Value::Object(by));
                }
                _ => {
                    let mut by: std::collections::BTreeMap<&String, Vec<i64>> = Default::default();
                    for (sid, paths) in &data {
                        for p in paths {
                            by.entry(p).or_default().push(*sid);
                        }
                    }
                    body.insert("path_to_session_ids".into(), json!(by));
                }
            }
        }
        _ => {
            let s = match snapshot(&state, word).await {
                Ok(s) => s,
                Err(r) => return r,
            };
            fill_command(word, &s, &mut body);
        }
    }
    body.insert("command".into(), json!(name));
    body.insert("error".into(), Value::Null);
    HttpResponse::Ok().json(Value::Object(body))
}

fn fill_command(word: &str, s: &ServerSnapshot, body: &mut Map<String, Value>) {
    match word {
        "srvr" | "stat" => {
            body.insert("version".into(), json!(fourlw::full_version(&s.warden_version)));
            body.insert("read_only".into(), json!(s.read_only));
            body.insert(
                "server_stats".into(),
                json!({
                    "packets_sent": s.packets_sent, "packets_received": s.packets_received,
                    "num_alive_client_connections": s.connections, "outstanding_requests": s.outstanding,
                    "server_state": s.mode, "avg_latency": s.latency_avg_ms, "max_latency": s.latency_max_ms,
                    "min_latency": s.latency_min_ms, "last_processed_zxid": s.last_zxid, "data_dir_size": s.data_dir_bytes,
                    "log_dir_size": s.log_dir_bytes, "uptime": s.uptime_ms,
                }),
            );
            body.insert("node_count".into(), json!(s.node_count));
            if word == "stat" {
                body.insert("connections".into(), connections(s));
            }
        }
        "mntr" => {
            for (k, v) in fourlw::mntr_pairs(s) {
                body.insert(k.trim_start_matches("zk_").to_string(), value(&v));
            }
        }
        "conf" => body.extend(pairs(&s.conf)),
        "envi" => {
            let mut env = vec![("zookeeper.version".to_string(), fourlw::full_version(&s.warden_version)), ("warden.version".into(), s.warden_version.clone())];
            env.extend(s.env.iter().cloned());
            body.extend(pairs(&env));
        }
        "cons" => {
            body.insert("connections".into(), connections(s));
        }
        "dump" => {
            let eph: Map<String, Value> = s.ephemerals.iter().map(|(sid, p)| (sid.to_string(), json!(p))).collect();
            body.insert("session_id_to_ephemeral_paths".into(), Value::Object(eph));
            let sessions: Map<String, Value> = s.sessions.iter().map(|(sid, t)| (sid.to_string(), json!(t))).collect();
            body.insert("session_id_to_timeout_ms".into(), Value::Object(sessions));
        }
        "dirs" => {
            body.insert("datadir_size".into(), json!(s.data_dir_bytes));
            body.insert("logdir_size".into(), json!(s.log_dir_bytes));
        }
        "isro" => {
            body.insert("read_only".into(), json!(s.read_only));
        }
        _ => {}
    }
}

fn connections(s: &ServerSnapshot) -> Value {
    json!(s
        .clients
        .iter()
        .map(|c| json!({ "remote_socket_address": c.address, "session_id": format!("0x{:x}", c.session_id), "packets_received": c.received, "packets_sent": c.sent, "session_timeout": c.timeout_ms, "established": c.established_ms }))
        .collect::<Vec<_>>())
}

async fn metrics(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    let s = match snapshot(&state, "mntr").await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let text = crate::metrics::render(s, &state.deps.stats, state.deps.registry.views());
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

async fn actors(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    HttpResponse::Ok().json(json!({ "actors": state.deps.registry.views() }))
}

async fn supervise(req: HttpRequest, kind: web::Path<String>, change: web::Json<PolicyChange>, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    let Some((kind, policy)) = state.deps.registry.find_kind(&kind) else {
        return HttpResponse::NotFound().json(json!({ "error": format!("no actor kind {kind:?}") }));
    };
    let before = policy.get();
    match policy.apply(&change) {
        Ok(after) => {
            info!(state.log, "supervision policy changed"; "kind" => kind, "before" => format!("{before:?}"), "after" => format!("{after:?}"));
            HttpResponse::Ok().json(json!({ "kind": kind, "before": before, "supervision": after }))
        }
        Err(e) => HttpResponse::BadRequest().json(json!({ "error": e })),
    }
}

#[derive(serde::Deserialize)]
struct FaultQuery {
    /// panic | stop | stall (default stop).
    mode: Option<String>,
    /// The stall's length.
    ms: Option<u64>,
    /// Which instance of the kind (default: the first).
    instance: Option<String>,
}

/// `POST /actors/<kind>/fault?mode=panic|stop|stall&ms=N[&instance=I]`.
async fn fault(req: HttpRequest, kind: web::Path<String>, query: web::Query<FaultQuery>, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    if !state.deps.config.admin_fault_injection {
        return HttpResponse::Forbidden().json(json!({ "error": "fault injection is off (warden.adminFaultInjection=true to allow)" }));
    }
    let fault = match (query.mode.as_deref().unwrap_or("stop"), query.ms) {
        ("panic", _) => Fault::Panic,
        ("stop", _) => Fault::Stop,
        ("stall", Some(ms)) => Fault::Stall(std::time::Duration::from_millis(ms)),
        ("stall", None) => return HttpResponse::BadRequest().json(json!({ "error": "mode=stall needs ms=N" })),
        (other, _) => return HttpResponse::BadRequest().json(json!({ "error": format!("unknown mode {other:?}; use panic, stop or stall") })),
    };
    if state.deps.registry.find_kind(&kind).is_none() {
        return HttpResponse::NotFound().json(json!({ "error": format!("no actor kind {:?}", kind.as_str()) }));
    }
    match state.deps.registry.inject(&kind, query.instance.as_deref(), fault) {
        Ok(instance) => {
            warn!(state.log, "operator injected a fault"; "kind" => kind.as_str(), "instance" => &instance, "fault" => format!("{fault:?}"));
            HttpResponse::Accepted().json(json!({ "kind": kind.as_str(), "instance": instance, "fault": format!("{fault:?}").to_lowercase() }))
        }
        Err(e) => HttpResponse::NotFound().json(json!({ "error": e })),
    }
}

const LEVELS: [&str; 7] = ["off", "critical", "error", "warning", "info", "debug", "trace"];

async fn get_level(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    HttpResponse::Ok().json(json!({ "level": LEVELS[state.level.load(Relaxed).min(6)] }))
}

async fn set_level(req: HttpRequest, body: String, state: web::Data<AdminState>) -> HttpResponse {
    guard!(req, state);
    let wanted = body.trim().trim_matches('"').to_ascii_lowercase();
    let Ok(level) = wanted.parse::<slog::Level>() else {
        return HttpResponse::BadRequest().json(json!({ "error": format!("unknown level {wanted:?}; use critical, error, warning, info, debug or trace") }));
    };
    state.level.store(level.as_usize(), Relaxed);
    info!(state.log, "log level changed"; "level" => level.as_str());
    HttpResponse::Ok().json(json!({ "level": LEVELS[level.as_usize()] }))
}
