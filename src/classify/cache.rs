//! Label vectors already computed, keyed by label and templates, bounded by memory: the least
//! recently used go first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

pub struct LabelCache {
    budget_bytes: usize,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: usize,
    clock: u64,
}

struct Entry {
    vector: Arc<[f32]>,
    last_used: u64,
}

/// One key per (templates, label): every part length-prefixed, so no two differ only in where
/// one part ends (labels and templates may hold any character).
pub fn key(label: &str, templates: &[String]) -> String {
    let mut key = String::new();
    for part in templates.iter().map(String::as_str).chain([label]) {
        key.push_str(&part.len().to_string());
        key.push(':');
        key.push_str(part);
    }
    key
}

fn cost(key: &str, vector: &[f32]) -> usize {
    key.len() + std::mem::size_of_val(vector) + 64
}

impl LabelCache {
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            budget_bytes,
            state: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<[f32]>> {
        let mut state = self.state.lock().expect("cache lock");
        state.clock += 1;
        let now = state.clock;
        let found = state.entries.get_mut(key).map(|entry| {
            entry.last_used = now;
            entry.vector.clone()
        });
        match &found {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        crate::telemetry::cache_lookup(found.is_some());
        found
    }

    pub fn insert(&self, key: String, vector: Arc<[f32]>) {
        let size = cost(&key, &vector);
        if size > self.budget_bytes {
            return;
        }
        let mut state = self.state.lock().expect("cache lock");
        state.clock += 1;
        let entry = Entry {
            vector,
            last_used: state.clock,
        };
        if let Some(old) = state.entries.insert(key.clone(), entry) {
            state.bytes -= cost(&key, &old.vector);
        }
        state.bytes += size;
        if state.bytes > self.budget_bytes {
            evict(&mut state, self.budget_bytes - self.budget_bytes / 10);
        }
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.state.lock().expect("cache lock");
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            entries: state.entries.len(),
            bytes: state.bytes,
        }
    }
}

/// Drops the least recently used entries until `target` bytes remain: a tenth of the budget at a
/// time, so that the sort is paid rarely.
fn evict(state: &mut State, target: usize) {
    let mut by_age: Vec<(u64, String)> = state
        .entries
        .iter()
        .map(|(key, entry)| (entry.last_used, key.clone()))
        .collect();
    by_age.sort_unstable();
    for (_, key) in by_age {
        if state.bytes <= target {
            break;
        }
        if let Some(entry) = state.entries.remove(&key) {
            state.bytes -= cost(&key, &entry.vector);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(x: f32) -> Arc<[f32]> {
        vec![x; 100].into()
    }

    #[test]
    fn hits_and_misses_are_counted() {
        let cache = LabelCache::new(1 << 20);
        let k = key("cat", &["a photo of a {}.".into()]);
        assert!(cache.get(&k).is_none());
        cache.insert(k.clone(), vector(1.0));
        assert_eq!(cache.get(&k).unwrap()[0], 1.0);
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
    }

    #[test]
    fn templates_are_part_of_the_key() {
        assert_ne!(key("cat", &["a {}".into()]), key("cat", &["the {}".into()]));
        assert_ne!(key("a", &["b".into()]), key("", &["b".into(), "a".into()]));
        assert_ne!(
            key("x\0y", &["t".into()]),
            key("y", &["t".into(), "x".into()])
        );
        assert_ne!(key("y", &["t\0x".into()]), key("x\0y", &["t".into()]));
    }

    #[test]
    fn memory_stays_within_the_budget_and_recent_entries_stay() {
        let one = cost("k000", &vector(0.0));
        let cache = LabelCache::new(10 * one);
        for i in 0..30 {
            cache.insert(format!("k{i:03}"), vector(i as f32));
            // k000 is used all along: never the least recently used.
            assert!(cache.get("k000").is_some(), "after {i}");
        }
        let stats = cache.stats();
        assert!(stats.bytes <= 10 * one, "{stats:?}");
        assert!(stats.entries >= 8, "{stats:?}");
        assert!(cache.get("k029").is_some());
        assert!(cache.get("k001").is_none());
    }
}
