//! Files: `xps_file.c`, new in stage 12. A file opened for one client and
//! read into a pipe, chunk by chunk, as a connection's source reads its
//! socket. Its source is ready from the moment it exists: a file on disk
//! is always readable, so no epoll event stands behind it, and
//! `handle_pipes()` serves it whenever its pipe has room.
//!
//! It is also the server's first security boundary: only files inside the
//! `public` folder, and readable by everyone, may be served.
//!
//! ```text
//!   public = /srv/xps/public          (its real path, symlinks resolved)
//!
//!   sample.txt          → /srv/xps/public/sample.txt      inside: served
//!   docs/../sample.txt  → /srv/xps/public/sample.txt      inside: served
//!   ../outside.txt      → /srv/xps/outside.txt            outside: refused
//!   /etc/passwd         → /etc/passwd                     outside: refused
//!   link → /etc/passwd  → /etc/passwd                     outside: refused
//!   ../public2/x.txt    → /srv/xps/public2/x.txt          outside: refused
//!                         (/srv/xps/public is a prefix of the text, but
//!                          not of the path: "public2" ≠ "public")
//! ```
//!
//! Ownership: the core owns every file in `core.files`, as it owns
//! connections; the file names its source by id, and the source names the
//! file by its [`FileId`] (its `ptr`, in the course's words).

use crate::core::xps_core::XpsCore;
use crate::core::xps_pipe::{EndCallbacks, SourceId, XpsPipeSource};
use crate::core::xps_slots::Id;
use crate::disk::xps_mime::xps_get_mime;
use crate::logger;
use crate::utils::xps_buffer::XpsBuffer;
use crate::utils::xps_logger::LogLevel;
use crate::xps::{DEFAULT_BUFFER_SIZE, XpsError};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The id of a file in `core.files`.
pub type FileId = Id<XpsFile>;

/// The permission bit that lets "others" (any user) read a file: `S_IROTH`.
const READABLE_BY_OTHERS: u32 = 0o004;

// ANCHOR: xps_file
/// One file being served: `xps_file_t` in C.
#[derive(Debug)]
pub struct XpsFile {
    /// The path it was asked for, as given (relative to `public`). The C
    /// struct keeps the caller's pointer; a copy owned here cannot dangle.
    pub file_path: String,
    /// The end that writes the file's bytes into a pipe.
    pub source: SourceId,
    /// The open file (`file_struct`, a `FILE *` in C), closed when dropped.
    pub file_struct: File,
    /// Its size when it was opened, in bytes.
    pub size: u64,
    /// Its MIME type, if its extension is in the table (unused until HTTP).
    pub mime_type: Option<&'static str>,
}
// ANCHOR_END: xps_file

// ANCHOR: create
/// `xps_file_create()`: opens `file_path`, resolved inside `public`, for
/// reading, and adds it to the core with a source that is ready at once.
///
/// Refused, with the reason logged:
/// * [`XpsError::NotFound`]: there is no such file (the course's
///   `realpath()` fails first and says `E_FAIL`; stage 14's 404 needs
///   the difference);
/// * [`XpsError::Permission`]: it resolves outside `public` (`..`, an
///   absolute path, a symlink leading out), it is not readable by others,
///   or it is not a regular file;
/// * [`XpsError::Fail`]: anything else (`public` itself cannot be
///   resolved, or a read error the OS reports).
///
/// The file is opened first and then inspected through the open file
/// (`fstat`), not by its name (`stat`) and then opened: what is checked is
/// what is served, even if the path changes in between.
pub fn xps_file_create(
    core: &mut XpsCore,
    public: &Path,
    file_path: &str,
) -> Result<FileId, XpsError> {
    let (file_struct, size) = open_inside(public, file_path)?;
    let mime_type = xps_get_mime(file_path);
    let XpsCore { files, sources, .. } = core;
    let id = files.insert_with(|id| {
        let source = sources.insert(XpsPipeSource::create(EndCallbacks::File {
            ptr: id,
            handler_cb: file_source_handler,
            close_cb: file_source_close_handler,
        }));
        XpsFile { file_path: file_path.to_string(), source, file_struct, size, mime_type }
    });
    if let Some(file) = core.files.get(id) {
        // Nothing from epoll will ever say a file is readable: it always is.
        XpsPipeSource::set_ready(core, file.source, true);
    }
    logger!(LogLevel::Debug, "xps_file_create()", "created file {file_path} ({size} bytes)");
    Ok(id)
}
// ANCHOR_END: create

// ANCHOR: open_inside
/// Resolves `file_path` inside `public`, checks it may be served, and
/// opens it: the file and its size, or why not.
fn open_inside(public: &Path, file_path: &str) -> Result<(File, u64), XpsError> {
    let refuse = |level: LogLevel, why: String, error: XpsError| {
        logger!(level, "xps_file_create()", "{file_path}: {why}");
        error
    };
    let public = fs::canonicalize(public).map_err(|err| {
        let why = format!("realpath() of the public folder {} failed: {err}", public.display());
        refuse(LogLevel::Error, why, XpsError::Fail)
    })?;
    // `join` keeps an absolute `file_path` as it is: then it is judged by
    // where it leads, like any other.
    let real = fs::canonicalize(public.join(file_path)).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => {
            refuse(LogLevel::Warning, "no such file".to_string(), XpsError::NotFound)
        }
        _ => refuse(LogLevel::Error, format!("realpath() failed: {err}"), XpsError::Fail),
    })?;
    if !is_inside(&real, &public) {
        let why = "file requested is outside of public directory".to_string();
        return Err(refuse(LogLevel::Warning, why, XpsError::Permission));
    }
    let file = File::open(&real).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => {
            refuse(LogLevel::Warning, "no such file".to_string(), XpsError::NotFound)
        }
        io::ErrorKind::PermissionDenied => {
            refuse(LogLevel::Warning, format!("open() failed: {err}"), XpsError::Permission)
        }
        _ => refuse(LogLevel::Error, format!("open() failed: {err}"), XpsError::Fail),
    })?;
    let metadata = file
        .metadata()
        .map_err(|err| refuse(LogLevel::Error, format!("fstat() failed: {err}"), XpsError::Fail))?;
    if !metadata.is_file() {
        let why = "not a regular file".to_string();
        return Err(refuse(LogLevel::Warning, why, XpsError::Permission));
    }
    if metadata.permissions().mode() & READABLE_BY_OTHERS == 0 {
        let why = "others do not have read permission".to_string();
        return Err(refuse(LogLevel::Warning, why, XpsError::Permission));
    }
    Ok((file, metadata.size()))
}

/// True if `path` is `folder` or lies under it, compared name by name:
/// `/srv/public2/x` is not inside `/srv/public`, though its text starts
/// with it (the course compares the text, with `strncmp`).
fn is_inside(path: &Path, folder: &Path) -> bool {
    path.starts_with(folder)
}
// ANCHOR_END: open_inside

// ANCHOR: destroy
/// `xps_file_destroy()`: destroys the file's source (which detaches it
/// from its pipe), empties its slot and closes the file.
pub fn xps_file_destroy(core: &mut XpsCore, id: FileId) {
    let Some(file) = core.files.remove(id) else { return };
    XpsPipeSource::destroy(core, file.source);
    // Dropping `file` closes it (the course's fclose()).
    logger!(
        LogLevel::Debug,
        "xps_file_destroy()",
        "destroyed file {} ({} bytes, {})",
        file.file_path,
        file.size,
        file.mime_type.unwrap_or("no known MIME type")
    );
}
// ANCHOR_END: destroy

// ANCHOR: source_handlers
/// Called by `handle_pipes()` while the file's pipe has room: reads the
/// next chunk (up to `DEFAULT_BUFFER_SIZE`, so the pipe may pass its
/// threshold by at most one chunk, as in the course) and writes it into
/// the pipe. At the end of the file, or on a read error, the file is
/// destroyed: its pipe, left without a source, lets the sink drain what
/// is in it, and then the client is closed.
///
/// Only a read of 0 bytes is the end: a file that shrinks while it is
/// served ends there, cleanly, with what was read so far sent.
fn file_source_handler(core: &mut XpsCore, id: FileId) {
    let XpsCore { files, buffer, .. } = core;
    let Some(file) = files.get_mut(id) else { return };
    let source = file.source;
    let size = DEFAULT_BUFFER_SIZE.min(buffer.len());
    match file.file_struct.read(&mut buffer[..size]) {
        Ok(0) => xps_file_destroy(core, id),
        Ok(n) => {
            let chunk = XpsBuffer::create(n, &core.buffer[..n]);
            if let Err(err) = XpsPipeSource::write(core, source, chunk) {
                logger!(
                    LogLevel::Error,
                    "file_source_handler()",
                    "xps_pipe_source_write() failed: {err}"
                );
                xps_file_destroy(core, id);
            }
        }
        // Interrupted by a signal: the source is still ready, and
        // handle_pipes() calls again.
        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
        Err(err) => {
            logger!(LogLevel::Error, "file_source_handler()", "read() failed: {err}");
            xps_file_destroy(core, id);
        }
    }
}

/// Called by `handle_pipes()` once the pipe has lost its sink (the client
/// left): nobody will read the rest, so the file goes.
fn file_source_close_handler(core: &mut XpsCore, id: FileId) {
    xps_file_destroy(core, id);
}
// ANCHOR_END: source_handlers

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    /// A scratch folder with `public/inside.txt` (readable by all) and
    /// `outside.txt` beside `public`, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("xps-file-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("public/docs")).unwrap();
            for (path, text) in [("public/inside.txt", "in\n"), ("outside.txt", "out\n")] {
                fs::write(dir.join(path), text).unwrap();
                fs::set_permissions(dir.join(path), fs::Permissions::from_mode(0o644)).unwrap();
            }
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn open(scratch: &Scratch, path: &str) -> Result<u64, XpsError> {
        open_inside(&scratch.0.join("public"), path).map(|(_, size)| size)
    }

    #[test]
    fn a_file_inside_public_opens_by_any_path_that_stays_inside() {
        let scratch = Scratch::new("inside");
        assert_eq!(open(&scratch, "inside.txt"), Ok(3));
        assert_eq!(open(&scratch, "docs/../inside.txt"), Ok(3));
        let absolute = scratch.0.join("public/inside.txt");
        assert_eq!(open(&scratch, absolute.to_str().unwrap()), Ok(3));
    }

    #[test]
    fn every_path_out_of_public_is_a_permission_error() {
        let scratch = Scratch::new("outside");
        assert_eq!(open(&scratch, "../outside.txt"), Err(XpsError::Permission));
        assert_eq!(open(&scratch, "/etc/hostname"), Err(XpsError::Permission));
        symlink(scratch.0.join("outside.txt"), scratch.0.join("public/link.txt")).unwrap();
        assert_eq!(open(&scratch, "link.txt"), Err(XpsError::Permission));
        // The folder itself is inside, but is no file to send.
        assert_eq!(open(&scratch, "docs"), Err(XpsError::Permission));
    }

    #[test]
    fn a_file_others_may_not_read_is_refused() {
        let scratch = Scratch::new("private");
        let private = scratch.0.join("public/private.txt");
        fs::write(&private, "mine\n").unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(open(&scratch, "private.txt"), Err(XpsError::Permission));
        fs::set_permissions(&private, fs::Permissions::from_mode(0o604)).unwrap();
        assert_eq!(open(&scratch, "private.txt"), Ok(5));
    }

    #[test]
    fn a_missing_file_is_not_found_and_a_missing_public_a_failure() {
        let scratch = Scratch::new("missing");
        assert_eq!(open(&scratch, "nothing.txt"), Err(XpsError::NotFound));
        assert_eq!(open(&scratch, "no/such/dir.txt"), Err(XpsError::NotFound));
        let nowhere = scratch.0.join("no-public");
        assert_eq!(open_inside(&nowhere, "inside.txt").map(|_| ()), Err(XpsError::Fail));
    }

    #[test]
    fn containment_compares_names_not_text() {
        let public = Path::new("/srv/public");
        assert!(is_inside(Path::new("/srv/public/a.txt"), public));
        assert!(is_inside(Path::new("/srv/public/docs/a.txt"), public));
        assert!(!is_inside(Path::new("/srv/public2/a.txt"), public));
        assert!(!is_inside(Path::new("/srv/a.txt"), public));
    }

    #[test]
    fn a_file_source_is_ready_from_birth_and_destroy_frees_it() {
        let scratch = Scratch::new("create");
        let mut core = XpsCore::create().unwrap();
        let id = xps_file_create(&mut core, &scratch.0.join("public"), "inside.txt").unwrap();
        let file = core.files.get(id).unwrap();
        assert_eq!((file.size, file.mime_type), (3, Some("text/plain")));
        let source = file.source;
        assert!(core.sources.get(source).unwrap().is_ready());
        xps_file_destroy(&mut core, id);
        assert!(core.files.get(id).is_none() && core.sources.get(source).is_none());
        core.destroy();
    }
}
