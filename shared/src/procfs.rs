//! What Linux's `/proc` tells about a running process: its open fds, its
//! memory and its CPU time. Used by tests and by `soak` to see leaks.

use std::fs;
use std::time::Duration;

/// How many file descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> std::io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// How many of process `pid`'s open fds are sockets.
pub fn open_sockets(pid: u32) -> std::io::Result<usize> {
    let mut sockets = 0;
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let target = fs::read_link(entry?.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("socket:") {
            sockets += 1;
        }
    }
    Ok(sockets)
}

/// Process `pid`'s resident memory (VmRSS), in bytes.
pub fn rss_bytes(pid: u32) -> std::io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| std::io::Error::other("no VmRSS line in /proc/PID/status"))
}

/// The CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are plain numbers. utime and stime are fields 14
    // and 15, so the 12th and 13th after the parenthesis.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return Err(std::io::Error::other("unexpected /proc/PID/stat format"));
    };
    // SAFETY: sysconf() takes no pointers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    Ok(Duration::from_secs_f64((utime + stime) as f64 / per_second as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(rss_bytes(pid).unwrap() > 100 * 1024);
        cpu_time(pid).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(open_sockets(pid).unwrap() >= 1);
        drop(listener);
    }
}
