//! The scoring queue: photos waiting to be scored, deduplicated by photo id, taken in the order of the
//! last [`Queue::prioritise`] call (photos on screen) and then in submission order.
//!
//! Plain data behind the scoring service's mutex; no threads, no I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

/// One photo to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreRequest {
    /// Library database id of the photo.
    pub id: i64,
    /// The file to decode: the display file (the JPEG of a RAW+JPEG pair, or the RAW whose embedded
    /// preview `decode_path` reads).
    pub path: PathBuf,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// id -> (submission number, path) of every waiting photo.
    pending: HashMap<i64, (u64, PathBuf)>,
    /// submission number -> id, for submission order.
    order: BTreeMap<u64, i64>,
    next_seq: u64,
    /// The ids of the last `prioritise` call, in its order.
    priority: Vec<i64>,
    /// Every id submitted since the last `clear` (waiting, running or done): re-submissions are ignored.
    seen: HashSet<i64>,
}

impl Queue {
    /// Adds the requests whose ids were not submitted since the last [`Queue::clear`]; returns how many.
    pub fn push(&mut self, reqs: Vec<ScoreRequest>) -> usize {
        let mut added = 0;
        for r in reqs {
            if self.seen.insert(r.id) {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.pending.insert(r.id, (seq, r.path));
                self.order.insert(seq, r.id);
                added += 1;
            }
        }
        added
    }

    /// These ids go first, in this order (replacing the previous priority list).
    pub fn prioritise(&mut self, ids: &[i64]) {
        if self.priority != ids {
            self.priority.clear();
            self.priority.extend_from_slice(ids);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Removes and returns up to `n` photos: prioritised ones first (in priority order), then the oldest.
    pub fn take(&mut self, n: usize) -> Vec<ScoreRequest> {
        let mut out = Vec::with_capacity(n.min(self.pending.len()));
        for &id in &self.priority {
            if out.len() == n {
                break;
            }
            if let Some((seq, path)) = self.pending.remove(&id) {
                self.order.remove(&seq);
                out.push(ScoreRequest { id, path });
            }
        }
        while out.len() < n {
            let Some((_, id)) = self.order.pop_first() else { break };
            let (_, path) = self.pending.remove(&id).expect("order and pending agree");
            out.push(ScoreRequest { id, path });
        }
        out
    }

    /// Drops everything: waiting photos, the priority list and the memory of submitted ids.
    pub fn clear(&mut self) {
        self.pending.clear();
        self.order.clear();
        self.priority.clear();
        self.seen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reqs(ids: &[i64]) -> Vec<ScoreRequest> {
        ids.iter().map(|&id| ScoreRequest { id, path: PathBuf::from(format!("/p/{id}.jpg")) }).collect()
    }

    fn ids(r: &[ScoreRequest]) -> Vec<i64> {
        r.iter().map(|r| r.id).collect()
    }

    #[test]
    fn priority_then_submission_order_without_duplicates() {
        let mut q = Queue::default();
        assert_eq!(q.push(reqs(&[5, 1, 9, 3, 7])), 5);
        assert_eq!(q.push(reqs(&[1, 9, 11])), 1, "already submitted ids are ignored");
        q.prioritise(&[7, 42, 9]);
        assert_eq!(ids(&q.take(3)), vec![7, 9, 5], "priority ids in order (unknown 42 skipped), then the oldest");
        assert_eq!(q.take(1)[0].path, PathBuf::from("/p/1.jpg"));
        assert_eq!(ids(&q.take(10)), vec![3, 11]);
        assert!(q.is_empty());
        assert_eq!(q.push(reqs(&[5])), 0, "done ids stay deduplicated until cleared");
        q.clear();
        assert_eq!(q.push(reqs(&[5])), 1);
        assert_eq!(ids(&q.take(5)), vec![5]);
    }
}
