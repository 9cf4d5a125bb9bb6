//! `dynamicConfigFile`, as ZooKeeper's QuorumPeerConfig reads and writes it:
//! the member list lives in `<zoo.cfg>.dynamic.<hex version>` beside the
//! static file, which points at it; a committed reconfig writes a new one and
//! rewrites the static file's pointer.

use super::{invalid, R};
use crate::membership::Membership;

/// The version a dynamic file's name carries (`zoo.cfg.dynamic.100000000`
/// is 0x100000000); none if the name does not end in a hex number.
pub fn version_from_filename(name: &str) -> Option<i64> {
    let (_, suffix) = name.rsplit_once('.')?;
    i64::from_str_radix(suffix, 16).ok()
}

/// The `key=value` pairs of a dynamic file: `server.N` lines (group and weight
/// are not supported); a `version` key is an error, as in ZooKeeper.
pub fn dynamic_pairs(path: &str, text: &str) -> R<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!')) {
        let (key, value) = line.split_once('=').ok_or_else(|| invalid("dynamicConfigFile", path, format!("line {line:?} is not key=value")))?;
        let key = key.trim();
        if key == "version" {
            return Err(invalid("dynamicConfigFile", path, "dynamic file shouldn't have version inside"));
        }
        pairs.push((key.to_string(), value.trim().to_string()));
    }
    Ok(pairs)
}

/// Keys that belong in the dynamic file only.
pub fn is_dynamic_key(key: &str) -> bool {
    key.starts_with("server.") || key.starts_with("group") || key.starts_with("weight")
}

/// `writeDynamicConfig`: the member lines, sorted as strings, no version.
pub fn dynamic_file_text(m: &Membership) -> String {
    let mut lines: Vec<String> = m.to_text().lines().filter(|l| !l.starts_with("version=")).map(String::from).collect();
    lines.sort();
    lines.join("\n")
}

/// `editStaticConfig`: the static file without member lines, peerType, the
/// old pointer (and the client address, when the member's server line now
/// carries it), then `dynamicConfigFile=<path>`. Other lines, comments
/// included, are kept as they were (ZooKeeper re-sorts them; order is kept here).
pub fn rewrite_static(text: &str, dynamic_path: &str, erase_client: bool) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or("");
        let dropped = is_dynamic_key(key)
            || key.starts_with("dynamicConfigFile")
            || key.starts_with("peerType")
            || (erase_client && (key.starts_with("clientPort") || key.starts_with("clientPortAddress")));
        if !dropped {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("dynamicConfigFile=");
    out.push_str(dynamic_path);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_hex_suffix() {
        assert_eq!(version_from_filename("/etc/zk/zoo.cfg.dynamic.100000000"), Some(0x1_0000_0000));
        assert_eq!(version_from_filename("zoo.cfg.dynamic.0"), Some(0));
        assert_eq!(version_from_filename("zoo.cfg.dynamic"), None);
    }

    #[test]
    fn a_dynamic_file_with_a_version_is_refused() {
        let err = dynamic_pairs("d", "server.1=a:1:2\nversion=5\n").unwrap_err().to_string();
        assert!(err.contains("shouldn't have version"), "{err}");
        let ok = dynamic_pairs("d", "# members\nserver.1=a:1:2;2181\n\nserver.2=b:1:2\n").unwrap();
        assert_eq!(ok, [("server.1".to_string(), "a:1:2;2181".to_string()), ("server.2".to_string(), "b:1:2".to_string())]);
    }

    #[test]
    fn the_static_file_keeps_its_own_lines_and_points_at_the_new_file() {
        let text = "# my ensemble\ntickTime=2000\ndataDir=/d\nclientPort=2181\nserver.1=a:1:2\nserver.2=b:1:2\npeerType=participant\ndynamicConfigFile=/old\n";
        assert_eq!(
            rewrite_static(text, "/etc/zoo.cfg.dynamic.5", false),
            "# my ensemble\ntickTime=2000\ndataDir=/d\nclientPort=2181\ndynamicConfigFile=/etc/zoo.cfg.dynamic.5\n"
        );
        assert_eq!(rewrite_static(text, "/x", true), "# my ensemble\ntickTime=2000\ndataDir=/d\ndynamicConfigFile=/x\n");
    }

    #[test]
    fn dynamic_text_is_sorted_lines_without_version() {
        let m = Membership::parse("server.1=a:1:2:participant;0.0.0.0:2181\nserver.10=c:1:2:observer\nserver.2=b:1:2\nversion=5").unwrap();
        let text = dynamic_file_text(&m);
        assert!(!text.contains("version"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        // Plain string order, as Java's Collections.sort: "server.10=" sorts before "server.1=".
        assert!(lines[0].starts_with("server.10=") && lines[1].starts_with("server.1=") && lines[2].starts_with("server.2="), "{text}");
    }
}
