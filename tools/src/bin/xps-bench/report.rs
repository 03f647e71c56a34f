//! What a run counted, and how it is printed: the summary lines and the
//! last `result:` line of `key=value` pairs.

use crate::Options;
use crate::histogram::Histogram;
use std::time::Duration;

/// What the run counted.
pub(crate) struct Report {
    /// Correct replies during the measured window.
    pub(crate) msgs: u64,
    /// How long the measured window lasted.
    pub(crate) window: Duration,
    /// Latency of each reply in the window.
    pub(crate) latency: Histogram,
    /// Correct replies and messages sent over the whole run, warm-up included.
    pub(crate) replies_total: u64,
    pub(crate) sent_total: u64,
    pub(crate) wrong: u64,
    pub(crate) resets: u64,
    pub(crate) timeouts: u64,
    pub(crate) connect_failed: u64,
    /// Idle connections established.
    pub(crate) idle_open: usize,
    /// How long opening the idle connections took.
    pub(crate) idle_time: Duration,
    /// CPU time the generator used during the window, over the window.
    pub(crate) cpu_share: f64,
    /// The first error, described.
    pub(crate) first_error: Option<String>,
}

impl Report {
    pub(crate) fn errors(&self) -> u64 {
        self.wrong + self.resets + self.timeouts + self.connect_failed
    }

    pub(crate) fn print(&self, options: &Options) {
        let secs = self.window.as_secs_f64();
        let rate = if secs > 0.0 { self.msgs as f64 / secs } else { 0.0 };
        let us = |nanos: u64| nanos as f64 / 1000.0;
        let (p50, p99, max) =
            (us(self.latency.quantile(0.5)), us(self.latency.quantile(0.99)), us(self.latency.max));
        println!(
            "xps-bench: {}:{}, stage {} ({}), {} active + {} idle connections, {}-byte messages",
            options.host,
            options.port,
            options.stage.number,
            options.stage.protocol.name(),
            options.conns,
            options.idle,
            options.msg_size
        );
        if options.idle > 0 {
            println!(
                "idle:      {} of {} connected in {:.2} s (handshakes done; the server's fd count shows how many it accepted)",
                self.idle_open,
                options.idle,
                self.idle_time.as_secs_f64()
            );
        }
        println!("messages:  {} in {secs:.2} s: {rate:.0} msgs/s", self.msgs);
        println!("latency:   p50 {p50:.0} us, p99 {p99:.0} us, max {max:.0} us");
        println!(
            "errors:    {} (wrong replies {}, resets {}, timeouts {}, connect failures {})",
            self.errors(),
            self.wrong,
            self.resets,
            self.timeouts,
            self.connect_failed
        );
        if let Some(first) = &self.first_error {
            println!("first error: {first}");
        }
        // CPU time is counted in clock ticks: over a very short run the
        // share is noise.
        if self.window >= Duration::from_millis(500) {
            println!("cpu:       xps-bench used {:.0}% of one core", self.cpu_share * 100.0);
        } else {
            println!("cpu:       not measured (the run lasted under 0.5 s)");
        }
        println!(
            "result: msgs_per_s={rate:.1} msgs={} seconds={secs:.3} p50_us={p50:.1} \
             p99_us={p99:.1} max_us={max:.1} errors={} wrong={} resets={} timeouts={} \
             connect_failed={} conns={} idle={} idle_open={} msg_size={} replies_total={} \
             sent_total={} cpu_pct={:.1}",
            self.msgs,
            self.errors(),
            self.wrong,
            self.resets,
            self.timeouts,
            self.connect_failed,
            options.conns,
            options.idle,
            self.idle_open,
            options.msg_size,
            self.replies_total,
            self.sent_total,
            self.cpu_share * 100.0
        );
    }
}
