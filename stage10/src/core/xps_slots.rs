//! Slots with generations: how the core owns the pipes, sources and sinks
//! of stage 10, and how they name each other without pointers. Not in the
//! course, whose C structs point at each other.
//!
//! A pipe joins a source and a sink that belong to other owners (from stage
//! 11 on, a client and an upstream server), and each of the three can be
//! destroyed while the others live on. In C each holds a pointer to the
//! others and every destroy sets the pointers that named it to NULL; a
//! pointer missed is a use-after-free. Here every object lives in a slot of
//! a [`Slots`] table that the core owns, and the others name it by an
//! [`Id`]: the slot's index plus the slot's *generation*, a count of how
//! many objects the slot has held. Looking up an id whose object was
//! destroyed finds an empty slot, or a slot whose generation has moved on:
//! either way the answer is `None`, never another object. It is the loop's
//! fd-and-generation token (xps_loop.rs) again, for everything else.

use std::fmt;
use std::marker::PhantomData;

// ANCHOR: id
/// The name of one object of type `T` in a [`Slots<T>`] table.
///
/// The type parameter keeps ids of different tables apart: a source's id
/// cannot be passed where a pipe's is expected. It is only a marker; an
/// `Id` is two numbers, `Copy`, and owns nothing.
pub struct Id<T> {
    index: usize,
    generation: u32,
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
/// what the course's `filter_nulls()` is for; here nothing moves, so no id
/// ever changes.
pub struct Slots<T> {
    slots: Vec<Slot<T>>,
    /// Indexes of the empty slots, the most recently emptied last.
    free: Vec<usize>,
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
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot { generation: 0, item: None });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        // A generation that wraps comes back to a value last used four
        // billion objects ago in this slot; an id that old is long gone.
        slot.generation = slot.generation.wrapping_add(1);
        slot.item = Some(item);
        Id { index, generation: slot.generation, of: PhantomData }
    }
    // ANCHOR_END: insert

    // ANCHOR: get
    /// The object `id` names, if it still exists.
    pub fn get(&self, id: Id<T>) -> Option<&T> {
        let slot = self.slots.get(id.index)?;
        if slot.generation == id.generation { slot.item.as_ref() } else { None }
    }

    /// The object `id` names, if it still exists, to change it.
    pub fn get_mut(&mut self, id: Id<T>) -> Option<&mut T> {
        let slot = self.slots.get_mut(id.index)?;
        if slot.generation == id.generation { slot.item.as_mut() } else { None }
    }

    /// Takes the object `id` names out of its table, if it still exists.
    /// Every id of it is stale from now on.
    pub fn remove(&mut self, id: Id<T>) -> Option<T> {
        let slot = self.slots.get_mut(id.index)?;
        if slot.generation != id.generation {
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
        let live = self.slots.iter().enumerate().filter(|(_, slot)| slot.item.is_some());
        live.map(|(index, slot)| Id { index, generation: slot.generation, of: PhantomData })
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
        assert_ne!(old, new);
        assert_eq!(slots.get(old), None);
        assert_eq!(slots.get_mut(old), None);
        assert_eq!(slots.remove(old), None);
        assert_eq!(slots.get(new), Some(&2));
        assert_eq!(slots.len(), 1, "the empty slot was not reused");
    }

    #[test]
    fn ids_lists_the_live_objects() {
        let mut slots = Slots::default();
        let ids: Vec<_> = (0..4).map(|n| slots.insert(n)).collect();
        slots.remove(ids[1]);
        assert_eq!(slots.ids(), vec![ids[0], ids[2], ids[3]]);
        assert!(!slots.is_empty());
    }
}
