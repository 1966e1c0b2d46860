//! Reading the log: by position, by stream and by organization. Nothing past the durable head
//! is ever returned.

use std::sync::Arc;

use crate::error::Error;
use crate::log::{Log, decode_recorded};
use crate::recorded::Recorded;
use crate::store::Direction;

/// Which index a keyed read goes through.
#[derive(Clone, Copy)]
enum Key<'a> {
    Stream(&'a str),
    Org(&'a str),
}

impl Log {
    /// The committed record at `position`, decoded.
    pub fn get(&self, position: u64) -> Result<Option<Arc<Recorded>>, Error> {
        if position < self.first_position() || position > self.head() {
            return Ok(None);
        }
        match self.store()?.record(position)? {
            Some(v) => Ok(Some(Arc::new(decode_recorded(position, &v)?))),
            None => Ok(None),
        }
    }

    /// The chain MAC of the committed record at `position` (zeros for 0): what a snapshot taken
    /// there must carry to belong to this history.
    pub fn mac_at(&self, position: u64) -> Result<[u8; 32], Error> {
        if position > self.head() {
            return Err(Error::Corrupt {
                position,
                reason: "past the head".into(),
            });
        }
        crate::store::mac_at(&*self.store()?, position)
    }

    /// Up to `limit` committed events with positions `>= from`, in log order.
    pub fn read_forward(&self, from: u64, limit: usize) -> Result<Vec<Arc<Recorded>>, Error> {
        let head = self.head();
        let from = from.max(self.first_position());
        if from > head || limit == 0 {
            return Ok(Vec::new());
        }
        self.decode_range(from, head, Direction::Forward, limit)
    }

    /// Up to `limit` committed events with positions `<= from`, newest first.
    pub fn read_backward(&self, from: u64, limit: usize) -> Result<Vec<Arc<Recorded>>, Error> {
        let upto = from.min(self.head());
        let first = self.first_position();
        if upto < first || limit == 0 {
            return Ok(Vec::new());
        }
        self.decode_range(first, upto, Direction::Backward, limit)
    }

    fn decode_range(
        &self,
        from: u64,
        to: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Arc<Recorded>>, Error> {
        let mut out = Vec::with_capacity(limit.min((to - from + 1) as usize));
        let mut failed = None;
        self.store()?.scan(from, to, direction, &mut |pos, bytes| {
            match decode_recorded(pos, bytes) {
                Ok(r) => out.push(Arc::new(r)),
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            }
            out.len() < limit
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The raw records (format byte, envelope, MAC) with positions `>= from`: what the crash
    /// tests compare byte for byte.
    pub fn read_raw(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let head = self.head();
        let from = from.max(self.first_position());
        let mut out = Vec::new();
        if from > head || limit == 0 {
            return Ok(out);
        }
        self.store()?
            .scan(from, head, Direction::Forward, &mut |pos, bytes| {
                out.push((pos, bytes.to_vec()));
                out.len() < limit
            })?;
        Ok(out)
    }

    /// Visits the raw records with positions in `from..=to` (clamped to the head) in order,
    /// without copying them, until `visit` returns false: the replay path.
    pub fn scan_raw(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), Error> {
        let to = to.min(self.head());
        self.store()?.scan(
            from.max(self.first_position()),
            to,
            Direction::Forward,
            visit,
        )
    }

    /// Events of one stream from revision `from_revision`, in order.
    pub fn read_stream(
        &self,
        stream: &str,
        from_revision: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Recorded>>, Error> {
        self.read_keyed(
            Key::Stream(stream),
            from_revision,
            u64::MAX,
            Direction::Forward,
            limit,
        )
    }

    /// The last committed revision of a stream, if it has any events.
    pub fn stream_revision(&self, stream: &str) -> Result<Option<u64>, Error> {
        let head = self.head();
        let index = self.shared().index.read().map_err(|_| Error::Closed)?;
        // From the index, not the last record: retention may have dropped every entry.
        let visible = index
            .streams
            .get(stream)
            .map_or(0, |v| v.partition_point(|p| *p <= head) as u64);
        Ok((index.stream_base.get(stream).copied().unwrap_or(0) + visible).checked_sub(1))
    }

    /// Events of one organization with sequence numbers in `from..=to`, oldest first.
    pub fn read_org(
        &self,
        org: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Recorded>>, Error> {
        self.read_keyed(Key::Org(org), from, to, Direction::Forward, limit)
    }

    /// Events of one organization with sequence numbers in `from..=to`, newest first.
    pub fn read_org_backward(
        &self,
        org: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Arc<Recorded>>, Error> {
        self.read_keyed(Key::Org(org), from, to, Direction::Backward, limit)
    }

    /// The first sequence number of `org` the index still holds: 1, unless retention dropped
    /// older ones (reads below it find nothing).
    pub fn org_first(&self, org: &str) -> Result<u64, Error> {
        Ok(self
            .shared()
            .index
            .read()
            .map_err(|_| Error::Closed)?
            .org_first(org))
    }

    /// The organization's last committed sequence number (0 before its first event).
    pub fn org_head(&self, org: &str) -> Result<u64, Error> {
        let head = self.head();
        let index = self.shared().index.read().map_err(|_| Error::Closed)?;
        // From the index, not the last record: retention may have dropped every entry.
        let visible = index
            .orgs
            .get(org)
            .map_or(0, |v| v.partition_point(|p| *p <= head) as u64);
        Ok(index.org_first(org) - 1 + visible)
    }

    /// A keyed read through the in-memory index: O(limit), never a scan.
    fn read_keyed(
        &self,
        key: Key<'_>,
        from: u64,
        to: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Arc<Recorded>>, Error> {
        if limit == 0 || from > to {
            return Ok(Vec::new());
        }
        let head = self.head();
        let positions = {
            let index = self.shared().index.read().map_err(|_| Error::Closed)?;
            match key {
                Key::Stream(s) => index.stream_range(s, (from, to), head, direction, limit),
                Key::Org(o) => index.org_range(o, (from, to), head, direction, limit),
            }
        };
        self.read_positions(&positions)
    }

    /// The committed records at `positions` (named by the index), decoded, in that order.
    pub(crate) fn read_positions(&self, positions: &[u64]) -> Result<Vec<Arc<Recorded>>, Error> {
        let store = self.store()?;
        let mut out = Vec::with_capacity(positions.len());
        for &pos in positions {
            match store.record(pos)? {
                Some(bytes) => out.push(Arc::new(decode_recorded(pos, &bytes)?)),
                // Retention dropped it after the index named it (the lock is let go before
                // the reads): it is gone, not corrupt.
                None if pos < self.first_position() => {}
                None => return Err(Error::Storage(format!("the index names missing {pos}"))),
            }
        }
        Ok(out)
    }
}
