//! The taste panel (issue 8): teach Keepers a person's taste from their own decisions in the open
//! album, see whether it learned anything on labels it never saw, keep the result as a named
//! profile, and let the active profile order the grid.
//!
//! Saved preferences ([`TastePrefs`], in the settings) and runtime state ([`TasteUi`]) are apart;
//! the window draws from them and returns [`Command::Taste`] commands the app applies after the
//! frame. Training and scoring run in [`crate::worker::taste`]; this file only draws.
//!
//! **Advanced: paper procedure** ([`ProcedurePrefs`], the checkbox of that name): instead of the
//! quick grid head, one of the papers' procedures ([`crate::train::procedures::Procedure`], each
//! with its systems; default the small-data variant of MP-ada, or ARP-MPEMD-avg for
//! distributions) trains on a labelled set — this album's decisions (picks / rejects, stars as a
//! score or a 5-bin distribution, folders as themes), a CSV file or an AVA folder — in the taste
//! service ([`crate::worker::procedure`]), with live loss and validation curves, pause and cancel;
//! the result is a profile like the others, and the album is re-scored with it from pixels.

use egui::{Color32, RichText, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints};
use serde::{Deserialize, Serialize};

use super::KeepersApp;
use super::commands::Command;
use super::panels::named;
use super::state::AlbumState;
use super::style;
use crate::train::profiles::Stored;
use crate::train::taste::{Procedure, TasteConfig, TasteProfile, TasteSystem};
use crate::train::taste_eval::{Figures, HeldOutReport, Labelled};
use crate::worker::procedure::{ProcedureProgress, TaskChoice, default_procedure, procedure_tasks};
use crate::worker::taste::{Phase, TrainProgress};

/// Where the advanced mode's labels come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SetKind {
    /// The open album's decisions.
    #[default]
    Album,
    /// A CSV file (path column + label / score / histogram / styles / theme).
    Csv,
    /// An AVA folder as published.
    Ava,
}

impl SetKind {
    pub const ALL: [SetKind; 3] = [SetKind::Album, SetKind::Csv, SetKind::Ava];
    pub fn label(self) -> &'static str {
        match self {
            SetKind::Album => "This album's decisions",
            SetKind::Csv => "A CSV file",
            SetKind::Ava => "An AVA folder",
        }
    }
}

/// The advanced mode's settings (saved with the settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcedurePrefs {
    pub set: SetKind,
    /// The CSV file and the AVA folder, as typed or chosen.
    pub csv: String,
    pub ava: String,
    pub task: TaskChoice,
    pub procedure: crate::train::procedures::Procedure,
    /// The system by name (`None`: the procedure's first).
    pub system: Option<String>,
    /// Frozen backbone, cached features (the small-data variant).
    pub small_data: bool,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub seed: u64,
    /// Share of the set held out for validation.
    pub holdout: f64,
    /// Patches per photo (DMA's M, MP's and ARP's P).
    pub patches: usize,
    /// Backbone patches cached per photo: native-resolution and aspect-preserving.
    pub native: usize,
    pub arp: usize,
    /// Album set: themes (for THEME-EMD) from the folders.
    pub themes: ThemeSource,
}

impl Default for ProcedurePrefs {
    fn default() -> Self {
        ProcedurePrefs {
            set: SetKind::Album,
            csv: String::new(),
            ava: String::new(),
            task: TaskChoice::Binary,
            procedure: default_procedure(TaskChoice::Binary),
            system: None,
            small_data: true,
            epochs: 10,
            lr: 1e-3,
            batch: 8,
            seed: 0,
            holdout: 0.25,
            patches: 4,
            native: 8,
            arp: 4,
            themes: ThemeSource::None,
        }
    }
}

impl ProcedurePrefs {
    /// The chosen system (the procedure's first when none is chosen or it does not belong).
    pub fn system_id(&self) -> Option<crate::model::systems::SystemId> {
        let systems = self.procedure.systems();
        self.system
            .as_deref()
            .and_then(crate::model::systems::SystemId::parse)
            .filter(|s| systems.contains(s))
            .or_else(|| systems.first().copied())
    }

    /// The file or folder of the chosen set (`None` for the album).
    pub fn set_path(&self) -> Option<std::path::PathBuf> {
        match self.set {
            SetKind::Album => None,
            SetKind::Csv => Some(self.csv.trim().into()),
            SetKind::Ava => Some(self.ava.trim().into()),
        }
    }
}

/// The album's decisions as a procedure's dataset: picks / rejects as the keep label, stars as the
/// score and as a 5-bin distribution ([`crate::train::data::album::with_star_histograms`]), and
/// each photo's folder as its theme when `themes` says so.
pub fn album_dataset(st: &AlbumState, themes: ThemeSource) -> crate::train::data::Dataset {
    use crate::train::data::{Dataset, Sample, album};
    // Every photo: undecided ones carry no keep / score target, but may carry keywords (styles).
    let mut samples: Vec<Sample> = st
        .photos
        .iter()
        .map(|p| Sample { path: p.path.clone(), key: p.name.clone(), target: album::decision_target(&p.decision).unwrap_or_default() })
        .collect();
    let mut names: Vec<String> = samples.iter().filter_map(|s| theme_of(themes, &st.root, &s.path)).collect();
    names.sort();
    names.dedup();
    for s in &mut samples {
        s.target.theme = theme_of(themes, &st.root, &s.path).and_then(|t| names.binary_search(&t).ok());
    }
    let ds = Dataset {
        source: format!("album {}", st.root.display()),
        samples,
        class_names: album::KEEP_CLASSES.iter().map(|s| s.to_string()).collect(),
        style_names: Vec::new(),
        theme_names: names,
    };
    album::with_star_histograms(&ds)
}

/// What a labelled set holds, for the task list.
#[derive(Debug, Clone, PartialEq)]
pub struct SetSummary {
    pub source: String,
    pub photos: usize,
    /// Photos with each task's target, in [`TaskChoice::ALL`] order.
    pub counts: [usize; 4],
    pub themes: usize,
    pub styles: usize,
    /// Style tags come from the photos' XMP keywords, read when the run starts (album).
    pub styles_from_keywords: bool,
}

impl SetSummary {
    pub fn of(ds: &crate::train::data::Dataset) -> Self {
        SetSummary {
            source: ds.source.clone(),
            photos: ds.len(),
            counts: TaskChoice::ALL.map(|t| t.count(ds)),
            themes: ds.theme_names.len(),
            styles: ds.style_names.len(),
            styles_from_keywords: false,
        }
    }

    pub fn count(&self, t: TaskChoice) -> usize {
        self.counts[TaskChoice::ALL.iter().position(|x| *x == t).expect("listed")]
    }
}

/// A procedure by name with what it is.
pub fn procedure_title(p: crate::train::procedures::Procedure) -> String {
    use crate::train::procedures::Procedure as P;
    let what = match p {
        P::Scnn => "single column on one view (paper 002)",
        P::Dcnn => "global + local columns (paper 002)",
        P::Rdcnn => "DCNN regularised by a frozen column (paper 002)",
        P::Dma => "bag of patches, statistics or sorting layer (paper 000)",
        P::MpAvg => "multi-patch, mean objective (paper 001)",
        P::MpMin => "multi-patch, soft-min objective (paper 001)",
        P::MpAda => "multi-patch, adaptive objective (paper 001)",
        P::ThemeEmd => "theme-conditioned score distribution (paper 003)",
        P::ArpMpemdAvg => "aspect-preserving multi-patch distributions, mean (paper 004)",
        P::ArpMpemdAda => "aspect-preserving multi-patch distributions, adaptive (paper 004)",
        P::Adapt => "fine-tune a trained model on a content subset (paper 002)",
    };
    format!("{} — {what}", p.name())
}

/// The procedures the panel offers (ADAPT needs a trained checkpoint to start from: `keepers train`).
pub fn panel_procedures() -> Vec<crate::train::procedures::Procedure> {
    crate::train::procedures::Procedure::ALL.into_iter().filter(|p| *p != crate::train::procedures::Procedure::Adapt).collect()
}

/// Which of the album's decisions are the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LabelSource {
    /// Picks are keeps, rejects are rejects (P / X).
    #[default]
    Picks,
    /// Rated photos: at least [`TastePrefs::keep_stars`] stars is a keep, fewer a reject; unrated
    /// photos are not labels.
    Stars,
}

impl LabelSource {
    pub const ALL: [LabelSource; 2] = [LabelSource::Picks, LabelSource::Stars];
    pub fn label(self) -> &'static str {
        match self {
            LabelSource::Picks => "Picks vs rejects",
            LabelSource::Stars => "Star ratings",
        }
    }
}

/// Where the user's themes come from (paper 003's theme input, with the user's own themes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ThemeSource {
    /// One score for every photo.
    #[default]
    None,
    /// Each sub-folder of the album (a shoot) is a theme; photos directly in the album folder
    /// share the album's own.
    Folders,
}

impl ThemeSource {
    pub const ALL: [ThemeSource; 2] = [ThemeSource::None, ThemeSource::Folders];
    pub fn label(self) -> &'static str {
        match self {
            ThemeSource::None => "No themes",
            ThemeSource::Folders => "One theme per folder",
        }
    }
}

/// The theme of a photo under `source`: its folder relative to the album root (the root's own
/// name for photos directly in it).
pub fn theme_of(source: ThemeSource, root: &std::path::Path, path: &std::path::Path) -> Option<String> {
    match source {
        ThemeSource::None => None,
        ThemeSource::Folders => {
            let dir = path.parent()?;
            let rel = dir.strip_prefix(root).ok()?;
            Some(if rel.as_os_str().is_empty() {
                root.file_name().map_or_else(|| "album".into(), |n| n.to_string_lossy().into_owned())
            } else {
                rel.to_string_lossy().into_owned()
            })
        }
    }
}

/// Training preferences, saved with the settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TastePrefs {
    pub source: LabelSource,
    pub keep_stars: u8,
    pub procedure: Procedure,
    pub steps: usize,
    pub lr: f64,
    pub l2: f64,
    /// Fraction of each class held out to check the profile.
    pub holdout: f64,
    pub seed: u64,
    pub themes: ThemeSource,
    /// Also learn the photos' XMP keywords as style tags.
    pub learn_tags: bool,
    /// The advanced mode: a paper procedure on a labelled set.
    pub advanced: bool,
    pub proc: ProcedurePrefs,
}

impl Default for TastePrefs {
    fn default() -> Self {
        let c = TasteConfig::default();
        TastePrefs {
            source: LabelSource::Picks,
            keep_stars: 4,
            procedure: Procedure::MpAda,
            steps: c.steps,
            lr: c.lr,
            l2: c.l2,
            holdout: 0.3,
            seed: 0,
            themes: ThemeSource::None,
            learn_tags: true,
            advanced: false,
            proc: ProcedurePrefs::default(),
        }
    }
}

impl TastePrefs {
    pub fn config(&self) -> TasteConfig {
        let system = TasteSystem { procedure: self.procedure, input: crate::train::taste::TasteInput::Grid };
        TasteConfig { system, steps: self.steps.max(1), lr: self.lr, l2: self.l2, ..TasteConfig::default() }
    }

    /// The user's themes of the labelled photos (sorted) and each labelled photo's theme index;
    /// empty when themes are off or the labels span fewer than two.
    pub fn themes(&self, st: &AlbumState, labels: &[Labelled]) -> (Vec<String>, std::collections::HashMap<i64, usize>) {
        let of: Vec<(i64, String)> = labels
            .iter()
            .filter_map(|l| st.index_of(l.id).and_then(|i| theme_of(self.themes, &st.root, &st.photos[i].path)).map(|t| (l.id, t)))
            .collect();
        let mut names: Vec<String> = of.iter().map(|(_, t)| t.clone()).collect();
        names.sort();
        names.dedup();
        if names.len() < 2 {
            return (Vec::new(), Default::default());
        }
        let index = of.into_iter().map(|(id, t)| (id, names.binary_search(&t).expect("listed"))).collect();
        (names, index)
    }

    /// The album's labels under these preferences (photo id, keep, grade).
    pub fn labels(&self, st: &AlbumState) -> Vec<Labelled> {
        st.photos
            .iter()
            .filter_map(|p| match self.source {
                LabelSource::Picks if p.decision.is_picked() => Some(Labelled { id: p.id, keep: true, grade: 1.0 }),
                LabelSource::Picks if p.decision.is_rejected() => Some(Labelled { id: p.id, keep: false, grade: 0.0 }),
                LabelSource::Picks => None,
                LabelSource::Stars => {
                    let s = p.decision.stars();
                    (s > 0).then_some(Labelled { id: p.id, keep: s >= self.keep_stars, grade: s as f64 })
                }
            })
            .collect()
    }
}

pub fn procedure_label(p: Procedure) -> &'static str {
    match p {
        Procedure::MpAda => "Multi-patch, adaptive (MP-ada)",
        Procedure::Logistic => "One view: mean of the patches",
    }
}

fn procedure_help(p: Procedure) -> &'static str {
    match p {
        Procedure::MpAda => {
            "Default for few labels. Every patch of the photo is judged by the same small head on the frozen backbone; \
             training weighs the patches it gets wrong more (Sheng et al. 2018, MP-ada). The photo's score is the mean over its patches."
        }
        Procedure::Logistic => {
            "Logistic regression on the average of the photo's patch features: one view of the photo, a simpler baseline."
        }
    }
}

/// What the panel asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum TasteCommand {
    Show(bool),
    Toggle,
    SetPrefs(TastePrefs),
    SetName(String),
    Start,
    Pause(bool),
    Cancel,
    /// Make the profile in this file active (`None`: no profile, technical quality orders the grid).
    Activate(Option<String>),
    /// Open (or update, or close with `None`) the rename field of a profile: (file, text).
    EditName(Option<(String, String)>),
    /// Give the profile in this file this name.
    Rename(String, String),
    Delete(String),
    Export(String),
    Import,
    /// Show only the photos to label next.
    SuggestLabels,
    ShowAll,
    /// Start the advanced mode's procedure run.
    StartProcedure,
    /// Choose the CSV file / the AVA folder with the native dialog.
    ChooseCsv,
    ChooseAva,
    /// Read what the set at this path holds (CSV or AVA), off the UI thread.
    Inspect(SetKind, String),
}

/// A run on show: its curves and last report.
#[derive(Debug, Clone, Default)]
pub struct RunView {
    /// (step, loss) of the check fit, and of the final fit.
    pub loss: Vec<[f64; 2]>,
    pub final_loss: Vec<[f64; 2]>,
    /// (step, held-out AUC).
    pub auc: Vec<[f64; 2]>,
    pub last: Option<TrainProgress>,
    /// A procedure run: its last report, and (step, validation metric) after each epoch.
    pub proc_last: Option<ProcedureProgress>,
    pub validation: Vec<[f64; 2]>,
    pub metric_name: Option<String>,
}

/// The outcome of the last finished run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub file: String,
    pub name: String,
    pub report: HeldOutReport,
    pub left_out: usize,
    /// What the run could not use (from the service).
    pub notes: Vec<String>,
}

/// Runtime state of the taste panel (not saved).
#[derive(Debug, Default)]
pub struct TasteUi {
    pub open: bool,
    pub name: String,
    pub running: Option<RunView>,
    /// Curves of the last run, kept after it ends.
    pub curves: Option<RunView>,
    pub result: Option<RunResult>,
    pub status: Option<String>,
    pub profiles: Vec<Stored>,
    /// File of the profile whose rename field is open, and the text in it.
    pub renaming: Option<(String, String)>,
    /// What the advanced mode's CSV / AVA set holds (or why it cannot be read), by path.
    pub set_summary: Option<(SetKind, String, Result<SetSummary, String>)>,
    /// The last finished procedure run.
    pub proc_result: Option<ProcResult>,
    /// Pixel re-scoring under a procedure profile: (profile name, done, total).
    pub rescoring: Option<(String, usize, usize)>,
    /// The set being read for [`Self::set_summary`].
    pub inspecting: Option<(SetKind, String)>,
}

/// The outcome of the last finished procedure run.
#[derive(Debug, Clone)]
pub struct ProcResult {
    pub file: String,
    pub name: String,
    pub info: crate::train::taste::ProcedureInfo,
    /// Images that could not be read, each `path: reason`.
    pub skipped: Vec<String>,
    pub without_target: usize,
    /// What else the run could not use (keywords).
    pub notes: Vec<String>,
}

impl RunView {
    pub fn push(&mut self, p: &TrainProgress) {
        let point = [p.step as f64, p.loss];
        match p.phase {
            Phase::Check => self.loss.push(point),
            Phase::Final => self.final_loss.push(point),
            Phase::Tag(..) => {}
        }
        if let (Phase::Check, Some(a)) = (p.phase, p.validation_auc) {
            self.auc.push([p.step as f64, a]);
        }
        self.last = Some(*p);
    }

    pub fn push_proc(&mut self, p: &ProcedureProgress) {
        if !p.paused && !p.preparing {
            if p.end_of_epoch {
                if let Some((name, v)) = &p.metric {
                    self.validation.push([p.step as f64, *v]);
                    self.metric_name = Some(name.clone());
                }
            } else {
                self.loss.push([p.step as f64, p.step_loss]);
            }
        }
        self.proc_last = Some(p.clone());
    }
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite()).map_or("—".into(), |v| format!("{v:.digits$}"))
}

fn figures_row(ui: &mut Ui, what: &str, f: Option<&Figures>) {
    ui.label(what);
    match f {
        Some(f) => {
            // Hanley-McNeil's error is 0 at AUC 0 or 1, which says nothing on a handful of photos: shown only when positive.
            let se = f.auc_se.filter(|s| s.is_finite() && *s > 0.0).map_or(String::new(), |s| format!(" ± {s:.2}"));
            ui.label(format!("{}{se}", fmt_opt(f.auc, 2)));
            ui.label(fmt_opt(f.srcc, 2));
            ui.label(f.top_k.map_or("—".into(), |v| format!("{:.0} %", v * 100.0)));
        }
        None => {
            ui.label("—");
            ui.label("—");
            ui.label("—");
        }
    }
    ui.end_row();
}

/// Short line about a stored profile: how it was trained and checked.
pub fn profile_summary(p: &TasteProfile) -> String {
    if let Some(c) = &p.procedure {
        let i = &c.info;
        return format!(
            "{} ({}{}) · {} · {} photos from {}",
            i.procedure,
            i.system,
            if i.small_data { ", small-data" } else { "" },
            i.task.name(),
            i.n_train + i.n_val,
            i.source
        );
    }
    format!("{} · {} keeps / {} rejects · {}", p.system, p.metrics.n_keep, p.metrics.n_reject, p.config.steps) + " steps"
}

/// The taste panel, docked on the right beside the info panel. Returns commands; never mutates
/// the app.
pub fn panel(ui: &mut Ui, app: &KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    let t = &app.taste_ui;
    if !t.open {
        return out;
    }
    egui::Panel::right("taste_panel").default_size(400.0).size_range(320.0..=640.0).show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Taste profiles");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let close = ui.button("✖").on_hover_text("Close the taste panel (T)");
                close.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, "Close the taste panel"));
                if close.clicked() {
                    out.push(Command::Taste(TasteCommand::Show(false)));
                }
            });
        });
        egui::ScrollArea::vertical().show(ui, |ui| {
            if app.taste_unavailable() {
                ui.label(RichText::new("Taste profiles need the scoring models (Lite0 and the quality model) and a profile folder.").color(style::REJECT));
                return;
            }
            ui.label(RichText::new("Profiles").strong());
            out.extend(profiles(ui, app));
            if let Some((name, done, total)) = &t.rescoring {
                ui.add(egui::ProgressBar::new(*done as f32 / (*total).max(1) as f32).text(format!(
                    "Scoring the album with “{name}”: {done} / {total} photos"
                )));
            }
            ui.separator();
            let mut prefs = app.settings.taste.clone();
            ui.checkbox(&mut prefs.advanced, "Advanced: paper procedure").on_hover_text(
                "Train one of the papers' procedures (SCNN, DCNN, RDCNN, DMA-Net, MP, THEME-EMD, ARP-MPEMD) on this album, a CSV file or an AVA folder, instead of the quick profile on the stored patch features.",
            );
            if prefs.advanced {
                out.extend(advanced(ui, app, &mut prefs));
                if prefs != app.settings.taste {
                    out.push(Command::Taste(TasteCommand::SetPrefs(prefs)));
                }
                return;
            }
            let labels = app.state().map(|s| prefs.labels(s)).unwrap_or_default();
            let keeps = labels.iter().filter(|l| l.keep).count();
            ui.label(RichText::new("1. Labels: your decisions in this album").strong());
            ui.horizontal(|ui| {
                let r = egui::ComboBox::from_id_salt("taste_source").selected_text(prefs.source.label()).show_ui(ui, |ui| {
                    for s in LabelSource::ALL {
                        ui.selectable_value(&mut prefs.source, s, s.label());
                    }
                });
                named(&r.response, "Labels from");
                if prefs.source == LabelSource::Stars {
                    ui.label("keep at");
                    ui.add(egui::DragValue::new(&mut prefs.keep_stars).range(2..=5).suffix(" ★ or more"));
                }
            });
            ui.label(format!("{keeps} keeps · {} rejects labelled", labels.len() - keeps));
            ui.horizontal(|ui| {
                let r = egui::ComboBox::from_id_salt("taste_themes").selected_text(prefs.themes.label()).show_ui(ui, |ui| {
                    for s in ThemeSource::ALL {
                        ui.selectable_value(&mut prefs.themes, s, s.label());
                    }
                });
                named(&r.response, "Themes");
                r.response.on_hover_text(
                    "Themes let one profile score photos differently per shoot: each folder gets its own adjustment of the shared score (paper 003's theme input).",
                );
                if prefs.themes != ThemeSource::None {
                    let (names, _) = app.state().map(|s| prefs.themes(s, &labels)).unwrap_or_default();
                    ui.label(if names.is_empty() {
                        "the labels are all in one folder".to_string()
                    } else {
                        format!("{} themes: {}", names.len(), names.join(", "))
                    });
                }
            });
            ui.checkbox(&mut prefs.learn_tags, "Also learn my keywords as style tags").on_hover_text(
                "Keywords from the photos' XMP (dc:subject, as Lightroom, darktable and digiKam write them) become style tags: one small head per keyword with at least 3 photos with it and 3 without.",
            );
            if ui.button("Label these next").on_hover_text(
                "Shows the unlabelled photos whose decision would teach the profile most: the ones it is least sure about, one per look-alike group.",
            ).clicked() {
                out.push(Command::Taste(TasteCommand::SuggestLabels));
            }
            if app.state().is_some_and(|s| s.only.is_some()) && ui.button("Show all photos").clicked() {
                out.push(Command::Taste(TasteCommand::ShowAll));
            }

            ui.separator();
            ui.label(RichText::new("2. How to learn").strong());
            let r = egui::ComboBox::from_id_salt("taste_procedure").selected_text(procedure_label(prefs.procedure)).show_ui(ui, |ui| {
                for p in [Procedure::MpAda, Procedure::Logistic] {
                    ui.selectable_value(&mut prefs.procedure, p, procedure_label(p)).on_hover_text(procedure_help(p));
                }
            });
            named(&r.response, "Procedure");
            ui.label(RichText::new(procedure_help(prefs.procedure)).small().color(style::MUTED));
            egui::CollapsingHeader::new("Settings").id_salt("taste_settings").show(ui, |ui| {
                egui::Grid::new("taste_hp").num_columns(2).show(ui, |ui| {
                    ui.label("Steps").on_hover_text("Full-batch optimiser steps (AdamW). 200 is plenty for a few hundred labels.");
                    ui.add(egui::DragValue::new(&mut prefs.steps).range(1..=1_000_000));
                    ui.end_row();
                    ui.label("Learning rate").on_hover_text("Step size of AdamW. Lower it if the loss jumps about.");
                    ui.add(egui::DragValue::new(&mut prefs.lr).range(1e-5..=1.0).speed(0.001));
                    ui.end_row();
                    ui.label("L2 penalty").on_hover_text("Keeps the profile simple. Raise it when there are few labels.");
                    ui.add(egui::DragValue::new(&mut prefs.l2).range(0.0..=100.0).speed(0.05));
                    ui.end_row();
                    ui.label("Held out").on_hover_text("Share of your labels kept aside to check the profile on photos it never saw.");
                    let mut pct = prefs.holdout * 100.0;
                    if ui.add(egui::Slider::new(&mut pct, 10.0..=50.0).suffix(" %")).changed() {
                        prefs.holdout = pct / 100.0;
                    }
                    ui.end_row();
                    ui.label("Seed").on_hover_text("The same seed and labels give the same profile.");
                    ui.add(egui::DragValue::new(&mut prefs.seed));
                    ui.end_row();
                });
            });
            if prefs != app.settings.taste {
                out.push(Command::Taste(TasteCommand::SetPrefs(prefs)));
            }

            ui.separator();
            ui.label(RichText::new("3. Train").strong());
            train_controls(ui, app, TasteCommand::Start, &mut out);
            if let Some(run) = &t.running
                && let Some(p) = &run.last
            {
                let phase = match p.phase {
                    Phase::Check => "checking on held-out labels".to_string(),
                    Phase::Final => "final fit on every label".to_string(),
                    Phase::Tag(i, n) => format!("style tag {} of {n}", i + 1),
                };
                let frac = p.step as f32 / p.steps.max(1) as f32;
                let eta = super::panels::fmt_duration(std::time::Duration::from_secs_f64(p.eta_s));
                let paused = if p.paused { " · paused" } else { "" };
                ui.add(
                    egui::ProgressBar::new(frac)
                        .text(format!("{phase}: step {}/{} · loss {:.3} · about {eta} left{paused}", p.step, p.steps, p.loss)),
                );
            }
            if let Some(s) = &t.status {
                ui.label(RichText::new(s).color(style::MUTED));
            }
            if let Some(c) = t.running.as_ref().or(t.curves.as_ref()) {
                curves(ui, c);
            }
            if let Some(r) = &t.result {
                report(ui, r);
            }
        });
    });
    out
}

/// The profile name and Start (sending `start`) / Pause-Resume / Cancel, shared by both modes.
fn train_controls(ui: &mut Ui, app: &KeepersApp, start: TasteCommand, out: &mut Vec<Command>) {
    let t = &app.taste_ui;
    ui.horizontal(|ui| {
        ui.label("Profile name");
        let mut name = t.name.clone();
        let r = ui.text_edit_singleline(&mut name);
        r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Profile name"));
        if name != t.name {
            out.push(Command::Taste(TasteCommand::SetName(name)));
        }
    });
    ui.horizontal(|ui| match &t.running {
        None => {
            if ui.button("Start training").clicked() {
                out.push(Command::Taste(start));
            }
        }
        Some(_) => {
            let paused = app.taste_paused();
            if ui.button(if paused { "Resume" } else { "Pause" }).clicked() {
                out.push(Command::Taste(TasteCommand::Pause(!paused)));
            }
            if ui.button("Cancel training").clicked() {
                out.push(Command::Taste(TasteCommand::Cancel));
            }
        }
    });
}

fn curves(ui: &mut Ui, c: &RunView) {
    let loss = c.loss.clone();
    let final_loss = c.final_loss.clone();
    let auc = c.auc.clone();
    ui.label(RichText::new("Loss (training) and AUC on held-out labels").small().color(style::MUTED));
    Plot::new("taste_curves").height(150.0).legend(Legend::default()).allow_scroll(false).allow_drag(false).show(ui, |p| {
        p.line(Line::new("loss (check fit)", PlotPoints::from(loss)).color(Color32::from_rgb(120, 170, 255)));
        if !final_loss.is_empty() {
            p.line(Line::new("loss (final fit)", PlotPoints::from(final_loss)).color(Color32::from_rgb(170, 170, 170)));
        }
        if !auc.is_empty() {
            p.line(Line::new("held-out AUC", PlotPoints::from(auc)).color(style::PICK));
        }
    });
}

fn report(ui: &mut Ui, r: &RunResult) {
    let rep = &r.report;
    ui.label(RichText::new(format!("Saved as “{}”", r.name)).strong());
    ui.label(format!(
        "Checked on {} held-out photos ({} kept, {} rejected) after training on {}; the saved profile then learned from all {} labels.",
        rep.n_heldout_keep + rep.n_heldout_reject,
        rep.n_heldout_keep,
        rep.n_heldout_reject,
        rep.n_train,
        rep.n_labels
    ));
    if r.left_out > 0 {
        ui.label(RichText::new(format!("{} labelled photos were left out: not scored yet.", r.left_out)).color(style::MUTED));
    }
    heldout_table(ui, rep);
    for n in &r.notes {
        ui.label(RichText::new(n).small().color(style::MUTED));
    }
}

/// The held-out figures of a profile beside the untuned model's, and the warning when there are
/// too few labels to trust them.
fn heldout_table(ui: &mut Ui, rep: &HeldOutReport) {
    if rep.n_heldout_keep + rep.n_heldout_reject > 0 {
        egui::Grid::new("taste_report").num_columns(4).striped(true).show(ui, |ui| {
            ui.label("");
            ui.label("ROC AUC")
                .on_hover_text("Chance that a kept photo scores above a rejected one (0.5 = guessing). ± one standard error.");
            ui.label("SRCC").on_hover_text("Rank correlation of the score with your labels.");
            ui.label(format!("Top-{} hits", rep.k)).on_hover_text("Of the photos ranked highest, the share you kept.");
            ui.end_row();
            figures_row(ui, "This profile", Some(&rep.profile));
            figures_row(ui, "Untuned (technical quality)", rep.baseline.as_ref());
        });
    }
    if let Some(w) = &rep.warning {
        ui.label(RichText::new(w).color(style::STAR));
    }
}

fn profiles(ui: &mut Ui, app: &KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    let t = &app.taste_ui;
    let active = app.settings.taste_profile.clone();
    if ui.radio(active.is_none(), "None: technical quality orders the grid").clicked() && active.is_some() {
        out.push(Command::Taste(TasteCommand::Activate(None)));
    }
    for s in &t.profiles {
        let is_active = active.as_deref() == Some(s.file.as_str());
        ui.horizontal(|ui| {
            if ui.radio(is_active, format!("Use “{}”", s.profile.name)).clicked() && !is_active {
                out.push(Command::Taste(TasteCommand::Activate(Some(s.file.clone()))));
            }
            match &t.renaming {
                Some((f, text)) if f == &s.file => {
                    let mut text = text.clone();
                    let r = ui.text_edit_singleline(&mut text);
                    r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "New name"));
                    if r.changed() {
                        out.push(Command::Taste(TasteCommand::EditName(Some((s.file.clone(), text.clone())))));
                    }
                    if ui.button("Save name").clicked() || (r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter))) {
                        out.push(Command::Taste(TasteCommand::Rename(s.file.clone(), text)));
                    }
                }
                _ => {
                    if ui.small_button("Rename").clicked() {
                        out.push(Command::Taste(TasteCommand::EditName(Some((s.file.clone(), s.profile.name.clone())))));
                    }
                }
            }
            if ui.small_button("Export…").clicked() {
                out.push(Command::Taste(TasteCommand::Export(s.file.clone())));
            }
            if ui.small_button("Delete").clicked() {
                out.push(Command::Taste(TasteCommand::Delete(s.file.clone())));
            }
        });
        ui.label(RichText::new(profile_summary(&s.profile)).small().color(style::MUTED));
    }
    if ui.button("Import profile…").clicked() {
        out.push(Command::Taste(TasteCommand::Import));
    }
    out
}

/// A hyperparameter row: the control (its name inside it, as its accessible label too) and a short
/// explanation beside it.
fn hyper(ui: &mut Ui, name: &str, help: &str, add: impl FnOnce(&mut Ui) -> egui::Response) {
    // A stable id per control, so focus never lands on it when the panel's layout changes.
    let r = ui.push_id(("proc_hp", name), add).inner;
    r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::SpinButton, true, name));
    ui.add(egui::Label::new(RichText::new(help).small().color(style::MUTED)).wrap());
    ui.end_row();
}

/// The advanced mode: labelled set, task, system and procedure, hyperparameters, run.
fn advanced(ui: &mut Ui, app: &KeepersApp, prefs: &mut TastePrefs) -> Vec<Command> {
    let mut out = Vec::new();
    let t = &app.taste_ui;
    let pp = &mut prefs.proc;
    ui.label(RichText::new("1. Labelled set").strong());
    let r = egui::ComboBox::from_id_salt("proc_set").selected_text(pp.set.label()).show_ui(ui, |ui| {
        for k in SetKind::ALL {
            ui.selectable_value(&mut pp.set, k, k.label());
        }
    });
    named(&r.response, "Labelled set");
    let summary: Option<Result<SetSummary, String>> = match pp.set {
        SetKind::Album => {
            let r = egui::ComboBox::from_id_salt("proc_themes").selected_text(pp.themes.label()).show_ui(ui, |ui| {
                for s in ThemeSource::ALL {
                    ui.selectable_value(&mut pp.themes, s, s.label());
                }
            });
            named(&r.response, "Themes from");
            app.state().map(|st| Ok(SetSummary { styles_from_keywords: true, ..SetSummary::of(&album_dataset(st, pp.themes)) }))
        }
        kind => {
            let (text, what, cmd) = match kind {
                SetKind::Csv => (&mut pp.csv, "CSV file", TasteCommand::ChooseCsv),
                _ => (&mut pp.ava, "AVA folder", TasteCommand::ChooseAva),
            };
            ui.horizontal(|ui| {
                let r = ui.add(egui::TextEdit::singleline(text).desired_width(220.0).hint_text(if kind == SetKind::Csv {
                    "path/to/labels.csv"
                } else {
                    "folder with AVA.txt and images/"
                }));
                r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, what));
                if ui.button(format!("Choose {what}…")).clicked() {
                    out.push(Command::Taste(cmd));
                }
            });
            let path = text.trim().to_string();
            match &t.set_summary {
                Some((k, p, s)) if *k == kind && *p == path => Some(s.clone()),
                _ if path.is_empty() => None,
                _ => {
                    out.push(Command::Taste(TasteCommand::Inspect(kind, path)));
                    None
                }
            }
        }
    };
    match &summary {
        Some(Ok(s)) => {
            let counts: Vec<String> = TaskChoice::ALL
                .iter()
                .filter(|t| s.count(**t) > 0)
                .map(|t| format!("{} {}", s.count(*t), t.label().to_lowercase()))
                .collect();
            ui.label(format!(
                "{} photos · {}{}{}",
                s.photos,
                if counts.is_empty() { "no targets".to_string() } else { counts.join(" · ") },
                if s.themes > 0 { format!(" · {} themes", s.themes) } else { String::new() },
                if s.styles > 0 { format!(" · {} style tags", s.styles) } else { String::new() },
            ));
        }
        Some(Err(e)) => {
            ui.label(RichText::new(e).color(style::REJECT));
        }
        None => {
            ui.label(RichText::new("Choose a set to see what it holds.").color(style::MUTED));
        }
    }

    ui.separator();
    ui.label(RichText::new("2. Task").strong());
    let r = egui::ComboBox::from_id_salt("proc_task").selected_text(pp.task.label()).show_ui(ui, |ui| {
        for k in TaskChoice::ALL {
            let s = summary.as_ref().and_then(|s| s.as_ref().ok());
            let n = s.filter(|s| !(k == TaskChoice::Styles && s.styles_from_keywords)).map(|s| s.count(k));
            let label = match n {
                Some(n) => format!("{} ({n} photos)", k.label()),
                None if k == TaskChoice::Styles && s.is_some() => format!("{} from your XMP keywords", k.label()),
                None => k.label().to_string(),
            };
            ui.add_enabled_ui(n != Some(0), |ui| ui.selectable_value(&mut pp.task, k, label));
        }
    });
    named(&r.response, "Task");
    ui.label(
        RichText::new(match pp.task {
            TaskChoice::Binary => "Learns keep vs reject: album picks / rejects, a CSV label column, AVA's high / low (mean above 5).",
            TaskChoice::Score => "Learns a score: album stars, a CSV score or MOS column, AVA's mean vote.",
            TaskChoice::Distribution => {
                "Learns a score distribution (EMD loss): a CSV or AVA histogram; album stars as 5 bins with all the mass on the rating."
            }
            TaskChoice::Styles => {
                "Learns several yes / no style tags at once: a CSV styles column, or this album's XMP keywords (each with at least 3 photos with it and 3 without)."
            }
        })
        .small()
        .color(style::MUTED),
    );
    if !procedure_tasks(pp.procedure).contains(&pp.task) {
        pp.procedure = default_procedure(pp.task);
        pp.system = None;
    }

    ui.separator();
    ui.label(RichText::new("3. System and procedure").strong());
    let r = egui::ComboBox::from_id_salt("proc_procedure").width(300.0).selected_text(procedure_title(pp.procedure)).show_ui(ui, |ui| {
        for p in panel_procedures() {
            ui.add_enabled_ui(procedure_tasks(p).contains(&pp.task), |ui| {
                if ui.selectable_value(&mut pp.procedure, p, procedure_title(p)).changed() {
                    pp.system = None;
                }
            });
        }
    });
    named(&r.response, "Procedure");
    let systems = pp.procedure.systems();
    let chosen = pp.system_id();
    let r = egui::ComboBox::from_id_salt("proc_system").selected_text(chosen.map_or("—", |s| s.name())).show_ui(ui, |ui| {
        for s in systems {
            if ui.selectable_label(chosen == Some(*s), s.name()).clicked() {
                pp.system = Some(s.name().to_string());
            }
        }
    });
    named(&r.response, "System");
    ui.checkbox(&mut pp.small_data, "Small-data variant (frozen backbone)").on_hover_text(
        "Keeps the ImageNet backbone frozen and trains only the paper's head on cached features (RDCNN and THEME-EMD: on pixels, with the columns frozen). The right choice for tens to hundreds of labels on a CPU.",
    );
    if pp.procedure == default_procedure(pp.task) && pp.small_data {
        ui.label(RichText::new("The default for few labels for this task.").small().color(style::MUTED));
    }
    egui::Grid::new("proc_hp").num_columns(2).show(ui, |ui| {
        hyper(
            ui,
            "Epochs",
            "Passes over the training photos; the best epoch on the held-out photos is kept. 5-20 suit a few hundred labels.",
            |ui| ui.add(egui::DragValue::new(&mut pp.epochs).range(1..=1000)),
        );
        hyper(ui, "Learning rate", "Size of each update (AdamW in the small-data variant). Lower it if the loss jumps around.", |ui| {
            ui.add(egui::DragValue::new(&mut pp.lr).range(1e-6..=1.0).speed(0.0001).max_decimals(5).prefix("Learning rate: "))
        });
        hyper(ui, "Batch size", "Photos per update: smaller gives more, noisier updates per epoch.", |ui| {
            ui.add(egui::DragValue::new(&mut pp.batch).range(1..=256).prefix("Batch size: "))
        });
        hyper(ui, "Seed", "Fixes the split, the patches and the order: the same seed and set give the same profile.", |ui| {
            ui.add(egui::DragValue::new(&mut pp.seed).prefix("Seed: "))
        });
        hyper(ui, "Held out", "Held out: share of the set kept aside to validate each epoch (the curve and the saved epoch).", |ui| {
            ui.add(egui::Slider::new(&mut pp.holdout, 0.1..=0.5).fixed_decimals(2))
        });
        hyper(ui, "Patches", "Patches in each photo's bag (DMA's M, MP's and ARP-MPEMD's P; the papers use 5).", |ui| {
            ui.add(egui::DragValue::new(&mut pp.patches).range(1..=16).prefix("Patches: "))
        });
    });

    ui.separator();
    ui.label(RichText::new("4. Train").strong());
    train_controls(ui, app, TasteCommand::StartProcedure, &mut out);
    if let Some(run) = &t.running {
        match &run.proc_last {
            Some(p) if p.preparing => {
                let eta = p.eta_s.map_or("—".to_string(), |s| super::panels::fmt_duration(std::time::Duration::from_secs_f64(s)));
                let paused = if p.paused { " · paused" } else { "" };
                ui.add(
                    egui::ProgressBar::new(p.epoch as f32 / p.epochs.max(1) as f32)
                        .text(format!("computing the backbone's features: {}/{} photos · about {eta} left{paused}", p.epoch, p.epochs)),
                )
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "Training progress"));
            }
            Some(p) => {
                let frac = (p.stage_index as f32 + p.epoch as f32 / p.epochs.max(1) as f32) / p.stages.max(1) as f32;
                let eta = p.eta_s.map_or("—".to_string(), |s| super::panels::fmt_duration(std::time::Duration::from_secs_f64(s)));
                let metric = p.metric.as_ref().map_or(String::new(), |(n, v)| format!(" · {n} {v:.3}"));
                let paused = if p.paused { " · paused" } else { "" };
                ui.add(egui::ProgressBar::new(frac.clamp(0.0, 1.0)).text(format!(
                    "stage {}/{} {} · epoch {}/{} · step {} · loss {:.3}{metric} · about {eta} left{paused}",
                    p.stage_index + 1,
                    p.stages,
                    p.stage,
                    p.epoch,
                    p.epochs,
                    p.step,
                    p.epoch_loss
                )))
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "Training progress"));
            }
            None => {
                ui.label(RichText::new("Reading the set…").color(style::MUTED));
            }
        }
    }
    if let Some(s) = &t.status {
        ui.label(RichText::new(s).color(style::MUTED));
    }
    if let Some(c) = t.running.as_ref().or(t.curves.as_ref()).filter(|c| c.proc_last.is_some() || !c.validation.is_empty()) {
        proc_curves(ui, c);
    }
    if let Some(r) = &t.proc_result {
        proc_report(ui, r);
    }
    out
}

fn proc_curves(ui: &mut Ui, c: &RunView) {
    let loss = c.loss.clone();
    let val = c.validation.clone();
    let name = c.metric_name.clone().unwrap_or_else(|| "validation".into());
    ui.label(RichText::new(format!("Training loss per step and validation {name} per epoch")).small().color(style::MUTED));
    Plot::new("proc_curves").height(150.0).legend(Legend::default()).allow_scroll(false).allow_drag(false).show(ui, |p| {
        p.line(Line::new("training loss", PlotPoints::from(loss)).color(Color32::from_rgb(120, 170, 255)));
        if !val.is_empty() {
            p.line(Line::new(format!("validation {name}"), PlotPoints::from(val)).color(style::PICK));
        }
    });
}

fn proc_report(ui: &mut Ui, r: &ProcResult) {
    let i = &r.info;
    ui.label(RichText::new(format!("Saved as “{}”", r.name)).strong());
    ui.label(format!(
        "{} ({}) learned {} from {} photos of {}; {} held out for validation.",
        i.procedure,
        i.system,
        i.task.name(),
        i.n_train,
        i.source,
        i.n_val
    ));
    if let Some(rep) = &i.heldout {
        ui.label(format!(
            "Checked on {} held-out photos ({} kept, {} rejected; they also chose the best epoch) after training on {}.",
            rep.n_heldout_keep + rep.n_heldout_reject,
            rep.n_heldout_keep,
            rep.n_heldout_reject,
            rep.n_train
        ));
        heldout_table(ui, rep);
    }
    if !i.metrics.is_empty() {
        egui::Grid::new("proc_metrics").num_columns(2).striped(true).show(ui, |ui| {
            for (k, v) in &i.metrics {
                ui.label(k);
                ui.label(if k == "n" || k.ends_with("_n") { format!("{}", *v as usize) } else { format!("{v:.3}") });
                ui.end_row();
            }
        });
    }
    if r.without_target > 0 {
        ui.label(
            RichText::new(format!("{} photos had no {} target and were not used.", r.without_target, i.task.name())).color(style::MUTED),
        );
    }
    for n in &r.notes {
        ui.label(RichText::new(n).small().color(style::MUTED));
    }
    if !r.skipped.is_empty() {
        ui.label(
            RichText::new(format!("{} images could not be read and were left out; training went on without them:", r.skipped.len()))
                .color(style::STAR),
        );
        for s in &r.skipped {
            ui.label(RichText::new(s).small().color(style::STAR));
        }
    }
}
