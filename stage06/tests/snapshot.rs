//! Stages are snapshots: what no stage-7 lesson changes must be the same in
//! both crates, so that `diff -ru stage06/src stage07/src` shows the lesson
//! and nothing else.

use std::fs;
use std::path::Path;

const UNCHANGED_BY_STAGE_7: [&str; 5] =
    ["cli.rs", "utils/mod.rs", "utils/xps_logger.rs", "utils/xps_utils.rs", "network/mod.rs"];

#[test]
fn files_stage_7_does_not_change_are_identical() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in UNCHANGED_BY_STAGE_7 {
        let read = |stage: &str| {
            let path = root.join(stage).join("src").join(file);
            fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        };
        assert!(
            read("stage06") == read("stage07"),
            "stage06/src/{file} and stage07/src/{file} differ"
        );
    }
    let utils = |stage: &str| {
        let mut names: Vec<_> = fs::read_dir(root.join(stage).join("src/utils"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    assert_eq!(utils("stage06"), utils("stage07"), "utils/ holds different files");
}
