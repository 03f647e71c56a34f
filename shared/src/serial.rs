//! Which tests of one test binary may run side by side.
//!
//! Most tests start a server of their own and can share the machine. A test
//! that times something (a reply within 100 ms, an exit within 500 ms) must
//! not: another test's flood beside it would slow its server past the
//! limit. Such a test takes [`alone`], the others [`side_by_side`]: a
//! reader-writer lock, so the others still run together.
//!
//! The lock is a static of this library, so there is one per process:
//! cargo runs each test file as a process of its own, and the lock orders
//! the tests of that file only.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static SERIAL: RwLock<()> = RwLock::new(());

/// For a test that times something: no other test that takes either
/// guard runs until it is dropped.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    SERIAL.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// For the others: side by side, but never beside one that runs alone.
pub fn side_by_side() -> RwLockReadGuard<'static, ()> {
    SERIAL.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}
