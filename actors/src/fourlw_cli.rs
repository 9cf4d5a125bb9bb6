//! `warden fourlw`: send a four-letter word and print the answer, like
//! `echo ruok | nc host 2181` for images and probes that have no shell or nc.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Prints the server's answer; with `expect`, fails unless the answer (trimmed) equals it.
pub fn run(word: &str, server: &str, timeout_ms: u64, expect: Option<&str>) -> Result<(), String> {
    if word.len() != 4 || !word.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(format!("'{word}' is not a four-letter word (ruok, isro, srvr, stat, conf, envi, mntr, ...)"));
    }
    let answer = ask(word, server, Duration::from_millis(timeout_ms.max(1)))?;
    print!("{answer}");
    if !answer.ends_with('\n') {
        println!();
    }
    match expect {
        Some(want) if answer.trim() != want => Err(format!("{word} answered {:?}, expected {want:?}", answer.trim())),
        _ => Ok(()),
    }
}

fn ask(word: &str, server: &str, timeout: Duration) -> Result<String, String> {
    let addr = server.to_socket_addrs().map_err(|e| format!("{server}: {e}"))?.next().ok_or_else(|| format!("{server}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("cannot connect to {server}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    s.write_all(word.as_bytes()).map_err(|e| format!("{server}: {e}"))?;
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // The server closes right after its answer; a reset then still leaves the answer read.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !raw.is_empty() => {}
        Err(e) => return Err(format!("{server}: no answer to {word}: {e}")),
    }
    if raw.is_empty() {
        return Err(format!("{server} closed without answering {word} (is it in 4lw.commands.whitelist?)"));
    }
    Ok(String::from_utf8_lossy(&raw).into_owned())
}
