//! Config text → ordered `(key, value)` pairs. Two syntaxes, one vocabulary:
//! ZooKeeper's zoo.cfg (Java properties) and TOML with the same key names.

use super::{ConfigError, Format, R};
use std::path::Path;

/// `.toml` → TOML, `.cfg`/`.properties` → zoo.cfg; otherwise TOML if the text
/// parses as TOML. A zoo.cfg that happens to be valid TOML (only numbers) yields
/// the same pairs either way, so the guess cannot change the meaning.
pub fn detect_format(path: &Path, text: &str) -> Format {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("toml") => Format::Toml,
        Some("cfg") | Some("properties") => Format::ZooCfg,
        _ if text.parse::<toml::Table>().is_ok() => Format::Toml,
        _ => Format::ZooCfg,
    }
}

/// Parses config text into key/value pairs, in file order (TOML: sorted by key,
/// as TOML keys are unique anyway). TOML values are stringified; nested tables
/// flatten to dotted keys; arrays join with commas.
pub fn parse(text: &str, format: Format) -> R<Vec<(String, String)>> {
    match format {
        Format::ZooCfg => parse_properties(text),
        Format::Toml => {
            let table: toml::Table = text.parse().map_err(|e| syntax(format!("{e}")))?;
            let mut out = Vec::new();
            flatten("", &table, &mut out)?;
            Ok(out)
        }
    }
}

/// `--set key=value` → `(key, value)`.
pub fn parse_set_flag(s: &str) -> R<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(syntax(format!("--set {s:?}: expected key=value"))),
    }
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, String)>) -> R<()> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out)?,
            v => {
                let s = toml_scalar(&key, v)?;
                out.push((key, s));
            }
        }
    }
    Ok(())
}

fn toml_scalar(key: &str, v: &toml::Value) -> R<String> {
    use toml::Value::*;
    Ok(match v {
        String(s) => s.clone(),
        Integer(i) => i.to_string(),
        Float(f) => f.to_string(),
        Boolean(b) => b.to_string(),
        Datetime(d) => d.to_string(),
        Array(items) => {
            let parts = items.iter().map(|i| match i {
                Array(_) | Table(_) => Err(syntax(format!("{key}: arrays may hold only plain values"))),
                i => toml_scalar(key, i),
            });
            parts.collect::<Result<Vec<_>, _>>()?.join(",")
        }
        Table(_) => unreachable!("tables are flattened by the caller"),
    })
}

/// java.util.Properties.load, reasonably: `#`/`!` comment lines, `key=value`,
/// `key: value`, `key value`, backslash line continuation and escapes. Values
/// are also trimmed at the end, as ZooKeeper's QuorumPeerConfig does.
fn parse_properties(text: &str) -> R<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let line = line.trim_start_matches(JAVA_SPACE);
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let mut logical = line.to_string();
        // An odd number of trailing backslashes escapes the newline.
        while (logical.len() - logical.trim_end_matches('\\').len()) % 2 == 1 {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start_matches(JAVA_SPACE)),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        let line_no = index + 1;
        pairs.push((unescape(key, line_no)?, unescape(value, line_no)?.trim().to_string()));
    }
    Ok(pairs)
}

const JAVA_SPACE: [char; 3] = [' ', '\t', '\x0c'];

/// The key ends at the first unescaped `=`, `:` or whitespace; then optional
/// whitespace, at most one `=`/`:`, and more whitespace precede the value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut end = line.len();
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if matches!(b, b'=' | b':' | b' ' | b'\t' | b'\x0c') {
            end = i;
            break;
        }
    }
    let mut rest = line[end..].trim_start_matches(JAVA_SPACE);
    if let Some(r) = rest.strip_prefix(['=', ':']) {
        rest = r.trim_start_matches(JAVA_SPACE);
    }
    (&line[..end], rest)
}

fn unescape(s: &str, line_no: usize) -> R<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let ch = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 4).and_then(char::from_u32);
                let bad = || syntax(format!("line {line_no}: bad escape \\u{hex}"));
                out.push(ch.ok_or_else(bad)?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

fn syntax(message: String) -> ConfigError {
    ConfigError::Syntax { message }
}
