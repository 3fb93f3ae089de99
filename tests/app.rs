//! The desktop app driven headless through egui_kittest: widgets are found by their accessible labels,
//! keys are pressed as a user would, and what reaches the disk (XMP sidecars) is read back with the
//! library's own reader. Snapshot tests render the grid and the loupe with wgpu (lavapipe on CPU-only
//! machines) and compare them with the committed images in tests/snapshots/ (regenerate with
//! `UPDATE_SNAPSHOTS=1`).
//!
//! Every test opens a copy of the bundled sample album in a temporary folder, with its own library
//! database, thumbnail cache and no saved settings.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keepers::app::commands::View;
use keepers::app::state::SortKey;
use keepers::app::{AppOptions, KeepersApp};
use keepers::library::xmp::{self, ColorLabel, Decision};

struct Album {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
}

/// A copy of assets/samples (photos only) and a private data folder.
fn sample_album() -> Album {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("shoot");
    std::fs::create_dir_all(&root).unwrap();
    for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples")).unwrap() {
        let p = e.unwrap().path();
        let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("").to_lowercase();
        if ext == "jpg" || ext == "png" {
            std::fs::copy(&p, root.join(p.file_name().unwrap())).unwrap();
        }
    }
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    Album { root, data, _tmp: tmp }
}

fn options(a: &Album, scoring: bool) -> AppOptions {
    AppOptions {
        open: Some(a.root.clone()),
        config_dir: None,
        db_path: a.data.join("library.sqlite"),
        thumb_dir: a.data.join("thumbs"),
        scoring,
        preview_side: 1024,
        profile_dir: Some(a.data.join("profiles")),
    }
}

fn harness(a: &Album, scoring: bool, size: (f32, f32)) -> Harness<'static, KeepersApp> {
    let opts = options(a, scoring);
    Harness::builder().with_size(egui::vec2(size.0, size.1)).build_eframe(move |cc| KeepersApp::new(&cc.egui_ctx, opts))
}

/// Steps frames until `done` holds (background threads deliver between frames).
fn wait_for(h: &mut Harness<'_, KeepersApp>, what: &str, done: impl Fn(&KeepersApp) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if done(h.state()) {
            // Let the layout catch up with the last state change.
            h.run_steps(2);
            return;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let app = h.state();
            let s = app.session.as_ref().map(|s| {
                let photos: Vec<String> = s
                    .state
                    .photos
                    .iter()
                    .map(|p| format!("{} {:?} {}", p.name, p.thumb, matches!(p.scores, keepers::app::state::ScoreState::Pending)))
                    .collect();
                format!("finished {} photos {:?}", s.finished, photos)
            });
            panic!("timed out waiting for {what}: {s:?} progress {:?}", app.scoring_progress());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn loaded(app: &KeepersApp) -> bool {
    app.session.as_ref().is_some_and(|s| {
        s.finished && s.state.len() == 16 && s.state.photos.iter().all(|p| p.thumb != keepers::app::state::ThumbState::Pending)
    })
}

fn scored(app: &KeepersApp) -> bool {
    loaded(app) && app.scoring_progress().is_some_and(|p| !p.busy && p.done >= 16)
}

fn current_name(app: &KeepersApp) -> String {
    app.state().unwrap().current_photo().unwrap().name.clone()
}

fn photo_path(a: &Album, name: &str) -> PathBuf {
    std::fs::canonicalize(a.root.join(name)).unwrap()
}

/// Waits until `name`'s sidecar on disk says `want`.
fn wait_sidecar(h: &mut Harness<'_, KeepersApp>, path: &Path, want: Decision) {
    let start = Instant::now();
    loop {
        h.step();
        // XMP has no "unflagged" value: an absent pick flag reads back as None.
        if let Ok((d, _)) = xmp::read_decision(path)
            && d.rating == want.rating
            && d.label == want.label
            && d.is_picked() == want.is_picked()
            && d.is_rejected() == want.is_rejected()
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{}: sidecar never said {want:?} (now {:?})",
            path.display(),
            xmp::read_decision(path)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn opens_the_sample_album_with_every_photo_in_the_grid() {
    let a = sample_album();
    let mut h = harness(&a, false, (1280.0, 800.0));
    wait_for(&mut h, "the album to load", loaded);
    let st = h.state().state().unwrap();
    assert_eq!(st.len(), 16);
    assert_eq!(st.visible.len(), 16);
    // The grid's cells are labelled by file name; the first rows are on screen.
    h.get_by_label("coffee.png");
    h.get_by_label("chelsea.png");
    h.get_by_label("Grid");
    h.get_by_label("Loupe");
    h.get_by_label("Compare");
    // Without a worker no score is made up: the info panel says what is not trained.
    h.get_by_label("Aesthetic score not trained yet");
}

#[test]
fn keyboard_moves_through_the_album() {
    let a = sample_album();
    let mut h = harness(&a, false, (1280.0, 800.0));
    wait_for(&mut h, "the album to load", loaded);
    let order: Vec<String> = {
        let st = h.state().state().unwrap();
        st.visible.iter().map(|&i| st.photos[i].name.clone()).collect()
    };
    assert_eq!(current_name(h.state()), order[0]);
    h.key_press(Key::ArrowRight);
    h.run_steps(2);
    assert_eq!(current_name(h.state()), order[1]);
    h.key_press(Key::End);
    h.run_steps(2);
    assert_eq!(current_name(h.state()), order[15]);
    h.key_press(Key::ArrowRight);
    h.run_steps(2);
    assert_eq!(current_name(h.state()), order[15], "the cursor stops at the last photo");
    h.key_press(Key::Home);
    h.run_steps(2);
    assert_eq!(current_name(h.state()), order[0]);
    // Down moves one grid row.
    let cols = h.state().ui.grid_columns;
    assert!(cols >= 2, "a 1280 px window shows several columns, got {cols}");
    h.key_press(Key::ArrowDown);
    h.run_steps(2);
    assert_eq!(current_name(h.state()), order[cols]);
    // Clicking a cell selects it.
    h.get_by_label(&order[2]).click();
    h.run_steps(2);
    assert_eq!(current_name(h.state()), order[2]);
}

#[test]
fn culling_keys_reach_the_sidecars_and_undo_takes_them_back() {
    let a = sample_album();
    let mut h = harness(&a, false, (1280.0, 800.0));
    wait_for(&mut h, "the album to load", loaded);
    let first = current_name(h.state());
    let path = photo_path(&a, &first);

    h.key_press(Key::P);
    h.run_steps(2);
    assert!(h.state().state().unwrap().current_photo().unwrap().decision.is_picked());
    let mut want = Decision::default();
    want.mark_picked();
    wait_sidecar(&mut h, &path, want);

    h.key_press(Key::Num4);
    want.set_rating(4);
    wait_sidecar(&mut h, &path, want);

    h.key_press(Key::Num6);
    want.set_label(Some(ColorLabel::Red));
    wait_sidecar(&mut h, &path, want);

    // Reject, then undo: the pick and the 4 stars come back, on disk too.
    h.key_press(Key::X);
    let mut rejected = want;
    rejected.mark_rejected();
    wait_sidecar(&mut h, &path, rejected);
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::Z);
    wait_sidecar(&mut h, &path, want);
    let now = h.state().state().unwrap().current_photo().unwrap().decision;
    assert!(now.is_picked() && now.stars() == 4 && now.label == Some(ColorLabel::Red), "{now:?}");
    // Redo puts the reject back.
    h.key_press_modifiers(egui::Modifiers::COMMAND | egui::Modifiers::SHIFT, Key::Z);
    wait_sidecar(&mut h, &path, rejected);

    // Unflag restores the stars the reject replaced.
    h.key_press(Key::U);
    let mut unflagged = rejected;
    unflagged.unflag(Some(4));
    wait_sidecar(&mut h, &path, unflagged);
    assert_eq!(unflagged.stars(), 4);

    // Auto-advance: a pick moves to the next photo; the next photo's sidecar gets the pick.
    h.key_press(Key::A);
    h.run_steps(2);
    assert!(h.state().settings.auto_advance);
    h.key_press(Key::ArrowRight);
    h.run_steps(2);
    let second = current_name(h.state());
    h.key_press(Key::P);
    h.run_steps(2);
    assert_ne!(current_name(h.state()), second, "auto-advance moved on");
    let mut picked = Decision::default();
    picked.mark_picked();
    wait_sidecar(&mut h, &photo_path(&a, &second), picked);
    // The original photo files were never written.
    for name in [&first, &second] {
        let orig = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name);
        assert_eq!(std::fs::read(orig).unwrap(), std::fs::read(a.root.join(name)).unwrap(), "{name} was modified");
    }
}

#[test]
fn views_switch_by_button_and_key_and_the_heatmap_toggles() {
    let a = sample_album();
    let mut h = harness(&a, false, (1280.0, 800.0));
    wait_for(&mut h, "the album to load", loaded);
    h.get_by_label("Loupe").click();
    h.run_steps(2);
    assert_eq!(h.state().ui.view, View::Loupe);
    let name = current_name(h.state());
    h.get_by_label(&format!("Photo {name}"));
    // Z: 100 %, again: fit.
    h.key_press(Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().ui.transform.scale, Some(1.0));
    h.key_press(Key::Z);
    h.run_steps(2);
    assert_eq!(h.state().ui.transform.scale, None);
    h.get_by_label("Compare").click();
    h.run_steps(2);
    assert_eq!(h.state().ui.view, View::Compare);
    // Compare shows the current photo and the next one when nothing is marked.
    let frames = h.state().state().unwrap().compare_frames();
    assert_eq!(frames.len(), 2);
    for &i in &frames {
        let n = h.state().state().unwrap().photos[i].name.clone();
        h.get_by_label(&format!("Photo {n}"));
    }
    h.key_press(Key::G);
    h.run_steps(2);
    assert_eq!(h.state().ui.view, View::Grid);
    h.key_press(Key::Enter);
    h.run_steps(2);
    assert_eq!(h.state().ui.view, View::Loupe);
    h.key_press(Key::Escape);
    h.run_steps(2);
    assert_eq!(h.state().ui.view, View::Grid);

    assert!(!h.state().settings.show_heatmap);
    h.get_by_label("Heatmap").click();
    h.run_steps(2);
    assert!(h.state().settings.show_heatmap);
    h.key_press(Key::H);
    h.run_steps(2);
    assert!(!h.state().settings.show_heatmap);

    // The shortcut sheet opens from its button and closes with Escape.
    h.get_by_label("Keyboard shortcuts").click();
    h.run_steps(5);
    assert!(h.state().ui.show_shortcuts);
    h.get_by_label("Pick");
    h.key_press(Key::Escape);
    h.run_steps(2);
    assert!(!h.state().ui.show_shortcuts);
}

#[test]
fn filters_and_sorting_change_what_the_grid_shows() {
    let a = sample_album();
    let mut h = harness(&a, false, (1280.0, 800.0));
    wait_for(&mut h, "the album to load", loaded);
    // Pick two photos and reject one.
    h.key_press(Key::P);
    h.key_press(Key::ArrowRight);
    h.key_press(Key::P);
    h.key_press(Key::ArrowRight);
    h.key_press(Key::X);
    h.run_steps(2);
    let st = h.state().state().unwrap();
    assert_eq!(st.counts(), (2, 1, 0));
    let mut f = st.filter.clone();
    f.flag = keepers::app::state::FlagFilter::Picks;
    h.state_mut().apply(vec![keepers::app::commands::Command::SetFilter(f.clone())]);
    h.run_steps(2);
    assert_eq!(h.state().state().unwrap().visible.len(), 2);
    f.flag = keepers::app::state::FlagFilter::Rejects;
    h.state_mut().apply(vec![keepers::app::commands::Command::SetFilter(f.clone())]);
    h.run_steps(2);
    assert_eq!(h.state().state().unwrap().visible.len(), 1);
    // "Clear filters" appears with a filter on, and clears it.
    h.get_by_label("Clear filters").click();
    h.run_steps(2);
    assert_eq!(h.state().state().unwrap().visible.len(), 16);

    // Sort by name through the combo box; reverse with the toggle.
    h.get_by_label("Sort by").click();
    h.run_steps(2);
    h.get_by_label("Name").click();
    h.run_steps(2);
    assert_eq!(h.state().state().unwrap().sort, SortKey::Name);
    let names = |app: &KeepersApp| -> Vec<String> {
        let st = app.state().unwrap();
        st.visible.iter().map(|&i| st.photos[i].name.clone()).collect()
    };
    let mut sorted = names(h.state());
    sorted.sort();
    assert_eq!(names(h.state()), sorted);
    h.get_by_label("Reverse").click();
    h.run_steps(2);
    sorted.reverse();
    assert_eq!(names(h.state()), sorted);
}

#[test]
fn scores_content_and_covers_come_from_the_worker() {
    let a = sample_album();
    let mut h = harness(&a, true, (1280.0, 800.0));
    wait_for(&mut h, "the album to be scored", scored);
    let st = h.state().state().unwrap();
    let coffee = st.index_of_path(&photo_path(&a, "coffee.png")).unwrap();
    let keepers::app::state::ScoreState::Ready(s) = &st.photos[coffee].scores else { panic!("coffee.png not scored") };
    assert_eq!(s.classes[0].1, "espresso");
    assert_eq!(s.embedding.len(), 1280);
    let b = s.brisque.expect("the app asks the worker for BRISQUE");
    // Select coffee.png: the info panel lists its content.
    h.get_by_label("coffee.png").click();
    h.run_steps(3);
    h.get_by_label("espresso");
    // The classical BRISQUE score is shown beside the learned one.
    h.get_by_label(&format!("BRISQUE {b:.0}"));
}

#[test]
fn snapshot_grid_and_loupe() {
    let a = sample_album();
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).wgpu().build_eframe({
        let opts = options(&a, true);
        move |cc| KeepersApp::new(&cc.egui_ctx, opts)
    });
    wait_for(&mut h, "the album to be scored", scored);
    for k in [Key::ArrowRight, Key::P, Key::Num3, Key::Num8] {
        h.key_press(k);
        h.run_steps(1);
    }
    h.run_steps(3);
    h.snapshot("grid");
    h.key_press(Key::E);
    let start = Instant::now();
    while matches!(
        h.state().previews().get(h.state().state().unwrap().current_photo().unwrap().id),
        keepers::app::textures::PreviewState::Loading
    ) {
        h.step();
        std::thread::sleep(Duration::from_millis(10));
        assert!(start.elapsed() < Duration::from_secs(30), "preview never loaded");
    }
    h.run_steps(3);
    h.snapshot("loupe");
}

#[test]
fn a_photo_that_cannot_be_read_shows_an_error_tile_and_the_others_go_on() {
    let a = sample_album();
    // A JPEG cut off after its header, and a file that only claims to be one.
    let good = std::fs::read(a.root.join("china.jpg")).unwrap();
    std::fs::write(a.root.join("broken.jpg"), &good[..600]).unwrap();
    std::fs::write(a.root.join("fake.jpg"), b"not a jpeg at all").unwrap();
    let mut h = harness(&a, true, (1280.0, 800.0));
    let done = |app: &KeepersApp| {
        app.session
            .as_ref()
            .is_some_and(|s| s.finished && s.state.photos.iter().all(|p| p.thumb != keepers::app::state::ThumbState::Pending))
            && app.scoring_progress().is_some_and(|p| !p.busy && p.done + p.failed >= 17)
    };
    wait_for(&mut h, "the album to be scored", done);
    let st = h.state().state().unwrap();
    let broken = st.index_of_path(&photo_path(&a, "broken.jpg")).expect("the damaged photo is listed");
    assert!(matches!(st.photos[broken].thumb, keepers::app::state::ThumbState::Failed(_)), "{:?}", st.photos[broken].thumb);
    match &st.photos[broken].scores {
        keepers::app::state::ScoreState::Failed(e) => assert!(e.contains("broken.jpg"), "{e}"),
        other => panic!("broken.jpg: {other:?}"),
    }
    let ok = st.photos.iter().filter(|p| matches!(p.scores, keepers::app::state::ScoreState::Ready(_))).count();
    assert_eq!(ok, 16, "every readable photo was scored");
    h.get_by_label("broken.jpg");
}

#[test]
fn recent_albums_and_preferences_persist() {
    let a = sample_album();
    let config = a.data.join("config");
    let opts = AppOptions { config_dir: Some(config.clone()), ..options(&a, false) };
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_eframe(move |cc| KeepersApp::new(&cc.egui_ctx, opts));
    wait_for(&mut h, "the album to load", loaded);
    h.key_press(Key::A);
    h.run_steps(2);
    drop(h);
    let (s, note) = keepers::app::settings::Settings::load(&config.join("settings.json"));
    assert!(note.is_none());
    assert_eq!(s.recent, vec![std::fs::canonicalize(&a.root).unwrap()]);
    assert!(s.auto_advance);
    // A second start shows the album in the recent list.
    let opts = AppOptions { config_dir: Some(config), open: None, ..options(&a, false) };
    let mut h = Harness::builder().with_size(egui::vec2(1280.0, 800.0)).build_eframe(move |cc| KeepersApp::new(&cc.egui_ctx, opts));
    h.run_steps(2);
    h.get_by_label(&std::fs::canonicalize(&a.root).unwrap().display().to_string());
}

#[test]
fn covers_are_suggested_accepted_with_enter_and_exported() {
    let a = sample_album();
    let mut h = harness(&a, true, (1280.0, 800.0));
    wait_for(&mut h, "the album to be scored", scored);
    h.get_by_label("Pick covers").click();
    h.run_steps(4);
    let covers = h.state().ui.covers.clone().expect("suggestions shown");
    assert_eq!(covers.len(), 3);
    // The suggestions are the best-scored photos (no bursts among the samples).
    let st = h.state().state().unwrap();
    let mut by_score: Vec<(f32, usize)> = (0..st.len()).filter_map(|i| st.photos[i].score().map(|s| (s, i))).collect();
    by_score.sort_by(|x, y| y.0.total_cmp(&x.0));
    assert_eq!(covers, by_score.iter().take(3).map(|x| x.1).collect::<Vec<_>>());
    let paths: Vec<PathBuf> = covers.iter().map(|&i| st.photos[i].path.clone()).collect();
    h.key_press(Key::Enter);
    h.run_steps(2);
    let mut purple = Decision::default();
    purple.set_label(Some(ColorLabel::Purple));
    for p in &paths {
        wait_sidecar(&mut h, p, purple);
    }
    h.get_by_label("Export covers…").click();
    let dest = std::fs::canonicalize(&a.root).unwrap().join("Keepers covers");
    let start = Instant::now();
    while !dest.join("covers.txt").exists() {
        h.step();
        std::thread::sleep(Duration::from_millis(10));
        assert!(start.elapsed() < Duration::from_secs(30), "covers were not exported");
    }
    h.run_steps(2);
    let list = std::fs::read_to_string(dest.join("covers.txt")).unwrap();
    for p in &paths {
        assert!(list.contains(&p.display().to_string()), "{list}");
        let copy = dest.join(p.file_name().unwrap());
        assert_eq!(std::fs::read(copy).unwrap(), std::fs::read(p).unwrap());
    }
}

/// Picks `keep` and rejects `reject` (names) with the keyboard, in the grid sorted by name.
fn label_by_keys(h: &mut Harness<'_, KeepersApp>, keep: &[&str], reject: &[&str]) {
    h.state_mut().apply(vec![keepers::app::commands::Command::SetSort(SortKey::Name)]);
    h.run_steps(2);
    for (names, key) in [(keep, Key::P), (reject, Key::X)] {
        for n in names {
            // Home, then Right to the photo, as a user would.
            let st = h.state().state().unwrap();
            let pos = st.visible.iter().position(|&i| st.photos[i].name == *n).unwrap_or_else(|| panic!("{n} not in the grid"));
            h.key_press(Key::Home);
            h.run_steps(1);
            for _ in 0..pos {
                h.key_press(Key::ArrowRight);
                h.run_steps(1);
            }
            assert_eq!(&current_name(h.state()), n);
            h.key_press(key);
            h.run_steps(2);
        }
    }
}

fn taste_run(app: &KeepersApp) -> Option<&keepers::app::taste::RunView> {
    app.taste_ui.running.as_ref()
}

fn set_taste_steps(h: &mut Harness<'_, KeepersApp>, steps: usize) {
    use keepers::app::taste::TasteCommand;
    let prefs = keepers::app::taste::TastePrefs { steps, ..h.state().settings.taste.clone() };
    h.state_mut().apply(vec![keepers::app::commands::Command::Taste(TasteCommand::SetPrefs(prefs))]);
}

fn profile_files(a: &Album) -> Vec<String> {
    match std::fs::read_dir(a.data.join("profiles")) {
        Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn taste_panel_trains_checks_saves_and_switches_a_profile() {
    let a = sample_album();
    let mut h = harness(&a, true, (1400.0, 900.0));
    wait_for(&mut h, "the album to be scored", scored);
    // A simulated photographer: keeps the five nature/people shots, rejects five others.
    let (keep, reject) = (keepers::app::screenshot::SAMPLE_KEEPS, keepers::app::screenshot::SAMPLE_REJECTS);
    label_by_keys(&mut h, &keep, &reject);

    h.get_by_label("Taste").click();
    h.run_steps(3);
    h.get_by_label("5 keeps · 5 rejects labelled");

    // A long run: the curve moves, pause holds it, cancel stops it and saves nothing.
    set_taste_steps(&mut h, 2_000_000);
    h.run_steps(2);
    h.get_by_label("Start training").click();
    wait_for(&mut h, "the first loss points", |app| taste_run(app).is_some_and(|r| r.loss.len() >= 3));
    let n0 = taste_run(h.state()).unwrap().loss.len();
    wait_for(&mut h, "the loss curve to move", |app| taste_run(app).is_some_and(|r| r.loss.len() > n0 + 5));
    let first = taste_run(h.state()).unwrap().loss[0][1];
    let last = taste_run(h.state()).unwrap().loss.last().unwrap()[1];
    assert!(last < first, "training loss went down: {first} -> {last}");
    h.get_by_label("Pause").click();
    wait_for(&mut h, "the run to pause", |app| taste_run(app).and_then(|r| r.last).is_some_and(|p| p.paused));
    let held = taste_run(h.state()).unwrap().loss.len();
    std::thread::sleep(Duration::from_millis(300));
    h.run_steps(3);
    assert_eq!(taste_run(h.state()).unwrap().loss.len(), held, "a paused run does not step");
    h.get_by_label("Resume").click();
    h.run_steps(2);
    h.get_by_label("Cancel training").click();
    wait_for(&mut h, "the run to stop", |app| taste_run(app).is_none());
    h.get_by_label("Training cancelled; nothing was saved.");
    assert!(profile_files(&a).is_empty(), "a cancelled run saved {:?}", profile_files(&a));

    // Restart with the default length: it finishes, is checked on held-out labels and saved.
    set_taste_steps(&mut h, 200);
    h.run_steps(2);
    h.get_by_label("Start training").click();
    wait_for(&mut h, "the run to finish", |app| app.taste_ui.result.is_some());
    let result = h.state().taste_ui.result.clone().unwrap();
    assert_eq!(result.report.n_labels, 10);
    assert_eq!(result.report.n_heldout_keep + result.report.n_heldout_reject, 4, "2 of each class held out");
    assert!(result.report.profile.auc.is_some() && result.report.baseline.is_some());
    assert!(result.report.warning.is_some(), "10 labels are too few to trust");
    assert_eq!(profile_files(&a).len(), 1, "one profile file: {:?}", profile_files(&a));
    h.get_by_label(&format!("Saved as “{}”", result.name));
    h.get_by_label("This profile");

    // Switch to it: every photo gets the profile's keep probability as its grid score.
    let quality: Vec<Option<f32>> = h.state().state().unwrap().photos.iter().map(|p| p.score()).collect();
    h.get_by_label(&format!("Use “{}”", result.name)).click();
    h.run_steps(2);
    assert_eq!(h.state().settings.taste_profile.as_deref(), Some(result.file.as_str()), "the profile is active");
    wait_for(&mut h, "taste scores for every photo", |app| app.state().unwrap().photos.iter().all(|p| p.taste.is_some()));
    let st = h.state().state().unwrap();
    let mut changed = 0;
    for (p, q) in st.photos.iter().zip(&quality) {
        let t = p.taste.unwrap();
        assert!((0.0..=1.0).contains(&t));
        assert_eq!(p.score(), Some(t * 100.0), "{}: the grid shows the taste score", p.name);
        changed += (p.score() != *q) as usize;
    }
    assert!(changed >= 14, "scores changed for {changed} of 16 photos");
    // The profile learned the labels it was given: its mean keep probability is higher on the keeps.
    let mean = |names: &[&str]| {
        names.iter().map(|n| st.photos[st.index_of_path(&photo_path(&a, n)).unwrap()].taste.unwrap()).sum::<f32>() / names.len() as f32
    };
    assert!(mean(&keep) > mean(&reject), "keeps {} rejects {}", mean(&keep), mean(&reject));
    assert_eq!(h.state().settings.taste_profile.as_deref(), Some(result.file.as_str()));
    // The info panel says which profile the score came from.
    h.get_by_label(&format!("from taste profile “{}”", result.name));
}

/// The photos of the sample keeps and rejects in the album copy as a labelled CSV (`path,label`).
fn labelled_csv(a: &Album) -> PathBuf {
    let (keep, reject) = (keepers::app::screenshot::SAMPLE_KEEPS, keepers::app::screenshot::SAMPLE_REJECTS);
    let mut rows = vec!["path,label".to_string()];
    for (names, label) in [(&keep, 1), (&reject, 0)] {
        for n in names.iter() {
            rows.push(format!("{},{label}", photo_path(a, n).display()));
        }
    }
    let csv = a.data.join("my-labels.csv");
    std::fs::write(&csv, rows.join("\n") + "\n").unwrap();
    csv
}

fn set_procedure_epochs(h: &mut Harness<'_, KeepersApp>, epochs: usize) {
    use keepers::app::taste::TasteCommand;
    let mut prefs = h.state().settings.taste.clone();
    prefs.proc.epochs = epochs;
    h.state_mut().apply(vec![keepers::app::commands::Command::Taste(TasteCommand::SetPrefs(prefs))]);
}

fn profile_only_files(a: &Album) -> Vec<String> {
    profile_files(a).into_iter().filter(|f| f.ends_with(".keepers-taste")).collect()
}

#[test]
fn advanced_mode_trains_a_paper_procedure_on_a_csv_and_scores_the_album_with_it() {
    let a = sample_album();
    let csv = labelled_csv(&a);
    let mut h = harness(&a, true, (1400.0, 1000.0));
    wait_for(&mut h, "the album to be scored", scored);
    h.get_by_label("Taste").click();
    h.run_steps(3);
    h.get_by_label("Advanced: paper procedure").click();
    h.run_steps(3);
    assert!(h.state().settings.taste.advanced, "the advanced mode is on");

    // The labelled set: a CSV file, its path typed in.
    h.get_by_label("Labelled set").click();
    h.run_steps(2);
    h.get_by_label("A CSV file").click();
    h.run_steps(2);
    h.get_by_label("CSV file").focus();
    h.run_steps(1);
    h.get_by_label("CSV file").type_text(&csv.display().to_string());
    h.run_steps(2);
    assert_eq!(h.state().settings.taste.proc.csv, csv.display().to_string());
    wait_for(&mut h, "the set to be read", |app| app.taste_ui.set_summary.as_ref().is_some_and(|(_, _, s)| s.is_ok()));
    h.get_by_label("10 photos · 10 keep vs reject");

    // The procedure: MP-avg instead of the default MP-ada, its one system shown.
    assert_eq!(h.state().settings.taste.proc.procedure, keepers::train::procedures::Procedure::MpAda);
    h.get_by_label("Procedure").click();
    h.run_steps(2);
    h.get_by_label("mp-avg — multi-patch, mean objective (paper 001)").click();
    h.run_steps(2);
    assert_eq!(h.state().settings.taste.proc.procedure, keepers::train::procedures::Procedure::MpAvg);
    assert_eq!(h.state().settings.taste.proc.system_id(), Some(keepers::model::systems::SystemId::MpAvg));
    h.get_by_label("Epochs");
    h.get_by_label("Learning rate");
    h.get_by_label("Batch size");
    h.get_by_label("Seed");

    // A long run: progress and the loss curve arrive, cancel stops it and saves nothing.
    set_procedure_epochs(&mut h, 100_000);
    h.run_steps(2);
    h.get_by_label("Start training").click();
    wait_for(&mut h, "the first loss points", |app| taste_run(app).is_some_and(|r| r.loss.len() >= 3));
    h.get_by_label("Training progress");
    h.get_by_label("Cancel training").click();
    wait_for(&mut h, "the run to stop", |app| taste_run(app).is_none());
    h.get_by_label("Training cancelled; nothing was saved.");
    assert!(profile_only_files(&a).is_empty(), "a cancelled run saved {:?}", profile_files(&a));

    // Restart short: it finishes, with validation points, and the profile is listed.
    set_procedure_epochs(&mut h, 4);
    h.run_steps(2);
    h.get_by_label("Start training").click();
    wait_for(&mut h, "the run to finish", |app| app.taste_ui.proc_result.is_some());
    let result = h.state().taste_ui.proc_result.clone().unwrap();
    assert_eq!((result.info.procedure.as_str(), result.info.system.as_str()), ("mp-avg", "MP-avg"));
    assert!(result.skipped.is_empty(), "{:?}", result.skipped);
    assert!(!h.state().taste_ui.curves.as_ref().unwrap().validation.is_empty(), "a validation curve");
    assert_eq!(profile_only_files(&a).len(), 1, "{:?}", profile_files(&a));
    h.get_by_label(&format!("Saved as “{}”", result.name));

    // Switch to it: the album is re-scored from pixels, every photo's grid score is the profile's.
    let quality: Vec<Option<f32>> = h.state().state().unwrap().photos.iter().map(|p| p.score()).collect();
    h.get_by_label(&format!("Use “{}”", result.name)).click();
    h.run_steps(2);
    assert_eq!(h.state().settings.taste_profile.as_deref(), Some(result.file.as_str()));
    wait_for(&mut h, "procedure scores for every photo", |app| app.state().unwrap().photos.iter().all(|p| p.taste.is_some()));
    let st = h.state().state().unwrap();
    let mut changed = 0;
    for (p, q) in st.photos.iter().zip(&quality) {
        let t = p.taste.unwrap();
        assert!((0.0..=1.0).contains(&t), "{}: {t}", p.name);
        assert_eq!(p.score(), Some(t * 100.0), "{}: the grid shows the profile's score", p.name);
        changed += (p.score() != *q) as usize;
    }
    assert!(changed >= 14, "scores changed for {changed} of 16 photos");
    // The info panel says which profile the score came from.
    h.get_by_label(&format!("from taste profile “{}”", result.name));
}

/// Files the album scan cannot take are each reported once, at the top; past four, the rest are
/// counted and "Dismiss all" clears them (the photos are untouched and the album still loads).
#[test]
fn scan_problems_are_listed_and_dismissed_all_at_once() {
    let a = sample_album();
    for i in 0..6 {
        std::fs::write(a.root.join(format!("notes{i}.jpg")), b"shopping list: film, batteries").unwrap();
    }
    let mut h = harness(&a, false, (1280.0, 800.0));
    wait_for(&mut h, "the album to load", loaded);
    wait_for(&mut h, "the scan problems", |app| app.messages.len() == 6);
    assert!(h.state().messages.iter().all(|m| m.text.contains("not an image Keepers can read")));
    h.get_by_label("…and 2 more messages");
    h.get_by_label("Dismiss all").click();
    h.run_steps(2);
    assert!(h.state().messages.is_empty(), "{:?}", h.state().messages.iter().map(|m| &m.text).collect::<Vec<_>>());
    assert!(h.query_by_label("Dismiss all").is_none());
    assert_eq!(h.state().state().unwrap().len(), 16);
}

/// A truncated JPEG (an interrupted card copy) is shown in the loupe as far as it decodes, and
/// the view says it is damaged (its accessible name too) rather than passing the grey rest off as
/// the photo.
#[test]
fn a_truncated_photo_is_shown_as_damaged_in_the_loupe() {
    let a = sample_album();
    let china = std::fs::read(a.root.join("china.jpg")).unwrap();
    std::fs::write(a.root.join("0cut.jpg"), &china[..china.len() / 2]).unwrap();
    let mut h = harness(&a, false, (1280.0, 800.0));
    wait_for(&mut h, "the album to load", |app| app.session.as_ref().is_some_and(|s| s.finished && s.state.len() == 17));
    h.key_press(Key::Home);
    h.run_steps(2);
    assert_eq!(h.state().state().unwrap().current_photo().unwrap().name, "0cut.jpg");
    h.key_press(Key::E);
    wait_for(&mut h, "the preview", |app| {
        let st = app.state().unwrap();
        matches!(app.previews().get(st.current_photo().unwrap().id), keepers::app::textures::PreviewState::Ready(_))
    });
    h.get_by_label("Photo 0cut.jpg (damaged file, partly decoded)");
    // An intact photo keeps its plain name.
    h.key_press(Key::ArrowRight);
    wait_for(&mut h, "the next preview", |app| {
        let st = app.state().unwrap();
        matches!(app.previews().get(st.current_photo().unwrap().id), keepers::app::textures::PreviewState::Ready(_))
    });
    let name = h.state().state().unwrap().current_photo().unwrap().name.clone();
    h.get_by_label(&format!("Photo {name}"));
}
