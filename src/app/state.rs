//! The open album as the app sees it: every photo with its decision, thumbnail state and scores;
//! the visible order (filter + sort, bursts collapsed); the selection and the compare set; the undo
//! and redo stacks of decisions.
//!
//! Pure data and logic with no egui and no threads, so every rule here is tested directly
//! (tests/app_state.rs). The app feeds it album and worker events and applies the commands its panels
//! return; it never touches a file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::library::album::DecisionChange;
use crate::library::burst::{self, BurstParams, Frame, GroupKind};
use crate::library::exif::ExifSummary;
use crate::library::xmp::{ColorLabel, Decision, Pick};
use crate::worker::scoring::PhotoScores;

/// Scoring state of one photo: "not scored yet" is a state, not an error.
#[derive(Debug, Clone, Default)]
pub enum ScoreState {
    #[default]
    Pending,
    Ready(Arc<PhotoScores>),
    Failed(String),
}

/// Thumbnail state (the texture itself lives in the app's texture cache).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ThumbState {
    #[default]
    Pending,
    Ready,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Photo {
    pub id: i64,
    /// The original (RAW of a pair): decisions are keyed on it.
    pub path: PathBuf,
    /// The file whose pixels are shown (the JPEG of a pair, else `path`).
    pub display: PathBuf,
    pub name: String,
    pub exif: Option<ExifSummary>,
    pub capture_ms: Option<i64>,
    pub decision: Decision,
    /// The last write of this photo's sidecar failed (the decision is safe in the database).
    pub sidecar_pending: bool,
    /// Stars a reject replaced, restored by unflag (as the database does).
    pub prior_stars: Option<u8>,
    pub thumb: ThumbState,
    pub scores: ScoreState,
    /// Keep probability (0..1) under the active taste profile, once the taste service scored it.
    pub taste: Option<f32>,
    /// The same conditioned on each of the active profile's themes (empty without themes).
    pub taste_by_theme: Vec<f32>,
    /// Probability of each of the active profile's style tags (empty without tags).
    pub taste_tags: Vec<f32>,
}

impl Photo {
    pub fn new(id: i64, path: PathBuf, companion: Option<PathBuf>, exif: Option<ExifSummary>, decision: Decision) -> Photo {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let capture_ms = exif.as_ref().and_then(|e| e.capture_ms());
        let display = companion.unwrap_or_else(|| path.clone());
        Photo {
            id,
            path,
            display,
            name,
            exif,
            capture_ms,
            decision,
            sidecar_pending: false,
            prior_stars: None,
            thumb: ThumbState::Pending,
            scores: ScoreState::Pending,
            taste: None,
            taste_by_theme: Vec::new(),
            taste_tags: Vec::new(),
        }
    }

    /// Technical quality (0..100), when a trained quality model has scored the photo. The shipped
    /// model's head is linear and can step a little outside the MOS scale on unusual photos; the app
    /// shows and sorts by the score clamped to 0..100.
    pub fn quality(&self) -> Option<f32> {
        match &self.scores {
            ScoreState::Ready(s) => s.quality.as_ref().map(|q| q.score.clamp(0.0, 100.0)),
            _ => None,
        }
    }

    /// The score the grid sorts and badges by (0..100). Only trained heads count: the active taste
    /// profile's keep probability in percent when one is active (and has scored the photo), else the
    /// technical quality.
    pub fn score(&self) -> Option<f32> {
        self.taste.map(|t| t * 100.0).or_else(|| self.quality())
    }

    /// The photo's embedding (pooled backbone features), once scored.
    pub fn embedding(&self) -> Option<&[f32]> {
        match &self.scores {
            ScoreState::Ready(s) if !s.embedding.is_empty() => Some(&s.embedding),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum SortKey {
    #[default]
    CaptureTime,
    Name,
    Score,
    Quality,
}

impl SortKey {
    pub const ALL: [SortKey; 4] = [SortKey::CaptureTime, SortKey::Name, SortKey::Score, SortKey::Quality];
    pub fn label(self) -> &'static str {
        match self {
            SortKey::CaptureTime => "Capture time",
            SortKey::Name => "Name",
            SortKey::Score => "Score",
            SortKey::Quality => "Quality",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum FlagFilter {
    #[default]
    All,
    Unflagged,
    Picks,
    Rejects,
}

impl FlagFilter {
    pub const ALL: [FlagFilter; 4] = [FlagFilter::All, FlagFilter::Unflagged, FlagFilter::Picks, FlagFilter::Rejects];
    pub fn label(self) -> &'static str {
        match self {
            FlagFilter::All => "All",
            FlagFilter::Unflagged => "Unflagged",
            FlagFilter::Picks => "Picks",
            FlagFilter::Rejects => "Rejects",
        }
    }
}

/// What the grid shows. Saved with the settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Filter {
    pub flag: FlagFilter,
    pub min_stars: u8,
    /// Only photos with a score in this range (0..100); photos without a score pass unless `scored_only`.
    pub score_range: (f32, f32),
    pub scored_only: bool,
    /// ImageNet content class contains this text (style labels take its place once a style head is trained).
    pub content: String,
}

impl Default for Filter {
    fn default() -> Self {
        Filter { flag: FlagFilter::All, min_stars: 0, score_range: (0.0, 100.0), scored_only: false, content: String::new() }
    }
}

impl Filter {
    pub fn is_default(&self) -> bool {
        *self == Filter::default()
    }

    pub fn accepts(&self, p: &Photo) -> bool {
        let d = &p.decision;
        let flag_ok = match self.flag {
            FlagFilter::All => true,
            FlagFilter::Unflagged => !d.is_picked() && !d.is_rejected(),
            FlagFilter::Picks => d.is_picked(),
            FlagFilter::Rejects => d.is_rejected(),
        };
        if !flag_ok || d.stars() < self.min_stars {
            return false;
        }
        match p.score() {
            Some(s) if s < self.score_range.0 || s > self.score_range.1 => return false,
            None if self.scored_only => return false,
            _ => {}
        }
        if !self.content.is_empty() {
            let needle = self.content.to_lowercase();
            let ScoreState::Ready(s) = &p.scores else { return false };
            if !s.classes.iter().take(3).any(|c| c.1.to_lowercase().contains(&needle)) {
                return false;
            }
        }
        true
    }
}

/// One decision change, remembered for undo/redo: the whole decision before and after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edit {
    pub id: i64,
    pub before: Decision,
    pub after: Decision,
}

/// A burst / near-duplicate group, by photo index.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub kind: GroupKind,
    pub members: Vec<usize>,
    /// The member shown when collapsed: the best by score, else the first.
    pub cover: usize,
}

/// The album in the app.
#[derive(Debug, Default)]
pub struct AlbumState {
    pub root: PathBuf,
    pub photos: Vec<Photo>,
    index: HashMap<i64, usize>,
    by_path: HashMap<PathBuf, usize>,
    /// Indices into `photos` in display order (filtered, sorted, groups collapsed).
    pub visible: Vec<usize>,
    /// Position in `visible` of the current photo.
    pub cursor: usize,
    /// Photos in the compare view (indices into `photos`), at most 4.
    pub compare: Vec<usize>,
    pub groups: Vec<Group>,
    /// Group of each photo (index into `groups`).
    group_of: HashMap<usize, usize>,
    /// Groups the user expanded in the grid.
    pub expanded: std::collections::HashSet<usize>,
    pub collapse_groups: bool,
    pub sort: SortKey,
    pub descending: bool,
    pub filter: Filter,
    /// When set, the grid shows only these photos (the "label these next" suggestion), in this
    /// order of preference; not saved.
    pub only: Option<Vec<i64>>,
    undo: Vec<Edit>,
    redo: Vec<Edit>,
}

pub const MAX_COMPARE: usize = 4;

impl AlbumState {
    pub fn new(root: &Path) -> AlbumState {
        AlbumState { root: root.to_owned(), collapse_groups: true, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.photos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.photos.is_empty()
    }

    /// Adds a photo or refreshes one already known (by id); returns its index.
    pub fn upsert(&mut self, p: Photo) -> usize {
        if let Some(&i) = self.index.get(&p.id) {
            let old = &mut self.photos[i];
            let (thumb, scores, taste) = (std::mem::take(&mut old.thumb), std::mem::take(&mut old.scores), old.taste);
            let taste_by_theme = std::mem::take(&mut old.taste_by_theme);
            let taste_tags = std::mem::take(&mut old.taste_tags);
            *old = Photo { thumb, scores, taste, taste_by_theme, taste_tags, ..p };
            return i;
        }
        let i = self.photos.len();
        self.index.insert(p.id, i);
        self.by_path.insert(p.path.clone(), i);
        self.photos.push(p);
        i
    }

    pub fn index_of(&self, id: i64) -> Option<usize> {
        self.index.get(&id).copied()
    }

    pub fn index_of_path(&self, path: &Path) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    pub fn photo_mut(&mut self, id: i64) -> Option<&mut Photo> {
        self.index.get(&id).map(|&i| &mut self.photos[i])
    }

    /// The photo under the cursor.
    pub fn current(&self) -> Option<usize> {
        self.visible.get(self.cursor).copied()
    }

    pub fn current_photo(&self) -> Option<&Photo> {
        self.current().map(|i| &self.photos[i])
    }

    /// Recomputes bursts (from capture times, cameras and the backbone embeddings scored so far).
    pub fn regroup(&mut self) {
        let frames: Vec<Frame> = self
            .photos
            .iter()
            .map(|p| Frame {
                capture_ms: p.capture_ms,
                camera: p.exif.as_ref().and_then(|e| e.camera_id()),
                embedding: match &p.scores {
                    ScoreState::Ready(s) if !s.embedding.is_empty() => Some(s.embedding.clone()),
                    _ => None,
                },
                quality: p.score(),
            })
            .collect();
        self.groups = burst::group(&frames, &BurstParams::default())
            .into_iter()
            .map(|g| Group { kind: g.kind, cover: g.best.unwrap_or(g.members[0]), members: g.members })
            .collect();
        self.group_of = self.groups.iter().enumerate().flat_map(|(gi, g)| g.members.iter().map(move |&m| (m, gi))).collect();
        self.expanded.retain(|&g| g < self.groups.len());
    }

    /// Expands a collapsed burst or collapses an expanded one.
    pub fn toggle_group(&mut self, g: usize) {
        if !self.expanded.remove(&g) {
            self.expanded.insert(g);
        }
        self.refresh();
    }

    pub fn group_of(&self, photo: usize) -> Option<usize> {
        self.group_of.get(&photo).copied()
    }

    /// Recomputes `visible`, keeping the cursor on the same photo where it is still shown.
    pub fn refresh(&mut self) {
        let keep = self.current();
        let only: Option<std::collections::HashSet<i64>> = self.only.as_ref().map(|o| o.iter().copied().collect());
        let mut v: Vec<usize> = (0..self.photos.len())
            .filter(|&i| self.filter.accepts(&self.photos[i]) && only.as_ref().is_none_or(|o| o.contains(&self.photos[i].id)))
            .collect();
        let photos = &self.photos;
        let desc = self.descending;
        // Scores: best first (reversed: worst first); photos without a score always last.
        let by_score = |a: Option<f32>, b: Option<f32>| match (a, b) {
            (Some(x), Some(y)) => {
                let o = y.total_cmp(&x);
                if desc { o.reverse() } else { o }
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        v.sort_by(|&a, &b| {
            let (pa, pb) = (&photos[a], &photos[b]);
            let o = match self.sort {
                SortKey::Name => pa.name.cmp(&pb.name),
                SortKey::CaptureTime => match (pa.capture_ms, pb.capture_ms) {
                    (Some(x), Some(y)) => x.cmp(&y),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => pa.name.cmp(&pb.name),
                },
                SortKey::Score => return by_score(pa.score(), pb.score()).then_with(|| pa.name.cmp(&pb.name)),
                SortKey::Quality => return by_score(pa.quality(), pb.quality()).then_with(|| pa.name.cmp(&pb.name)),
            };
            let o = if desc { o.reverse() } else { o };
            o.then_with(|| pa.name.cmp(&pb.name))
        });
        if self.collapse_groups {
            // A collapsed group shows one frame: its cover when the filter lets it through, else its
            // first visible member.
            let shown: std::collections::HashSet<usize> = v.iter().copied().collect();
            let mut seen = std::collections::HashSet::new();
            v.retain(|&i| match self.group_of(i) {
                Some(g) if !self.expanded.contains(&g) => {
                    let cover = self.groups[g].cover;
                    let rep = if shown.contains(&cover) { i == cover } else { true };
                    rep && seen.insert(g)
                }
                _ => true,
            });
        }
        self.visible = v;
        self.cursor = keep.and_then(|k| self.visible.iter().position(|&i| i == k)).unwrap_or(0).min(self.visible.len().saturating_sub(1));
        self.compare.retain(|&i| i < photos.len());
    }

    /// Moves the cursor by `delta` positions in the visible order (clamped).
    pub fn move_by(&mut self, delta: isize) {
        if self.visible.is_empty() {
            return;
        }
        let n = self.visible.len() as isize;
        self.cursor = (self.cursor as isize + delta).clamp(0, n - 1) as usize;
    }

    pub fn move_to(&mut self, pos: usize) {
        if !self.visible.is_empty() {
            self.cursor = pos.min(self.visible.len() - 1);
        }
    }

    pub fn select_photo(&mut self, index: usize) {
        if let Some(pos) = self.visible.iter().position(|&i| i == index) {
            self.cursor = pos;
        }
    }

    /// Applies `change` to photo `index` locally and records it for undo; returns the edit for the
    /// caller to send to the album (database + sidecars), or `None` if nothing changes.
    pub fn decide(&mut self, index: usize, change: DecisionChange) -> Option<Edit> {
        let p = self.photos.get_mut(index)?;
        let before = p.decision;
        let mut after = before;
        if change == DecisionChange::Reject && !before.is_rejected() {
            p.prior_stars = before.rating.filter(|r| *r >= 0).map(|r| r as u8);
        }
        apply_change(&mut after, change, p.prior_stars);
        if after == before {
            return None;
        }
        p.decision = after;
        let e = Edit { id: p.id, before, after };
        self.undo.push(e);
        self.redo.clear();
        Some(e)
    }

    /// Takes back the last decision; returns the photo and the decision to restore.
    pub fn undo(&mut self) -> Option<(usize, Decision)> {
        let e = self.undo.pop()?;
        let i = self.index_of(e.id)?;
        self.photos[i].decision = e.before;
        self.redo.push(e);
        self.select_photo(i);
        Some((i, e.before))
    }

    pub fn redo(&mut self) -> Option<(usize, Decision)> {
        let e = self.redo.pop()?;
        let i = self.index_of(e.id)?;
        self.photos[i].decision = e.after;
        self.undo.push(e);
        self.select_photo(i);
        Some((i, e.after))
    }

    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Adds or removes photo `index` from the compare set (at most [`MAX_COMPARE`]; the oldest goes).
    pub fn toggle_compare(&mut self, index: usize) {
        if let Some(pos) = self.compare.iter().position(|&i| i == index) {
            self.compare.remove(pos);
        } else {
            if self.compare.len() == MAX_COMPARE {
                self.compare.remove(0);
            }
            self.compare.push(index);
        }
    }

    /// The frames the compare view shows: the chosen set, else the current photo and the visible
    /// photos after it (its burst first, when it has one), 2 to 4.
    pub fn compare_frames(&self) -> Vec<usize> {
        if self.compare.len() >= 2 {
            return self.compare.clone();
        }
        let Some(cur) = self.current() else { return Vec::new() };
        let mut out = vec![cur];
        if let Some(g) = self.group_of(cur) {
            out.extend(self.groups[g].members.iter().copied().filter(|&m| m != cur).take(MAX_COMPARE - 1));
        }
        let mut pos = self.cursor + 1;
        while out.len() < 2 && pos < self.visible.len() {
            if !out.contains(&self.visible[pos]) {
                out.push(self.visible[pos]);
            }
            pos += 1;
        }
        out
    }

    /// Up to `n` cover suggestions: the best-scored photos, at most one per burst group, rejects excluded.
    /// Empty when nothing has a score yet (no number is made up).
    pub fn suggest_covers(&self, n: usize) -> Vec<usize> {
        let mut scored: Vec<(usize, f32)> = (0..self.photos.len())
            .filter(|&i| !self.photos[i].decision.is_rejected())
            .filter_map(|i| self.photos[i].score().map(|s| (i, s)))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut used_groups = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, _) in scored {
            if let Some(g) = self.group_of(i)
                && !used_groups.insert(g)
            {
                continue;
            }
            out.push(i);
            if out.len() == n {
                break;
            }
        }
        out
    }

    /// Counts for the status bar: (picks, rejects, rated).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for p in &self.photos {
            c.0 += p.decision.is_picked() as usize;
            c.1 += p.decision.is_rejected() as usize;
            c.2 += (p.decision.stars() > 0) as usize;
        }
        c
    }
}

/// The decision after `change`, by the same rules the album applies in the database.
pub fn apply_change(d: &mut Decision, change: DecisionChange, prior_stars: Option<u8>) {
    match change {
        DecisionChange::Stars(s) => d.set_rating(s),
        DecisionChange::Label(l) => d.set_label(l),
        DecisionChange::Pick => d.mark_picked(),
        DecisionChange::Reject => d.mark_rejected(),
        DecisionChange::Unflag => d.unflag(prior_stars),
        DecisionChange::Restore(r) => *d = r,
    }
}

/// The colour labels on keys 6..9, as in Lightroom.
pub fn label_for_key(n: u8) -> Option<ColorLabel> {
    match n {
        6 => Some(ColorLabel::Red),
        7 => Some(ColorLabel::Yellow),
        8 => Some(ColorLabel::Green),
        9 => Some(ColorLabel::Blue),
        _ => None,
    }
}

pub fn pick_text(d: &Decision) -> &'static str {
    match d.pick {
        Some(Pick::Picked) => "picked",
        Some(Pick::Rejected) => "rejected",
        _ if d.is_rejected() => "rejected",
        _ => "unflagged",
    }
}

/// An error about `path` without the path in front (the tile, loupe or panel showing it already
/// names the photo): `"/a/b.jpg: damaged or truncated file: ..."` reads `"damaged or truncated
/// file: ..."`. Errors that do not start with the path are returned whole.
pub fn reason<'a>(error: &'a str, path: &std::path::Path) -> &'a str {
    let prefix = format!("{}: ", path.display());
    let mut e = error;
    while let Some(rest) = e.strip_prefix(prefix.as_str()) {
        e = rest;
    }
    e
}

impl Photo {
    /// [`reason`] for an error about this photo: about its original or, for a RAW+JPEG pair,
    /// about the JPEG whose pixels are shown and scored (then named, since the photo is named by
    /// its RAW).
    pub fn error_text(&self, error: &str) -> String {
        let e = reason(error, &self.path);
        if self.display != self.path {
            let d = reason(e, &self.display);
            if d.len() < e.len() {
                let name = self.display.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                return format!("{name}: {d}");
            }
        }
        e.to_string()
    }
}
