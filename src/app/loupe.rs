//! The loupe (one photo, fitted or at 100 %, pan by dragging, zoom with the wheel around the pointer)
//! and the compare view (2 to 4 frames sharing one zoom and pan, so the same detail is seen in each).
//!
//! The heatmap overlay draws the quality network's own per-patch outputs (issue 3's multi-patch
//! explanation), each patch in green above the photo's score and red below; nothing post-hoc.

use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, StrokeKind, Ui, Vec2, pos2, vec2};

use super::commands::Command;
use super::state::{ScoreState, pick_text};
use super::style;
use super::textures::PreviewState;
use super::{KeepersApp, ViewTransform};

pub const MAX_SCALE: f32 = 8.0;

pub fn loupe(ui: &mut Ui, app: &mut KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    let Some(i) = app.state().and_then(|s| s.current()) else {
        ui.centered_and_justified(|ui| ui.label(RichText::new("No photo").color(style::MUTED)));
        return out;
    };
    let rect = ui.available_rect_before_wrap();
    let mut t = app.ui.transform;
    let resp = photo_view(ui, app, i, rect, &mut t, true);
    if resp.double_clicked() {
        out.push(Command::ToggleZoom);
    }
    app.ui.transform = t;
    let id = app.state().map(|s| s.photos[i].id);
    if let Some(id) = id {
        app.ui.on_screen.insert(0, id);
    }
    out
}

pub fn compare(ui: &mut Ui, app: &mut KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    let frames = app.state().map(|s| s.compare_frames()).unwrap_or_default();
    if frames.is_empty() {
        ui.centered_and_justified(|ui| ui.label(RichText::new("Nothing to compare").color(style::MUTED)));
        return out;
    }
    let area = ui.available_rect_before_wrap();
    let (cols, rows) = match frames.len() {
        1 => (1, 1),
        2 => (2, 1),
        3 => (3, 1),
        _ => (2, 2),
    };
    let cell = vec2(area.width() / cols as f32, area.height() / rows as f32);
    let current = app.state().and_then(|s| s.current());
    let mut t = app.ui.transform;
    for (k, &i) in frames.iter().enumerate() {
        let (c, r) = (k % cols, k / cols);
        let rect = Rect::from_min_size(area.min + vec2(c as f32 * cell.x, r as f32 * cell.y), cell).shrink(2.0);
        let resp = photo_view(ui, app, i, rect, &mut t, true);
        if resp.clicked() {
            out.push(Command::Select(i));
        }
        if resp.double_clicked() {
            out.push(Command::ToggleZoom);
        }
        let stroke = if current == Some(i) { Stroke::new(3.0, style::CURSOR) } else { Stroke::new(1.0, Color32::from_gray(70)) };
        ui.painter().rect_stroke(rect, 0.0, stroke, StrokeKind::Inside);
    }
    app.ui.transform = t;
    if let Some(st) = app.state() {
        let ids: Vec<i64> = frames.iter().map(|&i| st.photos[i].id).collect();
        app.ui.on_screen.splice(0..0, ids);
    }
    out
}

/// Draws photo `i` in `rect` under `t` (shared by compare panes); handles pan, zoom and the heatmap.
pub fn photo_view(ui: &mut Ui, app: &KeepersApp, i: usize, rect: Rect, t: &mut ViewTransform, interactive: bool) -> egui::Response {
    let st = app.state().expect("a session is open");
    let p = &st.photos[i];
    let damaged = matches!(app.previews().get(p.id), PreviewState::Ready(prev) if prev.warning.is_some());
    let label = if damaged { format!("Photo {} (damaged file, partly decoded)", p.name) } else { format!("Photo {}", p.name) };
    let resp =
        ui.interact(rect, ui.scope_id().with(("photo_view", p.id)), if interactive { Sense::click_and_drag() } else { Sense::hover() });
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, style::SURROUND);
    let ppp = ui.ctx().pixels_per_point();
    match app.previews().get(p.id) {
        PreviewState::Ready(prev) => {
            let img = vec2(prev.size[0] as f32, prev.size[1] as f32);
            let fit = (rect.width() / img.x).min(rect.height() / img.y);
            // Points per image pixel.
            let mut scale = t.scale.map_or(fit, |s| s / ppp);
            if interactive && resp.hovered() {
                let zoom = ui.input(|inp| inp.zoom_delta() * (inp.smooth_scroll_delta.y * 0.003).exp());
                if (zoom - 1.0).abs() > 1e-4 {
                    let new = (scale * zoom).clamp(fit.min(1.0 / ppp), MAX_SCALE / ppp);
                    if let Some(ptr) = resp.hover_pos() {
                        let f = t.center + (ptr - rect.center()) / (img * scale);
                        t.center = f - (ptr - rect.center()) / (img * new);
                    }
                    scale = new;
                    t.scale = if (new - fit).abs() < 1e-4 { None } else { Some(new * ppp) };
                }
            }
            if interactive && resp.dragged() && t.scale.is_some() {
                t.center -= resp.drag_delta() / (img * scale);
            }
            if t.scale.is_none() {
                t.center = pos2(0.5, 0.5);
            }
            t.center = clamp_center(t.center, rect.size(), img * scale);
            let to_screen = |f: Pos2| rect.center() + (f - t.center) * img * scale;
            let img_rect = Rect::from_min_max(to_screen(pos2(0.0, 0.0)), to_screen(pos2(1.0, 1.0)));
            painter.image(prev.texture.id(), img_rect, Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)), Color32::WHITE);
            if app.settings.show_heatmap {
                heatmap(ui, &painter, app, i, img_rect, prev.full, resp.hover_pos());
            }
            let zoom_text = match t.scale {
                None => format!("Fit ({:.0} %)", scale * ppp * 100.0),
                Some(s) => format!("{:.0} %", s * 100.0),
            };
            painter.text(rect.right_top() + vec2(-8.0, 8.0), Align2::RIGHT_TOP, zoom_text, FontId::proportional(13.0), style::MUTED);
            if let Some(w) = &prev.warning {
                // A truncated file shows what it has; the grey rest is not the photo.
                let text = format!("⚠ Damaged file, shown as far as it decodes (the grey part is missing): {w}");
                let galley = painter.layout(text, FontId::proportional(13.0), style::REJECT, (rect.width() - 32.0).max(40.0));
                let at = rect.left_top() + vec2(12.0, 30.0);
                painter.rect_filled(
                    Rect::from_min_size(at - vec2(4.0, 3.0), galley.size() + vec2(8.0, 6.0)),
                    3.0,
                    Color32::from_black_alpha(190),
                );
                painter.galley(at, galley, style::REJECT);
            }
        }
        PreviewState::Loading => {
            // The thumbnail stands in while the preview decodes.
            if let Some(tex) = app.thumb(p.id) {
                let ts = tex.size_vec2();
                let s = (rect.width() / ts.x).min(rect.height() / ts.y);
                painter.image(
                    tex.id(),
                    Rect::from_center_size(rect.center(), ts * s),
                    Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
                    Color32::WHITE,
                );
            }
            painter.text(rect.right_top() + vec2(-8.0, 8.0), Align2::RIGHT_TOP, "loading…", FontId::proportional(13.0), style::MUTED);
        }
        PreviewState::Failed(e) => {
            // Wrapped to the view: file errors can be long.
            let text = format!("⚠ Cannot show {}:\n{}", p.name, p.error_text(e));
            let galley = painter.layout(text, FontId::proportional(15.0), style::REJECT, (rect.width() - 48.0).clamp(40.0, 720.0));
            painter.galley(rect.center() - galley.size() / 2.0, galley, style::REJECT);
        }
    }
    // Caption: name, flag, stars, label.
    let d = &p.decision;
    let mut caption = p.name.clone();
    match pick_text(d) {
        "picked" => caption.push_str("  ✔ picked"),
        "rejected" => caption.push_str("  ✖ rejected"),
        _ => {}
    }
    if d.stars() > 0 {
        caption.push_str(&format!("  {}", "★".repeat(d.stars() as usize)));
    }
    if let Some(q) = p.quality() {
        caption.push_str(&format!("  · quality {q:.0}"));
    }
    let galley = painter.layout_no_wrap(caption, FontId::proportional(14.0), Color32::WHITE);
    let cap = Rect::from_min_size(rect.left_bottom() + vec2(8.0, -28.0), galley.size() + vec2(12.0, 6.0));
    painter.rect_filled(cap, 4.0, Color32::from_black_alpha(160));
    painter.galley(cap.min + vec2(6.0, 3.0), galley, Color32::WHITE);
    if let Some(l) = d.label {
        painter.rect_filled(
            Rect::from_min_size(cap.right_top() + vec2(6.0, 4.0), vec2(14.0, cap.height() - 8.0)),
            3.0,
            style::label_color(l),
        );
    }
    resp
}

/// Keeps the image covering the view where it is larger than the view; centred where it is smaller.
pub fn clamp_center(c: Pos2, view: Vec2, shown: Vec2) -> Pos2 {
    let axis = |c: f32, v: f32, s: f32| if s <= v { 0.5 } else { c.clamp(v / (2.0 * s), 1.0 - v / (2.0 * s)) };
    pos2(axis(c.x, view.x, shown.x), axis(c.y, view.y, shown.y))
}

fn heatmap(ui: &Ui, painter: &egui::Painter, app: &KeepersApp, i: usize, img_rect: Rect, full: [u32; 2], hover: Option<Pos2>) {
    let st = app.state().expect("a session is open");
    let p = &st.photos[i];
    let note = |text: &str| {
        painter.text(img_rect.center_top() + vec2(0.0, 12.0), Align2::CENTER_TOP, text, FontId::proportional(14.0), Color32::WHITE);
    };
    let ScoreState::Ready(s) = &p.scores else {
        note("Heatmap: not scored yet");
        return;
    };
    let Some(q) = &s.quality else {
        note("Heatmap: no trained quality model");
        return;
    };
    if q.patches.is_empty() {
        note("Heatmap: this model gives no per-patch outputs");
        return;
    }
    let (w, h) = (full[0] as f32, full[1] as f32);
    // Colours are relative to the mean of the photo's own patch scores: a patch sees less context than
    // the whole photo, so patch scores sit on their own level (weights/quality.md); what the heatmap
    // shows is where the photo is better or worse than its average.
    let mean = q.patches.iter().map(|pt| pt.score).sum::<f32>() / q.patches.len() as f32;
    let range = q.patches.iter().map(|pt| (pt.score - mean).abs()).fold(5.0f32, f32::max);
    let mut hovered = None;
    for pt in &q.patches {
        // The cell the patch stands for (cells tile the photo).
        let c = pt.cell;
        let r = Rect::from_min_size(
            img_rect.min + vec2(c.x as f32 / w * img_rect.width(), c.y as f32 / h * img_rect.height()),
            vec2(c.w as f32 / w * img_rect.width(), c.h as f32 / h * img_rect.height()),
        );
        painter.rect_filled(r, 0.0, style::heat(pt.score - mean, range));
        painter.rect_stroke(r, 0.0, Stroke::new(1.0, Color32::from_black_alpha(90)), StrokeKind::Inside);
        if hover.is_some_and(|h| r.contains(h)) {
            hovered = Some(pt.score);
        }
    }
    if let Some(v) = hovered {
        let text = format!("patch quality {v:.0} (patch average {mean:.0}, photo {:.0})", q.score.clamp(0.0, 100.0));
        egui::Tooltip::always_open(ui.ctx().clone(), ui.layer_id(), ui.scope_id().with("heat_tip"), egui::PopupAnchor::Pointer).show(
            |ui| {
                ui.label(text);
            },
        );
    }
}
