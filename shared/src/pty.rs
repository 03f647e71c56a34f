//! Running a program on a pseudo-terminal, as if a person sat at it: its
//! stdin, stdout and stderr are the terminal, so `is_terminal()` is true
//! and it prompts; the test reads the screen and types lines.
//!
//! The terminal is the kernel's default one: it echoes what is typed and
//! turns each `\n` the program prints into `\r\n`. [`Terminal::screen`]
//! turns those back, so the screen reads as a learner sees it.

use crate::capture::{Captured, Drain};
use crate::child::Process;
use std::ffi::{CStr, OsStr};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// The byte a terminal reads as end of input (Ctrl+D) at the start of a line.
const END_OF_INPUT: u8 = 0x04;

/// A program running on a pseudo-terminal. Dropping it kills the program.
#[derive(Debug)]
pub struct Terminal {
    /// Our side of the terminal: what we write here is what the program
    /// reads as typed.
    keyboard: File,
    process: Process,
    /// Every byte the program's terminal has shown so far, echo included,
    /// read from our side as it comes (a prompt does not end its line).
    /// The read fails with EIO once the program has exited.
    seen: Captured,
}

impl Terminal {
    /// Starts `binary` with `args` on a new pseudo-terminal.
    pub fn spawn(binary: &Path, args: &[&str]) -> Terminal {
        let (master, terminal) = open_pty().expect("cannot open a pseudo-terminal");
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        let process = Process::spawn(
            Command::new(binary)
                .args(args)
                .stdin(stdio(&terminal))
                .stdout(stdio(&terminal))
                .stderr(stdio(&terminal)),
        );
        // Our copy of the program's side goes now, so that reading the
        // master fails (EIO) once the program has exited.
        drop(terminal);
        let screen = File::from(master.try_clone().expect("dup our side of the terminal"));
        let seen = Captured::drain(screen, Drain { partial_lines: true, ..Drain::default() });
        Terminal { keyboard: File::from(master), process, seen }
    }

    /// Reads the screen until `needle` has appeared on it `times` times,
    /// or `timeout` passes. True if it did.
    pub fn read_until_seen(&mut self, needle: &str, times: usize, timeout: Duration) -> bool {
        self.seen.wait_for(timeout, |text| on_screen(text).matches(needle).count() >= times).is_ok()
    }

    /// Reads everything the program shows until it closes the terminal
    /// (exits) or `timeout` passes.
    pub fn read_to_end(&mut self, timeout: Duration) {
        let _ = self.seen.wait_for(timeout, |_| false);
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.keyboard.write_all(format!("{line}\n").as_bytes()).expect("type on the terminal");
    }

    /// Presses Ctrl+D: end of input for a program reading lines.
    pub fn end_input(&mut self) {
        self.keyboard.write_all(&[END_OF_INPUT]).expect("type Ctrl+D on the terminal");
    }

    /// Waits up to `timeout` for the program to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// The screen so far, with the terminal's `\r\n` back to `\n`.
    pub fn screen(&self) -> String {
        self.seen.with_text(on_screen)
    }
}

/// What the terminal shows as a learner reads it: its `\r\n` back to `\n`.
fn on_screen(text: &str) -> String {
    text.replace("\r\n", "\n")
}

/// Opens a pseudo-terminal: (our side, the program's side). Both are opened
/// close-on-exec from the start (std's `open` sets `O_CLOEXEC`), so a child
/// that another test thread starts meanwhile cannot inherit them.
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    // The multiplexer hands out a new terminal pair on each open.
    let master =
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open("/dev/ptmx")?;
    // SAFETY: unlockpt() takes an fd we own and no pointers.
    if unsafe { libc::unlockpt(master.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut name = [0 as libc::c_char; 64];
    // SAFETY: `name` is a writable buffer of the length passed with it.
    let ret = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if ret != 0 {
        return Err(std::io::Error::from_raw_os_error(ret));
    }
    // SAFETY: ptsname_r() succeeded, so `name` holds a NUL-terminated string.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) };
    let path = Path::new(OsStr::from_bytes(path.to_bytes()));
    let terminal =
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(path)?;
    Ok((OwnedFd::from(master), OwnedFd::from(terminal)))
}
