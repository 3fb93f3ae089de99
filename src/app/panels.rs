//! The panels around the photos: the top bar (open, views, sort, filters), the status bar (counts,
//! scoring progress with ETA), the info panel (scores, content, EXIF, decision), the start screen,
//! and the overlays (shortcut sheet, cover suggestions, messages). Each draws from the app's state
//! and returns [`Command`]s.

use egui::{Align, Color32, Layout, RichText, Ui};

use super::commands::{Command, SHORTCUTS, View};
use super::state::{FlagFilter, ScoreState, SortKey, pick_text};
use super::style;
use super::{KeepersApp, MessageKind};
use crate::library::xmp::ColorLabel;

/// Said wherever a head has no trained weights: no number is shown for it.
pub const NOT_TRAINED: &str = "not trained yet — train it in the taste panel or from AVA";

/// Themes the theme-conditioned score can be asked for (AVA challenge themes).
pub const THEMES: &[&str] =
    &["Portraits", "Landscapes", "Sports", "Animals", "Architecture", "Street", "Macro", "Night", "Still life", "Black and white"];

pub fn top_bar(ui: &mut Ui, app: &KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    egui::Panel::top("top_bar").show(ui, |ui| {
        ui.add_space(4.0);
        ui.horizontal_wrapped(|ui| {
            if ui.button("Open folder…").on_hover_text("Ctrl+O, or drop a folder on the window").clicked() {
                out.push(Command::OpenDialog);
            }
            ui.menu_button("Recent", |ui| {
                if app.settings.recent.is_empty() {
                    ui.label("No recent albums");
                }
                for p in &app.settings.recent {
                    if ui.button(p.display().to_string()).clicked() {
                        out.push(Command::Open(p.clone()));
                    }
                }
            });
            let Some(state) = app.state() else { return };
            ui.separator();
            for v in [View::Grid, View::Loupe, View::Compare] {
                if ui.selectable_label(app.ui.view == v, v.label()).clicked() {
                    out.push(Command::SetView(v));
                }
            }
            ui.separator();
            let mut heat = app.settings.show_heatmap;
            if ui.toggle_value(&mut heat, "Heatmap").on_hover_text("Per-patch quality over the photo (H)").changed() {
                out.push(Command::ToggleHeatmap);
            }
            ui.separator();
            ui.label("Sort");
            let mut sort = state.sort;
            let r = egui::ComboBox::from_id_salt("sort").selected_text(sort.label()).show_ui(ui, |ui| {
                for k in SortKey::ALL {
                    ui.selectable_value(&mut sort, k, k.label());
                }
            });
            named(&r.response, "Sort by");
            if sort != state.sort {
                out.push(Command::SetSort(sort));
            }
            let mut desc = state.descending;
            if ui.toggle_value(&mut desc, "Reverse").changed() {
                out.push(Command::SetDescending(desc));
            }
            ui.separator();
            let mut f = state.filter.clone();
            ui.label("Show");
            let r = egui::ComboBox::from_id_salt("flag_filter").selected_text(f.flag.label()).show_ui(ui, |ui| {
                for k in FlagFilter::ALL {
                    ui.selectable_value(&mut f.flag, k, k.label());
                }
            });
            named(&r.response, "Show flags");
            let stars = if f.min_stars == 0 { "Any rating".to_string() } else { format!("≥ {} ★", f.min_stars) };
            let r = egui::ComboBox::from_id_salt("min_stars").selected_text(stars).show_ui(ui, |ui| {
                ui.selectable_value(&mut f.min_stars, 0, "Any rating");
                for n in 1..=5u8 {
                    ui.selectable_value(&mut f.min_stars, n, format!("≥ {n} ★"));
                }
            });
            named(&r.response, "Minimum rating");
            ui.menu_button("Score range", |ui| {
                ui.label("Photos with a score in this range (0–100)");
                ui.add(egui::Slider::new(&mut f.score_range.0, 0.0..=100.0).text("from"));
                ui.add(egui::Slider::new(&mut f.score_range.1, 0.0..=100.0).text("to"));
                ui.checkbox(&mut f.scored_only, "Hide photos not scored yet");
            });
            ui.add(egui::TextEdit::singleline(&mut f.content).hint_text("content…").desired_width(90.0))
                .on_hover_text("Photos whose content (ImageNet classes) matches")
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::TextInput, true, "Content filter"));
            if !f.is_default() && ui.button("Clear filters").clicked() {
                f = Default::default();
            }
            if f != state.filter {
                out.push(Command::SetFilter(f));
            }
            ui.separator();
            let mut collapse = state.collapse_groups;
            if ui.toggle_value(&mut collapse, "Stack bursts").changed() {
                out.push(Command::SetCollapseBursts(collapse));
            }
            if ui.button("Pick covers").on_hover_text("Suggest the best photos of the album, one per burst").clicked() {
                out.push(Command::SuggestCovers);
            }
            let taste_open = app.taste_ui.open;
            if ui.selectable_label(taste_open, "Taste").on_hover_text("Teach Keepers your taste from your picks (T)").clicked() {
                out.push(Command::Taste(super::taste::TasteCommand::Show(!taste_open)));
            }
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                let help = ui.button("?").on_hover_text("Keyboard shortcuts");
                help.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, "Keyboard shortcuts"));
                if help.clicked() {
                    out.push(Command::ShowShortcuts(true));
                }
                let mut auto = app.settings.auto_advance;
                if ui.toggle_value(&mut auto, "Auto-advance").on_hover_text("Next photo after a pick, reject or rating (A)").changed() {
                    out.push(Command::SetAutoAdvance(auto));
                }
                if app.ui.view == View::Grid {
                    let mut size = app.settings.thumb_size;
                    if ui.add(egui::Slider::new(&mut size, 96.0..=400.0).show_value(false).text("Size")).changed() {
                        out.push(Command::SetThumbSize(size));
                    }
                }
            });
        });
        messages(ui, app, &mut out);
        ui.add_space(2.0);
    });
    out
}

/// Gives a control without visible text of its own its accessible name.
pub fn named(r: &egui::Response, name: &str) {
    r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::ComboBox, r.enabled(), name));
}

fn messages(ui: &mut Ui, app: &KeepersApp, out: &mut Vec<Command>) {
    for (i, m) in app.messages.iter().enumerate().take(4) {
        let color = if m.kind == MessageKind::Error { Color32::from_rgb(110, 40, 36) } else { Color32::from_rgb(40, 70, 100) };
        egui::Frame::new().fill(color).inner_margin(6.0).corner_radius(4.0).show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(&m.text).color(Color32::WHITE));
                ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                    if ui.button("Dismiss").clicked() {
                        out.push(Command::DismissMessage(i));
                    }
                    if m.retry && ui.button("Retry").clicked() {
                        out.push(Command::RetrySidecars);
                    }
                });
            });
        });
    }
    // Messages about sidecars still to be written stay until they are (their Retry button).
    let dismissable = app.messages.iter().filter(|m| !m.retry).count();
    if app.messages.len() > 4 || dismissable >= 2 {
        ui.horizontal(|ui| {
            if app.messages.len() > 4 {
                ui.label(RichText::new(format!("…and {} more messages", app.messages.len() - 4)).color(style::MUTED));
            }
            if dismissable >= 2
                && ui.button("Dismiss all").on_hover_text("Messages about decisions not yet written to sidecars stay").clicked()
            {
                out.push(Command::DismissAllMessages);
            }
        });
    }
}

pub fn status_bar(ui: &mut Ui, app: &KeepersApp) -> Vec<Command> {
    let out = Vec::new();
    egui::Panel::bottom("status_bar").show(ui, |ui| {
        ui.horizontal(|ui| {
            let Some(s) = &app.session else {
                ui.label("No album open");
                return;
            };
            let st = &s.state;
            let (picks, rejects, rated) = st.counts();
            ui.label(format!("{} photos · {} shown · {picks} picks · {rejects} rejects · {rated} rated", st.len(), st.visible.len()));
            if !s.scan_done {
                ui.separator();
                ui.spinner();
                ui.label("Scanning…");
            } else if !s.finished {
                ui.separator();
                ui.label(format!("Thumbnails {}/{}", s.thumbs_done, st.len()));
            }
            if let Some(p) = app.scoring_progress() {
                ui.separator();
                if p.total > 0 && (p.busy || p.done + p.failed < p.total) {
                    let frac = (p.done + p.failed) as f32 / p.total.max(1) as f32;
                    let eta = p.eta.map(|d| format!(" · ETA {}", fmt_duration(d))).unwrap_or_default();
                    let failed = if p.failed > 0 { format!(" · {} failed", p.failed) } else { String::new() };
                    let text = format!("Scoring {}/{}{failed}{eta}", p.done + p.failed, p.total);
                    ui.add(egui::ProgressBar::new(frac).desired_width(260.0).text(text.clone()))
                        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "Scoring progress"));
                } else if p.total > 0 {
                    let failed = if p.failed > 0 { format!(" · {} could not be read", p.failed) } else { String::new() };
                    ui.label(format!("Scored {}/{}{failed}", p.done, p.total));
                }
            }
            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                if let Some(p) = st.current_photo() {
                    ui.label(RichText::new(format!("{} ({}/{})", p.name, st.cursor + 1, st.visible.len())).color(style::MUTED));
                }
            });
        });
    });
    out
}

pub fn fmt_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 { format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) } else { format!("{}:{:02}", s / 60, s % 60) }
}

pub fn info_panel(ui: &mut Ui, app: &KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    egui::Panel::right("info_panel").default_size(300.0).size_range(240.0..=480.0).show(ui, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            let Some(st) = app.state() else { return };
            let Some(p) = st.current_photo() else {
                ui.label("No photo selected");
                return;
            };
            ui.heading(&p.name);
            let rel = p.path.strip_prefix(&st.root).unwrap_or(&p.path);
            let folder = rel.parent().filter(|f| !f.as_os_str().is_empty()).map_or("album folder".to_string(), |f| f.display().to_string());
            ui.label(RichText::new(format!("in {folder}")).small().color(style::MUTED)).on_hover_text(p.path.display().to_string());
            ui.add_space(6.0);
            // Decision.
            let d = &p.decision;
            ui.horizontal(|ui| {
                let (text, color) = match pick_text(d) {
                    "picked" => ("✔ Picked", style::PICK),
                    "rejected" => ("✖ Rejected", style::REJECT),
                    _ => ("Unflagged", style::MUTED),
                };
                ui.label(RichText::new(text).color(color).strong());
                let mut stars = egui::text::LayoutJob::default();
                for k in 0..5 {
                    let c = if k < d.stars() { style::STAR } else { egui::Color32::from_gray(80) };
                    stars.append("★", 0.0, egui::TextFormat { color: c, ..Default::default() });
                }
                ui.label(stars);
                if let Some(l) = d.label {
                    ui.label(RichText::new(format!("● {}", style::label_name(l))).color(style::label_color(l)));
                }
            });
            if p.sidecar_pending {
                ui.label(RichText::new("XMP sidecar not written yet (kept in the library; retried)").color(style::REJECT));
            }
            ui.separator();
            // Which model the grid's score comes from.
            ui.label(RichText::new("Score").strong());
            match (&app.active_profile, p.taste) {
                (Some(a), Some(t)) => {
                    ui.add(egui::ProgressBar::new(t).text(a.profile.score_text(t)))
                        .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "Taste score"));
                    ui.label(RichText::new(format!("from taste profile “{}”", a.profile.name)).color(style::MUTED));
                }
                (Some(a), None) => {
                    ui.label(RichText::new(format!("taste profile “{}”: not scored yet", a.profile.name)).color(style::MUTED));
                }
                (None, _) => {
                    ui.label(RichText::new("technical quality (no taste profile active)").color(style::MUTED));
                }
            }
            ui.add_space(4.0);
            // Technical quality.
            ui.label(RichText::new("Technical quality").strong());
            match &p.scores {
                ScoreState::Pending => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("scoring…");
                    });
                }
                ScoreState::Failed(e) => {
                    ui.label(RichText::new(format!("Could not score: {}", p.error_text(e))).color(style::REJECT));
                }
                ScoreState::Ready(s) => match &s.quality {
                    Some(q) => {
                        let shown = q.score.clamp(0.0, 100.0);
                        ui.add(egui::ProgressBar::new(shown / 100.0).text(format!("{shown:.0} / 100")))
                            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "Technical quality score"));
                        ui.label(
                            RichText::new("Predicted mean opinion score (LIVE Challenge scale): sharpness, exposure, noise.")
                                .small()
                                .color(style::MUTED),
                        );
                        if !s.quality.as_ref().is_some_and(|q| q.patches.is_empty()) {
                            ui.label(
                                RichText::new("Heatmap (H): patches better than the photo's patch average in green, worse in red.")
                                    .small()
                                    .color(style::MUTED),
                            );
                        }
                    }
                    None => {
                        ui.label(RichText::new("no trained quality model available").color(style::MUTED));
                    }
                },
            }
            // The classical baseline beside it.
            if let ScoreState::Ready(s) = &p.scores
                && let Some(b) = s.brisque
            {
                ui.label(format!("BRISQUE {b:.0}"))
                    .on_hover_text("Classical no-reference quality (Mittal et al. 2012, the LIVE-trained model of PyPI brisque). Lower is better; the learned score above ranks the LIVE Challenge photos better (weights/quality.md).");
                ui.label(RichText::new("classical baseline, lower is better").small().color(style::MUTED));
            }
            for n in &app.model_notes {
                ui.label(RichText::new(n).small().color(style::REJECT));
            }
            ui.separator();
            ui.label(RichText::new("Aesthetic score").strong());
            ui.label(RichText::new(format!("Score distribution (10 bins): {NOT_TRAINED}")).color(style::MUTED))
                .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Label, true, "Aesthetic score not trained yet"));
            ui.add_space(4.0);
            ui.label(RichText::new("Style").strong());
            match app.active_profile.as_ref().filter(|a| !a.profile.tags.is_empty()) {
                Some(a) if p.taste_tags.len() == a.profile.tags.len() => {
                    // The user's own tags, most probable first.
                    let mut tags: Vec<(&str, f32)> =
                        a.profile.tags.iter().map(|t| t.name()).zip(p.taste_tags.iter().copied()).collect();
                    tags.sort_by(|x, y| y.1.total_cmp(&x.1));
                    for (name, prob) in tags.iter().take(5) {
                        ui.horizontal(|ui| {
                            ui.label(*name);
                            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                                ui.label(RichText::new(format!("{:.0} %", prob * 100.0)).color(style::MUTED));
                            });
                        });
                    }
                    ui.label(RichText::new(format!("your keywords, learned by “{}”", a.profile.name)).small().color(style::MUTED));
                }
                Some(_) => {
                    ui.label(RichText::new("your keywords: not scored yet").color(style::MUTED));
                }
                None => {
                    ui.label(RichText::new(format!("Style labels: {NOT_TRAINED}")).color(style::MUTED));
                }
            }
            ui.add_space(4.0);
            ui.label(RichText::new("Theme").strong());
            // The active profile's own themes when it learned some, else the AVA themes (untrained).
            let user_themes: &[String] = app.active_profile.as_ref().map_or(&[], |a| &a.profile.themes);
            let names: Vec<&str> = if user_themes.is_empty() { THEMES.to_vec() } else { user_themes.iter().map(String::as_str).collect() };
            let theme_text = app.ui.theme.and_then(|t| names.get(t).copied()).unwrap_or("Choose a theme…");
            let mut theme = app.ui.theme;
            let r = egui::ComboBox::from_id_salt("theme").selected_text(theme_text).show_ui(ui, |ui| {
                ui.selectable_value(&mut theme, None, "None");
                for (i, t) in names.iter().enumerate() {
                    ui.selectable_value(&mut theme, Some(i), *t);
                }
            });
            named(&r.response, "Theme");
            if theme != app.ui.theme {
                out.push(Command::SetTheme(theme));
            }
            if let Some(t) = app.ui.theme.filter(|&t| t < names.len()) {
                match (user_themes.is_empty(), p.taste_by_theme.get(t)) {
                    (true, _) => {
                        ui.label(RichText::new(format!("Score as {}: {NOT_TRAINED}", names[t])).color(style::MUTED));
                    }
                    (false, Some(v)) => {
                        let what = app.active_profile.as_ref().map_or_else(|| format!("{:.0} %", v * 100.0), |a| a.profile.score_text(*v));
                        ui.add(egui::ProgressBar::new(*v).text(format!("{what} as “{}”", names[t])))
                            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::ProgressIndicator, true, "Theme score"));
                    }
                    (false, None) => {
                        ui.label(RichText::new("not scored yet").color(style::MUTED));
                    }
                }
            } else if !user_themes.is_empty() {
                ui.label(RichText::new(format!("{} themes learned by this profile", user_themes.len())).small().color(style::MUTED));
            }
            ui.separator();
            ui.label(RichText::new("Content").strong());
            match &p.scores {
                ScoreState::Ready(s) if !s.classes.is_empty() => {
                    for c in s.classes.iter().take(3) {
                        ui.horizontal(|ui| {
                            ui.label(c.1);
                            ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
                                ui.label(RichText::new(format!("{:.0} %", c.2 * 100.0)).color(style::MUTED));
                            });
                        });
                    }
                    ui.label(RichText::new("ImageNet classes (EfficientNet-Lite0)").small().color(style::MUTED));
                }
                ScoreState::Ready(_) => {
                    ui.label(RichText::new("no content model available").color(style::MUTED));
                }
                _ => {
                    ui.label(RichText::new("…").color(style::MUTED));
                }
            }
            if let Some(g) = st.current().and_then(|i| st.group_of(i)) {
                ui.separator();
                let grp = &st.groups[g];
                let kind = match grp.kind {
                    crate::library::burst::GroupKind::Burst => "Burst",
                    crate::library::burst::GroupKind::NearDuplicate => "Near-duplicates",
                };
                let best = if st.current() == Some(grp.cover) && st.photos[grp.cover].score().is_some() {
                    " · this is the best frame"
                } else {
                    ""
                };
                ui.label(format!("{kind} of {} frames{best}", grp.members.len()));
            }
            ui.separator();
            ui.label(RichText::new("Camera").strong());
            match &p.exif {
                Some(e) => {
                    let mut line = |k: &str, v: Option<String>| {
                        if let Some(v) = v {
                            ui.horizontal(|ui| {
                                ui.label(RichText::new(k).color(style::MUTED));
                                ui.label(v);
                            });
                        }
                    };
                    let body = match (&e.make, &e.model) {
                        (Some(a), Some(b)) if b.starts_with(a.as_str()) => Some(b.clone()),
                        (Some(a), Some(b)) => Some(format!("{a} {b}")),
                        (a, b) => a.clone().or(b.clone()),
                    };
                    line("Body", body);
                    line("Lens", e.lens.clone());
                    line("Taken", e.date_time_original.clone());
                    line("Exposure", e.exposure_time.map(fmt_exposure));
                    line("Aperture", e.f_number.map(|f| format!("f/{f:.1}")));
                    line("ISO", e.iso.map(|i| i.to_string()));
                    line("Focal length", e.focal_length.map(|f| format!("{f:.0} mm")));
                }
                None => {
                    ui.label(RichText::new("no EXIF").color(style::MUTED));
                }
            }
        });
    });
    out
}

fn fmt_exposure(t: f64) -> String {
    if t >= 1.0 || t <= 0.0 { format!("{t:.1} s") } else { format!("1/{:.0} s", 1.0 / t) }
}

pub fn start_screen(ui: &mut Ui, app: &KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.25);
        ui.heading(RichText::new("Keepers").size(32.0));
        ui.label("Open a folder of photos to cull it.");
        ui.add_space(12.0);
        if ui.button(RichText::new("Open folder…").size(18.0)).clicked() {
            out.push(Command::OpenDialog);
        }
        ui.label(RichText::new("or drop a folder on this window").color(style::MUTED));
        if !app.settings.recent.is_empty() {
            ui.add_space(16.0);
            ui.label(RichText::new("Recent albums").strong());
            for p in &app.settings.recent {
                if ui.link(p.display().to_string()).clicked() {
                    out.push(Command::Open(p.clone()));
                }
            }
        }
    });
    out
}

/// Windows over everything: the shortcut sheet and the cover suggestions.
pub fn overlays(ui: &mut Ui, app: &KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    let ctx = ui.ctx().clone();
    if app.ui.show_shortcuts {
        let mut open = true;
        egui::Window::new("Keyboard shortcuts").open(&mut open).collapsible(false).resizable(false).show(&ctx, |ui| {
            egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
                for s in SHORTCUTS {
                    ui.label(RichText::new(s.keys).monospace().strong());
                    ui.label(s.what);
                    ui.end_row();
                }
            });
        });
        if !open {
            out.push(Command::ShowShortcuts(false));
        }
    }
    if let (Some(covers), Some(st)) = (&app.ui.covers, app.state()) {
        let mut open = true;
        egui::Window::new("Cover suggestions").open(&mut open).collapsible(false).show(&ctx, |ui| {
            ui.label("The best photos of the album by score, at most one per burst:");
            ui.horizontal(|ui| {
                for &i in covers {
                    let p = &st.photos[i];
                    ui.vertical(|ui| {
                        if let Some(t) = app.thumb(p.id) {
                            let size = t.size_vec2();
                            let scale = 140.0 / size.x.max(size.y);
                            ui.add(egui::Image::new((t.id(), size * scale)));
                        }
                        ui.label(&p.name);
                        if let Some(s) = p.score() {
                            ui.label(RichText::new(format!("quality {s:.0}")).color(style::MUTED));
                        }
                    });
                }
            });
            ui.horizontal(|ui| {
                if ui.button("Accept covers (Enter)").clicked() || ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    out.push(Command::AcceptCovers);
                }
                if ui.button("Export covers…").on_hover_text("Copy them to a \"Keepers covers\" folder in the album, with a list").clicked()
                {
                    out.push(Command::ExportCovers);
                }
                if ui.button("Close").clicked() {
                    out.push(Command::DismissCovers);
                }
            });
        });
        if !open {
            out.push(Command::DismissCovers);
        }
    }
    out
}

/// A label's colour swatch for menus.
pub fn label_swatch(ui: &mut Ui, l: ColorLabel) {
    let (r, _) = ui.allocate_exact_size(egui::vec2(10.0, 10.0), egui::Sense::hover());
    ui.painter().circle_filled(r.center(), 5.0, style::label_color(l));
}
