//! mkdata writes exactly the size asked, in the asked form, and never
//! overwrites a file by accident.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

const MKDATA: &str = env!("CARGO_BIN_EXE_mkdata");

fn scratch(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_file(&path);
    path
}

fn mkdata(args: &[&str]) -> Output {
    Command::new(MKDATA).args(args).output().expect("run mkdata")
}

#[test]
fn writes_exactly_the_size_asked() {
    let path = scratch("random.dat");
    let out = mkdata(&[path.to_str().unwrap(), "3M"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::metadata(&path).unwrap().len(), 3 << 20);
    let bytes = fs::read(&path).unwrap();
    // Random bytes: every value shows up in 3 MiB.
    let mut seen = [false; 256];
    bytes.iter().for_each(|&b| seen[b as usize] = true);
    assert!(seen.iter().all(|&s| s), "not random-looking");
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote 3.0 MiB"), "{out:?}");
}

#[test]
fn text_is_printable_lines() {
    let path = scratch("text.txt");
    let out = mkdata(&["--text", path.to_str().unwrap(), "100K"]);
    assert!(out.status.success(), "{out:?}");
    let text = fs::read(&path).unwrap();
    assert_eq!(text.len(), 100 * 1024);
    assert!(text.iter().all(|&b| b == b'\n' || (b' '..=b'~').contains(&b)));
    assert!(text.split(|&b| b == b'\n').all(|line| line.len() <= 63));
    // 100 KiB is a whole number of 64-byte lines; an odd size still ends
    // with a whole line.
    let odd = scratch("odd.txt");
    let out = mkdata(&["--text", odd.to_str().unwrap(), "1000"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::read(&odd).unwrap().last(), Some(&b'\n'));
}

#[test]
fn refuses_to_overwrite_without_force() {
    let path = scratch("existing.dat");
    fs::write(&path, b"keep me").unwrap();
    let out = mkdata(&[path.to_str().unwrap(), "1K"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{out:?}");
    assert_eq!(fs::read(&path).unwrap(), b"keep me");

    let out = mkdata(&["--force", path.to_str().unwrap(), "1K"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fs::metadata(&path).unwrap().len(), 1024);
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    for args in [&["x.dat"][..], &["x.dat", "12X"], &["--bogus", "x.dat", "1K"]] {
        let out = mkdata(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Usage:"), "{out:?}");
    }
}
