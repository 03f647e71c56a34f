//! Stages are snapshots: each stage crate is the stage before it plus its
//! lesson. For every neighbouring pair of stages in the table, a file under
//! `src/` is either one the later stage's lesson adds or changes (its row's
//! `lesson` list), or a copy, byte for byte. So `diff -ruN stage07/src
//! stage08/src` shows the lesson and nothing else, and the list says
//! truly what the lesson touches.

use shared::stages::STAGES;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn src(crate_name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(crate_name).join("src")
}

/// Every file under `dir`, as a path relative to `root` with `/`.
fn files(root: &Path, dir: &Path, found: &mut BTreeSet<String>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files(root, &path, found);
        } else {
            let relative = path.strip_prefix(root).expect("under root");
            found.insert(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn tree(crate_name: &str) -> BTreeSet<String> {
    let root = src(crate_name);
    let mut found = BTreeSet::new();
    files(&root, &root, &mut found);
    found
}

#[test]
fn each_stage_is_the_one_before_plus_its_lesson() {
    for pair in STAGES.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let (old, new) = (tree(before.crate_name), tree(after.crate_name));
        let lesson: BTreeSet<String> = after.lesson.iter().map(|f| f.to_string()).collect();
        for file in old.union(&new) {
            let read = |crate_name: &str| fs::read(src(crate_name).join(file)).ok();
            let (a, b) = (read(before.crate_name), read(after.crate_name));
            if lesson.contains(file) {
                assert!(
                    b.is_some() && a != b,
                    "{file} is in stage {}'s lesson list but {}",
                    after.number,
                    if b.is_none() { "is gone" } else { "is unchanged: take it off the list" }
                );
            } else {
                assert!(
                    a.is_some() && a == b,
                    "{}/src/{file} and {}/src/{file} differ (or one is missing), and {file} is \
                     not in stage {}'s lesson list: copy it unchanged, or list it",
                    before.crate_name,
                    after.crate_name,
                    after.number
                );
            }
        }
        for file in &lesson {
            assert!(
                new.contains(file),
                "stage {}'s lesson lists {file}, which it lacks",
                after.number
            );
        }
    }
}
