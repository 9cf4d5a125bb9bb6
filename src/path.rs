//! Znode path rules, as ZooKeeper's `PathUtils.validatePath`.

/// Checks a znode path; the error is ZooKeeper's reason text.
pub fn validate(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("Path length must be > 0".into());
    }
    if !path.starts_with('/') {
        return Err("Path must start with / character".into());
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err("Path must not end with / character".into());
    }
    // Java walks UTF-16 units; every rule below only looks at ASCII neighbours,
    // so walking chars gives the same verdicts.
    let chars: Vec<char> = path.chars().collect();
    for i in 1..chars.len() {
        let (c, last) = (chars[i], chars[i - 1]);
        let next_is_end_or_slash = i + 1 == chars.len() || chars[i + 1] == '/';
        let reason = if c == '\0' {
            "null character not allowed"
        } else if c == '/' && last == '/' {
            "empty node name specified"
        } else if c == '.' && next_is_end_or_slash && (last == '/' || (last == '.' && i >= 2 && chars[i - 2] == '/')) {
            // "/." or "/.." as a whole node name
            "relative paths not allowed"
        } else if is_invalid_char(c) {
            "invalid character"
        } else {
            continue;
        };
        return Err(format!("Invalid path string \"{path}\" caused by {reason} @{i}"));
    }
    Ok(())
}

fn is_invalid_char(c: char) -> bool {
    let u = c as u32;
    (0x01..=0x1f).contains(&u)
        || (0x7f..=0x9f).contains(&u)
        || (0xe000..=0xf8ff).contains(&u) // private use; surrogates cannot occur in a Rust str
        || (0xfff0..=0xffff).contains(&u)
        || u > 0xffff // encoded as surrogate pairs in Java, which it rejects
}

/// The parent of a validated, non-root path ("/a" -> "/", "/a/b" -> "/a").
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last component of a path ("/a/b" -> "b").
pub fn name(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

/// Joins a parent and a child name.
pub fn child(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_zookeeper_valid_paths() {
        for p in ["/", "/a", "/a/b", "/a.b", "/..a", "/a..", "/.a/b.", "/zookeeper", "/ü"] {
            assert!(validate(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn rejects_zookeeper_invalid_paths() {
        for p in ["", "a", "/a/", "/a//b", "/a/./b", "/a/../b", "/.", "/..", "/a/.", "/a\0b", "/a\u{1}", "/\u{e000}", "/\u{fff5}"] {
            assert!(validate(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(name("/a/b"), "b");
        assert_eq!(child("/", "a"), "/a");
        assert_eq!(child("/a", "b"), "/a/b");
    }
}
