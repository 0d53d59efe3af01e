//! A map bounded by forgetting the least recently seen keys, cheaply: two
//! generations of at most `size` keys each. New keys go into the current
//! one; a key found in the previous one moves into the current one; when the
//! current one is full it becomes the previous one and the oldest
//! generation is forgotten. So at most 2 x `size` keys are kept, and a key
//! seen within the last `size` new keys is never forgotten. The UDP echo
//! table and the `--udp-rate` buckets use it; their keys come from the
//! network, so it keeps std's keyed hash.

use std::collections::HashMap;
use std::hash::Hash;

/// Two generations of at most `size` keys.
#[derive(Debug)]
pub(crate) struct Generations<K, V> {
    /// Keys per generation.
    size: usize,
    /// The generation new keys go into.
    current: HashMap<K, V>,
    /// The one before: looked up and moved from, never added to.
    previous: HashMap<K, V>,
}

impl<K: Hash + Eq + Copy, V> Generations<K, V> {
    /// An empty map of generations of `size` keys; memory is taken as keys
    /// come, and kept when a generation is forgotten.
    pub(crate) fn new(size: usize) -> Generations<K, V> {
        Generations {
            size,
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }

    /// Runs `f` on the value of `key` (moved from the previous generation,
    /// or `fresh()` for a key not known), then forgets the oldest generation
    /// if the current one is full.
    pub(crate) fn update<R>(
        &mut self,
        key: K,
        fresh: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> R {
        if self.current.capacity() < self.size {
            // Once per generation table, not per key.
            self.current.reserve(self.size);
        }
        let previous = &mut self.previous;
        let value = self
            .current
            .entry(key)
            .or_insert_with(|| previous.remove(&key).unwrap_or_else(fresh));
        let result = f(value);
        if self.current.len() >= self.size {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        result
    }

    /// Keys remembered, in both generations.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Slots allocated, in both generations.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.current.capacity() + self.previous.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_seen_lately_is_kept_and_the_rest_are_forgotten_within_the_bound() {
        let mut map = Generations::new(4);
        map.update(0u32, || 0, |v| *v += 1);
        for key in 1..4 {
            map.update(key, || 0, |_| ());
        }
        // Key 0 moved into the new generation when seen again.
        assert_eq!(map.update(0, || 0, |v| *v), 1);
        for key in 100..120 {
            map.update(key, || 0, |_| ());
            assert!(map.len() <= 8);
        }
        assert_eq!(map.update(0, || 0, |v| *v), 0, "forgotten: fresh again");
    }
}
