//! CPU time and resident memory of a process, from /proc (Linux).

use std::io;
use std::sync::OnceLock;

/// Clock ticks per second for /proc/<pid>/stat times: `getconf CLK_TCK`, else 100.
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// utime + stime in clock ticks from the text of /proc/<pid>/stat. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted from
/// the last ')'.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB from the text of /proc/<pid>/status.
pub fn parse_status_rss_kb(status: &str) -> Option<u64> {
    status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
}

/// `pid` is a number or "self".
pub fn cpu_ticks(pid: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_ticks(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unparsable /proc stat"))
}

pub fn cpu_seconds(pid: &str) -> io::Result<f64> {
    Ok(cpu_ticks(pid)? as f64 / clk_tck() as f64)
}

pub fn rss_kb(pid: &str) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_rss_kb(&text).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_with_awkward_command_name() {
        let line = "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 4 0 100 1000 200";
        assert_eq!(parse_stat_ticks(line), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn status_rss() {
        let status = "Name:\tjava\nVmPeak:\t 100 kB\nVmRSS:\t  52340 kB\nThreads:\t40\n";
        assert_eq!(parse_status_rss_kb(status), Some(52340));
        assert_eq!(parse_status_rss_kb("Name: x\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        assert!(cpu_ticks("self").is_ok());
        assert!(rss_kb("self").unwrap() > 0);
        assert!(clk_tck() > 0);
    }
}
