//! Bursts and near-duplicates: groups of frames the photographer will want to compare, and the best
//! frame of each group by the quality score when there is one.
//!
//! - Burst: frames from the same camera (EXIF body serial, else make + model) whose capture times
//!   (DateTimeOriginal + SubSecTimeOriginal, in ms) follow each other by at most
//!   [`BurstParams::max_gap_ms`]. When both frames have backbone embeddings, they must also look alike
//!   (cosine similarity at least [`BurstParams::burst_similarity`]): a photographer who turns from one
//!   subject to another within a second starts a new group.
//! - Near-duplicate: frames without a time link whose embeddings have cosine similarity at least
//!   [`BurstParams::duplicate_similarity`], compared within a window of neighbours in capture order (or
//!   input order without capture times), so the cost stays linear in the album size.
//!
//! Pure computation on the caller's data; touches no file.

/// One photo as burst grouping sees it.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    pub capture_ms: Option<i64>,
    pub camera: Option<String>,
    pub embedding: Option<Vec<f32>>,
    /// Technical quality score (higher is better), when the quality head has run.
    pub quality: Option<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstParams {
    pub max_gap_ms: i64,
    pub burst_similarity: f32,
    pub duplicate_similarity: f32,
    pub duplicate_window: usize,
}

impl Default for BurstParams {
    fn default() -> Self {
        BurstParams { max_gap_ms: 2000, burst_similarity: 0.75, duplicate_similarity: 0.95, duplicate_window: 8 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Burst,
    NearDuplicate,
}

/// A group of two or more frames (indices into the input, in capture / input order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub kind: GroupKind,
    pub members: Vec<usize>,
    /// The member with the highest quality score (a frame index, one of `members`, not a
    /// position in it); `None` when no member has been scored.
    pub best: Option<usize>,
}

/// Cosine similarity; 0 for empty, mismatched or zero vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        ab += (*x as f64) * (*y as f64);
        aa += (*x as f64) * (*x as f64);
        bb += (*y as f64) * (*y as f64);
    }
    if aa == 0.0 || bb == 0.0 { 0.0 } else { (ab / (aa.sqrt() * bb.sqrt())) as f32 }
}

struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, i: usize) -> usize {
        let mut r = i;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut i = i;
        while self.0[i] != r {
            let n = self.0[i];
            self.0[i] = r;
            i = n;
        }
        r
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b);
        }
    }
}

/// Groups `frames`; frames in no group are left out.
pub fn group(frames: &[Frame], p: &BurstParams) -> Vec<Group> {
    let n = frames.len();
    let mut dsu = Dsu((0..n).collect());
    let mut time_linked = vec![false; n];
    let sim = |a: usize, b: usize| match (&frames[a].embedding, &frames[b].embedding) {
        (Some(x), Some(y)) => Some(cosine(x, y)),
        _ => None,
    };
    // Capture order: (camera, time) for timed frames.
    let mut timed: Vec<usize> = (0..n).filter(|&i| frames[i].capture_ms.is_some()).collect();
    timed.sort_by(|&a, &b| (&frames[a].camera, frames[a].capture_ms, a).cmp(&(&frames[b].camera, frames[b].capture_ms, b)));
    for w in timed.windows(2) {
        let (a, b) = (w[0], w[1]);
        if frames[a].camera != frames[b].camera {
            continue;
        }
        let dt = frames[b].capture_ms.unwrap() - frames[a].capture_ms.unwrap();
        if dt <= p.max_gap_ms && sim(a, b).is_none_or(|s| s >= p.burst_similarity) {
            dsu.union(a, b);
            time_linked[a] = true;
            time_linked[b] = true;
        }
    }
    // Near-duplicates among neighbours in display order (time, then input order).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (frames[i].capture_ms.is_none(), frames[i].capture_ms, i));
    for (k, &a) in order.iter().enumerate() {
        for &b in order.iter().skip(k + 1).take(p.duplicate_window) {
            if sim(a, b).is_some_and(|s| s >= p.duplicate_similarity) {
                dsu.union(a, b);
            }
        }
    }
    let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = dsu.find(i);
        by_root.entry(r).or_default().push(i);
    }
    let rank: Vec<usize> = {
        let mut r = vec![0; n];
        for (k, &i) in order.iter().enumerate() {
            r[i] = k;
        }
        r
    };
    let mut groups: Vec<Group> = by_root
        .into_values()
        .filter(|m| m.len() >= 2)
        .map(|mut members| {
            members.sort_by_key(|&i| rank[i]);
            let kind = if members.iter().any(|&i| time_linked[i]) { GroupKind::Burst } else { GroupKind::NearDuplicate };
            let best = members
                .iter()
                .filter_map(|&i| frames[i].quality.filter(|q| q.is_finite()).map(|q| (i, q)))
                .fold(None, |acc: Option<(usize, f32)>, (i, q)| match acc {
                    Some((_, bq)) if bq >= q => acc,
                    _ => Some((i, q)),
                })
                .map(|(i, _)| i);
            Group { kind, members, best }
        })
        .collect();
    groups.sort_by_key(|g| rank[g.members[0]]);
    groups
}
