//! Slots with generations: how the core owns its objects, and how they
//! name each other without pointers. Not in the course, whose C structs
//! point at each other.
//!
//! In C the core keeps a list of pointers per kind of object (`listeners`,
//! `connections`), a loop event points at its listener or connection
//! (`void *ptr`), and a connection points at its listener. Destroying an
//! object frees it and sets its entry in the list to NULL; any pointer to it
//! that someone still holds now points at freed memory, and once `malloc()`
//! hands that memory to a new object, at the wrong object.
//!
//! Here every object lives in a slot of a [`Slots`] table that the core
//! owns, and is named by an [`Id`]: the slot's index plus the slot's
//! *generation*, a count of how many objects the slot has held. Looking up
//! an id whose object was destroyed finds an empty slot, or a slot whose
//! generation has moved on: either way the answer is `None`, never another
//! object. A bare index could not tell: the next object stored in the slot
//! would answer to it.

use std::fmt;
use std::marker::PhantomData;
use std::num::NonZeroU32;

// ANCHOR: id
/// The name of one object of type `T` in a [`Slots<T>`] table.
///
/// The type parameter keeps ids of different tables apart: a listener's id
/// cannot be passed where a connection's is expected. It is only a marker;
/// an `Id` is two 32-bit numbers, `Copy`, and owns nothing. (A generation
/// is never 0, so `Option<Id<T>>` is no bigger than an `Id<T>`.)
pub struct Id<T> {
    index: u32,
    generation: NonZeroU32,
    of: PhantomData<fn() -> T>,
}
// ANCHOR_END: id

// `derive` would ask `T` itself to be `Clone`, `PartialEq`, ...: an id is
// copied and compared whatever it names.
impl<T> Clone for Id<T> {
    fn clone(&self) -> Id<T> {
        *self
    }
}

impl<T> Copy for Id<T> {}

impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Id<T>) -> bool {
        (self.index, self.generation) == (other.index, other.generation)
    }
}

impl<T> Eq for Id<T> {}

#[cfg(test)]
impl<T> Id<T> {
    /// Id number `n` of a table no test has: for tests of code that only
    /// passes ids along, such as the loop's dispatch.
    pub(crate) fn for_test(n: u32) -> Id<T> {
        Id { index: n, generation: NonZeroU32::MIN, of: PhantomData }
    }

    /// The slot this id names: for tests that need a slot reused.
    pub(crate) fn slot(self) -> u32 {
        self.index
    }
}

impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

// ANCHOR: slots
/// A table of objects named by [`Id`]s.
///
/// A destroyed object leaves its slot empty (the course's NULL entry), and
/// the next object inserted takes the most recently emptied slot, so the
/// table never grows beyond the most objects alive at one time. That is
/// what the course compacts its lists for; here nothing moves, so no id
/// ever changes.
pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    /// Indexes of the empty slots, the most recently emptied last.
    free: Vec<u32>,
}

struct Slot<T> {
    /// How many objects this slot has held, the current one included.
    generation: u32,
    item: Option<T>,
}
// ANCHOR_END: slots

impl<T> Default for Slots<T> {
    fn default() -> Slots<T> {
        Slots { slots: Vec::new(), free: Vec::new() }
    }
}

impl<T> Slots<T> {
    // ANCHOR: insert
    /// Stores `item` and returns its id: O(1).
    pub fn insert(&mut self, item: T) -> Id<T> {
        self.insert_with(|_| item)
    }

    /// Stores the object `make` returns when handed the id it will have,
    /// and returns that id. For an object that must know its own id before
    /// it exists: a connection whose pipe ends name it, say.
    pub fn insert_with(&mut self, make: impl FnOnce(Id<T>) -> T) -> Id<T> {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot { generation: 0, item: None });
                // Every object here holds a file descriptor or serves one,
                // and a process can open fewer than 2^31 of those
                // (fs.nr_open): the table never reaches 2^32 slots.
                #[allow(clippy::expect_used, reason = "bounded by the fds a process can open")]
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 objects")
            }
        };
        let slot = &mut self.slots[index as usize];
        // A generation that wraps comes back to a value last used four
        // billion objects ago in this slot; an id that old is long gone.
        let generation =
            NonZeroU32::new(slot.generation.wrapping_add(1)).unwrap_or(NonZeroU32::MIN);
        slot.generation = generation.get();
        let id = Id { index, generation, of: PhantomData };
        slot.item = Some(make(id));
        id
    }
    // ANCHOR_END: insert

    // ANCHOR: get
    /// The object `id` names, if it still exists.
    pub fn get(&self, id: Id<T>) -> Option<&T> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation == id.generation.get() { slot.item.as_ref() } else { None }
    }

    /// The object `id` names, if it still exists, to change it.
    pub fn get_mut(&mut self, id: Id<T>) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation == id.generation.get() { slot.item.as_mut() } else { None }
    }

    /// Takes the object `id` names out of its table, if it still exists.
    /// Every id of it is stale from now on.
    pub fn remove(&mut self, id: Id<T>) -> Option<T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation.get() {
            return None;
        }
        let item = slot.item.take()?;
        self.free.push(id.index);
        Some(item)
    }
    // ANCHOR_END: get

    /// The ids of every object in the table, for a teardown that destroys
    /// them one by one.
    pub fn ids(&self) -> Vec<Id<T>> {
        let live = self.slots.iter().zip(0..).filter(|(slot, _)| slot.item.is_some());
        live.filter_map(|(slot, index)| {
            let generation = NonZeroU32::new(slot.generation)?;
            Some(Id { index, generation, of: PhantomData })
        })
        .collect()
    }

    /// How many objects the table holds.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// True if the table holds no object.
    #[allow(dead_code, reason = "clippy asks for it beside len(); the tests use it")]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_finds_its_object_until_it_is_removed() {
        let mut slots = Slots::default();
        let a = slots.insert("a");
        let b = slots.insert("b");
        assert_eq!((slots.get(a), slots.get(b)), (Some(&"a"), Some(&"b")));
        assert_eq!(slots.remove(a), Some("a"));
        assert_eq!(slots.get(a), None);
        assert_eq!(slots.remove(a), None, "removed twice");
        assert_eq!(slots.len(), 1);
    }

    #[test]
    fn a_stale_id_never_reaches_the_next_object_in_its_slot() {
        let mut slots = Slots::default();
        let old = slots.insert(1);
        slots.remove(old);
        let new = slots.insert(2);
        assert_eq!(new.slot(), old.slot(), "the empty slot was not reused");
        assert_ne!(old, new);
        assert_eq!(slots.get(old), None);
        assert_eq!(slots.get_mut(old), None);
        assert_eq!(slots.remove(old), None);
        assert_eq!(slots.get(new), Some(&2));
        assert_eq!(slots.len(), 1);
    }

    /// An object that knows its own id.
    struct Named {
        me: Id<Named>,
    }

    #[test]
    fn insert_with_hands_the_object_its_own_id() {
        let mut slots = Slots::default();
        let first = slots.insert_with(|me| Named { me });
        let second = slots.insert_with(|me| Named { me });
        assert_eq!(slots.get(first).map(|named| named.me), Some(first));
        assert_eq!(slots.get(second).map(|named| named.me), Some(second));
        // Refilled, a slot hands out its new generation.
        slots.remove(first);
        let third = slots.insert_with(|me| Named { me });
        assert_ne!(third, first);
        assert_eq!(slots.get(third).map(|named| named.me), Some(third));
        assert!(slots.get(first).is_none());
    }

    #[test]
    fn ids_lists_the_live_objects() {
        let mut slots = Slots::default();
        let ids: Vec<_> = (0..4).map(|n| slots.insert(n)).collect();
        slots.remove(ids[1]);
        assert_eq!(slots.ids(), vec![ids[0], ids[2], ids[3]]);
        assert!(!slots.is_empty());
    }

    #[test]
    fn len_counts_the_objects_alive() {
        let mut slots = Slots::default();
        assert_eq!((slots.len(), slots.is_empty()), (0, true));
        let ids: Vec<_> = (0..3).map(|n| slots.insert(n)).collect();
        assert_eq!((slots.len(), slots.is_empty()), (3, false));
        ids.into_iter().for_each(|id| _ = slots.remove(id));
        assert_eq!((slots.len(), slots.is_empty()), (0, true));
    }

    #[test]
    fn an_id_prints_as_slot_and_generation() {
        let mut slots = Slots::default();
        let first = slots.insert(());
        slots.remove(first);
        let second = slots.insert(());
        assert_eq!(format!("{first:?} {second:?}"), "#0.1 #0.2");
    }

    #[test]
    fn an_id_is_as_small_as_two_u32s() {
        assert_eq!(size_of::<Id<String>>(), 8);
        assert_eq!(size_of::<Option<Id<String>>>(), 8);
    }
}
