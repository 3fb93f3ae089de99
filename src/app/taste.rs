//! The taste panel (issue 8): teach Keepers a person's taste from their own decisions in the open
//! album, see whether it learned anything on labels it never saw, keep the result as a named
//! profile, and let the active profile order the grid.
//!
//! Saved preferences ([`TastePrefs`], in the settings) and runtime state ([`TasteUi`]) are apart;
//! the window draws from them and returns [`Command::Taste`] commands the app applies after the
//! frame. Training and scoring run in [`crate::worker::taste`]; this file only draws.

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
use crate::worker::taste::{Phase, TrainProgress};

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
                    (s > 0).then(|| Labelled { id: p.id, keep: s >= self.keep_stars, grade: s as f64 })
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
            ui.separator();
            let mut prefs = app.settings.taste.clone();
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
                        out.push(Command::Taste(TasteCommand::Start));
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
    for n in &r.notes {
        ui.label(RichText::new(n).small().color(style::MUTED));
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
