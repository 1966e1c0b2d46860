//! The access impact of a policy change: which (source device → destination device, protocol,
//! ports) a candidate policy would grant that the current one does not, and which it would
//! take away. Both policies must be compiled over the same fleet.

use std::collections::{BTreeMap, BTreeSet};

use super::eval::Compiled;
use super::model::{PortRange, Proto};

/// One pair whose access changes, over a maximal port range.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Change {
    pub src: String,
    pub dst: String,
    pub proto: Proto,
    pub ports: PortRange,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impact {
    pub gained: Vec<Change>,
    pub lost: Vec<Change>,
}

type Access = BTreeMap<(String, Proto), Vec<PortRange>>;

fn access(c: &Compiled, src: &str) -> Access {
    let mut out: Access = BTreeMap::new();
    for g in c.grants(src) {
        out.entry((g.dst.to_owned(), g.proto))
            .or_default()
            .push(g.ports);
    }
    out
}

/// `a − b` over sorted, disjoint inclusive ranges.
fn subtract(a: &[PortRange], b: &[PortRange]) -> Vec<PortRange> {
    let mut out = Vec::new();
    for r in a {
        let (mut lo, hi) = (u32::from(r.lo), u32::from(r.hi));
        for cut in b {
            let (clo, chi) = (u32::from(cut.lo), u32::from(cut.hi));
            if chi < lo || clo > hi {
                continue;
            }
            if clo > lo {
                out.push((lo, clo - 1));
            }
            lo = chi + 1;
        }
        if lo <= hi {
            out.push((lo, hi));
        }
    }
    out.into_iter()
        .filter_map(|(lo, hi)| {
            Some(PortRange {
                lo: u16::try_from(lo).ok()?,
                hi: u16::try_from(hi).ok()?,
            })
        })
        .collect()
}

fn delta(src: &str, from: &Access, to: &Access, out: &mut Vec<Change>) {
    for ((dst, proto), ranges) in to {
        let have = from
            .get(&(dst.clone(), *proto))
            .map_or(&[][..], Vec::as_slice);
        for ports in subtract(ranges, have) {
            out.push(Change {
                src: src.to_owned(),
                dst: dst.clone(),
                proto: *proto,
                ports,
            });
        }
    }
}

/// What changes if `after` replaces `before`.
pub fn impact(before: &Compiled, after: &Compiled) -> Impact {
    let sources: BTreeSet<&str> = before.device_ids().chain(after.device_ids()).collect();
    let mut out = Impact::default();
    for src in sources {
        let (old, new) = (access(before, src), access(after, src));
        delta(src, &old, &new, &mut out.gained);
        delta(src, &new, &old, &mut out.lost);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtracting_ranges_keeps_what_is_left_on_both_sides() {
        let r = |lo, hi| PortRange { lo, hi };
        assert_eq!(
            subtract(&[r(1, 100)], &[r(10, 20), r(50, 60)]),
            vec![r(1, 9), r(21, 49), r(61, 100)]
        );
        assert_eq!(subtract(&[r(1, 65535)], &[r(1, 65535)]), vec![]);
        assert_eq!(subtract(&[r(5, 5)], &[]), vec![r(5, 5)]);
        assert_eq!(subtract(&[r(5, 65535)], &[r(1, 6)]), vec![r(7, 65535)]);
    }
}
