//! What a program prints, read by a thread as it comes and kept byte for
//! byte ([`Captured`]), so that a chatty program never blocks on a full
//! pipe and a test can wait, with a deadline, until the text says what it
//! waits for.
//!
//! A server's log is read this way ([`crate::server`]); how a stream is
//! read can differ ([`Drain`]).

use crate::wait::{POLL_INTERVAL, wait_until};
use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// How [`Captured::drain`] reads its stream.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    /// Keep what arrives as soon as it arrives, a line not finished yet
    /// included: a terminal's prompt waits on its line. Otherwise the
    /// stream is read line by line, so a reader never sees half a line (a
    /// port number cut in two, a count that a line's end would change).
    pub partial_lines: bool,
    /// When read line by line, leave out the lines that start with one of
    /// these: a test that streams gigabytes through a server must not keep
    /// the line it prints for each message.
    pub skip_lines: &'static [&'static [u8]],
    /// While this is set, read nothing, as a terminal paused with Ctrl+S
    /// does: once the pipe is full, the program's next write blocks.
    pub paused: Option<Arc<AtomicBool>>,
}

/// What a stream has printed so far, filled by a reader thread. Clones
/// share it. The default one has no stream: it stays empty.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Set once the stream has ended (the program closed it or exited):
    /// nothing more will come.
    ended: Arc<AtomicBool>,
    /// The reader thread, until [`Captured::join`] waits for it.
    reader: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Captured {
    /// Starts a thread that keeps everything `stream` prints, as `how`
    /// says, until the stream ends.
    pub fn drain(stream: impl Read + Send + 'static, how: Drain) -> Captured {
        let captured = Captured::default();
        let sink = captured.clone();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut line = Vec::new();
            loop {
                while how.paused.as_ref().is_some_and(|paused| paused.load(Ordering::Relaxed)) {
                    std::thread::sleep(POLL_INTERVAL);
                }
                let more = if how.partial_lines {
                    sink.append_available(&mut reader)
                } else {
                    let more = matches!(reader.read_until(b'\n', &mut line), Ok(1..));
                    let skipped = how.skip_lines.iter().any(|skip| line.starts_with(skip));
                    if more && !skipped {
                        sink.lock().extend_from_slice(&line);
                    }
                    line.clear();
                    more
                };
                if !more {
                    break;
                }
            }
            sink.ended.store(true, Ordering::Relaxed);
        });
        *captured.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reader);
        captured
    }

    /// Waits until the reader has kept every byte: call it once the
    /// program has exited (its end of the pipe is closed, so the reader
    /// ends at once), before reading what it printed for good.
    pub fn join(&self) {
        let reader = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(reader) = reader {
            let _ = reader.join();
        }
    }

    /// Appends what `reader` has now, waiting for it if there is nothing
    /// yet. False once the stream has ended (or failed: a terminal whose
    /// program has exited reads as EIO).
    fn append_available(&self, reader: &mut impl BufRead) -> bool {
        let n = match reader.fill_buf() {
            Ok(available) if !available.is_empty() => {
                self.lock().extend_from_slice(available);
                available.len()
            }
            _ => return false,
        };
        reader.consume(n);
        true
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Calls `f` with the text so far. Bytes that are not UTF-8 read as
    /// U+FFFD; valid text is not copied (the polling loops call this often).
    pub fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        f(&String::from_utf8_lossy(&self.lock()))
    }

    /// The text so far (bytes that are not UTF-8 as U+FFFD).
    pub fn text(&self) -> String {
        self.with_text(str::to_string)
    }

    /// The bytes so far, exactly as printed: a check may need to see an
    /// ESC or a lone 0x9b byte that the text would hide.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().clone()
    }

    /// True once the stream has ended: nothing more will come.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    /// Waits until the text so far satisfies `done`, the stream ends, or
    /// `timeout` passes. The text as `done` last saw it: `Ok` if it was
    /// satisfied, else `Err`. A caller that records what it waited for
    /// keeps exactly that text, not what came a moment later.
    pub fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        // What `done` last saw is a prefix of what is kept (bytes are only
        // ever appended): its length is enough to give that text back.
        let (mut found, mut seen) = (false, 0);
        wait_until(timeout, || {
            // `ended` first: if it is set, the text read after it is all
            // there will ever be.
            let ended = self.has_ended();
            let bytes = self.lock();
            found = done(&String::from_utf8_lossy(&bytes));
            seen = bytes.len();
            found || ended
        });
        let text = String::from_utf8_lossy(&self.lock()[..seen]).into_owned();
        if found { Ok(text) } else { Err(text) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_whole_and_skipped_lines_left_out() {
        let how = Drain { skip_lines: &[b"client: "], ..Drain::default() };
        let captured = Captured::drain(&b"one\nclient: x\ntwo"[..], how);
        captured.join();
        assert_eq!(captured.text(), "one\ntwo");
        assert!(captured.has_ended());
    }

    #[test]
    fn waiting_says_whether_the_text_came_and_stops_when_the_stream_ends() {
        let captured = Captured::drain(&b"ready\n"[..], Drain::default());
        let long = Duration::from_secs(5);
        assert_eq!(captured.wait_for(long, |text| text.contains("ready")), Ok("ready\n".into()));
        // The stream has ended: no need to wait the whole timeout.
        let started = std::time::Instant::now();
        assert_eq!(captured.wait_for(long, |text| text.contains("never")), Err("ready\n".into()));
        assert!(started.elapsed() < long);
    }

    #[test]
    fn a_partial_line_is_seen_at_once_when_asked_for() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let how = Drain { partial_lines: true, ..Drain::default() };
        let captured = Captured::drain(reader, how);
        std::io::Write::write_all(&mut writer, b"Enter message: ").unwrap();
        let prompt = captured.wait_for(Duration::from_secs(5), |text| text.ends_with(": "));
        assert_eq!(prompt, Ok("Enter message: ".into()));
    }
}
