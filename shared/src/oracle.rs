//! The random messages of the official tester, and random bytes. (What a
//! right server replies to them is the stage's `Protocol::reply`.)

/// The characters of the official tester's messages, `[A-Za-z0-9]`: every
/// generated line is made of them.
pub const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A small, seedable random generator (xorshift64*): enough for test data,
/// and no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    /// A message like the official tester's: 1 to `max_len` characters from
    /// `[A-Za-z0-9]`, then `\n`.
    pub fn tester_message(&mut self, max_len: usize) -> Vec<u8> {
        let len = 1 + self.below(max_len);
        let mut message = Vec::with_capacity(len + 1);
        self.line_into(&mut message, len + 1);
        message
    }

    /// Replaces what `line` holds with a line of `len` bytes (`len` > 0):
    /// random [`ALPHANUMERIC`] characters, then `\n`. It reuses `line`'s
    /// memory, for a load generator that makes one line per message.
    pub fn line_into(&mut self, line: &mut Vec<u8>, len: usize) {
        line.clear();
        for _ in 1..len {
            line.push(ALPHANUMERIC[self.below(ALPHANUMERIC.len())]);
        }
        line.push(b'\n');
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_length_asked_for() {
        let mut rng = Rng::new(3);
        let mut line = b"left over".to_vec();
        for len in [1, 2, 64] {
            rng.line_into(&mut line, len);
            assert_eq!(line.len(), len);
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(line[..len - 1].iter().all(|b| ALPHANUMERIC.contains(b)));
        }
    }

    #[test]
    fn tester_messages_have_the_right_shape() {
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let message = rng.tester_message(99);
            assert!((2..=100).contains(&message.len()));
            assert_eq!(message.last(), Some(&b'\n'));
            assert!(message[..message.len() - 1].iter().all(u8::is_ascii_alphanumeric));
        }
    }
}
