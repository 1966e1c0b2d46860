//! The access impact of a policy change: which (source device → destination device, protocol,
//! ports) a candidate policy would grant that the current one does not, and which it would
//! take away. Both policies must be compiled over the same fleet.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::bits::DeviceSet;
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
    /// How many changes there are in all; the lists hold at most the limit asked for.
    pub gained_count: usize,
    pub lost_count: usize,
}

impl Impact {
    /// The devices whose peer maps differ: a changed pair changes its source's grants and
    /// its destination's inbound.
    pub fn devices(&self) -> BTreeSet<&str> {
        self.gained
            .iter()
            .chain(&self.lost)
            .flat_map(|c| [c.src.as_str(), c.dst.as_str()])
            .collect()
    }
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

type Memo = HashMap<DeviceSet, Vec<(Proto, PortRange)>>;

type Access<'a> = BTreeMap<&'a str, Vec<(Proto, PortRange)>>;

/// Per destination and protocol, what `to` has that `from` lacks.
fn delta(
    src: &str,
    dst: &str,
    from: &[(Proto, PortRange)],
    to: &[(Proto, PortRange)],
    out: &mut Vec<Change>,
) {
    for proto in Proto::ALL {
        let of = |xs: &[(Proto, PortRange)]| -> Vec<PortRange> {
            xs.iter()
                .filter(|(p, _)| *p == proto)
                .map(|(_, r)| *r)
                .collect()
        };
        for ports in subtract(&of(to), &of(from)) {
            out.push(Change {
                src: src.to_owned(),
                dst: dst.to_owned(),
                proto,
                ports,
            });
        }
    }
}

/// The change shared by every source with the same signature in both compiles: what its
/// rows grant apart from `autogroup:self`, destination by destination.
#[derive(Default)]
struct Shared<'a> {
    gained: Vec<(&'a str, Vec<(Proto, PortRange)>)>,
    lost: Vec<(&'a str, Vec<(Proto, PortRange)>)>,
}

fn shared<'a>(old: &Access<'a>, new: &Access<'a>) -> Shared<'a> {
    let mut out = Shared::default();
    let none = Vec::new();
    let dsts: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for dst in dsts {
        let (o, n) = (old.get(dst).unwrap_or(&none), new.get(dst).unwrap_or(&none));
        if o == n {
            continue;
        }
        let (mut g, mut l) = (Vec::new(), Vec::new());
        delta("", dst, o, n, &mut g);
        delta("", dst, n, o, &mut l);
        if !g.is_empty() {
            out.gained
                .push((dst, g.into_iter().map(|c| (c.proto, c.ports)).collect()));
        }
        if !l.is_empty() {
            out.lost
                .push((dst, l.into_iter().map(|c| (c.proto, c.ports)).collect()));
        }
    }
    out
}

/// What changes if `after` replaces `before`, both compiled over fleets with the same
/// devices and people (slots may differ: devices pair by id).
///
/// Sources with the same signature in both compiles share their rows, so the change is
/// worked out once per pair of signatures; only the destinations that depend on the source
/// (itself, and its owner's devices through `autogroup:self`) are looked at per source.
pub fn impact(before: &Compiled, after: &Compiled) -> Impact {
    impact_within(before, after, usize::MAX)
}

/// [`impact`], listing at most `limit` changes each way (the first by source, destination,
/// protocol, ports) while counting them all, so a change that touches every pair of a big
/// fleet costs time but not memory.
pub fn impact_within(before: &Compiled, after: &Compiled, limit: usize) -> Impact {
    let sources: BTreeSet<&str> = before.device_ids().chain(after.device_ids()).collect();
    let mut out = Impact::default();
    let mut cache: HashMap<(Option<usize>, Option<usize>), Shared> = HashMap::new();
    let mut memos: [Memo; 2] = [HashMap::new(), HashMap::new()];
    for src in sources {
        let (sb, sa) = (before.device_index(src), after.device_index(src));
        let key = (
            sb.and_then(|s| before.sig_index(s)),
            sa.and_then(|s| after.sig_index(s)),
        );
        if key == (None, None) {
            continue;
        }
        let change = cache.entry(key).or_insert_with(|| {
            let old = key.0.map_or_else(Access::new, |i| before.shared_access(i));
            let new = key.1.map_or_else(Access::new, |i| after.shared_access(i));
            shared(&old, &new)
        });
        // The destinations whose verdict depends on the source.
        let mut own: BTreeSet<&str> = BTreeSet::from([src]);
        for (c, s) in [(before, sb), (after, sa)] {
            if let Some(set) = s.and_then(|s| c.own(s)) {
                own.extend(c.ids(set));
            }
        }
        for (list, into, count) in [
            (&change.gained, &mut out.gained, &mut out.gained_count),
            (&change.lost, &mut out.lost, &mut out.lost_count),
        ] {
            for (dst, ranges) in list {
                if own.contains(dst) {
                    continue;
                }
                *count += ranges.len();
                let room = limit.saturating_sub(into.len());
                into.extend(ranges.iter().take(room).map(|&(proto, ports)| Change {
                    src: src.to_owned(),
                    dst: (*dst).to_owned(),
                    proto,
                    ports,
                }));
            }
        }
        for dst in own.into_iter().filter(|d| *d != src) {
            let to =
                |c: &Compiled, s: Option<usize>, memo: &mut Memo| match (s, c.device_index(dst)) {
                    (Some(s), Some(d)) => {
                        // A person's devices mostly share one class set: expand it once.
                        let ks = c.classes_to(s, d);
                        memo.entry(ks)
                            .or_insert_with_key(|ks| c.ports_of(ks))
                            .clone()
                    }
                    _ => Vec::new(),
                };
            let (old, new) = (to(before, sb, &mut memos[0]), to(after, sa, &mut memos[1]));
            let (mut g, mut l) = (Vec::new(), Vec::new());
            delta(src, dst, &old, &new, &mut g);
            delta(src, dst, &new, &old, &mut l);
            for (found, into, count) in [
                (g, &mut out.gained, &mut out.gained_count),
                (l, &mut out.lost, &mut out.lost_count),
            ] {
                *count += found.len();
                let room = limit.saturating_sub(into.len());
                into.extend(found.into_iter().take(room));
            }
        }
    }
    out.gained.sort();
    out.lost.sort();
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
