//! Fixed-size C string fields to Rust strings.

/// The bytes of a NUL-terminated field up to (not including) the first NUL, or all of it.
pub fn c_str_bytes(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// A NUL-terminated field as a String; invalid UTF-8 is replaced, never rejected.
pub fn c_string_lossy(field: &[u8]) -> String {
    String::from_utf8_lossy(c_str_bytes(field)).into_owned()
}

/// Splits NUL-separated argv bytes (as in /proc/<pid>/cmdline) into arguments.
pub fn split_args(bytes: &[u8]) -> Vec<String> {
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_strings() {
        assert_eq!(c_string_lossy(b"abc\0def"), "abc");
        assert_eq!(c_string_lossy(b"abc"), "abc");
        assert_eq!(c_string_lossy(b"\0"), "");
        assert_eq!(c_string_lossy(b"a\xffb\0"), "a\u{fffd}b");
    }

    #[test]
    fn args() {
        assert_eq!(split_args(b"ls\0-l\0/tmp\0"), vec!["ls", "-l", "/tmp"]);
        // /proc/<pid>/cmdline of a process that rewrote its title has no NULs at all.
        assert_eq!(
            split_args(b"nginx: worker process"),
            ["nginx: worker process"]
        );
        assert_eq!(split_args(b"a\0\0b\0"), ["a", "", "b"]);
        assert_eq!(split_args(b"\xff\0"), ["\u{fffd}"]);
        assert_eq!(split_args(b"ls\0-l"), vec!["ls", "-l"]);
        assert_eq!(split_args(b"a\0\0b\0"), vec!["a", "", "b"]);
        assert!(split_args(b"").is_empty());
    }
}
