//! One organization's live devices, indexed for the list endpoint's filters and sorts.
//!
//! Every set is ordered by the value a page seeks on, then the device id, so a page is a range
//! scan that starts at the cursor and stops after `limit` hits: it costs what it returns, not
//! the size of the fleet. The filter sets (tag, os, owner, ephemeral) are ordered by creation,
//! the default list order; the hostname set serves both `sort=hostname` and `hostname:` filters
//! (exact and prefix). Removed devices leave every set.
//!
//! Last-seen times are not here: they are not events (see the server's heartbeat store).

use serde::{Deserialize, Serialize};

use crate::devices::Device;

/// A position in creation order: `(created_at, id)`.
pub type ByCreated = (i64, String);
/// A position in hostname order: `(hostname, id)`.
pub type ByHostname = (String, String);
/// A set of devices in creation order.
pub type IdSet = imbl::OrdSet<ByCreated>;

/// The entries of `set` after `after` (exclusive) in ascending order, or before it in
/// descending order: a keyset page that skips nothing it does not return.
pub fn seek<K: Ord + Clone>(
    set: &imbl::OrdSet<(K, String)>,
    after: Option<(K, String)>,
    descending: bool,
) -> Box<dyn Iterator<Item = &(K, String)> + '_> {
    use std::ops::Bound::{Excluded, Unbounded};
    match (after, descending) {
        (None, false) => Box::new(set.iter()),
        (None, true) => Box::new(set.iter().rev()),
        (Some(a), false) => Box::new(set.range((Excluded(a), Unbounded))),
        (Some(a), true) => Box::new(set.range((Unbounded, Excluded(a))).rev()),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgDevices {
    /// Every live device: the default list order.
    pub by_created: imbl::OrdSet<ByCreated>,
    pub by_hostname: imbl::OrdSet<ByHostname>,
    pub by_tag: imbl::OrdMap<String, imbl::OrdSet<ByCreated>>,
    /// Keyed by the lower-cased OS: the filter is case-insensitive.
    pub by_os: imbl::OrdMap<String, imbl::OrdSet<ByCreated>>,
    /// Keyed by the lower-cased owner: the filter is case-insensitive.
    pub by_owner: imbl::OrdMap<String, imbl::OrdSet<ByCreated>>,
    pub ephemeral: imbl::OrdSet<ByCreated>,
    /// Which live device holds each public key: a key identifies one device in the network.
    pub by_public_key: imbl::OrdMap<String, String>,
}

impl OrgDevices {
    /// The devices carrying `tag` (empty set if none do).
    pub fn tagged(&self, tag: &str) -> Option<&imbl::OrdSet<ByCreated>> {
        self.by_tag.get(tag)
    }

    /// The live device holding `public_key`.
    pub fn holder_of(&self, public_key: &str) -> Option<&String> {
        self.by_public_key.get(public_key)
    }

    /// The devices whose OS is `os` (case-insensitive).
    pub fn with_os(&self, os: &str) -> Option<&imbl::OrdSet<ByCreated>> {
        self.by_os.get(&os.to_ascii_lowercase())
    }

    /// The devices owned by `owner` (case-insensitive).
    pub fn owned_by(&self, owner: &str) -> Option<&imbl::OrdSet<ByCreated>> {
        self.by_owner.get(&owner.to_ascii_lowercase())
    }

    /// The devices whose hostname starts with `prefix`, in hostname order.
    pub fn hostname_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a ByHostname> + 'a {
        self.by_hostname
            .range((prefix.to_owned(), String::new())..)
            .take_while(move |(h, _)| h.starts_with(prefix))
    }

    /// The devices whose hostname is exactly `hostname`.
    pub fn hostname_is<'a>(
        &'a self,
        hostname: &'a str,
    ) -> impl Iterator<Item = &'a ByHostname> + 'a {
        self.by_hostname
            .range((hostname.to_owned(), String::new())..)
            .take_while(move |(h, _)| h == hostname)
    }

    pub(crate) fn insert(&mut self, d: &Device) {
        self.change(d, true);
    }

    pub(crate) fn remove(&mut self, d: &Device) {
        self.change(d, false);
    }

    pub fn is_empty(&self) -> bool {
        self.by_created.is_empty()
    }

    /// Adds `d` to (or removes it from) every set its current fields put it in.
    fn change(&mut self, d: &Device, add: bool) {
        let created = (d.created_at, d.id.clone());
        let edit = |set: &mut imbl::OrdSet<ByCreated>| {
            if add {
                set.insert(created.clone());
            } else {
                set.remove(&created);
            }
        };
        fn keyed(
            map: &mut imbl::OrdMap<String, imbl::OrdSet<ByCreated>>,
            key: String,
            edit: impl Fn(&mut imbl::OrdSet<ByCreated>),
        ) {
            let set = map.entry(key.clone()).or_default();
            edit(set);
            // Empty sets would make an absent value look present, and leak memory.
            if set.is_empty() {
                map.remove(&key);
            }
        }
        edit(&mut self.by_created);
        if add {
            self.by_hostname.insert((d.hostname.clone(), d.id.clone()));
        } else {
            self.by_hostname.remove(&(d.hostname.clone(), d.id.clone()));
        }
        for tag in &d.tags {
            keyed(&mut self.by_tag, tag.clone(), edit);
        }
        keyed(&mut self.by_os, d.os.to_ascii_lowercase(), edit);
        if let Some(owner) = &d.owner {
            keyed(&mut self.by_owner, owner.to_ascii_lowercase(), edit);
        }
        if d.ephemeral {
            edit(&mut self.ephemeral);
        }
        if add {
            self.by_public_key
                .insert(d.public_key.clone(), d.id.clone());
        } else if self.by_public_key.get(&d.public_key) == Some(&d.id) {
            // Devices registered before keys had to be unique may share one: the key stays
            // with the device that holds it.
            self.by_public_key.remove(&d.public_key);
        }
    }
}
