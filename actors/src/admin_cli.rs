//! `warden admin`: the admin endpoint as tables, for people who would rather
//! read than curl.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Target {
    pub address: String,
    pub token: Option<String>,
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn request(t: &Target, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(&t.address).map_err(|e| format!("cannot reach the admin endpoint at {}: {e}", t.address))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let body = body.unwrap_or("");
    let auth = t.token.as_ref().map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        t.address,
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("malformed HTTP response")?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
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
    #[test]
    fn tables_align_columns() {
        let t = super::table(&["A", "LONGER"], vec![vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x\n");
    }
}
