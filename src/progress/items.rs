//! The items of one step: the layers of a pull or a push, each with its status in
//! `docker pull`'s words and the bytes it has moved.

use super::{Clock, Event, Sink};

/// Reports the items of vertex `#id`. Cheap to clone, usable from any thread: the layers of
/// a pull move in parallel.
#[derive(Clone, Debug)]
pub struct Items {
    sink: Sink,
    clock: Clock,
    id: u64,
}

impl Items {
    pub fn new(sink: Sink, clock: Clock, id: u64) -> Items {
        Items { sink, clock, id }
    }

    /// Items nobody watches.
    pub fn discard() -> Items {
        Items::new(Sink::discard(), Clock::from_fn(|| 0.0), 0)
    }

    /// `item` is now `status` (`Waiting`, `Pull complete`, …).
    pub fn status(&self, item: &str, status: impl std::fmt::Display) {
        self.send(item, status.to_string(), None, None);
    }

    /// `item`, being `status`, has moved `current` of `total` bytes.
    pub fn bytes(
        &self,
        item: &str,
        status: impl std::fmt::Display,
        current: u64,
        total: Option<u64>,
    ) {
        self.send(item, status.to_string(), Some(current), total);
    }

    /// A counter that the code moving `item`'s bytes sets as they move.
    pub fn counter(
        &self,
        item: &str,
        status: impl std::fmt::Display,
        total: Option<u64>,
    ) -> ByteCounter {
        ByteCounter {
            items: self.clone(),
            item: item.to_string(),
            status: status.to_string(),
            total,
        }
    }

    fn send(&self, item: &str, status: String, current: Option<u64>, total: Option<u64>) {
        self.sink.send(Event::VertexStatus {
            id: self.id,
            item: item.to_string(),
            status,
            current,
            total,
            at: self.clock.now(),
        });
    }
}

/// The bytes one transfer has moved so far, sent as its item's progress.
#[derive(Clone, Debug)]
pub struct ByteCounter {
    items: Items,
    item: String,
    status: String,
    total: Option<u64>,
}

impl ByteCounter {
    /// `current` bytes have moved.
    pub fn set(&self, current: u64) {
        self.items
            .bytes(&self.item, &self.status, current, self.total);
    }
}
