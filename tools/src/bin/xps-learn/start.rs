//! `xps-learn start N`: makes the learner's own crate for stage N, a copy
//! of the stage with its lesson's functions left blank, or (with
//! `--from-previous`) a copy of stage N-1 to change into stage N.

use crate::exercise::{Blank, blank_out};
use shared::stages::Stage;
use std::fs;
use std::path::{Path, PathBuf};

/// Where things are: the workspace, the exercises, their build folder.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The workspace's root folder (where the top-level Cargo.toml is).
    pub root: PathBuf,
    /// Where the learner's crates go: `exercises/` in the workspace.
    pub exercises: PathBuf,
    /// Where they are built: shared by all of them, so the dependencies
    /// (libc, colored, chrono) are compiled once.
    pub target: PathBuf,
}

impl Layout {
    /// The layout of the workspace this tool was built in.
    pub fn of_workspace() -> Layout {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Layout { exercises: root.join("exercises"), target: root.join("target/exercises"), root }
    }

    /// The folder of stage `stage`'s own crate in the workspace.
    pub fn stage_dir(&self, stage: &Stage) -> PathBuf {
        self.root.join(stage.crate_name)
    }

    /// The folder of the learner's crate for `stage`.
    pub fn exercise_dir(&self, stage: &Stage) -> PathBuf {
        self.exercises.join(stage.crate_name)
    }
}

/// What the new crate starts from.
pub enum Start<'a> {
    /// The stage's own code, with these functions blank.
    Blanks(&'a [&'a Blank]),
    /// The code of `src` (a `src/` folder): the learner's stage N-1, or the
    /// workspace's.
    Copy(PathBuf),
}

/// Writes the learner's crate for `stage` into `dest`: `src/` from
/// `start`, a Cargo.toml of its own (a workspace of its own, so the
/// top-level `cargo test` never builds it), and the workspace's
/// Cargo.lock, so it gets the same versions of its dependencies.
pub fn write_crate(
    layout: &Layout,
    stage: &Stage,
    start: &Start<'_>,
    dest: &Path,
) -> Result<(), String> {
    let stage_src = layout.stage_dir(stage).join("src");
    match start {
        Start::Blanks(blanks) => {
            copy_tree(&stage_src, &dest.join("src"), &|file, text| blank_out(text, file, blanks))?
        }
        Start::Copy(src) => copy_tree(src, &dest.join("src"), &|_, text| Ok(text.to_string()))?,
    }
    // The files a stage serves (from stage 12: its `public` folder, and
    // the file beside it that must never be served), as they are.
    let stage_dir = layout.stage_dir(stage);
    if stage_dir.join("public").is_dir() {
        copy_tree(
            &stage_dir.join("public"),
            &dest.join("public"),
            &|_, text| Ok(text.to_string()),
        )?;
    }
    if let Ok(text) = fs::read_to_string(stage_dir.join("outside.txt")) {
        write(&dest.join("outside.txt"), &text)?;
    }
    let manifest = manifest(layout, stage)?;
    write(&dest.join("Cargo.toml"), &manifest)?;
    let lock = fs::read_to_string(layout.root.join("Cargo.lock")).unwrap_or_default();
    write(&dest.join("Cargo.lock"), &lock)?;
    Ok(())
}

/// Copies the `.rs` files of `from` into `to`, each through `change`
/// (given its path relative to `from`, with `/`), keeping the folders.
fn copy_tree(
    from: &Path,
    to: &Path,
    change: &dyn Fn(&str, &str) -> Result<String, String>,
) -> Result<(), String> {
    let mut files = Vec::new();
    list_files(from, from, &mut files)?;
    for relative in files {
        let text = fs::read_to_string(from.join(&relative))
            .map_err(|err| format!("{}: {err}", from.join(&relative).display()))?;
        let changed = change(&relative, &text)?;
        write(&to.join(&relative), &changed)?;
    }
    Ok(())
}

/// Every file under `dir`, as paths relative to `base` with `/`, sorted.
pub fn list_files(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            list_files(base, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(base) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// Writes `text` to `path`, making its folders, unless it already holds
/// exactly that (an unchanged file keeps its time, and cargo does not
/// rebuild for it).
pub fn write(path: &Path, text: &str) -> Result<(), String> {
    if fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|err| format!("{}: {err}", parent.display()))?;
    }
    fs::write(path, text).map_err(|err| format!("{}: {err}", path.display()))
}

/// The learner's Cargo.toml: the stage's package and dependencies, with
/// the versions the workspace pins, as a workspace of its own.
fn manifest(layout: &Layout, stage: &Stage) -> Result<String, String> {
    let root_toml = read(&layout.root.join("Cargo.toml"))?;
    let stage_toml = read(&layout.stage_dir(stage).join("Cargo.toml"))?;
    let package = section(&root_toml, "workspace.package");
    let field = |name: &str| {
        package
            .iter()
            .find_map(|line| line.strip_prefix(name)?.trim_start().strip_prefix('='))
            .map(|value| value.trim().to_string())
            .ok_or_else(|| format!("no {name} in [workspace.package] of the top-level Cargo.toml"))
    };
    let (version, edition) = (field("version")?, field("edition")?);
    let pinned = section(&root_toml, "workspace.dependencies");
    let mut dependencies = String::new();
    for line in section(&stage_toml, "dependencies") {
        let Some(name) = line.strip_suffix(".workspace = true") else { continue };
        let version = pinned
            .iter()
            .find_map(|pin| pin.strip_prefix(name)?.trim_start().strip_prefix('='))
            .ok_or_else(|| format!("{name} is not in [workspace.dependencies]"))?;
        dependencies.push_str(&format!("{name} = {}\n", version.trim()));
    }
    let number = stage.number;
    Ok(format!(
        "\
# Your stage {number}, made by `xps-learn start {number}`. Build and check it with
# `cargo run -p tools --bin xps-learn -- check {number}` from the workspace's root;
# `cargo run` here starts your server.
[package]
name = \"{crate_name}\"
version = {version}
edition = {edition}
publish = false

[dependencies]
{dependencies}
# While functions are still blank (todo!()), their parameters and the
# helpers they would call are unused: those warnings would drown the rest.
# Remove these lines once every function is written.
[lints.rust]
unused_variables = \"allow\"
dead_code = \"allow\"
unused_imports = \"allow\"

# As the workspace builds its stages: the tests push tens of MiB through
# the server, which unoptimised code does four times slower.
[profile.dev]
opt-level = 1

# A workspace of its own: the top-level `cargo test` never builds it.
[workspace]
",
        crate_name = stage.crate_name
    ))
}

fn read(path: &Path) -> Result<String, String> {
    fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))
}

/// The trimmed, non-empty, non-comment lines of TOML section `[name]`.
fn section<'a>(toml: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("[{name}]");
    toml.lines()
        .map(str::trim)
        .skip_while(|line| *line != header)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_read_line_by_line() {
        let toml = "[a]\nx = 1\n# no\n\n[b]\ny = 2\n[c]\n";
        assert_eq!(section(toml, "a"), vec!["x = 1"]);
        assert_eq!(section(toml, "b"), vec!["y = 2"]);
        assert!(section(toml, "c").is_empty());
        assert!(section(toml, "d").is_empty());
    }

    #[test]
    fn the_manifest_pins_the_workspace_versions() {
        let layout = Layout::of_workspace();
        let stage = shared::stages::stage(7).unwrap();
        let manifest = manifest(&layout, stage).unwrap();
        assert!(manifest.contains("name = \"stage07\""), "{manifest}");
        assert!(manifest.contains("\nlibc = \""), "{manifest}");
        assert!(manifest.contains("\nchrono = {"), "{manifest}");
        assert!(manifest.contains("\n[workspace]\n"), "{manifest}");
        assert!(!manifest.contains("shared"), "a dev-dependency leaked in: {manifest}");
    }
}
