//! A folder of a test's own under the system's temporary folder, removed
//! when dropped, even when the test fails: the file stages' tests build
//! their `public` folders in one, and a tool's tests their workspaces.

use std::fs;
use std::path::{Path, PathBuf};

/// A temporary folder, `xps-NAME-PID-THREAD`, empty when made and removed
/// (with everything in it) when dropped. The process and thread in its
/// name keep two tests of one binary, and two binaries, apart.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Makes the folder, first removing what a killed run may have left
    /// under the same name. Panics if it cannot: a test cannot go on
    /// without it.
    pub fn new(name: &str) -> Scratch {
        let thread = format!("{:?}", std::thread::current().id());
        let digits: String = thread.chars().filter(char::is_ascii_digit).collect();
        let dir = std::env::temp_dir().join(format!("xps-{name}-{}-{digits}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|err| panic!("cannot make {}: {err}", dir.display()));
        Scratch(dir)
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `relative` inside the folder.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.0.join(relative)
    }

    /// Writes `contents` to `relative` inside the folder, making the
    /// folders on the way, and returns its path. Panics if it cannot.
    pub fn write(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|err| panic!("cannot make {}: {err}", parent.display()));
        }
        fs::write(&path, contents)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_is_there_empty_and_gone_when_dropped() {
        let scratch = Scratch::new("scratch-self-test");
        let path = scratch.path().to_path_buf();
        assert!(path.is_dir());
        assert_eq!(fs::read_dir(&path).unwrap().count(), 0);
        let file = scratch.write("a/b/c.txt", "text\n");
        assert_eq!(fs::read_to_string(&file).unwrap(), "text\n");
        drop(scratch);
        assert!(!path.exists(), "{} was left behind", path.display());
    }

    #[test]
    fn two_threads_get_two_folders() {
        let here = Scratch::new("scratch-threads");
        let there = std::thread::spawn(|| Scratch::new("scratch-threads").path().to_path_buf())
            .join()
            .unwrap();
        assert_ne!(here.path(), there);
    }
}
