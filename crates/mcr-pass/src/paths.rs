//! Lexical path handling for the names recorded in type maps: a unit's
//! file is recorded relative to its compile directory so that site keys
//! stay the same when the same tree is built somewhere else.

/// `file` relative to `dir` when `file` is absolute (walking up with `..`
/// as needed); relative paths are kept, minus a leading `./`.
pub fn relative_to(file: &str, dir: &str) -> String {
    if !file.starts_with('/') || !dir.starts_with('/') {
        return normalize(file);
    }
    let nf = normalize(file);
    let nd = normalize(dir);
    let f: Vec<&str> = nf.split('/').filter(|s| !s.is_empty()).collect();
    let d: Vec<&str> = nd.split('/').filter(|s| !s.is_empty()).collect();
    let common = f.iter().zip(d.iter()).take_while(|(a, b)| a == b).count();
    // System files (nothing in common beyond `/`) stay absolute.
    if common == 0 {
        return normalize(file);
    }
    let mut out: Vec<String> = vec!["..".to_string(); d.len() - common];
    out.extend(f[common..].iter().map(|s| s.to_string()));
    out.join("/")
}

/// Removes `.` components and folds `x/..` (lexically).
pub fn normalize(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|l| *l != "..") => {
                parts.pop();
            }
            _ => parts.push(c),
        }
    }
    let s = parts.join("/");
    if abs {
        format!("/{s}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative_to("x.c", "/a/b"), "x.c");
        assert_eq!(relative_to("./src/x.c", "/a/b"), "src/x.c");
        assert_eq!(relative_to("/a/b/src/x.c", "/a/b"), "src/x.c");
        assert_eq!(relative_to("/a/src/x.c", "/a/b"), "../src/x.c");
        assert_eq!(relative_to("/a/b/../src/x.c", "/a/b"), "../src/x.c");
        assert_eq!(
            relative_to("/usr/include/stdio.h", "/home/u"),
            "/usr/include/stdio.h"
        );
    }
}
