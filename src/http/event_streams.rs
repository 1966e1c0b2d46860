//! What every SSE subscriber of the server shares: the admission of streams (a cap on the
//! server and per organization) and the encoded frames of recent events.
//!
//! One event goes out to every subscriber of its organization; it is encoded once, into a
//! frame kept in a small ring keyed by log position, and each subscriber copies the frame's
//! bytes. The ring is bounded; a frame that fell out of it is encoded again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use events::Recorded;

use super::event_view::EventView;

/// Event streams the server serves at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// On the whole server.
    pub max: usize,
    /// Per organization, so that one tenant cannot take every stream.
    pub per_org: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max: 10_000,
            per_org: 2_000,
        }
    }
}

/// Encoded frames kept: a few seconds of events at a thousand a second.
const FRAME_SLOTS: usize = 4096;

/// Open streams and shared frames.
pub struct EventStreams {
    limits: StreamLimits,
    open: Arc<AtomicUsize>,
    per_org: Arc<Mutex<HashMap<String, usize>>>,
    frames: Vec<ArcSwapOption<(u64, Bytes)>>,
}

/// One admitted stream; dropping it (when the stream ends or the client leaves) frees its place.
#[derive(Debug)]
pub struct Admitted {
    org_id: String,
    open: Arc<AtomicUsize>,
    per_org: Arc<Mutex<HashMap<String, usize>>>,
}

/// Why a stream was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    Server,
    Org,
}

impl EventStreams {
    pub fn new(limits: StreamLimits) -> EventStreams {
        EventStreams {
            limits,
            open: Arc::new(AtomicUsize::new(0)),
            per_org: Arc::new(Mutex::new(HashMap::new())),
            frames: (0..FRAME_SLOTS).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Takes a place for a stream of `org_id`, if the caps leave one.
    pub fn admit(&self, org_id: &str) -> Result<Admitted, Full> {
        let mut per_org = self.per_org.lock().unwrap_or_else(PoisonError::into_inner);
        // Both counts change under this lock, so they cannot pass their caps together.
        if self.open.load(Ordering::Acquire) >= self.limits.max {
            return Err(Full::Server);
        }
        let count = per_org.entry(org_id.to_owned()).or_insert(0);
        if *count >= self.limits.per_org {
            return Err(Full::Org);
        }
        *count += 1;
        self.open.fetch_add(1, Ordering::AcqRel);
        Ok(Admitted {
            org_id: org_id.to_owned(),
            open: self.open.clone(),
            per_org: self.per_org.clone(),
        })
    }

    /// The SSE frame of `r`, encoded once for all its subscribers.
    pub fn frame(&self, r: &Recorded) -> Bytes {
        let position = r.position();
        let slot = &self.frames[(position % FRAME_SLOTS as u64) as usize];
        if let Some(cached) = slot.load().as_ref()
            && cached.0 == position
        {
            return cached.1.clone();
        }
        let frame = encode(r);
        slot.store(Some(Arc::new((position, frame.clone()))));
        frame
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_org = self.per_org.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_org.get_mut(&self.org_id) {
            *count -= 1;
            if *count == 0 {
                per_org.remove(&self.org_id);
            }
        }
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `id: <org sequence>`, `event: <type>`, `data: <the event view>`, then the blank line that
/// ends an SSE message. Written by hand rather than with axum's `Event`, whose setters panic
/// on a line break: here neither can occur, since the id is digits, the type a name from the
/// event catalogue (checked anyway) and compact JSON escapes every control character.
pub fn encode(r: &Recorded) -> Bytes {
    let view = EventView::of(r);
    let data = serde_json::to_string(&view).unwrap_or_else(|e| {
        // A struct of strings, numbers and a JSON value always serializes.
        tracing::error!(error = %e, "cannot encode an event for the stream");
        "{}".to_owned()
    });
    frame(view.id, &view.r#type, &data)
}

/// One SSE message. `data` is compact JSON, which has no raw line break; a type that is not a
/// safe field value (none in the catalogue) goes out as the default `message`.
fn frame(id: u64, event_type: &str, data: &str) -> Bytes {
    let event_type = if is_field_safe(event_type) {
        event_type
    } else {
        "message"
    };
    let mut out = String::with_capacity(data.len() + event_type.len() + 40);
    out.push_str("id: ");
    out.push_str(&id.to_string());
    out.push_str("\nevent: ");
    out.push_str(event_type);
    out.push_str("\ndata: ");
    out.push_str(data);
    out.push_str("\n\n");
    Bytes::from(out)
}

/// Whether `s` can be the value of an SSE field: no line break, no NUL.
pub fn is_field_safe(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\r', '\n', '\0'])
}

/// A message with only an id: it moves the client's `Last-Event-ID` past events a filter left
/// out, and dispatches nothing (WHATWG HTML §9.2.6: an empty data buffer is not an event).
pub fn id_only(id: u64) -> Bytes {
    Bytes::from(format!("id: {id}\n\n"))
}

/// A comment that keeps proxies and the client's read timeout from closing an idle stream.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    use proptest::prelude::*;

    /// The messages an SSE client (a maintained parser) reads from `bytes`.
    fn parse(bytes: Bytes) -> Vec<eventsource_stream::Event> {
        let chunks = futures::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        futures::executor::block_on(chunks.eventsource().map(|e| e.expect("parses")).collect())
    }

    proptest! {
        #[test]
        fn any_event_data_reads_back_whole(id: u64, text in any::<String>(), event_type in "[a-z_.]{1,30}") {
            let data = serde_json::to_string(&serde_json::json!({ "text": text })).unwrap();
            let mut both = BytesMut::new();
            both.extend_from_slice(&frame(id, &event_type, &data));
            both.extend_from_slice(&id_only(id.saturating_add(1)));
            both.extend_from_slice(KEEP_ALIVE);
            let read = parse(both.freeze());
            prop_assert_eq!(read.len(), 1, "the id-only message and the comment dispatch nothing");
            prop_assert_eq!(&read[0].id, &id.to_string());
            prop_assert_eq!(&read[0].event, &event_type);
            prop_assert_eq!(&read[0].data, &data);
        }

        #[test]
        fn an_unsafe_type_becomes_message(bad in "[a-z]{0,5}[\r\n\x00][a-z]{0,5}") {
            let read = parse(frame(1, &bad, "{}"));
            prop_assert_eq!(&read[0].event, "message");
        }
    }

    #[test]
    fn the_caps_hold_on_the_server_and_per_org_and_free_on_drop() {
        let streams = EventStreams::new(StreamLimits { max: 3, per_org: 2 });
        let a1 = streams.admit("a").unwrap();
        let _a2 = streams.admit("a").unwrap();
        assert_eq!(streams.admit("a").unwrap_err(), Full::Org);
        let _b1 = streams.admit("b").unwrap();
        assert_eq!(streams.admit("c").unwrap_err(), Full::Server);
        drop(a1);
        assert_eq!(streams.open(), 2);
        let _a3 = streams.admit("a").unwrap();
    }

    #[test]
    fn field_values_refuse_line_breaks() {
        assert!(is_field_safe("device.registered"));
        for bad in ["", "a\nb", "a\rb", "a\0b"] {
            assert!(!is_field_safe(bad), "{bad:?}");
        }
    }
}
