//! Running a program on a pseudo-terminal, as if a person sat at it: its
//! stdin, stdout and stderr are the terminal, so `is_terminal()` is true
//! and it prompts; the test reads the screen and types lines.
//!
//! The terminal is the kernel's default one: it echoes what is typed and
//! turns each `\n` the program prints into `\r\n`. [`Terminal::screen`]
//! turns those back, so the screen reads as a learner sees it.

use crate::wait::child_exit;
use std::ffi::{CStr, OsStr};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The byte a terminal reads as end of input (Ctrl+D) at the start of a line.
const END_OF_INPUT: u8 = 0x04;

/// A program running on a pseudo-terminal. Dropping it kills the program.
#[derive(Debug)]
pub struct Terminal {
    /// Our side of the terminal: what the program prints comes out here,
    /// and what we write here is what the program reads as typed.
    master: File,
    child: Child,
    /// Every byte the program's terminal has shown so far, echo included.
    seen: Vec<u8>,
}

impl Terminal {
    /// Starts `binary` with `args` on a new pseudo-terminal.
    pub fn spawn(binary: &Path, args: &[&str]) -> Terminal {
        let (master, terminal) = open_pty().expect("cannot open a pseudo-terminal");
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        let child = Command::new(binary)
            .args(args)
            .stdin(stdio(&terminal))
            .stdout(stdio(&terminal))
            .stderr(stdio(&terminal))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        // Our copy of the program's side goes now, so that reading the
        // master fails (EIO) once the program has exited.
        drop(terminal);
        Terminal { master: File::from(master), child, seen: Vec::new() }
    }

    /// Reads the screen until `needle` has appeared on it `times` times,
    /// or `timeout` passes. True if it did.
    pub fn read_until_seen(&mut self, needle: &str, times: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.screen().matches(needle).count() < times {
            if !self.read_some(deadline) {
                return self.screen().matches(needle).count() >= times;
            }
        }
        true
    }

    /// Reads everything the program shows until it closes the terminal
    /// (exits) or `timeout` passes.
    pub fn read_to_end(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.read_some(deadline) {}
    }

    /// Types `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.master.write_all(format!("{line}\n").as_bytes()).expect("type on the terminal");
    }

    /// Presses Ctrl+D: end of input for a program reading lines.
    pub fn end_input(&mut self) {
        self.master.write_all(&[END_OF_INPUT]).expect("type Ctrl+D on the terminal");
    }

    /// Waits up to `timeout` for the program to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        child_exit(&mut self.child, timeout)
    }

    /// The screen so far, with the terminal's `\r\n` back to `\n`.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.seen).replace("\r\n", "\n")
    }

    /// Waits for output until `deadline` and appends it to `seen`. False
    /// when there is no more to come: the deadline passed or the program
    /// closed the terminal.
    fn read_some(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut ready =
            libc::pollfd { fd: self.master.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let millis = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `ready` is one valid pollfd that outlives the call.
        let n = unsafe { libc::poll(&mut ready, 1, millis) };
        if n <= 0 {
            // Timed out, or interrupted: the caller's deadline decides.
            return n < 0 && Instant::now() < deadline;
        }
        let mut buf = [0; 4096];
        match self.master.read(&mut buf) {
            Ok(n @ 1..) => {
                self.seen.extend_from_slice(&buf[..n]);
                true
            }
            // 0 or EIO: every copy of the program's side is closed.
            _ => false,
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
