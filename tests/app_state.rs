//! The app's album state without a window: filters, sorting, bursts collapsed to their best frame,
//! undo/redo, compare sets, cover suggestions, saved settings. Photos here are plain records; scores
//! are set by hand where a rule depends on them (the rules are what is tested, not a model).

use std::path::PathBuf;
use std::sync::Arc;

use keepers::app::settings::Settings;
use keepers::app::state::{AlbumState, FlagFilter, Photo, ScoreState, SortKey};
use keepers::library::album::DecisionChange;
use keepers::library::exif::ExifSummary;
use keepers::library::xmp::{ColorLabel, Decision};
use keepers::worker::{PhotoScores, QualityScore};

fn photo(id: i64, name: &str, time: Option<&str>, quality: Option<f32>) -> Photo {
    let exif = time.map(|t| ExifSummary {
        date_time_original: Some(t.to_string()),
        make: Some("Cam".into()),
        model: Some("One".into()),
        serial: Some("42".into()),
        ..Default::default()
    });
    let mut p = Photo::new(id, PathBuf::from(format!("/album/{name}")), None, exif, Decision::default());
    if let Some(q) = quality {
        p.scores = ScoreState::Ready(Arc::new(PhotoScores {
            classes: vec![(967, "espresso", 0.9)],
            embedding: Vec::new(),
            quality: Some(QualityScore { score: q, patches: Vec::new() }),
            brisque: None,
        }));
    }
    p
}

fn names(st: &AlbumState) -> Vec<&str> {
    st.visible.iter().map(|&i| st.photos[i].name.as_str()).collect()
}

/// Six photos: a burst of three (one second apart), two singles far apart in time, one without EXIF.
fn album() -> AlbumState {
    let mut st = AlbumState::new(std::path::Path::new("/album"));
    st.upsert(photo(1, "b1.jpg", Some("2024:05:01 10:00:00"), Some(40.0)));
    st.upsert(photo(2, "b2.jpg", Some("2024:05:01 10:00:01"), Some(70.0)));
    st.upsert(photo(3, "b3.jpg", Some("2024:05:01 10:00:02"), Some(55.0)));
    st.upsert(photo(4, "single.jpg", Some("2024:05:01 12:00:00"), Some(60.0)));
    st.upsert(photo(5, "late.jpg", Some("2024:05:01 15:00:00"), Some(20.0)));
    st.upsert(photo(6, "noexif.png", None, None));
    st.regroup();
    st.refresh();
    st
}

#[test]
fn bursts_collapse_to_their_best_frame_and_expand() {
    let mut st = album();
    assert_eq!(st.groups.len(), 1, "{:?}", st.groups);
    assert_eq!(st.groups[0].members.len(), 3);
    // Capture order, the burst shown by its best-scored frame (b2, quality 70).
    assert_eq!(names(&st), ["b2.jpg", "single.jpg", "late.jpg", "noexif.png"]);
    st.expanded.insert(0);
    st.refresh();
    assert_eq!(names(&st), ["b1.jpg", "b2.jpg", "b3.jpg", "single.jpg", "late.jpg", "noexif.png"]);
    st.collapse_groups = false;
    st.expanded.clear();
    st.refresh();
    assert_eq!(st.visible.len(), 6);
}

/// A burst later in the album (its frames are not the first photos loaded) is shown by its own
/// best frame: the group's best is a photo index, not a position among its members (reading it
/// as a position showed another photo as the cover, or crashed the app once scores came in).
#[test]
fn a_burst_after_other_photos_is_covered_by_its_own_best_frame() {
    let mut st = AlbumState::new(std::path::Path::new("/album"));
    st.upsert(photo(1, "early.jpg", Some("2024:05:01 08:00:00"), Some(50.0)));
    st.upsert(photo(2, "noon.jpg", Some("2024:05:01 12:00:00"), Some(65.0)));
    st.upsert(photo(3, "b1.jpg", Some("2024:05:01 16:00:00"), Some(30.0)));
    st.upsert(photo(4, "b2.jpg", Some("2024:05:01 16:00:01"), Some(45.0)));
    st.upsert(photo(5, "b3.jpg", Some("2024:05:01 16:00:02"), Some(80.0)));
    st.regroup();
    st.refresh();
    assert_eq!(st.groups.len(), 1, "{:?}", st.groups);
    let g = &st.groups[0];
    assert!(g.members.contains(&g.cover), "the cover {} is one of the burst {:?}", g.cover, g.members);
    assert_eq!(st.photos[g.cover].name, "b3.jpg");
    assert_eq!(names(&st), ["early.jpg", "noon.jpg", "b3.jpg"]);
}

#[test]
fn sorting_puts_unscored_photos_last_and_reverses() {
    let mut st = album();
    st.collapse_groups = false;
    st.sort = SortKey::Quality;
    st.refresh();
    assert_eq!(names(&st), ["b2.jpg", "single.jpg", "b3.jpg", "b1.jpg", "late.jpg", "noexif.png"]);
    st.sort = SortKey::Name;
    st.descending = true;
    st.refresh();
    assert_eq!(names(&st), ["single.jpg", "noexif.png", "late.jpg", "b3.jpg", "b2.jpg", "b1.jpg"]);
}

#[test]
fn filters_by_flag_stars_score_and_content() {
    let mut st = album();
    st.collapse_groups = false;
    st.refresh();
    let i = st.index_of(4).unwrap();
    st.decide(i, DecisionChange::Pick).unwrap();
    st.decide(i, DecisionChange::Stars(4)).unwrap();
    let j = st.index_of(5).unwrap();
    st.decide(j, DecisionChange::Reject).unwrap();
    st.filter.flag = FlagFilter::Picks;
    st.refresh();
    assert_eq!(names(&st), ["single.jpg"]);
    st.filter.flag = FlagFilter::Unflagged;
    st.refresh();
    assert_eq!(st.visible.len(), 4);
    st.filter.flag = FlagFilter::All;
    st.filter.min_stars = 4;
    st.refresh();
    assert_eq!(names(&st), ["single.jpg"]);
    st.filter.min_stars = 0;
    st.filter.score_range = (50.0, 100.0);
    st.refresh();
    // Unscored photos pass a score range unless asked otherwise.
    assert_eq!(names(&st), ["b2.jpg", "b3.jpg", "single.jpg", "noexif.png"]);
    st.filter.scored_only = true;
    st.refresh();
    assert_eq!(names(&st), ["b2.jpg", "b3.jpg", "single.jpg"]);
    st.filter = Default::default();
    st.filter.content = "espress".into();
    st.refresh();
    assert_eq!(st.visible.len(), 5);
}

#[test]
fn undo_and_redo_restore_whole_decisions_and_unflag_restores_stars() {
    let mut st = album();
    let i = st.index_of(1).unwrap();
    st.decide(i, DecisionChange::Stars(3)).unwrap();
    st.decide(i, DecisionChange::Label(Some(ColorLabel::Green))).unwrap();
    st.decide(i, DecisionChange::Reject).unwrap();
    assert!(st.photos[i].decision.is_rejected());
    assert!(st.decide(i, DecisionChange::Reject).is_none(), "no change, nothing to undo");
    st.decide(i, DecisionChange::Unflag).unwrap();
    assert_eq!(st.photos[i].decision.stars(), 3, "unflag gives back the stars the reject replaced");
    let (k, d) = st.undo().unwrap();
    assert_eq!(k, i);
    assert!(d.is_rejected());
    st.undo().unwrap();
    let (_, d) = st.undo().unwrap();
    assert_eq!((d.stars(), d.label), (3, None));
    let (_, d) = st.redo().unwrap();
    assert_eq!(d.label, Some(ColorLabel::Green));
    // A new decision clears the redo stack.
    st.decide(i, DecisionChange::Pick).unwrap();
    assert!(!st.can_redo());
}

#[test]
fn compare_uses_the_marked_frames_else_the_burst() {
    let mut st = album();
    st.move_to(0); // b2, the burst's cover
    let frames = st.compare_frames();
    let names: Vec<&str> = frames.iter().map(|&i| st.photos[i].name.as_str()).collect();
    assert_eq!(names, ["b2.jpg", "b1.jpg", "b3.jpg"]);
    for id in [4, 5, 6, 1, 2] {
        st.toggle_compare(st.index_of(id).unwrap());
    }
    // At most four: the oldest mark went.
    let marked: Vec<i64> = st.compare.iter().map(|&i| st.photos[i].id).collect();
    assert_eq!(marked, [5, 6, 1, 2]);
    assert_eq!(st.compare_frames().len(), 4);
}

#[test]
fn covers_are_the_best_photos_at_most_one_per_burst_and_never_rejects() {
    let mut st = album();
    let names = |st: &AlbumState, v: Vec<usize>| v.into_iter().map(|i| st.photos[i].name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&st, st.suggest_covers(3)), ["b2.jpg", "single.jpg", "late.jpg"]);
    let i = st.index_of(4).unwrap();
    st.decide(i, DecisionChange::Reject).unwrap();
    assert_eq!(names(&st, st.suggest_covers(3)), ["b2.jpg", "late.jpg"]);
    // Nothing scored: no suggestion is made up.
    let mut empty = AlbumState::new(std::path::Path::new("/a"));
    empty.upsert(photo(1, "x.jpg", None, None));
    empty.refresh();
    assert!(empty.suggest_covers(3).is_empty());
}

#[test]
fn settings_round_trip_and_survive_a_damaged_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/settings.json");
    let (s, note) = Settings::load(&path);
    assert_eq!(s, Settings::default());
    assert!(note.is_none());
    let mut s = Settings::default();
    for k in 0..12 {
        s.remember(&PathBuf::from(format!("/shoot/{k}")));
    }
    s.remember(&PathBuf::from("/shoot/3"));
    assert_eq!(s.recent.len(), keepers::app::settings::MAX_RECENT);
    assert_eq!(s.recent[0], PathBuf::from("/shoot/3"));
    assert_eq!(s.recent.iter().filter(|p| p.as_path() == std::path::Path::new("/shoot/3")).count(), 1);
    s.auto_advance = true;
    s.sort = SortKey::Score;
    s.filter.min_stars = 2;
    s.save(&path).unwrap();
    let (back, note) = Settings::load(&path);
    assert!(note.is_none());
    assert_eq!(back, s);
    std::fs::write(&path, "{ not json").unwrap();
    let (back, note) = Settings::load(&path);
    assert_eq!(back, Settings::default());
    assert!(note.unwrap().contains("settings.json"));
}

#[test]
fn taste_labels_themes_and_the_taste_score_come_from_the_album() {
    use keepers::app::taste::{LabelSource, TastePrefs, ThemeSource};
    let mut st = AlbumState::new(std::path::Path::new("/album"));
    for (id, name) in [(1, "wedding/a.jpg"), (2, "wedding/b.jpg"), (3, "party/c.jpg"), (4, "d.jpg"), (5, "party/e.jpg")] {
        st.upsert(photo(id, name, None, Some(50.0)));
    }
    st.refresh();
    let mut pick = Decision::default();
    pick.mark_picked();
    let mut reject = Decision::default();
    reject.mark_rejected();
    let mut three = Decision::default();
    three.set_rating(3);
    st.photos[0].decision = pick;
    st.photos[1].decision = reject;
    st.photos[2].decision = pick;
    st.photos[3].decision = three;
    // Picks vs rejects: only flagged photos are labels.
    let prefs = TastePrefs::default();
    let l = prefs.labels(&st);
    assert_eq!(l.iter().map(|l| (l.id, l.keep)).collect::<Vec<_>>(), vec![(1, true), (2, false), (3, true)]);
    // Stars: rated photos only, keep at or above the threshold.
    let stars = TastePrefs { source: LabelSource::Stars, keep_stars: 3, ..TastePrefs::default() };
    assert_eq!(stars.labels(&st).iter().map(|l| (l.id, l.keep, l.grade)).collect::<Vec<_>>(), vec![(4, true, 3.0)]);
    // Themes: one per folder; none when off or when the labels lie in one folder.
    assert!(prefs.themes(&st, &l).0.is_empty());
    let folders = TastePrefs { themes: ThemeSource::Folders, ..TastePrefs::default() };
    let (themes, of) = folders.themes(&st, &l);
    assert_eq!(themes, vec!["party".to_string(), "wedding".to_string()]);
    assert_eq!((of[&1], of[&2], of[&3]), (1, 1, 0));
    assert_eq!(
        keepers::app::taste::theme_of(ThemeSource::Folders, std::path::Path::new("/album"), std::path::Path::new("/album/d.jpg"))
            .as_deref(),
        Some("album")
    );
    let only_wedding: Vec<_> = l.iter().copied().filter(|l| l.id != 3).collect();
    assert!(folders.themes(&st, &only_wedding).0.is_empty());
    // A taste score, once there is one, is the grid's score (in percent); quality otherwise.
    assert_eq!(st.photos[0].score(), Some(50.0));
    st.photos[0].taste = Some(0.8);
    assert!((st.photos[0].score().unwrap() - 80.0).abs() < 1e-4);
    // "Label these next" limits the grid to the suggestion until cleared.
    st.only = Some(vec![5, 4]);
    st.refresh();
    let mut shown = names(&st);
    shown.sort();
    assert_eq!(shown, vec!["d.jpg", "e.jpg"]);
    st.only = None;
    st.refresh();
    assert_eq!(st.visible.len(), 5);
}

/// Tiles, the loupe and the info panel show a file's error without its path in front (they name
/// the photo already), also when the path was put in front twice.
#[test]
fn errors_are_shown_without_the_path_in_front() {
    use keepers::app::state::reason;
    let p = std::path::Path::new("/album/day 1/IMG_1.jpg");
    assert_eq!(reason("/album/day 1/IMG_1.jpg: damaged or truncated file: x", p), "damaged or truncated file: x");
    assert_eq!(reason("/album/day 1/IMG_1.jpg: /album/day 1/IMG_1.jpg: cannot decode: y", p), "cannot decode: y");
    assert_eq!(reason("backbone inference failed", p), "backbone inference failed");
    assert_eq!(reason("/album/day 1/IMG_2.jpg: z", p), "/album/day 1/IMG_2.jpg: z");
    // A RAW+JPEG pair is named by its RAW; an error about the JPEG (the file shown and scored)
    // keeps the JPEG's name, not its folder.
    let pair = Photo::new(7, PathBuf::from("/album/IMG_1.CR2"), Some(PathBuf::from("/album/IMG_1.JPG")), None, Decision::default());
    assert_eq!(pair.error_text("/album/IMG_1.JPG: damaged or truncated file: x"), "IMG_1.JPG: damaged or truncated file: x");
    assert_eq!(pair.error_text("/album/IMG_1.CR2: no preview"), "no preview");
}
