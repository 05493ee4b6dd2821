//! What the kubelet does to the values it is given: `$(VAR)` expansion in env, file modes as
//! the API server holds them, and container paths made this machine's.

use std::path::PathBuf;

use serde_json::Value;

/// `value` with each `$(NAME)` of a `defined` variable replaced by its value (`$$` stays one
/// `$`, an unknown reference stays as written): Kubernetes' dependent environment variables.
pub fn expand(value: &str, defined: &[(String, String)]) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = rest.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some((_, v)) = defined.iter().rev().find(|(k, _)| *k == inner[..end])
        {
            out.push_str(v);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A file mode as the API server gets it: a number, or YAML 1.1's octal `0440` (what helm and
/// kubectl send for it), which a YAML 1.2 reader leaves as a string.
pub fn mode(v: &Value) -> Option<u32> {
    match v {
        Value::Number(n) => n.as_u64().map(|m| m as u32),
        Value::String(s) if s.starts_with('0') => u32::from_str_radix(s, 8).ok(),
        _ => None,
    }
}

/// `value` with a container path under a mount made this machine's.
/// Also inside longer strings (a shell script's file names, a URL's `sslrootcert=`): a path
/// under a mount is wherever it appears.
pub fn local_path(value: &str, mounts: &[(String, PathBuf)]) -> String {
    for (mount, local) in mounts {
        if value == mount {
            return local.display().to_string();
        }
    }
    // Longest mounts first, so a mount inside another maps to its own directory; one pass, so
    // a replacement is never replaced again.
    let mut sorted: Vec<&(String, PathBuf)> = mounts.iter().collect();
    sorted.sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut previous: Option<char> = None;
    'scan: while let Some(c) = rest.chars().next() {
        // A path starts at the beginning or after something that is not part of a name.
        if previous.is_none_or(|p| !(p.is_alphanumeric() || "/._-".contains(p))) {
            for (mount, local) in &sorted {
                if rest.starts_with(&format!("{mount}/")) {
                    out.push_str(&local.display().to_string());
                    rest = &rest[mount.len()..];
                    previous = Some('x');
                    continue 'scan;
                }
            }
        }
        out.push(c);
        previous = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}
