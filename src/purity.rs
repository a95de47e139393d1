//! The guard behind STYLE.md 2's pure modules (`smtp/`, `policy/`, `limits/`, `postscreen/`):
//! their code names no async runtime, socket, clock or logger. Used by each module's own test.

use std::path::Path;

/// What no pure module's code may name, spelled in pieces so that this file does not match
/// itself.
pub const IO_WORDS: [&str; 9] = [
    concat!("tok", "io"),
    concat!("TcpSt", "ream"),
    concat!("UdpSo", "cket"),
    concat!("TcpLis", "tener"),
    concat!("Instant::", "now"),
    concat!("SystemTime::", "now"),
    concat!("trac", "ing::"),
    concat!("print", "ln!"),
    concat!("eprint", "ln!"),
];

/// Asserts that no `.rs` file under `src/<module>` names one of `words` outside its tests
/// (`tests` folders and whatever follows a `#[cfg(test)]`); returns how many files it read.
pub fn assert_no_io(module: &str, words: &[&str]) -> usize {
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(module)];
    let mut checked = 0;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for word in words {
                assert!(!code.contains(word), "{} uses `{word}`", path.display());
            }
            checked += 1;
        }
    }
    checked
}
