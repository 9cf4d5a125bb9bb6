//! `warden admin`: the admin endpoint as tables, for people who would rather
//! read than curl.

use serde_json::Value;
use std::time::Duration;

pub struct Target {
    pub address: String,
    pub token: Option<String>,
}

/// One request with ureq (blocking, plain HTTP: the endpoint has no TLS);
/// returns (status, body), whatever the status.
fn request(t: &Target, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(10))).build().into();
    let mut req = ureq::http::Request::builder().method(method).uri(format!("http://{}{path}", t.address)).header("Content-Type", "application/json");
    if let Some(k) = &t.token {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let req = req.body(body.unwrap_or("").to_string()).map_err(|e| format!("bad request for {path}: {e}"))?;
    let mut resp = agent.run(req).map_err(|e| format!("cannot reach the admin endpoint at {}: {e}", t.address))?;
    let text = resp.body_mut().read_to_string().map_err(|e| format!("reading the reply from {}: {e}", t.address))?;
    Ok((resp.status().as_u16(), text))
}

fn json(t: &Target, method: &str, path: &str, body: Option<&str>) -> Result<Value, String> {
    let (status, text) = request(t, method, path, body)?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("HTTP {status}: not JSON ({e}): {text}"))?;
    if status >= 300 {
        return Err(format!("HTTP {status}: {}", v.get("error").and_then(Value::as_str).unwrap_or(&text)));
    }
    Ok(v)
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line =
        |cells: Vec<String>| cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect::<Vec<_>>().join("  ").trim_end().to_string();
    let mut out = vec![line(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n") + "\n"
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn actors(t: &Target) -> Result<(), String> {
    let v = json(t, "GET", "/actors", None)?;
    let rows = v["actors"]
        .as_array()
        .ok_or("no actors in the reply")?
        .iter()
        .map(|a| {
            let p = &a["supervision"];
            vec![
                s(&a["kind"]),
                s(&a["instance"]),
                format!("{}/{}", s(&a["mailbox_depth"]), s(&a["mailbox_capacity"])),
                s(&a["messages_handled"]),
                format!("{}/{}/{}", s(&a["handling_p50_us"]), s(&a["handling_p99_us"]), s(&a["handling_max_us"])),
                s(&a["restarts"]),
                format!("{}: max {} in {}ms, backoff {}ms", s(&p["strategy"]), s(&p["max_restarts"]), s(&p["window_ms"]), s(&p["backoff_ms"])),
            ]
        })
        .collect();
    print!("{}", table(&["KIND", "INSTANCE", "MAILBOX", "HANDLED", "P50/P99/MAX µs", "RESTARTS", "SUPERVISION"], rows));
    Ok(())
}

/// `warden admin supervise KIND key=value...` (strategy=restart|escalate,
/// max_restarts, window_ms, backoff_ms, mailbox_capacity).
pub fn supervise(t: &Target, kind: &str, settings: &[String]) -> Result<(), String> {
    let mut body = serde_json::Map::new();
    for kv in settings {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("{kv:?} is not key=value"))?;
        let value: Value = match k {
            "strategy" => v.into(),
            _ => v.parse::<u64>().map_err(|_| format!("{k}: {v:?} is not a number"))?.into(),
        };
        body.insert(k.to_string(), value);
    }
    let v = json(t, "PUT", &format!("/actors/{kind}/supervision"), Some(&Value::Object(body).to_string()))?;
    let row = |p: &Value| vec![s(&p["max_restarts"]), s(&p["window_ms"]), s(&p["backoff_ms"]), s(&p["mailbox_capacity"]), s(&p["strategy"])];
    print!(
        "{}",
        table(
            &["", "MAX_RESTARTS", "WINDOW_MS", "BACKOFF_MS", "MAILBOX_CAPACITY", "STRATEGY"],
            vec![[vec!["before".to_string()], row(&v["before"])].concat(), [vec!["now".to_string()], row(&v["supervision"])].concat(),]
        )
    );
    Ok(())
}

/// `warden admin mntr` and any other command: key/value lines.
pub fn command(t: &Target, name: &str) -> Result<(), String> {
    let v = json(t, "GET", &format!("/commands/{name}"), None)?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    let rows = obj.iter().filter(|(k, _)| *k != "command" && *k != "error").map(|(k, v)| vec![k.clone(), s(v)]).collect();
    print!("{}", table(&["KEY", "VALUE"], rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server on loopback that answers in chunks and hands
    /// back the request head it saw.
    fn chunked_server(chunks: &'static [&'static str]) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim_end().is_empty() {
                    break;
                }
                head.push(line.trim_end().to_string());
            }
            let mut out = stream;
            write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
            for c in chunks {
                write!(out, "{:x}\r\n{c}\r\n", c.len()).unwrap();
                out.flush().unwrap();
            }
            write!(out, "0\r\n\r\n").unwrap();
            head
        });
        (address, handle)
    }

    #[test]
    fn reads_a_chunked_reply_and_sends_the_bearer_token() {
        let (address, server) = chunked_server(&["{\"command\": \"monitor\", ", "\"znode_count\": 7, ", "\"error\": null}"]);
        let t = super::Target { address, token: Some("s3cret".into()) };
        let v = super::json(&t, "GET", "/commands/monitor", None).unwrap();
        assert_eq!(v["znode_count"], 7);
        assert_eq!(v["command"], "monitor");
        let head = server.join().unwrap();
        assert_eq!(head[0], "GET /commands/monitor HTTP/1.1");
        assert!(head.iter().any(|h| h.eq_ignore_ascii_case("authorization: Bearer s3cret")), "{head:?}");
    }

    #[test]
    fn tables_align_columns() {
        let t = super::table(&["A", "LONGER"], vec![vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x\n");
    }
}
