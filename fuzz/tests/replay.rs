//! Replays every committed input of every fuzz target (`corpus/<target>/`
//! and `regressions/<target>/`) through the same functions the fuzzers run,
//! on stable Rust, without cargo-fuzz:
//!
//! ```text
//! cargo test --manifest-path fuzz/Cargo.toml --locked
//! ```
//!
//! Fails if any input fails a property, or if a target has no inputs at all.

use headcount_fuzz::replay::{inputs, replay};
use headcount_fuzz::{CountingAlloc, TARGETS};
use std::path::Path;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn every_committed_input_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    let mut total = 0;
    for (name, target) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        let regressions = inputs(&root.join("regressions").join(name));
        assert!(!corpus.is_empty(), "no corpus for {name}: a replay of nothing proves nothing");
        for (kind, files) in [("corpus", &corpus), ("regressions", &regressions)] {
            match replay(files, *target) {
                Ok(n) => {
                    println!("{name}: replayed {n} {kind} inputs");
                    total += n;
                }
                Err(f) => failures.extend(f),
            }
        }
    }
    println!("replayed {total} inputs in all");
    assert!(failures.is_empty(), "{} inputs failed:\n{}", failures.len(), failures.join("\n"));
    assert!(total > 0, "replayed no inputs");
}

/// The replay is not vacuous: a failing target, or no inputs, is reported.
#[test]
fn replay_reports_failures_and_empty_dirs() {
    let dir = std::env::temp_dir().join(format!("headcount-fuzz-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(inputs(&dir).is_empty());
    assert!(inputs(&dir.join("missing")).is_empty());
    std::fs::write(dir.join("a"), b"boom").unwrap();
    std::fs::write(dir.join("b"), b"fine").unwrap();
    let files = inputs(&dir);
    assert_eq!(files.len(), 2);
    let err = replay(&files, |d| assert_ne!(d, b"boom", "a planted failure")).unwrap_err();
    assert_eq!(err.len(), 1);
    assert!(err[0].contains("a planted failure"), "{err:?}");
    assert_eq!(replay(&files, |_| {}), Ok(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The allocation check of `frame_decode` is live in this binary.
#[test]
fn allocation_counting_is_installed() {
    assert!(headcount_fuzz::alloc::installed());
    let (_, peak) = headcount_fuzz::alloc::peak_during(|| std::hint::black_box(vec![0u8; 100_000]));
    assert!(peak >= 100_000, "peak {peak}");
}
