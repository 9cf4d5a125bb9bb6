//! Text formats shared by the shell's commands, each as zkCli 3.8 writes or reads it:
//! line tokenizing, path validation, stat blocks, Java `Date.toString()`, ACL strings.

use zookeeper_client as zk;

/// Splits an interactive line the way zkCli's `MyCommandOptions.parseCommand` does: words
/// separated by whitespace, where a word wrapped in matching single or double quotes may
/// contain spaces and loses its quotes.
pub fn tokenize(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let c = chars[i];
        if c == '"' || c == '\'' {
            if let Some(end) = chars[i + 1..].iter().position(|&x| x == c) {
                out.push(chars[i + 1..i + 1 + end].iter().collect());
                i += end + 2;
                continue;
            }
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        out.push(chars[start..i].iter().collect());
    }
    out
}

/// ZooKeeper's `PathUtils.validatePath` (the server's own rules, `warden_core::path`).
/// Sequential paths are checked with a digit appended, as the Java client does, so they
/// may end in `/`.
pub fn validate_path(path: &str, sequential: bool) -> Result<(), String> {
    if sequential {
        warden_core::path::validate(&format!("{path}1"))
    } else {
        warden_core::path::validate(path)
    }
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// Java's `new Date(ms).toString()` in UTC: `EEE MMM dd HH:mm:ss zzz yyyy`.
pub fn java_date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    format!("{} {} {:02} {:02}:{:02}:{:02} UTC {}", WEEKDAYS[weekday], MONTHS[(m - 1) as usize], d, sod / 3600, (sod % 3600) / 60, sod % 60, y)
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// zkCli's `StatPrinter` block, one field a line, with a trailing newline.
pub fn stat(s: &zk::Stat) -> String {
    format!(
        "cZxid = 0x{:x}\nctime = {}\nmZxid = 0x{:x}\nmtime = {}\npZxid = 0x{:x}\ncversion = {}\n\
         dataVersion = {}\naclVersion = {}\nephemeralOwner = 0x{:x}\ndataLength = {}\nnumChildren = {}\n",
        s.czxid as u64,
        java_date(s.ctime),
        s.mzxid as u64,
        java_date(s.mtime),
        s.pzxid as u64,
        s.cversion,
        s.version,
        s.aversion,
        s.ephemeral_owner as u64,
        s.data_length,
        s.num_children
    )
}

/// Java's `List.toString()`: `[a, b]`.
pub fn java_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// ZooKeeper's `ZKUtil.getPermString`: letters in the order c d r w a.
pub fn perm_string(p: zk::Permission) -> String {
    let mut s = String::new();
    for (perm, ch) in
        [(zk::Permission::CREATE, 'c'), (zk::Permission::DELETE, 'd'), (zk::Permission::READ, 'r'), (zk::Permission::WRITE, 'w'), (zk::Permission::ADMIN, 'a')]
    {
        if p.has(perm) {
            s.push(ch);
        }
    }
    s
}

/// Jute's CSV escaping of a string field (as in `Id.toString()`).
fn jute_csv(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\0' => out.push_str("%00"),
            '\n' => out.push_str("%0A"),
            '\r' => out.push_str("%0D"),
            ',' => out.push_str("%2C"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
    out
}

/// zkCli's `getAcl` lines for one ACL entry: `'scheme,'id` then `: perms`.
pub fn acl_entry(acl: &zk::Acl) -> String {
    format!("{},{}\n: {}\n", jute_csv(acl.scheme()), jute_csv(acl.id()), perm_string(acl.permission()))
}

/// zkCli's `AclParser.parse`: comma-separated `scheme:id:perms`, the id being everything
/// between the first and the last colon. Malformed entries and unknown permission letters
/// are reported (returned as warnings) and skipped, as zkCli does.
pub fn parse_acl(s: &str) -> (Vec<zk::Acl>, Vec<String>) {
    let mut acls = Vec::new();
    let mut warnings = Vec::new();
    for a in s.split(',') {
        let (first, last) = match (a.find(':'), a.rfind(':')) {
            (Some(f), Some(l)) if f != l => (f, l),
            _ => {
                warnings.push(format!("{a} does not have the form scheme:id:perm"));
                continue;
            }
        };
        let mut perm = zk::Permission::NONE;
        for c in a[last + 1..].chars() {
            perm = perm
                | match c {
                    'r' => zk::Permission::READ,
                    'w' => zk::Permission::WRITE,
                    'c' => zk::Permission::CREATE,
                    'd' => zk::Permission::DELETE,
                    'a' => zk::Permission::ADMIN,
                    other => {
                        warnings.push(format!("Unknown perm type: {other}"));
                        zk::Permission::NONE
                    }
                };
        }
        acls.push(zk::Acl::new(perm, zk::AuthId::new(&a[..first], &a[first + 1..last])));
    }
    (acls, warnings)
}

/// A `WatchedEvent.toString()` as zkCli's default watcher prints it, preceded by `WATCHER::`.
pub fn watcher_message(state: &str, event_type: &str, path: &str) -> String {
    let path = if path.is_empty() { "null" } else { path };
    format!("\nWATCHER::\n\nWatchedEvent state:{state} type:{event_type} path:{path}\n")
}

/// The event as [`watcher_message`] formats it.
pub fn event_message(event: &zk::WatchedEvent) -> String {
    let event_type = match event.event_type {
        zk::EventType::Session => "None".to_string(),
        other => other.to_string(),
    };
    watcher_message(&event.session_state.to_string(), &event_type, &event.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_like_zkcli() {
        assert_eq!(tokenize("  set /a \"hello world\" "), vec!["set", "/a", "hello world"]);
        assert_eq!(tokenize("create /b 'x y' world:anyone:r"), vec!["create", "/b", "x y", "world:anyone:r"]);
        assert_eq!(tokenize("get \"/c"), vec!["get", "\"/c"]);
        assert!(tokenize("   ").is_empty());
    }

    #[test]
    fn validates_paths() {
        assert!(validate_path("/", false).is_ok());
        assert!(validate_path("/a/b", false).is_ok());
        assert!(validate_path("/a/", true).is_ok());
        assert_eq!(validate_path("a", false).unwrap_err(), "Path must start with / character");
        assert_eq!(validate_path("/a/", false).unwrap_err(), "Path must not end with / character");
        assert_eq!(validate_path("/q/./x", false).unwrap_err(), "Invalid path string \"/q/./x\" caused by relative paths not allowed @3");
        assert_eq!(validate_path("/q//x", false).unwrap_err(), "Invalid path string \"/q//x\" caused by empty node name specified @3");
    }

    #[test]
    fn formats_java_dates() {
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(1_795_644_000_000), "Wed Nov 25 22:00:00 UTC 2026");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
        assert_eq!(java_date(-1), "Wed Dec 31 23:59:59 UTC 1969");
    }

    #[test]
    fn parses_acls() {
        let (acls, warnings) = parse_acl("world:anyone:cdrwa,digest:bob:abc=:r,ip:127.0.0.1:rq,bad");
        assert_eq!(acls.len(), 3);
        assert_eq!(acls[1].scheme(), "digest");
        assert_eq!(acls[1].id(), "bob:abc=");
        assert_eq!(perm_string(acls[0].permission()), "cdrwa");
        assert_eq!(perm_string(acls[2].permission()), "r");
        assert_eq!(warnings, vec!["Unknown perm type: q", "bad does not have the form scheme:id:perm"]);
        assert_eq!(acl_entry(&acls[0]), "'world,'anyone\n: cdrwa\n");
    }
}
