//! Starting and stopping: clear failures for a taken port, an unusable data
//! dir and bad config values; SIGTERM stops the node and drops clients at once.

mod common;

use common::{free_port, run_warden, unique_dir, Server};
use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn port_in_use_stops_the_start_with_a_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = unique_dir();
    let (status, out) =
        run_warden(&["server", "--set", &format!("clientPort={port}"), "--set", &format!("dataDir={}", dir.display())], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("cannot listen on 127.0.0.1:") && out.contains(&port.to_string()), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unusable_data_dir_stops_the_start_with_a_message() {
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let data = file.join("data");
    let (status, out) =
        run_warden(&["server", "--set", &format!("clientPort={}", free_port()), "--set", &format!("dataDir={}", data.display())], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("dataDir") && out.contains("not usable"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_config_value_names_the_key() {
    let (status, out) = run_warden(&["server", "--set", "clientPort=abc"], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("clientPort") && out.contains("abc"), "{out}");
    let (status, out) = run_warden(&["server", "--set", "noequals"], Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{out}");
}

#[test]
fn sigterm_stops_the_node_and_drops_clients_at_once() {
    let mut server = Server::start();
    let mut client = TcpStream::connect(server.addr()).unwrap();
    // A half-sent frame: the server is waiting on this client when it is told to stop.
    std::io::Write::write_all(&mut client, &[0, 0, 0, 45, 0, 0]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let status = server.signal("TERM");
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    client.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 16];
    let n = client.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the client connection is closed, not left hanging");
}
