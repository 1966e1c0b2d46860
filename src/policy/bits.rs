//! A fixed-size set of dense device indices, one bit each: unions and differences of whole
//! rows cost n/64 word operations, which is what makes compiling 500 rules over 10,000
//! devices cheap.

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceSet(Vec<u64>);

impl DeviceSet {
    pub fn empty(n: usize) -> DeviceSet {
        DeviceSet(vec![0; n.div_ceil(64)])
    }

    pub fn insert(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub fn remove(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn union_with(&mut self, other: &DeviceSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    pub fn subtract(&mut self, other: &DeviceSet) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a &= !b;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| wi * 64 + b)
        })
    }
}
