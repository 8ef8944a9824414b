//! Ingest segment files no store has taken yet (being written, sealed or
//! lent), as a query on the same node sees them.
//!
//! The ingest log writes a segment per connection and a store takes it
//! later. Until then a query reads the file itself ([`LiveSegment`]), and
//! its ids are not in its name: only a pass over the file tells its
//! smallest id. Under sustained ingest the newest segments hold ids above
//! any window that ended a moment ago, and that pass read tens of
//! megabytes per query only to pass them over. The writer knows the ids as
//! it writes them, so it keeps an [`IdFloor`] that a query reads instead.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use sluice_record::Ulid;

/// A lower bound of the ids written to one segment file, kept by its
/// writer: it is lowered to a batch's smallest id *before* the batch is
/// written, so it never rises and a reader that opens the file and then
/// reads the floor gets a bound of every id it can see. A failed write
/// leaves it lower than the file's ids, which is still a bound.
#[derive(Debug, Default)]
pub struct IdFloor(Mutex<Option<Ulid>>);

impl IdFloor {
    /// A floor of a file that holds no record yet.
    pub fn new() -> IdFloor {
        IdFloor::default()
    }

    /// Lower the floor to `id` if it is below it; call before writing a
    /// record with that id.
    pub fn lower(&self, id: Ulid) {
        let mut floor = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *floor = Some(floor.map_or(id, |f| f.min(id)));
    }

    /// The floor: no id written before this call is below it. `None`
    /// while nothing was written.
    pub fn get(&self) -> Option<Ulid> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An ingest segment file a query reads before a store has taken it.
#[derive(Debug, Clone)]
pub struct LiveSegment {
    /// The names the file may have, tried in order: it is renamed as it is
    /// sealed, lent and given back; once opened, a rename no longer
    /// matters.
    pub names: Vec<PathBuf>,
    /// Its writer's [`IdFloor`], where this process wrote the file; `None`
    /// for a file found on disk at startup (its ids are then read from the
    /// file).
    pub floor: Option<Arc<IdFloor>>,
}

impl LiveSegment {
    /// A segment known by its names alone, with no floor.
    pub fn named(names: Vec<PathBuf>) -> LiveSegment {
        LiveSegment { names, floor: None }
    }

    /// Whether every record a reader can see in the file, which it opened
    /// before this call, has an id above `upper`: the reader can pass the
    /// file over without reading it.
    pub fn wholly_above(&self, upper: Ulid) -> bool {
        self.floor
            .as_ref()
            .and_then(|f| f.get())
            .is_some_and(|floor| floor > upper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_falls() {
        let floor = IdFloor::new();
        assert_eq!(floor.get(), None);
        floor.lower(Ulid(50));
        floor.lower(Ulid(70));
        assert_eq!(floor.get(), Some(Ulid(50)));
        floor.lower(Ulid(20));
        assert_eq!(floor.get(), Some(Ulid(20)));
    }

    #[test]
    fn only_a_floor_above_the_range_passes_a_file_over() {
        let floor = Arc::new(IdFloor::new());
        let live = LiveSegment {
            names: vec![PathBuf::from("a.active")],
            floor: Some(floor.clone()),
        };
        // Nothing written yet: not known to be above anything.
        assert!(!live.wholly_above(Ulid(10)));
        floor.lower(Ulid(11));
        assert!(live.wholly_above(Ulid(10)));
        assert!(!live.wholly_above(Ulid(11)));
        floor.lower(Ulid(5));
        assert!(!live.wholly_above(Ulid(10)));
        assert!(!LiveSegment::named(vec![]).wholly_above(Ulid(0)));
    }
}
