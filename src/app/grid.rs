//! The grid of thumbnails and the filmstrip: each cell shows the photo fitted, its score badge, pick
//! or reject flag, stars, colour label, burst count, and an error tile for a photo that cannot be
//! read. Only the rows on screen are drawn (ScrollArea::show_rows), so an album of 10,000 photos
//! costs what one screenful costs.

use egui::{Align2, Color32, FontId, Rect, Sense, Stroke, StrokeKind, Ui, pos2, vec2};

use super::KeepersApp;
use super::commands::{Command, View};
use super::state::{AlbumState, Photo, ScoreState, ThumbState};
use super::style;

/// Accessible name of a photo's cell: its file name.
pub fn cell_label(p: &Photo) -> String {
    p.name.clone()
}

pub fn grid(ui: &mut Ui, app: &mut KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    let Some(session) = &app.session else { return out };
    let st = &session.state;
    let cell = app.settings.thumb_size;
    let gap = 6.0;
    let avail = ui.available_width() - 12.0;
    let cols = ((avail + gap) / (cell + gap)).floor().max(1.0) as usize;
    app.ui.grid_columns = cols;
    let rows = st.visible.len().div_ceil(cols);
    let row_h = cell + gap;
    if st.visible.is_empty() {
        ui.centered_and_justified(|ui| {
            let text = if st.is_empty() && !session.scan_done {
                "Looking for photos…"
            } else if st.is_empty() {
                "No photos in this folder"
            } else {
                "No photo matches the filters"
            };
            ui.label(egui::RichText::new(text).color(style::MUTED).size(18.0));
        });
        return out;
    }
    let mut scroll = egui::ScrollArea::vertical().auto_shrink([false, false]);
    if app.ui.scroll_to_cursor {
        let row = (st.cursor / cols) as f32;
        let id = ui.make_persistent_id("grid_scroll");
        let (offset, view_h) = ui.data(|d| d.get_temp::<(f32, f32)>(id)).unwrap_or((0.0, ui.available_height()));
        let top = row * row_h;
        if top < offset {
            scroll = scroll.vertical_scroll_offset(top);
        } else if top + row_h > offset + view_h {
            scroll = scroll.vertical_scroll_offset(top + row_h - view_h);
        }
        app.ui.scroll_to_cursor = false;
    }
    let mut on_screen = Vec::new();
    let current = st.current();
    let r = scroll.id_salt("grid_scroll").show_rows(ui, row_h, rows, |ui, range| {
        ui.spacing_mut().item_spacing = vec2(gap, gap);
        for row in range {
            ui.horizontal(|ui| {
                ui.add_space(6.0);
                for col in 0..cols {
                    let pos = row * cols + col;
                    let Some(&i) = st.visible.get(pos) else { break };
                    on_screen.push(st.photos[i].id);
                    let resp = cell_widget(ui, app, st, i, vec2(cell, cell), current == Some(i));
                    if resp.clicked() {
                        out.push(Command::Select(i));
                    }
                    if resp.double_clicked() {
                        out.push(Command::SetView(View::Loupe));
                    }
                    resp.context_menu(|ui| {
                        if ui.button("Open in loupe").clicked() {
                            out.push(Command::Select(i));
                            out.push(Command::SetView(View::Loupe));
                        }
                        let marked = st.compare.contains(&i);
                        if ui.button(if marked { "Remove from compare" } else { "Mark for compare" }).clicked() {
                            out.push(Command::ToggleCompare(i));
                        }
                        if let Some(g) = st.group_of(i) {
                            let label = if st.expanded.contains(&g) { "Collapse burst" } else { "Expand burst" };
                            if ui.button(label).clicked() {
                                out.push(Command::ToggleGroup(g));
                            }
                        }
                    });
                }
            });
        }
    });
    let id = ui.make_persistent_id("grid_scroll");
    ui.data_mut(|d| d.insert_temp(id, (r.state.clamped_offset().y, r.inner_rect.height())));
    app.ui.on_screen = on_screen;
    out
}

/// One thumbnail cell with its badges. Returns the clickable response (labelled by file name).
pub fn cell_widget(ui: &mut Ui, app: &KeepersApp, st: &AlbumState, i: usize, size: egui::Vec2, is_current: bool) -> egui::Response {
    let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
    cell_at(ui, app, st, i, rect, is_current)
}

/// A cell drawn in `rect`.
pub fn cell_at(ui: &mut Ui, app: &KeepersApp, st: &AlbumState, i: usize, rect: Rect, is_current: bool) -> egui::Response {
    let p = &st.photos[i];
    let resp = ui.interact(rect, ui.scope_id().with(("cell", p.id)), Sense::click());
    let label = cell_label(p);
    resp.widget_info(|| egui::WidgetInfo::selected(egui::Role::Button, true, is_current, &label));
    if !ui.is_rect_visible(rect) {
        return resp;
    }
    let painter = ui.painter_at(rect.expand(2.0));
    painter.rect_filled(rect, 4.0, style::CELL);
    let inner = rect.shrink(6.0);
    let rejected = p.decision.is_rejected();
    match (&p.thumb, app.thumb(p.id)) {
        (_, Some(tex)) => {
            let ts = tex.size_vec2();
            let scale = (inner.width() / ts.x).min(inner.height() / ts.y);
            let img = Rect::from_center_size(inner.center(), ts * scale);
            let tint = if rejected { Color32::from_gray(90) } else { Color32::WHITE };
            painter.image(tex.id(), img, Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)), tint);
        }
        (ThumbState::Failed(e), None) => {
            painter.rect_filled(inner, 2.0, Color32::from_rgb(70, 30, 30));
            painter.text(
                inner.center() - vec2(0.0, 10.0),
                Align2::CENTER_CENTER,
                "⚠ cannot read",
                FontId::proportional(14.0),
                style::REJECT,
            );
            let short: String = p.error_text(e).chars().take(90).collect();
            let galley = painter.layout(short, FontId::proportional(10.0), style::MUTED, inner.width() - 8.0);
            painter.with_clip_rect(inner).galley(pos2(inner.left() + 4.0, inner.center().y + 4.0), galley, style::MUTED);
        }
        _ => {
            painter.text(inner.center(), Align2::CENTER_CENTER, "…", FontId::proportional(18.0), style::MUTED);
        }
    }
    // Colour label: a bar along the bottom.
    if let Some(l) = p.decision.label {
        painter.rect_filled(Rect::from_min_max(pos2(rect.left(), rect.bottom() - 5.0), rect.right_bottom()), 2.0, style::label_color(l));
    }
    // Score badge (trained models only), top left.
    match &p.scores {
        ScoreState::Ready(_) => {
            if let Some(s) = p.score() {
                badge(&painter, rect.left_top() + vec2(4.0, 4.0), Align2::LEFT_TOP, &format!("{s:.0}"), Color32::from_gray(235));
            }
        }
        ScoreState::Failed(_) => badge(&painter, rect.left_top() + vec2(4.0, 4.0), Align2::LEFT_TOP, "!", style::REJECT),
        ScoreState::Pending => {}
    }
    // Flag, top right.
    if p.decision.is_picked() {
        badge(&painter, rect.right_top() + vec2(-4.0, 4.0), Align2::RIGHT_TOP, "✔", style::PICK);
    } else if rejected {
        badge(&painter, rect.right_top() + vec2(-4.0, 4.0), Align2::RIGHT_TOP, "✖", style::REJECT);
    }
    // Stars, bottom left.
    let stars = p.decision.stars();
    if stars > 0 {
        badge(&painter, rect.left_bottom() + vec2(4.0, -8.0), Align2::LEFT_BOTTOM, &"★".repeat(stars as usize), style::STAR);
    }
    // Burst count, bottom right (collapsed groups).
    if let Some(g) = st.group_of(i) {
        let n = st.groups[g].members.len();
        let text = if st.collapse_groups && !st.expanded.contains(&g) { format!("▣ {n}") } else { "▣".to_string() };
        let best = st.groups[g].cover == i && p.score().is_some();
        badge(
            &painter,
            rect.right_bottom() + vec2(-4.0, -8.0),
            Align2::RIGHT_BOTTOM,
            &text,
            if best { style::STAR } else { Color32::WHITE },
        );
    }
    if st.compare.contains(&i) {
        painter.rect_stroke(rect.shrink(2.0), 4.0, Stroke::new(2.0, style::COMPARE), StrokeKind::Inside);
    }
    if is_current {
        painter.rect_stroke(rect, 4.0, Stroke::new(3.0, style::CURSOR), StrokeKind::Inside);
    } else if resp.hovered() {
        painter.rect_stroke(rect, 4.0, Stroke::new(1.0, Color32::from_gray(120)), StrokeKind::Inside);
    }
    resp
}

fn badge(painter: &egui::Painter, at: egui::Pos2, align: Align2, text: &str, color: Color32) {
    let galley = painter.layout_no_wrap(text.to_string(), FontId::proportional(13.0), color);
    let r = align.anchor_size(at, galley.size() + vec2(8.0, 4.0));
    painter.rect_filled(r, 3.0, Color32::from_black_alpha(170));
    painter.galley(r.min + vec2(4.0, 2.0), galley, color);
}

/// A row of thumbnails under the loupe and compare views.
pub fn filmstrip(ui: &mut Ui, app: &mut KeepersApp) -> Vec<Command> {
    let mut out = Vec::new();
    let Some(session) = &app.session else { return out };
    let st = &session.state;
    let h = 96.0;
    let scroll_to = std::mem::take(&mut app.ui.scroll_to_cursor);
    let mut on_screen = Vec::new();
    let gap = 4.0;
    let step = h + gap;
    let n = st.visible.len();
    egui::Panel::bottom("filmstrip").exact_size(h + 16.0).show(ui, |ui| {
        let mut scroll = egui::ScrollArea::horizontal().id_salt("filmstrip").auto_shrink([false, false]);
        if scroll_to {
            let width = ui.available_width();
            scroll = scroll.horizontal_scroll_offset((st.cursor as f32 * step - (width - h) / 2.0).max(0.0));
        }
        scroll.show_viewport(ui, |ui, viewport| {
            ui.set_width(n as f32 * step);
            ui.set_height(h);
            let origin = ui.min_rect().min;
            let first = (viewport.min.x / step).floor().max(0.0) as usize;
            let last = ((viewport.max.x / step).ceil() as usize + 1).min(n);
            let current = st.current();
            for pos in first..last {
                let i = st.visible[pos];
                let rect = Rect::from_min_size(origin + vec2(pos as f32 * step, 0.0), vec2(h, h));
                let resp = cell_at(ui, app, st, i, rect, current == Some(i));
                on_screen.push(st.photos[i].id);
                if resp.clicked() {
                    out.push(Command::Select(i));
                }
            }
        });
    });
    app.ui.on_screen = on_screen;
    out
}
