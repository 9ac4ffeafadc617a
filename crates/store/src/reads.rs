//! A cache of the reads the API makes most (a user's workspaces and live sessions), for
//! one server on its own database. Every write that can change them bumps a generation
//! when it has finished; a cached read is used only while the generation is the one it
//! was read at, so a reader never sees a state older than the last finished write.
//! (Several replicas on one PostgreSQL database would each need to hear the others'
//! writes; that backend must not use this cache.)

use berth_core::{Session, UserId, Workspace};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A user's cached list, with the generation it was read at.
type PerUser<T> = Mutex<HashMap<UserId, (u64, Arc<Vec<T>>)>>;

#[derive(Debug, Default)]
pub(crate) struct ReadCache {
    generation: AtomicU64,
    workspaces: PerUser<Workspace>,
    live_sessions: PerUser<Session>,
}

/// Held by a write for its whole duration; bumps the generation when dropped, that is
/// once the write has finished (or failed).
pub(crate) struct Change<'a>(&'a ReadCache);

impl Drop for Change<'_> {
    fn drop(&mut self) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl ReadCache {
    pub(crate) fn change(&self) -> Change<'_> {
        Change(self)
    }

    /// The generation to read at: take it before reading the database.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn workspaces(&self, owner: &UserId) -> Option<Arc<Vec<Workspace>>> {
        fresh(&self.workspaces, owner, self.generation())
    }

    pub(crate) fn keep_workspaces(&self, owner: &UserId, generation: u64, workspaces: Vec<Workspace>) {
        keep(&self.workspaces, owner, generation, workspaces);
    }

    pub(crate) fn live_sessions(&self, user: &UserId) -> Option<Arc<Vec<Session>>> {
        fresh(&self.live_sessions, user, self.generation())
    }

    pub(crate) fn keep_live_sessions(&self, user: &UserId, generation: u64, sessions: Vec<Session>) {
        keep(&self.live_sessions, user, generation, sessions);
    }
}

fn fresh<T>(map: &PerUser<T>, key: &UserId, generation: u64) -> Option<Arc<Vec<T>>> {
    let map = map.lock().unwrap_or_else(PoisonError::into_inner);
    map.get(key).filter(|(at, _)| *at == generation).map(|(_, value)| Arc::clone(value))
}

fn keep<T>(map: &PerUser<T>, key: &UserId, generation: u64, value: Vec<T>) {
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    // Entries of older generations are useless: drop them all rather than let them pile up.
    map.retain(|_, (at, _)| *at == generation);
    map.insert(key.clone(), (generation, Arc::new(value)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_write_makes_every_cached_read_stale() {
        let cache = ReadCache::default();
        let user = UserId::generate();
        let generation = cache.generation();
        cache.keep_workspaces(&user, generation, Vec::new());
        assert!(cache.workspaces(&user).is_some());
        {
            let _write = cache.change();
            // While the write runs, readers still see the state before it.
            assert!(cache.workspaces(&user).is_some());
        }
        assert!(cache.workspaces(&user).is_none(), "a read cached before the write is not served after it");
        // A read that started before the write finished is kept under its old generation: stale.
        cache.keep_live_sessions(&user, generation, Vec::new());
        assert!(cache.live_sessions(&user).is_none());
    }
}
