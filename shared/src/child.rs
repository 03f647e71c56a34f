//! A program started by a test or a tool ([`Process`]), which never
//! outlives its owner: dropping it kills and reaps it, so a test that
//! fails half-way leaves nothing running.
//!
//! A server under test ([`crate::server`]) is one, whatever else it does.

use crate::capture::{Captured, Drain};
use crate::wait::{POLL_INTERVAL, wait_until};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus};
use std::time::Duration;

/// A running program, killed and reaped when dropped.
///
/// Once it has been reaped its exit status is kept, and it is never
/// signalled again: its pid may belong to another process by then.
#[derive(Debug)]
pub struct Process {
    child: Child,
    status: Option<ExitStatus>,
}

impl Process {
    /// Starts `command`. Panics, naming the program, if it cannot be
    /// started: no test can go on without it.
    ///
    /// A binary written a moment ago (a test's copy of a stage) may be
    /// refused with ETXTBSY: while another thread of the test forks a
    /// child, that child holds a copy of the writer's fd until it execs.
    /// It passes within milliseconds, so this tries again a few times.
    pub fn spawn(command: &mut Command) -> Process {
        let mut tries = 0;
        loop {
            match command.spawn() {
                Ok(child) => return Process { child, status: None },
                Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(POLL_INTERVAL);
                }
                Err(err) => panic!("cannot start {}: {err}", command.get_program().display()),
            }
        }
    }

    /// Its stdin, if the command made it a pipe (once; later calls get
    /// `None`).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Its stdout, if the command made it a pipe (once), for a caller that
    /// reads it itself.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its stdout, read as it comes as `how` says, if the command made it
    /// a pipe (once; otherwise, or later, nothing is captured).
    pub fn capture_stdout(&mut self, how: Drain) -> Captured {
        self.take_stdout().map(|out| Captured::drain(out, how)).unwrap_or_default()
    }

    /// Its stderr, read as it comes as `how` says, if the command made it
    /// a pipe (once; otherwise, or later, nothing is captured).
    pub fn capture_stderr(&mut self, how: Drain) -> Captured {
        self.child.stderr.take().map(|err| Captured::drain(err, how)).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited. (Once it has, it is reaped
    /// and its status kept.)
    pub fn is_running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status.is_none()
    }

    /// Its exit status, if it has exited and been reaped.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Waits up to `timeout` for the process to exit on its own; its exit
    /// status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || !self.is_running());
        self.status
    }

    /// Sends `signal` (such as `libc::SIGINT`) to the process. Panics if it
    /// has exited and been reaped: its pid may name another process now.
    pub fn signal(&self, signal: libc::c_int) {
        self.try_signal(signal).unwrap_or_else(|why| panic!("{why}"));
    }

    /// [`Process::signal`], saying what went wrong instead of panicking.
    pub fn try_signal(&self, signal: libc::c_int) -> Result<(), String> {
        if let Some(status) = self.status {
            return Err(format!(
                "cannot send signal {signal}: the process already exited with {status}"
            ));
        }
        let pid = libc::pid_t::try_from(self.pid())
            .map_err(|_| format!("pid {} does not fit in pid_t", self.pid()))?;
        // SAFETY: kill() takes no pointers; signalling our own child, which
        // has not been reaped, reaches no other process.
        let ret = unsafe { libc::kill(pid, signal) };
        if ret != 0 {
            return Err(format!(
                "kill({pid}, {signal}) failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::panic_message;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    #[test]
    fn a_reaped_process_is_never_signalled() {
        let mut process = Process::spawn(Command::new("/bin/sh").args(["-c", "exit 0"]));
        assert!(process.wait_exit(Duration::from_secs(5)).is_some_and(|s| s.success()));
        // Its pid is free for the OS to give to another process now.
        let panic = catch_unwind(AssertUnwindSafe(|| process.signal(libc::SIGTERM)));
        let message =
            panic_message(panic.expect_err("signalling a reaped process must fail").as_ref());
        assert!(message.contains("already exited"), "{message}");
    }

    #[test]
    fn dropping_kills_a_process_still_running() {
        let process = Process::spawn(Command::new("sleep").arg("60"));
        let proc_dir = format!("/proc/{}", process.pid());
        drop(process);
        // Killed and reaped: not even a zombie is left.
        assert!(!std::path::Path::new(&proc_dir).exists());
    }
}
