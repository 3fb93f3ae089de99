//! The desktop app (eframe + egui, wgpu renderer): open a shoot, score it in the background, inspect
//! why, cull at keyboard speed.
//!
//! Layout of this module:
//! - [`state`]: the album as the app sees it (pure logic: filter, sort, bursts, undo).
//! - [`settings`]: what is saved between runs.
//! - [`commands`]: what panels ask for, and the keyboard map.
//! - [`textures`]: thumbnails and loupe previews on the GPU.
//! - [`grid`], [`loupe`], [`panels`]: drawing; they return commands, never mutate the album.
//! - [`taste`]: the taste panel (train, check and choose taste profiles).
//! - [`style`]: the dark theme.
//!
//! Threads: the UI thread only draws and applies commands. The [`AlbumHandle`] (scan, thumbnails,
//! database, sidecars), the [`Scoring`] worker (models) and the [`Taste`] service (taste profiles) run
//! on their own threads and wake the UI with `request_repaint`; previews decode on another. Nothing
//! here waits on any of them.

pub mod commands;
pub mod grid;
pub mod loupe;
pub mod panels;
pub mod screenshot;
pub mod settings;
pub mod state;
pub mod style;
pub mod taste;
pub mod textures;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use egui::TextureHandle;

use crate::library::album::{AlbumConfig, AlbumEvent, AlbumHandle, DecisionChange};
use crate::library::db::Library;
use crate::library::thumbs::{self, ThumbCache};
use crate::train::profiles::{ProfileStore, Stored};
use crate::worker::taste::{Taste, TasteEvent, TasteJob, TrainRequest};
use crate::worker::{ScoreEvent, ScoreRequest, Scoring, ScoringConfig};
use commands::{Command, View};
use settings::Settings;
use state::{AlbumState, Photo, ScoreState, ThumbState};
use textures::Previews;

/// Where the app keeps its state, and what it starts with. Tests point every location at a temporary
/// folder.
pub struct AppOptions {
    /// Album to open at start.
    pub open: Option<PathBuf>,
    /// Folder of `settings.json`; `None`: settings are not saved.
    pub config_dir: Option<PathBuf>,
    pub db_path: PathBuf,
    pub thumb_dir: PathBuf,
    /// Run the scoring worker (models); off in UI tests that do not need scores.
    pub scoring: bool,
    /// Long side of loupe previews (the texture limit caps it).
    pub preview_side: u32,
    /// Folder of the taste profiles; `None`: no taste profiles.
    pub profile_dir: Option<PathBuf>,
}

impl AppOptions {
    /// The platform's config, data and cache folders.
    pub fn platform(open: Option<PathBuf>) -> anyhow::Result<AppOptions> {
        let no_dir = || anyhow::anyhow!("this platform has no home folder for Keepers' settings and library");
        Ok(AppOptions {
            open,
            config_dir: Some(Settings::default_dir().ok_or_else(no_dir)?),
            db_path: Library::default_path().ok_or_else(no_dir)?,
            thumb_dir: ThumbCache::default_dir().ok_or_else(no_dir)?,
            scoring: true,
            preview_side: 8192,
            profile_dir: Some(ProfileStore::default_dir().ok_or_else(no_dir)?),
        })
    }
}

/// Runs the desktop app until its window closes.
pub fn run(opts: AppOptions) -> anyhow::Result<()> {
    // KEEPERS_WINDOW_SIZE=WxH: the first window size (scripts/screenshot.sh); a saved size wins otherwise.
    let size = std::env::var("KEEPERS_WINDOW_SIZE")
        .ok()
        .and_then(|s| s.split_once('x').and_then(|(w, h)| Some([w.parse::<f32>().ok()?, h.parse::<f32>().ok()?])))
        .unwrap_or([1280.0, 800.0]);
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Keepers")
            .with_app_id("keepers")
            .with_inner_size(size)
            .with_min_inner_size([800.0, 500.0])
            .with_drag_and_drop(true),
        persistence_path: opts.config_dir.as_ref().map(|d| d.join("window.ron")),
        ..Default::default()
    };
    eframe::run_native("Keepers", native, Box::new(move |cc| Ok(Box::new(KeepersApp::new(&cc.egui_ctx, opts)))))
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the window: {e}\n(no display here? `bash scripts/screenshot.sh` runs the app under Xvfb; `keepers classify DIR` works without one)"
            )
        })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Error,
    Info,
}

/// A banner the user reads once and dismisses.
#[derive(Debug, Clone)]
pub struct Message {
    pub kind: MessageKind,
    pub text: String,
    /// Offer "Retry" (unwritable sidecars).
    pub retry: bool,
}

/// Loupe / compare zoom: fitted, or a scale (image pixels to physical pixels; 1 = 100 %) around a
/// centre given in image fractions. Compare panes share it, so their zoom and pan move together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewTransform {
    pub scale: Option<f32>,
    pub center: egui::Pos2,
}

impl Default for ViewTransform {
    fn default() -> Self {
        ViewTransform { scale: None, center: egui::pos2(0.5, 0.5) }
    }
}

/// Runtime state of the window (not saved).
#[derive(Default)]
pub struct UiState {
    pub view: View,
    pub transform: ViewTransform,
    pub show_shortcuts: bool,
    pub theme: Option<usize>,
    /// Cover suggestions on show (photo indices).
    pub covers: Option<Vec<usize>>,
    /// Grid columns in the last frame (for Up/Down).
    pub grid_columns: usize,
    /// Scroll the grid / filmstrip to the cursor in the next frame.
    pub scroll_to_cursor: bool,
    /// Photo ids drawn in the last frame (scored first).
    pub on_screen: Vec<i64>,
}

/// The open album.
pub struct Session {
    pub album: AlbumHandle,
    pub state: AlbumState,
    pub scan_done: bool,
    pub finished: bool,
    pub thumbs_done: usize,
    pub opened_at: Instant,
    /// Bursts need recomputing (new embeddings or capture times).
    regroup: bool,
    refresh: bool,
    /// Photos known but not yet sent to the worker.
    to_score: Vec<ScoreRequest>,
    /// Photos to score with the active taste profile.
    to_taste: Vec<i64>,
    /// Photos already sent for pixel scoring under the active procedure profile.
    pixel_sent: std::collections::HashSet<i64>,
}

/// Frame-time benchmark (scripts/bench_ui.sh): with `KEEPERS_BENCH_FRAMES=FILE` the app repaints
/// continuously and moves the cursor one photo per frame (the grid scrolls through the album) while
/// the worker scores it; when scoring is over it writes the figures to FILE and closes.
pub struct FrameBench {
    report: PathBuf,
    last: Option<Instant>,
    intervals: Vec<f32>,
}

/// Per-frame CPU time of the UI thread, for the frame-time figures.
#[derive(Default)]
pub struct FrameTimes {
    pub samples: Vec<f32>,
}

impl FrameTimes {
    /// (count, median ms, 99th percentile ms, max ms).
    pub fn summary(&self) -> (usize, f32, f32, f32) {
        let mut v = self.samples.clone();
        if v.is_empty() {
            return (0, 0.0, 0.0, 0.0);
        }
        v.sort_by(f32::total_cmp);
        let q = |p: f32| v[((v.len() - 1) as f32 * p).round() as usize];
        (v.len(), q(0.5), q(0.99), *v.last().expect("not empty"))
    }
}

pub struct KeepersApp {
    opts: AppOptions,
    pub settings: Settings,
    ctx: egui::Context,
    pub session: Option<Session>,
    scoring: Option<Scoring>,
    previews: Previews,
    thumbs: HashMap<i64, TextureHandle>,
    pub ui: UiState,
    pub messages: Vec<Message>,
    /// Models that could not be loaded, said once in the info panel.
    pub model_notes: Vec<String>,
    background: (Sender<BackgroundNote>, Receiver<BackgroundNote>),
    last_priority: Vec<i64>,
    pub frame_times: FrameTimes,
    tour: Option<screenshot::Tour>,
    bench: Option<FrameBench>,
    store: Option<ProfileStore>,
    taste: Option<Taste>,
    pub taste_ui: taste::TasteUi,
    /// The active taste profile (its file in the store and the profile).
    pub active_profile: Option<Stored>,
}

/// Results of work the UI thread handed off (dialogs, exports).
enum BackgroundNote {
    Open(PathBuf),
    Message(Message),
    /// Export the profile in this file to this path.
    ExportProfile(String, PathBuf),
    ImportProfile(PathBuf),
    /// The advanced mode's CSV file or AVA folder, chosen in the dialog.
    PickedSet(taste::SetKind, PathBuf),
    /// What a CSV / AVA set holds (read off the UI thread).
    SetSummary(taste::SetKind, String, Result<taste::SetSummary, String>),
}

impl KeepersApp {
    pub fn new(ctx: &egui::Context, opts: AppOptions) -> KeepersApp {
        style::apply(ctx);
        let (settings, note) = match &opts.config_dir {
            Some(dir) => Settings::load(&dir.join("settings.json")),
            None => (Settings::default(), None),
        };
        // wgpu's default texture limit is 8192 on every backend; larger photos are shown downscaled.
        let max_side = opts.preview_side.clamp(256, 8192);
        let mut app = KeepersApp {
            previews: Previews::start(ctx.clone(), max_side),
            scoring: None,
            settings,
            ctx: ctx.clone(),
            session: None,
            thumbs: HashMap::new(),
            ui: UiState::default(),
            messages: Vec::new(),
            model_notes: Vec::new(),
            background: channel(),
            last_priority: Vec::new(),
            frame_times: FrameTimes::default(),
            tour: screenshot::Tour::from_env(),
            store: opts.profile_dir.clone().map(ProfileStore::new),
            taste: None,
            taste_ui: taste::TasteUi::default(),
            active_profile: None,
            bench: std::env::var_os("KEEPERS_BENCH_FRAMES").map(|p| FrameBench {
                report: PathBuf::from(p),
                last: None,
                intervals: Vec::new(),
            }),
            opts,
        };
        if let Some(n) = note {
            app.error(n);
        }
        if app.opts.scoring {
            app.scoring = Some(start_scoring(ctx, &app.opts));
            if let Some(store) = &app.store {
                let wake_ctx = ctx.clone();
                app.taste = Some(Taste::start(app.opts.db_path.clone(), store.clone(), Some(Arc::new(move || wake_ctx.request_repaint()))));
            }
        }
        app.refresh_profiles(true);
        if let Some(p) = app.opts.open.clone() {
            app.open(&p);
        }
        app
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.messages.push(Message { kind: MessageKind::Error, text: text.into(), retry: false });
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.messages.push(Message { kind: MessageKind::Info, text: text.into(), retry: false });
    }

    pub fn state(&self) -> Option<&AlbumState> {
        self.session.as_ref().map(|s| &s.state)
    }

    /// Opens `root` as the album (closing the one open).
    pub fn open(&mut self, root: &Path) {
        if !root.is_dir() {
            self.error(format!("{}: not a folder that can be opened", root.display()));
            return;
        }
        self.close();
        let cfg = AlbumConfig {
            root: root.to_owned(),
            db_path: self.opts.db_path.clone(),
            thumb_dir: self.opts.thumb_dir.clone(),
            thumb_max_bytes: thumbs::DEFAULT_MAX_BYTES,
            thumb_side: thumbs::DEFAULT_SIDE,
            thumbnails: true,
        };
        match AlbumHandle::open(cfg) {
            Ok(album) => {
                let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
                let mut state = AlbumState::new(&root);
                state.sort = self.settings.sort;
                state.descending = self.settings.descending;
                state.filter = self.settings.filter.clone();
                state.collapse_groups = self.settings.collapse_bursts;
                self.session = Some(Session {
                    album,
                    state,
                    scan_done: false,
                    finished: false,
                    thumbs_done: 0,
                    opened_at: Instant::now(),
                    regroup: false,
                    refresh: true,
                    to_score: Vec::new(),
                    to_taste: Vec::new(),
                    pixel_sent: Default::default(),
                });
                self.settings.remember(&root);
                self.save_settings();
                self.ui = UiState { view: View::Grid, ..Default::default() };
                self.ctx.send_viewport_cmd(egui::ViewportCommand::Title(format!("Keepers — {}", root.display())));
            }
            Err(e) => self.error(format!("Cannot open {}: {e}", root.display())),
        }
    }

    pub fn close(&mut self) {
        if let Some(s) = &self.scoring {
            s.cancel();
        }
        if let Some(s) = self.session.take() {
            s.album.cancel();
            // Joining waits for decisions already sent to reach the database and sidecars.
            s.album.close();
        }
        self.thumbs.clear();
        self.previews.clear();
        self.last_priority.clear();
    }

    fn save_settings(&mut self) {
        if let Some(dir) = &self.opts.config_dir
            && let Err(e) = self.settings.save(&dir.join("settings.json"))
        {
            let text = format!("{}: cannot save settings: {e}", dir.display());
            self.error(text);
        }
    }

    pub fn thumb(&self, id: i64) -> Option<&TextureHandle> {
        self.thumbs.get(&id)
    }

    pub fn previews(&self) -> &Previews {
        &self.previews
    }

    /// Scoring progress for the status bar, when a worker runs.
    pub fn scoring_progress(&self) -> Option<crate::worker::Progress> {
        self.scoring.as_ref().map(|s| s.progress())
    }

    /// Reads every event that arrived since the last frame.
    pub fn pump(&mut self) {
        while let Ok(n) = self.background.1.try_recv() {
            match n {
                BackgroundNote::Open(p) => self.open(&p),
                BackgroundNote::Message(m) => self.messages.push(m),
                BackgroundNote::ExportProfile(file, dest) => {
                    if let Some(store) = &self.store {
                        match store.export(&file, &dest) {
                            Ok(()) => self.info(format!("Profile exported to {}", dest.display())),
                            Err(e) => self.error(format!("Profile export failed: {e}")),
                        }
                    }
                }
                BackgroundNote::PickedSet(kind, path) => {
                    let mut prefs = self.settings.taste.clone();
                    match kind {
                        taste::SetKind::Csv => prefs.proc.csv = path.display().to_string(),
                        _ => prefs.proc.ava = path.display().to_string(),
                    }
                    prefs.proc.set = kind;
                    self.apply_taste(taste::TasteCommand::SetPrefs(prefs));
                }
                BackgroundNote::SetSummary(kind, path, summary) => {
                    self.taste_ui.inspecting = None;
                    self.taste_ui.set_summary = Some((kind, path, summary));
                }
                BackgroundNote::ImportProfile(src) => {
                    if let Some(store) = &self.store {
                        match store.import(&src) {
                            Ok((_, name)) => {
                                self.info(format!("Imported taste profile “{name}” from {}", src.display()));
                                self.refresh_profiles(false);
                            }
                            Err(e) => self.error(format!("Cannot import {}: {e}", src.display())),
                        }
                    }
                }
            }
        }
        let Some(session) = self.session.as_mut() else { return };
        let mut messages = Vec::new();
        while let Ok(ev) = session.album.events().try_recv() {
            match ev {
                AlbumEvent::Opened(note) => {
                    if let crate::library::db::OpenNote::Rebuilt { moved_to, .. } = &note {
                        messages.push(Message {
                            kind: MessageKind::Error,
                            text: format!("The library database was damaged; it was moved to {} and rebuilt.", moved_to.display()),
                            retry: false,
                        });
                    }
                }
                AlbumEvent::Known(rows) => {
                    for r in rows {
                        let mut p = Photo::new(
                            r.id,
                            r.record.path.clone(),
                            r.record.companion.clone(),
                            r.record.exif.clone(),
                            r.decision.as_ref().map(|d| d.decision).unwrap_or_default(),
                        );
                        if let Some(d) = &r.decision {
                            p.prior_stars = d.prior_stars;
                            p.sidecar_pending = d.sidecar_pending;
                        }
                        session.to_score.push(ScoreRequest { id: p.id, path: p.display.clone() });
                        session.state.upsert(p);
                    }
                    session.refresh = true;
                    session.regroup = true;
                }
                AlbumEvent::Item { item, id, change, decision } => {
                    let known = session.state.index_of(id).is_some();
                    let p = Photo::new(
                        id,
                        item.primary.path.clone(),
                        item.companion.as_ref().map(|c| c.path.clone()),
                        None,
                        decision.unwrap_or_default(),
                    );
                    let i = session.state.upsert(p);
                    if change != crate::library::db::Change::Unchanged || !known {
                        if change == crate::library::db::Change::Modified {
                            session.state.photos[i].scores = ScoreState::Pending;
                        }
                        session.to_score.push(ScoreRequest { id, path: session.state.photos[i].display.clone() });
                    }
                    session.refresh = true;
                }
                AlbumEvent::Issue(issue) => messages.push(Message { kind: MessageKind::Error, text: issue.to_string(), retry: false }),
                AlbumEvent::Forgotten(_) => {}
                AlbumEvent::ScanDone(_) => {
                    session.scan_done = true;
                    session.regroup = true;
                }
                AlbumEvent::Thumbnail { id, image, .. } => {
                    let tex = textures::upload(&self.ctx, &format!("thumb-{id}"), &image);
                    self.thumbs.insert(id, tex);
                    if let Some(p) = session.state.photo_mut(id) {
                        p.thumb = ThumbState::Ready;
                    }
                    session.thumbs_done += 1;
                }
                AlbumEvent::ThumbnailFailed { id, error, .. } => {
                    if let Some(p) = session.state.photo_mut(id) {
                        p.thumb = ThumbState::Failed(error);
                    }
                    session.thumbs_done += 1;
                }
                // The album stores exactly the decisions the app sends (`Restore`), in order; the app's own
                // copy is already newer than any saved event still in flight, so only the sidecar state is
                // taken from it.
                AlbumEvent::DecisionSaved { path, sidecar_written, .. } => {
                    if let Some(i) = session.state.index_of_path(&path) {
                        session.state.photos[i].sidecar_pending = !sidecar_written;
                    }
                }
                AlbumEvent::SidecarsUnwritable { folder, error } => messages.push(Message {
                    kind: MessageKind::Error,
                    text: format!(
                        "Cannot write XMP sidecars in {}: {error}. Your decisions are kept in the library and will be written when the folder can be written.",
                        folder.display()
                    ),
                    retry: true,
                }),
                AlbumEvent::Error(e) => messages.push(Message { kind: MessageKind::Error, text: e, retry: false }),
                AlbumEvent::Finished { .. } => session.finished = true,
            }
        }
        if let Some(scoring) = &self.scoring {
            if !session.to_score.is_empty() {
                scoring.submit(std::mem::take(&mut session.to_score));
            }
            while let Ok(ev) = scoring.events().try_recv() {
                match ev {
                    ScoreEvent::Scored { id, scores, .. } => {
                        if let Some(p) = session.state.photo_mut(id) {
                            p.scores = ScoreState::Ready(scores);
                            session.regroup = true;
                            session.refresh = true;
                            if self.active_profile.is_some() {
                                session.to_taste.push(id);
                            }
                        }
                    }
                    ScoreEvent::Failed { id, path, error } => {
                        if let Some(p) = session.state.photo_mut(id) {
                            p.scores = ScoreState::Failed(format!("{}: {error}", path.display()));
                            session.refresh = true;
                        }
                    }
                    ScoreEvent::ModelUnavailable { what, error } => {
                        let note = format!("{what}: {error}");
                        if !self.model_notes.contains(&note) {
                            self.model_notes.push(note);
                        }
                    }
                    ScoreEvent::StoreFailed { error } => messages.push(Message {
                        kind: MessageKind::Error,
                        text: format!(
                            "Scores cannot be saved in the library ({error}); they are shown but will be computed again next time."
                        ),
                        retry: false,
                    }),
                    ScoreEvent::Idle => {}
                }
            }
        } else {
            session.to_score.clear();
        }
        if let Some(t) = &self.taste {
            while let Ok(ev) = t.events().try_recv() {
                match ev {
                    TasteEvent::Scores { file, scores } => {
                        if self.active_profile.as_ref().is_some_and(|a| a.file == file) {
                            for t in scores {
                                if let Some(p) = session.state.photo_mut(t.id) {
                                    p.taste = Some(t.keep);
                                    p.taste_by_theme = t.themes;
                                    p.taste_tags = t.tags;
                                }
                            }
                            session.refresh = true;
                            session.regroup = true;
                        }
                    }
                    TasteEvent::ScoreMissing { .. } => {}
                    TasteEvent::ScoreFailed { error, .. } => {
                        messages.push(Message { kind: MessageKind::Error, text: format!("Taste scores: {error}"), retry: false })
                    }
                    TasteEvent::Progress(p) => {
                        if let Some(run) = self.taste_ui.running.as_mut() {
                            run.push(&p);
                        }
                    }
                    TasteEvent::Trained { file, profile, report, left_out, notes } => {
                        self.taste_ui.curves = self.taste_ui.running.take();
                        self.taste_ui.status = None;
                        self.taste_ui.profiles.retain(|s| s.file != file);
                        self.taste_ui.profiles.push(Stored { file: file.clone(), profile: profile.clone() });
                        self.taste_ui.result = Some(taste::RunResult { file, name: profile.name.clone(), report, left_out, notes });
                    }
                    TasteEvent::TrainFailed(e) => {
                        self.taste_ui.curves = self.taste_ui.running.take();
                        self.taste_ui.status = Some(format!("Training failed: {e}"));
                    }
                    TasteEvent::Cancelled => {
                        self.taste_ui.curves = self.taste_ui.running.take();
                        self.taste_ui.status = Some("Training cancelled; nothing was saved.".into());
                    }
                    TasteEvent::ProcedureProgress(p) => {
                        if let Some(run) = self.taste_ui.running.as_mut() {
                            run.push_proc(&p);
                        }
                    }
                    TasteEvent::ProcedureTrained(o) => {
                        self.taste_ui.curves = self.taste_ui.running.take();
                        self.taste_ui.status = None;
                        self.taste_ui.profiles.retain(|s| s.file != o.file);
                        self.taste_ui.profiles.push(Stored { file: o.file.clone(), profile: o.profile.clone() });
                        if let Some(c) = &o.profile.procedure {
                            self.taste_ui.proc_result = Some(taste::ProcResult {
                                file: o.file.clone(),
                                name: o.profile.name.clone(),
                                info: c.info.clone(),
                                skipped: o.skipped.clone(),
                                without_target: o.without_target,
                                notes: o.notes.clone(),
                            });
                        }
                    }
                    TasteEvent::ScoreProgress { file, done, total } => {
                        if let Some(a) = self.active_profile.as_ref().filter(|a| a.file == file) {
                            self.taste_ui.rescoring = (done < total).then(|| (a.profile.name.clone(), done, total));
                        }
                    }
                }
            }
            if let Some(a) = self.active_profile.as_ref().filter(|a| a.profile.procedure.is_some())
                && !session.to_taste.is_empty()
            {
                // A procedure profile scores from pixels: every photo once, whether or not the quality model has.
                let ids = std::mem::take(&mut session.to_taste);
                let photos: Vec<(i64, PathBuf)> = ids
                    .into_iter()
                    .filter(|id| !session.pixel_sent.contains(id))
                    .filter_map(|id| session.state.index_of(id).map(|i| (id, session.state.photos[i].path.clone())))
                    .collect();
                if !photos.is_empty() {
                    let sent: Vec<i64> = photos.iter().map(|(id, _)| *id).collect();
                    let job = TasteJob::ScorePhotos {
                        file: a.file.clone(),
                        profile: a.profile.clone(),
                        photos,
                        lite0: crate::model::weights::WeightsFile::EfficientNetLite0.path(),
                        feature_cache: Some(self.opts.thumb_dir.with_file_name("features")),
                    };
                    match t.submit(job) {
                        Ok(()) => session.pixel_sent.extend(sent),
                        Err(_) => session.to_taste = sent,
                    }
                }
            } else if let Some(a) = self.active_profile.as_ref()
                && !session.to_taste.is_empty()
            {
                let ids = std::mem::take(&mut session.to_taste);
                // A full queue gives the job back: it goes again next frame.
                if let Err(TasteJob::Score { ids, .. }) =
                    t.submit(TasteJob::Score { file: a.file.clone(), profile: a.profile.clone(), ids })
                {
                    session.to_taste = ids;
                }
            }
        }
        // Bursts follow the embeddings as they arrive; regrouping is linear, but not every frame while
        // a batch streams in.
        let scoring_busy = self.scoring.as_ref().is_some_and(|s| s.progress().busy);
        if session.regroup && (session.scan_done || !scoring_busy) {
            session.state.regroup();
            session.regroup = false;
            session.refresh = true;
        }
        if session.refresh {
            session.state.refresh();
            session.refresh = false;
        }
        self.messages.extend(messages);
    }

    /// Applies the commands the panels and the keyboard returned this frame.
    pub fn apply(&mut self, commands: Vec<Command>) {
        for c in commands {
            self.apply_one(c);
        }
    }

    fn decide(&mut self, index: usize, change: DecisionChange) {
        let Some(s) = self.session.as_mut() else { return };
        if let Some(edit) = s.state.decide(index, change) {
            let path = s.state.photos[index].path.clone();
            s.album.decide(&path, DecisionChange::Restore(edit.after));
            s.refresh = true;
        }
    }

    fn apply_one(&mut self, c: Command) {
        let auto = self.settings.auto_advance;
        match c {
            Command::Open(p) => self.open(&p),
            Command::OpenDialog => {
                let tx = self.background.0.clone();
                let ctx = self.ctx.clone();
                // The native dialog blocks its caller: it runs on its own thread.
                std::thread::spawn(move || {
                    if let Some(p) = rfd::FileDialog::new().set_title("Open a folder of photos").pick_folder() {
                        let _ = tx.send(BackgroundNote::Open(p));
                        ctx.request_repaint();
                    }
                });
            }
            Command::CloseAlbum => self.close(),
            Command::Decide(change) => {
                let Some(i) = self.state().and_then(|s| s.current()) else { return };
                self.decide(i, change);
                let advance = matches!(change, DecisionChange::Pick | DecisionChange::Reject | DecisionChange::Stars(_));
                if auto
                    && advance
                    && let Some(s) = self.session.as_mut()
                {
                    s.state.refresh();
                    // A filter may have removed the photo: the cursor already sits on the next one then.
                    if s.state.current() == Some(i) {
                        s.state.move_by(1);
                    }
                    self.ui.scroll_to_cursor = true;
                }
            }
            Command::Undo | Command::Redo => {
                let Some(s) = self.session.as_mut() else { return };
                let r = if c == Command::Undo { s.state.undo() } else { s.state.redo() };
                if let Some((i, d)) = r {
                    let path = s.state.photos[i].path.clone();
                    s.album.decide(&path, DecisionChange::Restore(d));
                    s.state.refresh();
                    s.state.select_photo(i);
                    self.ui.scroll_to_cursor = true;
                }
            }
            Command::Move(d) => self.with_state(|s| s.move_by(d)),
            Command::MoveRows(d) => {
                let cols = self.ui.grid_columns.max(1) as isize;
                self.with_state(|s| s.move_by(d * cols));
            }
            Command::Home => self.with_state(|s| s.move_to(0)),
            Command::End => self.with_state(|s| s.move_to(usize::MAX)),
            Command::Select(i) => self.with_state(|s| s.select_photo(i)),
            Command::SetView(v) => {
                self.ui.view = v;
                self.ui.scroll_to_cursor = true;
            }
            Command::ToggleZoom => {
                if self.ui.view == View::Grid {
                    self.ui.view = View::Loupe;
                    self.ui.transform = ViewTransform { scale: Some(1.0), ..Default::default() };
                } else {
                    let t = &mut self.ui.transform;
                    t.scale = if t.scale.is_some() { None } else { Some(1.0) };
                    if t.scale.is_none() {
                        t.center = egui::pos2(0.5, 0.5);
                    }
                }
            }
            Command::ToggleHeatmap => {
                self.settings.show_heatmap = !self.settings.show_heatmap;
                self.save_settings();
            }
            Command::ToggleCompare(i) => self.with_state(|s| s.toggle_compare(i)),
            Command::ToggleCompareCurrent => {
                if let Some(s) = self.session.as_mut()
                    && let Some(i) = s.state.current()
                {
                    s.state.toggle_compare(i);
                }
            }
            Command::ClearCompare => self.with_state(|s| s.compare.clear()),
            Command::SetSort(k) => self.set_grid_pref(|p| p.sort = k, |s| s.sort = k),
            Command::SetDescending(d) => self.set_grid_pref(|p| p.descending = d, |s| s.descending = d),
            Command::SetFilter(f) => {
                let saved = f.clone();
                self.set_grid_pref(|p| p.filter = saved, |s| s.filter = f)
            }
            Command::SetCollapseBursts(b) => self.set_grid_pref(|p| p.collapse_bursts = b, |s| s.collapse_groups = b),
            Command::ToggleGroup(g) => self.with_state(|s| s.toggle_group(g)),
            Command::ToggleCurrentGroup => self.with_state(|s| {
                if let Some(g) = s.current().and_then(|i| s.group_of(i)) {
                    s.toggle_group(g);
                }
            }),
            Command::SetAutoAdvance(b) => {
                self.settings.auto_advance = b;
                self.save_settings();
            }
            Command::SetThumbSize(x) => {
                self.settings.thumb_size = x.clamp(96.0, 400.0);
                self.save_settings();
            }
            Command::SetTheme(t) => self.ui.theme = t,
            Command::SuggestCovers => {
                let n = self.settings.covers.max(1);
                let covers = self.state().map(|s| s.suggest_covers(n)).unwrap_or_default();
                if covers.is_empty() {
                    self.info("No cover suggestions yet: covers are chosen by score, and no photo of this album has one yet.");
                } else {
                    self.ui.covers = Some(covers);
                }
            }
            Command::AcceptCovers => {
                let Some(covers) = self.ui.covers.clone() else { return };
                for i in covers {
                    self.decide(i, DecisionChange::Label(Some(crate::library::xmp::ColorLabel::Purple)));
                }
                self.info(
                    "Covers accepted: marked with the purple label (written to the XMP sidecars). Export them with \"Export covers\".",
                );
            }
            Command::ExportCovers => self.export_covers(),
            Command::DismissCovers => self.ui.covers = None,
            Command::ShowShortcuts(b) => self.ui.show_shortcuts = b,
            Command::ToggleSidePanel => {
                self.settings.show_side_panel = !self.settings.show_side_panel;
                self.save_settings();
            }
            Command::DismissMessage(i) => {
                if i < self.messages.len() {
                    self.messages.remove(i);
                }
            }
            Command::DismissAllMessages => self.messages.retain(|m| m.retry),
            Command::Taste(t) => self.apply_taste(t),
            Command::RetrySidecars => {
                self.messages.retain(|m| !m.retry);
                if let Some(s) = &self.session {
                    s.album.retry_sidecars();
                }
            }
        }
    }

    /// Whether taste profiles can be trained here (the service runs).
    pub fn taste_unavailable(&self) -> bool {
        self.taste.is_none()
    }

    pub fn taste_paused(&self) -> bool {
        self.taste.as_ref().is_some_and(Taste::is_paused)
    }

    /// Lists the profile store again; at start also re-activates the saved active profile. Files that
    /// are not readable profiles are reported once and ignored.
    fn refresh_profiles(&mut self, at_start: bool) {
        let Some(store) = &self.store else { return };
        let listing = store.list();
        for p in listing.problems {
            if at_start || !self.messages.iter().any(|m| m.text == p) {
                self.error(p);
            }
        }
        self.taste_ui.profiles = listing.profiles;
        let want = self.settings.taste_profile.clone();
        let found = want.as_ref().and_then(|f| self.taste_ui.profiles.iter().find(|s| &s.file == f).cloned());
        if want.is_some() && found.is_none() {
            if at_start {
                self.error(format!(
                    "The active taste profile {} is missing or unreadable; the grid is ordered by technical quality.",
                    want.unwrap_or_default()
                ));
            }
            self.set_active(None);
        } else if at_start || found.as_ref().map(|s| &s.profile) != self.active_profile.as_ref().map(|s| &s.profile) {
            self.set_active(found);
        }
    }

    /// Makes `profile` the active one (saved in the settings) and re-scores the album with it.
    fn set_active(&mut self, profile: Option<Stored>) {
        let file = profile.as_ref().map(|s| s.file.clone());
        if self.settings.taste_profile != file {
            self.settings.taste_profile = file;
            self.save_settings();
        }
        self.active_profile = profile;
        self.ui.theme = None;
        self.taste_ui.rescoring = None;
        if let Some(s) = self.session.as_mut() {
            s.to_taste.clear();
            s.pixel_sent.clear();
            for p in &mut s.state.photos {
                p.taste = None;
                p.taste_by_theme.clear();
                p.taste_tags.clear();
            }
            match &self.active_profile {
                Some(a) if a.profile.procedure.is_some() => s.to_taste = s.state.photos.iter().map(|p| p.id).collect(),
                Some(_) => s.to_taste = s.state.photos.iter().filter(|p| matches!(p.scores, ScoreState::Ready(_))).map(|p| p.id).collect(),
                None => {}
            }
            s.refresh = true;
            s.regroup = true;
        }
    }

    fn apply_taste(&mut self, c: taste::TasteCommand) {
        use taste::TasteCommand as T;
        match c {
            T::Show(b) => {
                self.taste_ui.open = b;
                if b && self.taste_ui.name.is_empty() {
                    let album = self.state().and_then(|s| s.root.file_name()).map(|n| n.to_string_lossy().into_owned());
                    self.taste_ui.name = format!("{} taste", album.unwrap_or_else(|| "My".into()));
                }
            }
            T::Toggle => self.apply_taste(T::Show(!self.taste_ui.open)),
            T::SetPrefs(p) => {
                self.settings.taste = p;
                self.save_settings();
            }
            T::SetName(n) => self.taste_ui.name = n,
            T::Start => self.start_training(),
            T::Pause(b) => {
                if let Some(t) = &self.taste {
                    t.pause(b);
                }
            }
            T::Cancel => {
                if let Some(t) = &self.taste {
                    t.cancel();
                    t.pause(false);
                }
            }
            T::Activate(file) => {
                let found = file.and_then(|f| self.taste_ui.profiles.iter().find(|s| s.file == f).cloned());
                self.set_active(found);
            }
            T::EditName(e) => self.taste_ui.renaming = e,
            T::Rename(file, name) => {
                let Some(store) = &self.store else { return };
                match store.rename(&file, &name) {
                    Ok(_) => {
                        self.taste_ui.renaming = None;
                        self.refresh_profiles(false);
                        if let Some(r) = self.taste_ui.result.as_mut().filter(|r| r.file == file) {
                            r.name =
                                self.taste_ui.profiles.iter().find(|s| s.file == file).map(|s| s.profile.name.clone()).unwrap_or_default();
                        }
                    }
                    Err(e) => self.error(format!("Cannot rename the profile: {e}")),
                }
            }
            T::Delete(file) => {
                let Some(store) = &self.store else { return };
                match store.delete(&file) {
                    Ok(()) => {
                        if self.taste_ui.result.as_ref().is_some_and(|r| r.file == file) {
                            self.taste_ui.result = None;
                        }
                        self.refresh_profiles(false);
                    }
                    Err(e) => self.error(format!("Cannot delete the profile: {e}")),
                }
            }
            T::Export(file) => {
                let tx = self.background.0.clone();
                let ctx = self.ctx.clone();
                std::thread::spawn(move || {
                    let dialog = rfd::FileDialog::new()
                        .set_title("Export taste profile")
                        .set_file_name(&file)
                        .add_filter("Keepers taste profile", &[crate::train::profiles::EXTENSION]);
                    if let Some(dest) = dialog.save_file() {
                        let _ = tx.send(BackgroundNote::ExportProfile(file, dest));
                        ctx.request_repaint();
                    }
                });
            }
            T::Import => {
                let tx = self.background.0.clone();
                let ctx = self.ctx.clone();
                std::thread::spawn(move || {
                    let dialog = rfd::FileDialog::new()
                        .set_title("Import taste profile")
                        .add_filter("Keepers taste profile", &[crate::train::profiles::EXTENSION]);
                    if let Some(src) = dialog.pick_file() {
                        let _ = tx.send(BackgroundNote::ImportProfile(src));
                        ctx.request_repaint();
                    }
                });
            }
            T::StartProcedure => self.start_procedure(),
            T::ChooseCsv | T::ChooseAva => {
                let tx = self.background.0.clone();
                let ctx = self.ctx.clone();
                let csv = matches!(c, T::ChooseCsv);
                std::thread::spawn(move || {
                    let picked = if csv {
                        rfd::FileDialog::new().set_title("Choose a labelled CSV").add_filter("CSV", &["csv"]).pick_file()
                    } else {
                        rfd::FileDialog::new().set_title("Choose an AVA folder (AVA.txt, images/)").pick_folder()
                    };
                    if let Some(p) = picked {
                        let kind = if csv { taste::SetKind::Csv } else { taste::SetKind::Ava };
                        let _ = tx.send(BackgroundNote::PickedSet(kind, p));
                        ctx.request_repaint();
                    }
                });
            }
            T::Inspect(kind, path) => {
                if self.taste_ui.inspecting.as_ref() == Some(&(kind, path.clone())) {
                    return;
                }
                self.taste_ui.inspecting = Some((kind, path.clone()));
                let tx = self.background.0.clone();
                let ctx = self.ctx.clone();
                std::thread::spawn(move || {
                    let set = match kind {
                        taste::SetKind::Csv => crate::worker::procedure::LabelledSet::Csv(path.clone().into()),
                        _ => crate::worker::procedure::LabelledSet::Ava(path.clone().into()),
                    };
                    let summary = set.load().map(|ds| taste::SetSummary::of(&ds)).map_err(|e| e.to_string());
                    let _ = tx.send(BackgroundNote::SetSummary(kind, path, summary));
                    ctx.request_repaint();
                });
            }
            T::SuggestLabels => self.suggest_labels(),
            T::ShowAll => self.with_state(|s| {
                s.only = None;
                s.refresh();
            }),
        }
    }

    /// Sends the advanced mode's procedure run to the taste service.
    fn start_procedure(&mut self) {
        use crate::worker::procedure::{LabelledSet, ProcedureRequest};
        let Some(t) = &self.taste else { return };
        let pp = self.settings.taste.proc.clone();
        let set = match pp.set {
            taste::SetKind::Album => match self.state() {
                Some(st) => LabelledSet::Album(taste::album_dataset(st, pp.themes)),
                None => {
                    self.taste_ui.status = Some("Open an album first, or choose a CSV file or an AVA folder.".into());
                    return;
                }
            },
            kind => {
                let path = pp.set_path().unwrap_or_default();
                let ok = if kind == taste::SetKind::Csv { path.is_file() } else { path.join("AVA.txt").is_file() };
                if !ok {
                    self.taste_ui.status = Some(if kind == taste::SetKind::Csv {
                        format!("{}: no such CSV file.", path.display())
                    } else {
                        format!("{}: no AVA.txt in this folder.", path.display())
                    });
                    return;
                }
                if kind == taste::SetKind::Csv { LabelledSet::Csv(path) } else { LabelledSet::Ava(path) }
            }
        };
        let name = if self.taste_ui.name.trim().is_empty() { "Taste".to_string() } else { self.taste_ui.name.trim().to_string() };
        let req = ProcedureRequest {
            name,
            set,
            task: pp.task,
            procedure: pp.procedure,
            system: pp.system_id(),
            small_data: pp.small_data,
            epochs: pp.epochs.max(1),
            lr: pp.lr,
            batch: pp.batch.max(1),
            seed: pp.seed,
            val_fraction: pp.holdout,
            feature_plan: crate::train::features::FeaturePlan { native: pp.native.max(1), arp: pp.arp.max(1), seed: pp.seed },
            patches: pp.patches.max(1),
            test_views: 3,
            lite0: crate::model::weights::WeightsFile::EfficientNetLite0.path(),
            feature_cache: Some(self.opts.thumb_dir.with_file_name("features")),
            baseline: self
                .state()
                .map(|st| st.photos.iter().filter_map(|p| p.quality().map(|q| (p.path.clone(), q as f64))).collect())
                .unwrap_or_default(),
        };
        match t.submit(TasteJob::Procedure(Box::new(req))) {
            Ok(()) => {
                self.taste_ui.running = Some(taste::RunView::default());
                self.taste_ui.status = None;
                self.taste_ui.proc_result = None;
            }
            Err(_) => self.taste_ui.status = Some("The taste service is busy; try again in a moment.".into()),
        }
    }

    /// Sends a training run on the album's labels to the taste service.
    fn start_training(&mut self) {
        let Some(t) = &self.taste else { return };
        let Some(st) = self.state() else { return };
        let prefs = self.settings.taste.clone();
        let labels = prefs.labels(st);
        let keeps = labels.iter().filter(|l| l.keep).count();
        if keeps < 2 || labels.len() - keeps < 2 {
            self.taste_ui.status =
                Some(format!("Label at least 2 keeps and 2 rejects first ({keeps} keeps and {} rejects so far).", labels.len() - keeps));
            return;
        }
        let baseline = st.photos.iter().filter_map(|p| p.quality().map(|q| (p.id, q as f64))).collect();
        let name = if self.taste_ui.name.trim().is_empty() { "Taste".to_string() } else { self.taste_ui.name.trim().to_string() };
        let (themes, theme_of) = prefs.themes(st, &labels);
        let req = TrainRequest {
            name,
            labels: labels.clone(),
            baseline,
            config: prefs.config(),
            themes,
            theme_of,
            keyword_photos: if prefs.learn_tags { st.photos.iter().map(|p| (p.id, p.path.clone())).collect() } else { Vec::new() },
            holdout: prefs.holdout,
            seed: prefs.seed,
        };
        match t.submit(TasteJob::Train(req)) {
            Ok(()) => {
                self.taste_ui.running = Some(taste::RunView::default());
                self.taste_ui.status = None;
                self.taste_ui.result = None;
            }
            Err(_) => self.taste_ui.status = Some("The taste service is busy; try again in a moment.".into()),
        }
    }

    /// Limits the grid to the photos to label next ([`crate::train::active::suggest`]).
    fn suggest_labels(&mut self) {
        const N: usize = 12;
        let prefs = self.settings.taste.clone();
        let Some(s) = self.session.as_mut() else { return };
        let st = &s.state;
        let labelled: std::collections::HashSet<i64> = prefs.labels(st).iter().map(|l| l.id).collect();
        let unlabelled: Vec<usize> =
            (0..st.len()).filter(|&i| !labelled.contains(&st.photos[i].id) && st.photos[i].embedding().is_some()).collect();
        let cands: Vec<crate::train::active::Candidate> = unlabelled
            .iter()
            .map(|&i| crate::train::active::Candidate {
                embedding: st.photos[i].embedding().expect("filtered"),
                p_keep: st.photos[i].taste,
            })
            .collect();
        let known: Vec<&[f32]> = st.photos.iter().filter(|p| labelled.contains(&p.id)).filter_map(|p| p.embedding()).collect();
        let chosen: Vec<i64> = crate::train::active::suggest(&cands, &known, N).into_iter().map(|k| st.photos[unlabelled[k]].id).collect();
        if chosen.is_empty() {
            self.taste_ui.status = Some("Nothing to suggest: every scored photo is labelled (or none is scored yet).".into());
            return;
        }
        let n = chosen.len();
        s.state.only = Some(chosen);
        s.state.refresh();
        s.state.move_to(0);
        self.ui.scroll_to_cursor = true;
        self.taste_ui.status = Some(format!("Showing the {n} photos to label next. \"Show all photos\" brings the rest back."));
    }

    /// A grid preference: saved with the settings and applied to the open album.
    fn set_grid_pref(&mut self, save: impl FnOnce(&mut Settings), apply: impl FnOnce(&mut AlbumState)) {
        save(&mut self.settings);
        self.with_state(|s| {
            apply(s);
            s.refresh();
        });
        self.save_settings();
    }

    fn with_state(&mut self, f: impl FnOnce(&mut AlbumState)) {
        if let Some(s) = self.session.as_mut() {
            f(&mut s.state);
            self.ui.scroll_to_cursor = true;
        }
    }

    /// Copies the cover photos (the suggestion on show, else the photos with the purple label) into
    /// `<album>/Keepers covers/` with a `covers.txt` list, on a background thread. Never overwrites.
    fn export_covers(&mut self) {
        let Some(s) = self.session.as_ref() else { return };
        let st = &s.state;
        let chosen: Vec<usize> = match &self.ui.covers {
            Some(c) => c.clone(),
            None => (0..st.len()).filter(|&i| st.photos[i].decision.label == Some(crate::library::xmp::ColorLabel::Purple)).collect(),
        };
        if chosen.is_empty() {
            self.info("No covers to export: pick covers first (or give photos the purple label).");
            return;
        }
        let files: Vec<PathBuf> = chosen.iter().map(|&i| st.photos[i].display.clone()).collect();
        let dest = st.root.join("Keepers covers");
        let tx = self.background.0.clone();
        let ctx = self.ctx.clone();
        std::thread::spawn(move || {
            let msg = match export_files(&files, &dest) {
                Ok(n) => Message { kind: MessageKind::Info, text: format!("Exported {n} cover(s) to {}", dest.display()), retry: false },
                Err(e) => {
                    Message { kind: MessageKind::Error, text: format!("Cover export to {} failed: {e}", dest.display()), retry: false }
                }
            };
            let _ = tx.send(BackgroundNote::Message(msg));
            ctx.request_repaint();
        });
    }

    /// Tells the album (thumbnails) and the worker (scores) which photos are on screen, to do them
    /// first; only when that changed.
    fn prioritise(&mut self) {
        if self.ui.on_screen == self.last_priority {
            return;
        }
        if let Some(scoring) = &self.scoring {
            scoring.prioritise(&self.ui.on_screen);
        }
        if let Some(s) = &self.session {
            s.album.prioritise(&self.ui.on_screen);
        }
        self.last_priority = self.ui.on_screen.clone();
    }

    /// Previews for the loupe / compare: what is shown first, then the neighbours.
    fn want_previews(&mut self) {
        let Some(s) = self.session.as_ref() else { return };
        let st = &s.state;
        let mut ids: Vec<usize> = match self.ui.view {
            View::Grid => Vec::new(),
            View::Loupe => st.current().into_iter().collect(),
            View::Compare => st.compare_frames(),
        };
        if self.ui.view != View::Grid {
            for d in [1isize, -1, 2] {
                let pos = st.cursor as isize + d;
                if pos >= 0
                    && let Some(&i) = st.visible.get(pos as usize)
                {
                    ids.push(i);
                }
            }
        }
        let items: Vec<(i64, PathBuf)> = ids.into_iter().map(|i| (st.photos[i].id, st.photos[i].display.clone())).collect();
        self.previews.want(&items);
    }
}

/// Copies `files` into `dest` (created), never overwriting: a name already taken gets " (2)", ...
/// Writes `covers.txt` listing the original paths. Returns how many files were copied.
pub fn export_files(files: &[PathBuf], dest: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dest)?;
    let mut list = String::new();
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "photo".into());
        let mut to = dest.join(&name);
        let mut n = 2;
        while to.exists() {
            let p = Path::new(&name);
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
            to = dest.join(format!("{stem} ({n}){ext}"));
            n += 1;
        }
        std::fs::copy(f, &to)?;
        list.push_str(&format!("{}\n", f.display()));
    }
    let list_path = dest.join("covers.txt");
    let mut old = std::fs::read_to_string(&list_path).unwrap_or_default();
    old.push_str(&list);
    std::fs::write(list_path, old)?;
    Ok(files.len())
}

fn start_scoring(ctx: &egui::Context, opts: &AppOptions) -> Scoring {
    let wake_ctx = ctx.clone();
    Scoring::start(ScoringConfig::app(opts.db_path.clone()), Some(Arc::new(move || wake_ctx.request_repaint())))
}

impl eframe::App for KeepersApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.pump();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        let mut commands = Vec::new();
        // Dropped folders (or a file: its folder) open as the album.
        let dropped: Vec<PathBuf> =
            ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_owned()).filter(|p| !p.as_os_str().is_empty()).collect());
        if let Some(p) = dropped.into_iter().next() {
            let dir = if p.is_dir() { p } else { p.parent().map(Path::to_owned).unwrap_or(p) };
            commands.push(Command::Open(dir));
        }
        commands.extend(panels::top_bar(ui, self));
        commands.extend(panels::status_bar(ui, self));
        if self.session.is_some() {
            if self.ui.view != View::Grid && self.settings.show_filmstrip {
                commands.extend(grid::filmstrip(ui, self));
            }
            if self.settings.show_side_panel {
                commands.extend(panels::info_panel(ui, self));
            }
            commands.extend(taste::panel(ui, self));
        }
        egui::CentralPanel::no_frame().frame(egui::Frame::central_panel(ui.style()).inner_margin(0.0)).show(ui, |ui| {
            let c = match (&self.session, self.ui.view) {
                (None, _) => panels::start_screen(ui, self),
                (Some(_), View::Grid) => grid::grid(ui, self),
                (Some(_), View::Loupe) => loupe::loupe(ui, self),
                (Some(_), View::Compare) => loupe::compare(ui, self),
            };
            commands.extend(c);
        });
        commands.extend(panels::overlays(ui, self));

        if let Some(mut b) = self.bench.take() {
            let now = Instant::now();
            if let Some(last) = b.last.replace(now) {
                b.intervals.push((now - last).as_secs_f32() * 1000.0);
            }
            ctx.request_repaint();
            let at_end = self.state().is_some_and(|s| s.cursor + 1 >= s.visible.len());
            commands.push(if at_end { Command::Home } else { Command::Move(1) });
            if let (Some(s), Some(p)) = (&self.session, self.scoring_progress())
                && s.finished
                && !p.busy
                && p.done + p.failed >= s.state.len()
                && !s.state.is_empty()
            {
                let secs = s.opened_at.elapsed().as_secs_f32();
                let (n, med, p99, max) = self.frame_times.summary();
                let iv = FrameTimes { samples: b.intervals.clone() }.summary();
                let text = format!(
                    "photos {} scored {} failed {} seconds {secs:.1} photos_per_s {:.2}\nui_frames {n} ui_median_ms {med:.2} ui_p99_ms {p99:.2} ui_max_ms {max:.2}\nframe_interval_median_ms {:.2} p99_ms {:.2} max_ms {:.2}\n",
                    s.state.len(),
                    p.done,
                    p.failed,
                    s.state.len() as f32 / secs,
                    iv.1,
                    iv.2,
                    iv.3
                );
                let _ = std::fs::write(&b.report, text);
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            } else {
                self.bench = Some(b);
            }
        }
        if let Some(mut tour) = self.tour.take() {
            commands.extend(tour.frame(&ctx, self));
            self.tour = Some(tour);
        }
        if self.ui.covers.is_some() {
            // The cover window takes Enter; Escape closes it.
            if ctx.input(|i| i.key_pressed(egui::Key::Escape)) {
                commands.push(Command::DismissCovers);
            }
        } else if !ctx.egui_wants_keyboard_input() {
            let view = self.ui.view;
            let (open, auto) = (self.ui.show_shortcuts, self.settings.auto_advance);
            commands.extend(ctx.input(|i| commands::from_keys(i, view, open, auto)));
        }
        self.apply(commands);
        self.previews.poll(&ctx);
        self.want_previews();
        self.prioritise();
        self.frame_times.samples.push(started.elapsed().as_secs_f32() * 1000.0);
        if self.frame_times.samples.len() > 100_000 {
            self.frame_times.samples.drain(..50_000);
        }
        // While work runs, the workers' wake-ups repaint; a slow tick keeps the ETA moving.
        if self.scoring_progress().is_some_and(|p| p.busy) {
            ctx.request_repaint_after(Duration::from_millis(500));
        }
    }

    fn on_exit(&mut self) {
        self.save_settings();
        if let Ok(path) = std::env::var("KEEPERS_FRAME_LOG") {
            let (n, med, p99, max) = self.frame_times.summary();
            let _ = std::fs::write(&path, format!("frames {n} median_ms {med:.2} p99_ms {p99:.2} max_ms {max:.2}\n"));
        }
        self.close();
    }
}
