//! A folder of a test's own under the system's temporary folder, removed
//! when dropped, even when the test fails: the file stages' tests build
//! their `public` folders in one, and a tool's tests their workspaces.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
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
        Scratch::try_new(name).unwrap_or_else(|err| panic!("{err}"))
    }

    /// As `new`, for a check that reports a failure instead of panicking
    /// (xps-check runs checks against a learner's server).
    pub fn try_new(name: &str) -> io::Result<Scratch> {
        let thread = format!("{:?}", std::thread::current().id());
        let digits: String = thread.chars().filter(char::is_ascii_digit).collect();
        let dir = std::env::temp_dir().join(format!("xps-{name}-{}-{digits}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        match fs::create_dir_all(&dir) {
            Ok(()) => Ok(Scratch(dir)),
            Err(err) => {
                Err(io::Error::new(err.kind(), format!("cannot make {}: {err}", dir.display())))
            }
        }
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

    /// Makes `relative` a sparse file of `len` zero bytes that others may
    /// read (mode 644): it takes no disk and reads from memory, so a test
    /// can serve a GiB. Returns its path. Panics if it cannot.
    pub fn write_sparse(&self, relative: impl AsRef<Path>, len: u64) -> PathBuf {
        let path = self.write(relative, "");
        let grown = fs::File::options().write(true).open(&path).and_then(|file| file.set_len(len));
        grown.unwrap_or_else(|err| panic!("cannot grow {}: {err}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|err| panic!("cannot chmod {}: {err}", path.display()));
        path
    }

    /// Writes a script anyone may run (mode 755) to `relative`, and
    /// returns its path. Panics if it cannot.
    pub fn write_executable(&self, relative: impl AsRef<Path>, text: &str) -> PathBuf {
        let path = self.write(relative, text);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|err| panic!("cannot make {} executable: {err}", path.display()));
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
        let sparse = scratch.write_sparse("big", 1 << 30);
        let meta = fs::metadata(&sparse).unwrap();
        assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (1 << 30, 0o644));
        let script = scratch.write_executable("run.sh", "#!/bin/sh\n");
        assert_eq!(fs::metadata(&script).unwrap().permissions().mode() & 0o777, 0o755);
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
