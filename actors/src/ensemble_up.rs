//! `warden ensemble up N`: a local loopback ensemble for trying Warden out.
//! Writes one config per member under a base directory, starts each member
//! as a child process, and stops them (by pid) on Ctrl-C or SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub struct UpOptions {
    pub members: u16,
    pub dir: PathBuf,
    pub client_port: u16,
    pub quorum_port: u16,
    pub election_port: u16,
    pub admin_port: u16,
    pub tick_ms: u32,
}

/// The config of member `id` (1-based) of an ensemble laid out as `opts` says.
pub fn member_config(opts: &UpOptions, id: u16) -> String {
    let mut out = format!(
        "# Member {id} of a {n}-member loopback ensemble written by `warden ensemble up`.\n\
         \"warden.myid\" = {id}\nclientPort = {cp}\nclientPortAddress = \"127.0.0.1\"\n\
         dataDir = \"{dir}\"\ntickTime = {tick}\ninitLimit = 10\nsyncLimit = 5\n\
         \"admin.serverPort\" = {ap}\n\"4lw.commands.whitelist\" = \"*\"\n",
        n = opts.members,
        cp = opts.client_port + id - 1,
        dir = opts.dir.join(format!("node{id}")).display(),
        tick = opts.tick_ms,
        ap = opts.admin_port + id - 1,
    );
    for m in 1..=opts.members {
        out += &format!("\"server.{m}\" = \"127.0.0.1:{}:{}\"\n", opts.quorum_port + m - 1, opts.election_port + m - 1);
    }
    out
}

pub fn up(opts: UpOptions) -> Result<(), String> {
    if opts.members == 0 || opts.members > 9 {
        return Err("an ensemble here has 1 to 9 members".into());
    }
    std::fs::create_dir_all(&opts.dir).map_err(|e| format!("cannot create {}: {e}", opts.dir.display()))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children: Vec<(u16, Child)> = Vec::new();
    for id in 1..=opts.members {
        let path = opts.dir.join(format!("node{id}.toml"));
        std::fs::write(&path, member_config(&opts, id)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        match spawn(&exe, &path, &opts.dir, id) {
            Ok(child) => children.push((id, child)),
            Err(e) => {
                stop_all(&mut children);
                return Err(e);
            }
        }
    }
    let hosts: Vec<String> = (0..opts.members).map(|i| format!("127.0.0.1:{}", opts.client_port + i)).collect();
    println!("ensemble of {} members up; connect with: {}", opts.members, hosts.join(","));
    println!("logs and data under {}; Ctrl-C stops every member", opts.dir.display());
    wait_for_signal();
    stop_all(&mut children);
    Ok(())
}

fn spawn(exe: &Path, config: &Path, dir: &Path, id: u16) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join(format!("node{id}.log"))).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let child =
        Command::new(exe).arg("server").arg("--config").arg(config).stdout(log).stderr(err).spawn().map_err(|e| format!("cannot start member {id}: {e}"))?;
    println!("member {id}: pid {}", child.id());
    Ok(child)
}

fn stop_all(children: &mut [(u16, Child)]) {
    for (_, c) in children.iter() {
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    }
    for (id, c) in children.iter_mut() {
        let _ = c.wait();
        println!("member {id} stopped");
    }
}

fn wait_for_signal() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_configs_parse_as_an_ensemble() {
        let opts =
            UpOptions { members: 3, dir: PathBuf::from("/tmp/e"), client_port: 2181, quorum_port: 2888, election_port: 3888, admin_port: 8081, tick_ms: 500 };
        let text = member_config(&opts, 2);
        let dir = std::env::temp_dir().join(format!("warden-up-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node2.toml");
        std::fs::write(&path, text).unwrap();
        let (c, _) = warden_core::config::load(Some(&path), &[]).unwrap();
        assert!(!c.is_standalone());
        assert_eq!(c.my_id, Some(2));
        assert_eq!(c.client_port, 2182);
        assert_eq!(c.servers.len(), 3);
        assert_eq!(c.servers[2].quorum_port, 2890);
        let _ = std::fs::remove_dir_all(dir);
    }
}
