//! A set of dense device slots, one bit each: unions and differences of whole rows cost n/64
//! word operations, which is what makes compiling 500 rules over 10,000 devices cheap.
//!
//! Sets grow on demand (a device added to a compiled fleet takes a new slot), so two sets may
//! have different word counts; every operation treats missing words as zero, and equality
//! ignores trailing zero words.

#[derive(Debug, Clone, Default)]
pub struct DeviceSet(Vec<u64>);

impl DeviceSet {
    pub fn empty(n: usize) -> DeviceSet {
        DeviceSet(vec![0; n.div_ceil(64)])
    }

    pub fn insert(&mut self, i: usize) {
        let w = i / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }

    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    pub fn set(&mut self, i: usize, on: bool) {
        if on { self.insert(i) } else { self.remove(i) }
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn union_with(&mut self, other: &DeviceSet) {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    pub fn subtract(&mut self, other: &DeviceSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= !b;
        }
    }

    pub fn intersect_with(&mut self, other: &DeviceSet) {
        self.0.truncate(other.0.len());
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= b;
        }
    }

    /// `self ^= other`: what is in exactly one of the two.
    pub fn toggle_with(&mut self, other: &DeviceSet) {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a ^= b;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        self.0.capacity() * 8
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let b = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    wi * 64 + b
                })
            })
        })
    }

    fn trimmed(&self) -> &[u64] {
        let end = self.0.iter().rposition(|w| *w != 0).map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl PartialEq for DeviceSet {
    fn eq(&self, other: &DeviceSet) -> bool {
        self.trimmed() == other.trimmed()
    }
}

impl Eq for DeviceSet {}

impl std::hash::Hash for DeviceSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.trimmed().hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceSet;

    #[test]
    fn sets_of_different_lengths_combine_as_if_padded_with_zeros() {
        let mut a = DeviceSet::empty(10);
        a.insert(3);
        let mut b = DeviceSet::empty(0);
        b.insert(130);
        b.insert(3);
        a.union_with(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![3, 130]);
        let mut c = a.clone();
        c.intersect_with(&DeviceSet::empty(1));
        assert!(c.is_empty());
        assert_eq!(c, DeviceSet::empty(500));
        a.toggle_with(&b);
        assert!(a.is_empty());
        assert_eq!(b.len(), 2);
    }
}
