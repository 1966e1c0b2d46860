//! Where the bytes go: the stopped server's data dir opened in this process, the way `serve`
//! opens it, with every allocation counted. Live bytes are what the program asked for; the
//! server's RSS beyond them is the allocator's (free pages it keeps, size classes) plus stacks
//! and code.

use std::alloc::{GlobalAlloc, Layout};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use events::{Log, LogOptions};
use projections::devices::Device;
use projections::{Models, Projection};

#[cfg(feature = "mimalloc")]
type Inner = mimalloc::MiMalloc;
#[cfg(not(feature = "mimalloc"))]
type Inner = std::alloc::System;

/// The server's allocator, counting the bytes live in it.
pub struct Counting(Inner);

impl Counting {
    pub const fn new() -> Counting {
        #[cfg(feature = "mimalloc")]
        return Counting(mimalloc::MiMalloc);
        #[cfg(not(feature = "mimalloc"))]
        return Counting(std::alloc::System);
    }
}

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the inner allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// One line per part: its live bytes, and per device and per event.
struct Lines {
    out: String,
    devices: usize,
    events: u64,
}

impl Lines {
    fn add(&mut self, what: &str, bytes: isize) {
        self.out += &format!(
            "  {what}: {:.1} MB ({:.0} B per device, {:.0} B per event)\n",
            bytes as f64 / 1e6,
            bytes as f64 / self.devices.max(1) as f64,
            bytes as f64 / self.events.max(1) as f64,
        );
    }
}

/// Measures each part of what `serve` holds for the data dir at `data` (the server stopped).
pub fn breakdown(data: &Path, devices: usize, events: u64) -> String {
    let mut lines = Lines {
        out: "live bytes, in this process, of what `serve` holds for that data dir:\n".to_owned(),
        devices,
        events,
    };
    let delta = |since: usize| live() as isize - since as isize;
    let options = LogOptions::default();

    // Once first, so that what any first open sets up for good is not charged to the log.
    let warm_up = Log::open(data, options.clone()).expect("the log opens");
    warm_up.close();
    drop(warm_up);
    let before = live();
    let log = Log::open(data, options).expect("the log opens");
    let opened = delta(before);
    lines.add("the log opened", opened);
    let before = live();
    let snap = std::fs::read(events::index::snapshot_path(data)).expect("index.snap");
    // The header: magic (8), chain MAC (32), position (8).
    let index: events::index::Index =
        events::codec::decode(&snap[48..]).expect("the index snapshot decodes");
    drop(snap);
    let index_bytes = delta(before);
    lines.add("  its in-memory stream and org index", index_bytes);
    lines.add("  sled and the rest (the difference)", opened - index_bytes);
    drop(index);

    let before = live();
    let mut models = projections::snapshot::read::<Models>(
        &data.join("snapshots"),
        Models::NAME,
        Models::VERSION,
    )
    .expect("a snapshot at the head (written at SIGTERM)")
    .state;
    lines.add("read models, from their snapshot", delta(before));
    let payload: usize = models
        .devices
        .by_id
        .iter()
        // The map's slot (an id and a pointer), the `Arc`'s two counters and the device.
        .map(|(id, d)| {
            size_of::<(String, Arc<Device>)>()
                + 2 * size_of::<usize>()
                + size_of::<Device>()
                + id.capacity()
                + device_heap(d)
        })
        .sum();
    lines.add(
        &format!(
            "  of which the devices themselves ({} B inline each, plus their strings)",
            size_of::<Device>()
        ),
        payload as isize,
    );
    let mut freed = |what: &str, drop_it: &mut dyn FnMut()| {
        let before = live();
        drop_it();
        lines.add(what, -delta(before));
    };
    freed("  devices.by_id (the devices)", &mut || {
        models.devices.by_id = Default::default()
    });
    freed("  devices.by_org (per-org ordered indexes)", &mut || {
        models.devices.by_org = Default::default()
    });
    freed("  devices.by_credential", &mut || {
        models.devices.by_credential = Default::default()
    });
    freed("  everything else (orgs, tokens, keys, ipam)", &mut || {
        models = Models::default()
    });

    let before = live();
    let heartbeats = quickztna::heartbeats::Heartbeats::load(data);
    lines.add("heartbeat store", delta(before));
    drop(heartbeats);

    // What sled keeps after the whole log passed through it, as after the writes that built it.
    let before = live();
    let mut records = 0u64;
    log.scan_raw(1, log.head(), &mut |_, _| {
        records += 1;
        true
    })
    .expect("scan");
    lines.add(
        &format!("sled's cache grown by one scan of all {records} records"),
        delta(before),
    );
    log.close();
    lines.out
}

/// The heap bytes a device's strings and tag list own.
fn device_heap(d: &Device) -> usize {
    let strings = [
        &d.id,
        &d.org_id,
        &d.key_id,
        &d.hostname,
        &d.os,
        &d.os_version,
        &d.public_key,
        &d.ipv4,
        &d.ipv6,
    ];
    let optional = [&d.owner, &d.removed_reason];
    strings.iter().map(|s| s.capacity()).sum::<usize>()
        + optional
            .iter()
            .flat_map(|s| s.as_ref())
            .map(String::capacity)
            .sum::<usize>()
        + d.tags.capacity() * size_of::<String>()
        + d.tags.iter().map(String::capacity).sum::<usize>()
}
