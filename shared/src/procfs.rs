//! What Linux's `/proc` tells about a running process: its open fds, its
//! memory, its CPU time, and which TCP ports it listens on. Used by tests
//! and by `soak` to see leaks, and by `soak` to find the server it checks.

use crate::sock_diag;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::time::Duration;

/// How many file descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> io::Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// How many of process `pid`'s open fds are sockets.
pub fn open_sockets(pid: u32) -> io::Result<usize> {
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
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS line in /proc/PID/status"))
}

/// Whether process `pid` ignores `signal` (the `SigIgn` mask of
/// `/proc/PID/status`, one bit per signal, bit 0 for signal 1).
pub fn ignores_signal(pid: u32, signal: libc::c_int) -> io::Result<bool> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| io::Error::other("no SigIgn line in /proc/PID/status"))?;
    let bit = u32::try_from(signal - 1).map_err(|_| io::Error::other("no such signal"))?;
    Ok(mask.checked_shr(bit).is_some_and(|rest| rest & 1 == 1))
}

/// Whether process `pid` is asleep in `epoll_wait()`: the kernel function
/// it waits in (`/proc/PID/wchan`) is epoll's (`do_epoll_wait`, or
/// `ep_poll` on some kernels). For a single-threaded server, so that a
/// test can signal it in the middle of a wait.
pub fn asleep_in_epoll_wait(pid: u32) -> io::Result<bool> {
    let wchan = fs::read_to_string(format!("/proc/{pid}/wchan"))?;
    Ok(wchan.contains("epoll_wait") || wchan.contains("ep_poll"))
}

/// The CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis are plain numbers. utime and stime are fields 14
    // and 15, so the 12th and 13th after the parenthesis.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return Err(io::Error::other("unexpected /proc/PID/stat format"));
    };
    // SAFETY: sysconf() takes no pointers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second).unwrap_or(100).max(1);
    Ok(Duration::from_secs_f64((utime + stime) as f64 / per_second as f64))
}

/// The process that listens on TCP port `port` (IPv4 or IPv6), found from
/// the port itself: safer than `pgrep NAME`, which picks the wrong server
/// when two run. `None` if nothing listens there, or if the socket belongs
/// to a process whose fds we may not read (another user's, unless we are
/// root). If several processes share the socket (a child that inherited
/// it), the lowest pid, usually the parent that opened it.
pub fn pid_listening_on(port: u16) -> io::Result<Option<u32>> {
    let inodes: BTreeSet<u64> = listening_sockets()?
        .into_iter()
        .filter_map(|(listening_port, inode)| (listening_port == port).then_some(inode))
        .collect();
    if inodes.is_empty() {
        return Ok(None);
    }
    let mut pids: Vec<u32> = fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    // A process may exit, or hide its fds from us, while we look: skip it.
    Ok(pids
        .into_iter()
        .find(|&pid| socket_inodes(pid).is_ok_and(|theirs| !theirs.is_disjoint(&inodes))))
}

/// The TCP ports process `pid` listens on (IPv4 or IPv6), in ascending
/// order, each once.
pub fn listening_ports(pid: u32) -> io::Result<Vec<u16>> {
    let ours = socket_inodes(pid)?;
    let ports: BTreeSet<u16> = listening_sockets()?
        .into_iter()
        .filter_map(|(port, inode)| ours.contains(&inode).then_some(port))
        .collect();
    Ok(ports.into_iter().collect())
}

/// The inodes of process `pid`'s sockets: its fds link to "socket:[INODE]".
fn socket_inodes(pid: u32) -> io::Result<BTreeSet<u64>> {
    let mut inodes = BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        // An fd closed since read_dir() listed it has no link: skip it.
        let Ok(target) = fs::read_link(entry?.path()) else { continue };
        let inode: Option<u64> = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok());
        inodes.extend(inode);
    }
    Ok(inodes)
}

/// Every listening TCP socket of this network namespace, IPv4 and IPv6:
/// its local port and its inode. Asked over netlink (see [`sock_diag`]:
/// `/proc/net/tcp` lists TIME_WAIT sockets too, tens of thousands after a
/// flood); `/proc/net/tcp` only where netlink is refused.
fn listening_sockets() -> io::Result<Vec<(u16, u64)>> {
    sock_diag::listening_sockets().or_else(|_| listening_sockets_from_proc())
}

/// [`listening_sockets`], read from `/proc/net/tcp` and `tcp6`.
fn listening_sockets_from_proc() -> io::Result<Vec<(u16, u64)>> {
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match fs::read_to_string(table) {
            Ok(text) => text,
            // No tcp6 table when the kernel has IPv6 turned off.
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        sockets.extend(text.lines().skip(1).filter_map(parse_listening));
    }
    Ok(sockets)
}

/// One line of `/proc/net/tcp` or `tcp6`, if its socket listens: its local
/// port and its inode. A line reads
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...`,
/// where `local_address` is `ADDRESS:PORT` in hex and `st` 0A is LISTEN.
fn parse_listening(line: &str) -> Option<(u16, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let (_, port) = fields.get(1)?.rsplit_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((port, inode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(open_fds(pid).unwrap() >= 3);
        assert!(rss_bytes(pid).unwrap() > 100 * 1024);
        cpu_time(pid).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(open_sockets(pid).unwrap() >= 1);
        drop(listener);
    }

    #[test]
    fn tells_an_ignored_signal_from_a_default_one() {
        // The Rust runtime ignores SIGPIPE before main(); SIGTERM keeps its
        // default.
        let pid = std::process::id();
        assert!(ignores_signal(pid, libc::SIGPIPE).unwrap());
        assert!(!ignores_signal(pid, libc::SIGTERM).unwrap());
        // A C program (sleep) leaves SIGPIPE at its default.
        let mut sleep = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let ignored = ignores_signal(sleep.id(), libc::SIGPIPE);
        let _ = sleep.kill();
        let _ = sleep.wait();
        assert!(!ignored.unwrap());
    }

    #[test]
    fn netlink_and_proc_agree_on_a_listener() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let ours = |sockets: Vec<(u16, u64)>| -> Vec<(u16, u64)> {
            sockets.into_iter().filter(|&(p, _)| p == port).collect()
        };
        let from_netlink = ours(sock_diag::listening_sockets().unwrap());
        assert_eq!(from_netlink.len(), 1);
        assert_eq!(from_netlink, ours(listening_sockets_from_proc().unwrap()));
    }

    #[test]
    fn finds_the_process_listening_on_a_port() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(port).unwrap(), Some(std::process::id()));
        // A connected socket is not a listening one: the client's port is
        // not found.
        let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        assert_eq!(pid_listening_on(client_port).unwrap(), None);
        drop(listener);
        // A process spawned by another test may hold a copy of the fd for
        // a moment (between its fork and its exec).
        let gone = crate::wait::wait_until(Duration::from_secs(2), || {
            pid_listening_on(port).unwrap().is_none()
        });
        assert!(gone, "port {port} still has a listener after it was closed");
    }

    #[test]
    fn lists_the_ports_a_process_listens_on_in_order() {
        let mut listeners = vec![
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap(),
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap(),
        ];
        // IPv6 too, where the machine has it.
        listeners.extend(TcpListener::bind((Ipv6Addr::LOCALHOST, 0)));
        let client = TcpStream::connect(listeners[0].local_addr().unwrap()).unwrap();
        let ports = listening_ports(std::process::id()).unwrap();
        for listener in &listeners {
            let port = listener.local_addr().unwrap().port();
            assert!(ports.contains(&port), "{port} missing from {ports:?}");
        }
        assert!(!ports.contains(&client.local_addr().unwrap().port()), "{ports:?}");
        // Other tests of this process may listen too: check only the order.
        assert!(ports.windows(2).all(|pair| pair[0] < pair[1]), "{ports:?}");
    }

    #[test]
    fn reads_a_listening_line_of_proc_net_tcp() {
        let listening = "   0: 0100007F:1F41 00000000:0000 0A 00000000:00000000 00:00000000 \
                         00000000     0        0 1065 1 00000000ffafb755 100 0 0 10 0";
        assert_eq!(parse_listening(listening), Some((8001, 1065)));
        let established = "   1: 0100007F:1F41 0100007F:DFF2 01 00000000:00000000 \
                           00:00000000 00000000     0        0 2077 1 0000000030c25c9a";
        assert_eq!(parse_listening(established), None);
        let v6 = "   0: 00000000000000000000000001000000:1F42 \
                  00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 \
                  00000000     0        0 3001 1 0000000000000000 100 0 0 10 0";
        assert_eq!(parse_listening(v6), Some((8002, 3001)));
    }
}
