//! Buffers: `xps_buffer.c`, new in stage 8.
//!
//! A non-blocking `send()` may take all of a reply, part of it, or nothing.
//! Whatever it does not take has to wait somewhere until the socket is
//! writable again: in the connection's [`XpsBufferList`], a queue of
//! [`XpsBuffer`]s that the read handler appends to and the write handler
//! empties from the front.

use crate::logger;
use crate::utils::xps_logger::LogLevel;
use crate::xps::MALLOC_TRIM_THRESH;
use std::collections::VecDeque;
use std::io::{self, IoSlice};

// ANCHOR: xps_buffer
/// A run of bytes waiting to be sent: `xps_buffer_t` in C.
///
/// The C struct keeps `size` (room allocated), `len` (bytes still to use),
/// `data` (the allocation) and `pos` (where those bytes start). Here the
/// `Vec` knows its own allocation and length, so only `pos` is kept:
/// `data[pos..]` are the bytes still to use.
#[derive(Debug)]
pub struct XpsBuffer {
    /// Every byte the buffer was filled with, the used ones included.
    data: Vec<u8>,
    /// How many bytes from the front have been used (sent) already.
    pos: usize,
}
// ANCHOR_END: xps_buffer

impl XpsBuffer {
    // ANCHOR: buffer_create
    /// `xps_buffer_create(size, len, data)`: a buffer with room for `size`
    /// bytes holding a copy of `data` (the course's `len` is `data.len()`).
    /// It cannot fail: Rust aborts the process when memory runs out, where
    /// the C version would return NULL.
    pub fn create(size: usize, data: &[u8]) -> XpsBuffer {
        let mut bytes = Vec::with_capacity(size.max(data.len()));
        bytes.extend_from_slice(data);
        XpsBuffer { data: bytes, pos: 0 }
    }

    /// `xps_buffer_destroy()`: it consumes the buffer, whose memory is freed
    /// on the way out; nothing can use it afterwards.
    pub fn destroy(self) {}

    /// `xps_buffer_duplicate()`: a new buffer with a copy of the bytes
    /// still to use.
    #[allow(dead_code, reason = "the course's API; kept for the book and the tests")]
    pub fn duplicate(&self) -> XpsBuffer {
        XpsBuffer::create(self.len(), self.data())
    }
    // ANCHOR_END: buffer_create

    /// The bytes still to use (the course's `pos` to `pos + len`).
    pub fn data(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// How many bytes are still to use (the course's `len`).
    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    /// True when every byte has been used.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bytes the buffer has room for (the course's `size`).
    #[allow(dead_code, reason = "the course's API; kept for the book and the tests")]
    pub fn size(&self) -> usize {
        self.data.capacity()
    }

    // ANCHOR: buffer_held
    /// Beyond the course: the memory this buffer holds: its allocation,
    /// used bytes included (they are freed only with the whole buffer),
    /// and the buffer's own fields. Only the allocator's few bytes of
    /// bookkeeping per allocation are left out.
    pub fn held(&self) -> usize {
        self.data.capacity() + size_of::<XpsBuffer>()
    }
    // ANCHOR_END: buffer_held

    /// Marks the first `n` bytes still to use as used (`pos += n` in C).
    fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len(), "advance past the end of a buffer");
        self.pos = (self.pos + n).min(self.data.len());
    }
}

// ANCHOR: xps_buffer_list
/// A queue of buffers and the number of bytes they hold in all:
/// `xps_buffer_list_t` in C, whose `vec_void_t list` becomes a `VecDeque`
/// (taking a buffer off the front is O(1) instead of shifting the rest).
#[derive(Debug, Default)]
pub struct XpsBufferList {
    /// The buffers, oldest first.
    list: VecDeque<XpsBuffer>,
    /// The bytes still to use in all of them together.
    len: usize,
    /// The memory the buffers hold (see [`XpsBuffer::held`]; not in the
    /// course).
    held: usize,
}
// ANCHOR_END: xps_buffer_list

impl XpsBufferList {
    // ANCHOR: buffer_list_create
    /// `xps_buffer_list_create()`: an empty list.
    pub fn create() -> XpsBufferList {
        XpsBufferList::default()
    }

    /// `xps_buffer_list_destroy()`: frees every buffer in the list.
    ///
    /// Beyond the course: giving a big backlog's memory back to the system.
    /// Replies are at most `DEFAULT_BUFFER_SIZE` (100 KB) each, which glibc
    /// serves from its heap rather than with `mmap()`. When they are freed,
    /// glibc returns only the free memory at the very top of its heap; any
    /// allocation made during the flood (a client that connected meanwhile)
    /// pins everything below it, which stays with the process for good
    /// (after a 200 MiB flood: 8.6 MiB resident without the trim, 2.3 MiB
    /// with it). So once a list that held more than `MALLOC_TRIM_THRESH`
    /// bytes is gone, `malloc_trim()` hands back every free page, wherever
    /// it is. Small lists skip it: their memory is soon reused, and
    /// trimming walks the whole heap. From stage 10 a pipe's list never
    /// holds more than about 1 MB, under the threshold, so this no longer
    /// happens: the pipes keep the memory from growing in the first place.
    pub fn destroy(self) {
        let was_big = self.len > MALLOC_TRIM_THRESH;
        drop(self);
        if was_big {
            give_free_memory_back();
        }
    }
    // ANCHOR_END: buffer_list_create

    // ANCHOR: buffer_list_append
    /// `xps_buffer_list_append()`: adds `buffer` at the end of the list.
    /// The list takes it over (in C it stores the pointer and later frees
    /// it); an empty buffer is simply dropped.
    pub fn append(&mut self, buffer: XpsBuffer) {
        if buffer.is_empty() {
            return;
        }
        self.len += buffer.len();
        self.held += buffer.held();
        self.list.push_back(buffer);
    }
    // ANCHOR_END: buffer_list_append

    /// How many bytes the list holds in all (the course's `len`).
    #[allow(dead_code, reason = "the course's API; kept for the book and the tests")]
    pub fn len(&self) -> usize {
        self.len
    }

    // ANCHOR: buffer_list_held
    /// Beyond the course: the memory the list's buffers hold, used bytes
    /// and bookkeeping included (see [`XpsBuffer::held`]). A pipe compares
    /// this, not [`XpsBufferList::len`], with its threshold: 1 MB of 64-byte
    /// chunks costs more than 1 MB.
    pub fn held(&self) -> usize {
        self.held
    }
    // ANCHOR_END: buffer_list_held

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    // ANCHOR: buffer_list_read
    /// `xps_buffer_list_read(list, len)`: a new buffer with a copy of the
    /// first `len` bytes of the list, which stay in the list. Fails (the C
    /// version returns NULL) if the list holds fewer than `len` bytes.
    ///
    /// The write handler of this stage does not call it: see
    /// [`XpsBufferList::front_slices`] for why.
    #[allow(dead_code, reason = "the course's API; kept for the book and the tests")]
    pub fn read(&self, len: usize) -> io::Result<XpsBuffer> {
        if len > self.len {
            return Err(too_short(len, self.len));
        }
        let mut copy = Vec::with_capacity(len);
        for buffer in &self.list {
            let wanted = len - copy.len();
            if wanted == 0 {
                break;
            }
            let data = buffer.data();
            copy.extend_from_slice(&data[..wanted.min(data.len())]);
        }
        Ok(XpsBuffer { data: copy, pos: 0 })
    }
    // ANCHOR_END: buffer_list_read

    // ANCHOR: buffer_list_clear
    /// `xps_buffer_list_clear(list, len)`: drops the first `len` bytes of the
    /// list. The buffers they fill entirely are freed; the next one, if
    /// `len` ends inside it, is advanced past what was dropped. Fails, and
    /// drops nothing, if the list holds fewer than `len` bytes.
    pub fn clear(&mut self, len: usize) -> io::Result<()> {
        if len > self.len {
            return Err(too_short(len, self.len));
        }
        let mut left = len;
        while left > 0 {
            let Some(front) = self.list.front_mut() else { break };
            if front.len() <= left {
                left -= front.len();
                if let Some(used) = self.list.pop_front() {
                    self.held -= used.held();
                    used.destroy();
                }
            } else {
                front.advance(left);
                left = 0;
            }
        }
        self.len -= len;
        Ok(())
    }
    // ANCHOR_END: buffer_list_clear

    // ANCHOR: front_slices
    /// Beyond the course: the bytes at the front of the list, without
    /// copying them, for one `sendmsg()`. Fills `slices` with the unsent
    /// bytes of the first buffers, at most one buffer per slice, and returns
    /// how many it filled.
    ///
    /// The course's write handler calls `xps_buffer_list_read()` for the
    /// whole list and sends that copy. With a backlog of N bytes, every
    /// writable event then copies N bytes, of which the kernel takes a few
    /// hundred KB at most: a flood of N bytes costs O(N²) copying to drain.
    /// Handing the kernel the first few buffers as they are costs the same
    /// on every event, however long the queue behind them.
    pub fn front_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        for (slice, buffer) in slices.iter_mut().zip(&self.list) {
            *slice = IoSlice::new(buffer.data());
            filled += 1;
        }
        filled
    }
    // ANCHOR_END: front_slices
}

/// The error of `read` and `clear` when asked for more than the list holds.
fn too_short(asked: usize, held: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("asked for {asked} bytes of a buffer list holding {held}"),
    )
}

// ANCHOR: give_free_memory_back
/// Returns the allocator's free memory to the system (see
/// [`XpsBufferList::destroy`]). `malloc_trim()` is glibc's; with another C
/// library (musl) this does nothing.
fn give_free_memory_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim() takes no pointers; it only releases memory
        // that no allocation is using.
        unsafe { libc::malloc_trim(0) };
        logger!(LogLevel::Debug, "xps_buffer_list_destroy()", "gave free memory back");
    }
}
// ANCHOR_END: give_free_memory_back

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of buffers holding `parts`, in order.
    fn list_of(parts: &[&[u8]]) -> XpsBufferList {
        let mut list = XpsBufferList::create();
        for part in parts {
            list.append(XpsBuffer::create(part.len(), part));
        }
        list
    }

    /// Everything still in the list, in order.
    fn contents(list: &XpsBufferList) -> Vec<u8> {
        list.read(list.len()).unwrap().data().to_vec()
    }

    #[test]
    fn buffer_create_copies_and_keeps_room() {
        let buffer = XpsBuffer::create(100, b"hello");
        assert_eq!(buffer.data(), b"hello");
        assert_eq!(buffer.len(), 5);
        assert!(buffer.size() >= 100);
        // Room for fewer bytes than given is room for all of them.
        assert!(XpsBuffer::create(1, b"hello").size() >= 5);
        assert!(XpsBuffer::create(0, b"").is_empty());
        buffer.destroy();
    }

    #[test]
    fn buffer_duplicate_copies_only_what_is_left() {
        let mut buffer = XpsBuffer::create(5, b"hello");
        buffer.advance(2);
        let copy = buffer.duplicate();
        assert_eq!(copy.data(), b"llo");
        buffer.advance(3);
        assert!(buffer.is_empty());
        assert_eq!(copy.data(), b"llo", "the copy is independent");
    }

    #[test]
    fn list_append_counts_bytes_and_skips_empty_buffers() {
        let mut list = XpsBufferList::create();
        assert!(list.is_empty());
        list.append(XpsBuffer::create(3, b"abc"));
        list.append(XpsBuffer::create(0, b""));
        list.append(XpsBuffer::create(2, b"de"));
        assert_eq!(list.len(), 5);
        assert_eq!(list.list.len(), 2);
        assert_eq!(contents(&list), b"abcde");
        list.destroy();
    }

    #[test]
    fn list_read_copies_without_consuming() {
        let list = list_of(&[b"abc", b"de", b"fgh"]);
        assert_eq!(list.read(0).unwrap().data(), b"");
        assert_eq!(list.read(2).unwrap().data(), b"ab");
        assert_eq!(list.read(3).unwrap().data(), b"abc");
        // Across buffer boundaries, ending inside the third buffer.
        assert_eq!(list.read(6).unwrap().data(), b"abcdef");
        assert_eq!(list.read(8).unwrap().data(), b"abcdefgh");
        assert_eq!(list.len(), 8, "read must not consume");
        assert!(list.read(9).is_err());
    }

    #[test]
    fn list_read_starts_after_what_was_cleared() {
        let mut list = list_of(&[b"abc", b"de"]);
        list.clear(1).unwrap();
        assert_eq!(list.read(3).unwrap().data(), b"bcd");
    }

    #[test]
    fn list_clear_within_the_first_buffer() {
        let mut list = list_of(&[b"abc", b"de"]);
        list.clear(2).unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list.list.len(), 2);
        assert_eq!(contents(&list), b"cde");
        list.clear(0).unwrap();
        assert_eq!(contents(&list), b"cde");
    }

    #[test]
    fn list_clear_frees_whole_buffers_and_advances_the_next() {
        let mut list = list_of(&[b"abc", b"de", b"fgh"]);
        // Exactly the first buffer.
        list.clear(3).unwrap();
        assert_eq!(list.list.len(), 2);
        assert_eq!(contents(&list), b"defgh");
        // Across a boundary: all of "de" and one byte of "fgh".
        list.clear(3).unwrap();
        assert_eq!(list.list.len(), 1);
        assert_eq!(list.len(), 2);
        assert_eq!(contents(&list), b"gh");
        // Everything left.
        list.clear(2).unwrap();
        assert!(list.is_empty());
        assert!(list.list.is_empty());
    }

    #[test]
    fn list_clear_of_too_much_fails_and_keeps_everything() {
        let mut list = list_of(&[b"abc"]);
        assert!(list.clear(4).is_err());
        assert_eq!(contents(&list), b"abc");
    }

    #[test]
    fn front_slices_are_the_first_buffers_uncopied() {
        let mut list = list_of(&[b"abc", b"de", b"fgh"]);
        list.clear(1).unwrap();
        let mut slices = [IoSlice::new(&[]); 2];
        assert_eq!(list.front_slices(&mut slices), 2);
        assert_eq!(&*slices[0], b"bc");
        assert_eq!(&*slices[1], b"de");
        assert_eq!(slices[0].as_ptr(), list.list[0].data().as_ptr(), "copied");

        let mut more = [IoSlice::new(&[]); 8];
        assert_eq!(list.front_slices(&mut more), 3);
        assert_eq!(XpsBufferList::create().front_slices(&mut more), 0);
    }

    #[test]
    fn destroying_a_big_list_is_fine() {
        let mut list = XpsBufferList::create();
        for _ in 0..30 {
            list.append(XpsBuffer::create(100_000, &[7; 100_000]));
        }
        assert!(list.len() > MALLOC_TRIM_THRESH);
        list.destroy();
    }

    #[test]
    fn held_counts_whole_buffers_until_they_are_freed() {
        let mut list = list_of(&[b"hello", b"world"]);
        let each = 5 + size_of::<XpsBuffer>();
        assert_eq!(list.held(), 2 * each);
        // A partly sent buffer is still held whole.
        list.clear(3).unwrap();
        assert_eq!(list.held(), 2 * each);
        list.clear(2).unwrap();
        assert_eq!(list.held(), each);
        list.clear(5).unwrap();
        assert_eq!(list.held(), 0);
    }

    #[test]
    fn small_chunks_hold_more_than_their_bytes() {
        let list = list_of(&[&[b'x'; 64][..]; 100]);
        assert_eq!(list.len(), 6400);
        assert!(list.held() >= 6400 + 100 * size_of::<XpsBuffer>());
    }
}
