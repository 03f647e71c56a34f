//! The loop: one thread, one epoll set, every connection non-blocking. It
//! opens the connections at a pace, runs the ping-pong traffic, checks the
//! deadlines, and counts what it sees into a `Report`.

use crate::conn::{Conn, Failure, Role, State, start_connect};
use crate::histogram::Histogram;
use crate::report::Report;
use crate::{Options, cpu_time};
use shared::checks::show;
use shared::oracle::Rng;
use shared::progress::{OffTerminal, ProgressLine, Rate};
use shared::stages::Protocol;
use std::io::{self, IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

/// How many connections may be in the middle of their handshake at once.
const CONNECT_WINDOW: usize = 64;

/// New connections per second: where the pace starts, its floor and its
/// ceiling. A server accepts one client at a time, and the kernel queues
/// only `backlog` (64 for the stage servers) finished handshakes for it;
/// beyond that it drops the client's SYN, and the client sends it again
/// only a second later. So connections are opened at a pace, which slows
/// down when handshakes stall and speeds up while they do not.
const CONNECT_RATE: (f64, f64, f64) = (10_000.0, 200.0, 100_000.0);

/// A handshake that takes this long has probably had its SYN dropped.
const HANDSHAKE_STALL: Duration = Duration::from_millis(250);

/// How long one connection may take to be established.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often deadlines are checked and the progress line redrawn.
const TICK: Duration = Duration::from_millis(100);

/// The most events one `epoll_wait()` returns.
const MAX_EVENTS: usize = 1024;

pub(crate) struct Bench {
    epoll: OwnedFd,
    addr: SocketAddr,
    /// What a right server replies.
    protocol: Protocol,
    n_idle: usize,
    n_active: usize,
    msg_size: usize,
    seconds: Duration,
    timeout: Duration,
    conns: Vec<Conn>,
    /// Connections in their handshake.
    in_flight: usize,
    /// The pace of new connections (per second), the connections that may
    /// be opened now, when that was computed, and when the pace last slowed.
    connect_rate: f64,
    tokens: f64,
    last_refill: Instant,
    last_slowdown: Option<Instant>,
    /// Idle connections whose handshake has ended, well or not.
    idle_settled: usize,
    /// Active connections that have had a first reply or are closed.
    settled: usize,
    /// Active connections still open.
    live_active: usize,
    /// No more connections are opened after this.
    connect_deadline: Instant,
    /// Whatever happens, the run ends by then.
    hard_deadline: Instant,
    started: Instant,
    /// When the last idle connection was open.
    idle_done: Option<Instant>,
    /// The measured window: when it starts and ends, and the CPU time used
    /// so far when it started.
    window: Option<(Instant, Instant, Duration)>,
    /// What each `recv()` reads into.
    scratch: Vec<u8>,
    report: Report,
}

impl Bench {
    pub(crate) fn new(options: &Options, addr: SocketAddr) -> io::Result<Bench> {
        // SAFETY: epoll_create1() takes no pointers; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new, valid fd that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let now = Instant::now();
        let total = options.idle + options.conns;
        // Generous, but bounded: a server that drops handshakes cannot make
        // the generator wait for ever.
        let connect_phase = CONNECT_TIMEOUT + Duration::from_millis(total as u64);
        let seconds = options.seconds;
        Ok(Bench {
            epoll,
            addr,
            protocol: options.stage.protocol,
            n_idle: options.idle,
            n_active: options.conns,
            msg_size: options.msg_size,
            seconds,
            timeout: options.timeout,
            conns: Vec::with_capacity(total),
            in_flight: 0,
            connect_rate: CONNECT_RATE.0,
            tokens: 1.0,
            last_refill: now,
            last_slowdown: None,
            idle_settled: 0,
            settled: 0,
            live_active: 0,
            connect_deadline: now + connect_phase,
            hard_deadline: now + connect_phase + 2 * options.timeout + seconds + 10 * TICK,
            started: now,
            idle_done: None,
            window: None,
            scratch: vec![0; options.msg_size + 1],
            report: Report {
                msgs: 0,
                window: Duration::ZERO,
                latency: Histogram::new(),
                replies_total: 0,
                sent_total: 0,
                wrong: 0,
                resets: 0,
                timeouts: 0,
                connect_failed: 0,
                idle_open: 0,
                idle_time: Duration::ZERO,
                cpu_share: 0.0,
                first_error: None,
            },
        })
    }

    fn total(&self) -> usize {
        self.n_idle + self.n_active
    }

    /// Opens the connections, runs the traffic, and stops at the end of the
    /// window, when no active connection is left, or at the hard deadline.
    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let mut progress = ProgressLine::new(io::stderr().is_terminal(), OffTerminal::Quiet);
        let mut rate = Rate::new(Instant::now());
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            self.open_more(now);
            let all_open = self.conns.len() == self.total();
            if self.window.is_none() && all_open && self.settled == self.n_active {
                self.window = Some((now, now + self.seconds, cpu_time()));
            }
            let window_over = self.window.is_some_and(|(_, end, _)| now >= end);
            let all_gone = all_open && self.live_active == 0 && self.in_flight == 0;
            if window_over || all_gone || now >= self.hard_deadline {
                break;
            }
            if now >= next_tick {
                self.check_deadlines(now);
                let rate = rate.update(self.report.replies_total, now);
                progress.show(&self.status(now, rate));
                next_tick = now + TICK;
            }
            let mut wait = next_tick.saturating_duration_since(now);
            if self.conns.len() < self.total() {
                // Come back soon to open the next ones at the pace.
                wait = wait.min(Duration::from_millis(1));
            }
            if let Some((_, end, _)) = self.window {
                wait = wait.min(end.saturating_duration_since(now));
            }
            let n = self.wait(&mut events, wait)?;
            for event in &events[..n] {
                self.handle(event.u64 as usize, event.events);
            }
        }
        progress.clear();
        if let Some((start, _, cpu_at_start)) = self.window {
            let window = start.elapsed();
            self.report.window = window;
            let cpu = cpu_time().saturating_sub(cpu_at_start);
            self.report.cpu_share = cpu.as_secs_f64() / window.as_secs_f64().max(1e-9);
        }
        Ok(())
    }

    /// One `epoll_wait()` of at most `wait` (rounded up to a millisecond).
    fn wait(&self, events: &mut [libc::epoll_event], wait: Duration) -> io::Result<usize> {
        let timeout_ms = wait.as_micros().div_ceil(1000).min(1000) as i32;
        let (epoll, buffer, len) = (self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len());
        // SAFETY: `buffer` points to `len` epoll_events that outlive the call.
        let n = unsafe { libc::epoll_wait(epoll, buffer, len as i32, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(err) }
    }

    /// Starts more handshakes: the idle connections first, and the active
    /// ones only once every idle one is open (or has failed), so that the
    /// server has accepted them before the measured traffic begins.
    fn open_more(&mut self, now: Instant) {
        if now >= self.connect_deadline && self.conns.len() < self.total() {
            self.give_up_opening();
        }
        if self.idle_done.is_none() && self.idle_settled >= self.n_idle {
            self.idle_done = Some(now);
            self.report.idle_time = now.duration_since(self.started);
        }
        let elapsed = now.duration_since(self.last_refill).as_secs_f64();
        self.last_refill = now;
        let burst = CONNECT_WINDOW as f64 / 2.0;
        self.tokens = (self.tokens + self.connect_rate * elapsed).min(burst);
        while self.in_flight < CONNECT_WINDOW
            && self.conns.len() < self.total()
            && self.tokens >= 1.0
        {
            let role = if self.conns.len() < self.n_idle { Role::Idle } else { Role::Active };
            if role == Role::Active && self.idle_done.is_none() {
                break;
            }
            self.tokens -= 1.0;
            self.open(role, now);
        }
    }

    /// Counts the connections not started yet as failed, because the time
    /// for opening them ran out, and forgets them.
    fn give_up_opening(&mut self) {
        let left = self.total() - self.conns.len();
        // The active connections come last, so they are the first left out.
        let active_left = left.min(self.n_active);
        self.n_active -= active_left;
        self.n_idle -= left - active_left;
        self.report.connect_failed += left as u64;
        self.note_error(format!("{left} connections never started: opening took too long"));
    }

    fn open(&mut self, role: Role, now: Instant) {
        let index = self.conns.len();
        let clock = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
        let seed = clock.map_or(1, |d| d.as_nanos() as u64) ^ (index as u64 + 1) << 20;
        self.conns.push(Conn {
            stream: None,
            role,
            state: State::Connecting,
            started: now,
            rng: Rng::new(seed),
            message: Vec::new(),
            sent: 0,
            reply: Vec::new(),
            replies: 0,
        });
        self.in_flight += 1;
        if role == Role::Active {
            self.live_active += 1;
        }
        let started = start_connect(&self.addr).and_then(|stream| {
            self.watch(&stream, index)?;
            Ok(stream)
        });
        match started {
            Ok(stream) => self.conns[index].stream = Some(stream),
            Err(err) => self.close(index, Failure::Connect, &format!("connect(): {err}")),
        }
    }

    /// Adds `stream` to the epoll set, edge-triggered, under `index`.
    fn watch(&self, stream: &TcpStream, index: usize) -> io::Result<()> {
        let flags = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        let mut event = libc::epoll_event { events: flags as u32, u64: index as u64 };
        let (epoll, fd) = (self.epoll.as_raw_fd(), stream.as_raw_fd());
        // SAFETY: `event` is a valid epoll_event that outlives the call.
        let ret = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
        if ret == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Acts on one event of connection `index`.
    fn handle(&mut self, index: usize, flags: u32) {
        let Some(conn) = self.conns.get(index) else { return };
        let closing = (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;
        match conn.state {
            State::Closed => {}
            State::Connecting => self.connected(index),
            // An idle connection never gets a reply: anything is a close.
            State::Idle if flags & closing != 0 => {
                self.close(index, Failure::Reset, "the server closed an idle connection");
            }
            State::Idle => {}
            State::Sending => self.send(index),
            State::Receiving => self.receive(index),
        }
    }

    /// The handshake of connection `index` has ended, one way or another.
    fn connected(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        let Some(stream) = &conn.stream else { return };
        let error = match stream.take_error() {
            Ok(None) => None,
            Ok(Some(err)) | Err(err) => Some(err),
        };
        if let Some(err) = error {
            self.close(index, Failure::Connect, &format!("connect(): {err}"));
            return;
        }
        self.in_flight -= 1;
        match conn.role {
            Role::Idle => {
                conn.state = State::Idle;
                self.idle_settled += 1;
                self.report.idle_open += 1;
            }
            Role::Active => {
                // Small messages go out at once rather than wait for an ACK.
                let _ = stream.set_nodelay(true);
                self.next_message(index);
            }
        }
    }

    /// Makes a new random line and starts sending it.
    fn next_message(&mut self, index: usize) {
        let size = self.msg_size;
        let conn = &mut self.conns[index];
        conn.rng.line_into(&mut conn.message, size);
        conn.sent = 0;
        conn.reply.clear();
        conn.started = Instant::now();
        conn.state = State::Sending;
        self.report.sent_total += 1;
        self.send(index);
    }

    /// Sends what is left of the message, until done or the socket is full.
    fn send(&mut self, index: usize) {
        let conn = &mut self.conns[index];
        let Some(stream) = conn.stream.as_mut() else { return };
        while conn.sent < conn.message.len() {
            match stream.write(&conn.message[conn.sent..]) {
                Ok(n) => conn.sent += n,
                // Edge-triggered: EPOLLOUT will say when there is room.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.close(index, Failure::Reset, &format!("send(): {err}"));
                    return;
                }
            }
        }
        conn.state = State::Receiving;
    }

    /// Reads what has come of the reply; checks it once it is complete.
    fn receive(&mut self, index: usize) {
        let size = self.msg_size;
        let conn = &mut self.conns[index];
        let Some(stream) = conn.stream.as_mut() else { return };
        while conn.reply.len() < size {
            // One byte more than is missing, to notice a reply that is too long.
            let room = size + 1 - conn.reply.len();
            match stream.read(&mut self.scratch[..room]) {
                Ok(0) => {
                    let got = conn.reply.len();
                    let why = format!("closed by the server ({got} of {size} reply bytes came)");
                    self.close(index, Failure::Reset, &why);
                    return;
                }
                Ok(n) => conn.reply.extend_from_slice(&self.scratch[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.close(index, Failure::Reset, &format!("recv(): {err}"));
                    return;
                }
            }
        }
        let now = Instant::now();
        let latency = now.duration_since(conn.started);
        if latency > self.timeout {
            // Late, even if complete: the deadline check runs only once a
            // tick, so a short --timeout is enforced here too.
            let why = format!(
                "the reply took {:.3} s, more than --timeout {:.3} s",
                latency.as_secs_f64(),
                self.timeout.as_secs_f64()
            );
            self.close(index, Failure::Timeout, &why);
            return;
        }
        conn.replies += 1;
        if conn.replies == 1 {
            self.settled += 1;
        }
        let expected = self.protocol.reply(&conn.message);
        if conn.reply != expected {
            let why = format!(
                "wrong reply: sent {}, expected {}, got {}",
                show(&conn.message),
                show(&expected),
                show(&conn.reply)
            );
            if conn.reply.len() == expected.len() {
                // Still in step with the server: count it and go on.
                self.report.wrong += 1;
                self.note_error(format!("active connection {index}: {why}"));
                self.next_message(index);
            } else {
                self.close(index, Failure::Wrong, &why);
            }
            return;
        }
        self.report.replies_total += 1;
        if let Some((start, end, _)) = self.window
            && conn.started >= start
            && now <= end
        {
            self.report.msgs += 1;
            self.report.latency.record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        }
        self.next_message(index);
    }

    /// Closes every connection whose handshake or reply is late.
    fn check_deadlines(&mut self, now: Instant) {
        self.adjust_connect_rate(now);
        for index in 0..self.conns.len() {
            let conn = &self.conns[index];
            let waited = now.duration_since(conn.started);
            match conn.state {
                State::Connecting if waited > CONNECT_TIMEOUT => {
                    let why = format!("no handshake within {} s", CONNECT_TIMEOUT.as_secs());
                    self.close(index, Failure::Timeout, &why);
                }
                State::Sending | State::Receiving if waited > self.timeout => {
                    let why = format!(
                        "no complete reply within {:.1} s ({} of {} bytes came)",
                        self.timeout.as_secs_f64(),
                        conn.reply.len(),
                        self.msg_size
                    );
                    self.close(index, Failure::Timeout, &why);
                }
                _ => {}
            }
        }
    }

    /// Halves the pace of new connections when a handshake stalls (at most
    /// once a second: a dropped SYN takes a second to be sent again), and
    /// raises it a little on every tick without one.
    fn adjust_connect_rate(&mut self, now: Instant) {
        if self.conns.len() == self.total() && self.in_flight == 0 {
            return;
        }
        let (_, floor, ceiling) = CONNECT_RATE;
        let stalled = self.conns.iter().rev().take(CONNECT_WINDOW * 4).any(|conn| {
            conn.state == State::Connecting && now.duration_since(conn.started) > HANDSHAKE_STALL
        });
        let recently = self.last_slowdown.is_some_and(|t| now.duration_since(t) < 10 * TICK);
        if stalled && !recently {
            self.connect_rate = (self.connect_rate / 2.0).max(floor);
            self.last_slowdown = Some(now);
        } else if !stalled {
            self.connect_rate = (self.connect_rate + 1000.0).min(ceiling);
        }
    }

    /// Closes connection `index` and counts `failure`.
    fn close(&mut self, index: usize, failure: Failure, why: &str) {
        let conn = &mut self.conns[index];
        if conn.state == State::Closed {
            return;
        }
        let was_connecting = conn.state == State::Connecting;
        // Closing the socket also takes it out of the epoll set.
        conn.stream = None;
        conn.state = State::Closed;
        let (role, replies) = (conn.role, conn.replies);
        if was_connecting {
            self.in_flight -= 1;
            if role == Role::Idle {
                self.idle_settled += 1;
            }
        }
        if role == Role::Active {
            self.live_active -= 1;
            if replies == 0 {
                self.settled += 1;
            }
        }
        match failure {
            Failure::Wrong => self.report.wrong += 1,
            Failure::Reset => self.report.resets += 1,
            Failure::Timeout => self.report.timeouts += 1,
            Failure::Connect => self.report.connect_failed += 1,
        }
        let kind = if role == Role::Idle { "idle" } else { "active" };
        self.note_error(format!("{kind} connection {index}: {why}"));
    }

    fn note_error(&mut self, why: String) {
        if self.report.first_error.is_none() {
            self.report.first_error = Some(why);
        }
    }

    pub(crate) fn report(self) -> Report {
        self.report
    }

    /// One line saying where the run is, for the progress display.
    fn status(&self, now: Instant, rate: f64) -> String {
        let report = &self.report;
        match self.window {
            None if self.idle_done.is_none() => {
                format!("opening idle connections: {} of {} open", report.idle_open, self.n_idle)
            }
            None => format!(
                "warming up: {} of {} active connections have a reply",
                self.settled, self.n_active
            ),
            Some((start, _, _)) => format!(
                "{:.1} s: {} msgs, {rate:.0} msgs/s, {} errors",
                now.duration_since(start).as_secs_f64(),
                report.msgs,
                report.errors()
            ),
        }
    }
}
