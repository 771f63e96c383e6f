//! The profile parser on any bytes an operator (or a tampered profiles directory) could put in
//! a `*.toml` file: `load_file` and `check_path` must never panic, and a file that loads must
//! check clean.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let path = dir.path().join("fuzzed.toml");
    std::fs::write(&path, data).unwrap();
    let loaded = seawall_profile::load_file(&path);
    let report = seawall_profile::check_path(&path);
    if loaded.is_ok() {
        assert!(report.is_ok(), "a profile that loads fails its check");
    }
});
