//! The look: a neutral dark theme for judging photos (mid-grey surround, no tinted panels, so colours
//! in the photo are not pulled by the interface), and the colours of badges and labels.

use egui::{Color32, CornerRadius, Stroke, Visuals};

use crate::library::xmp::ColorLabel;

/// Background behind photos: neutral dark grey.
pub const SURROUND: Color32 = Color32::from_gray(28);
pub const PANEL: Color32 = Color32::from_gray(38);
pub const CELL: Color32 = Color32::from_gray(46);
pub const CURSOR: Color32 = Color32::from_rgb(230, 180, 60);
pub const PICK: Color32 = Color32::from_rgb(90, 200, 110);
pub const REJECT: Color32 = Color32::from_rgb(230, 80, 70);
pub const STAR: Color32 = Color32::from_rgb(240, 200, 80);
pub const MUTED: Color32 = Color32::from_gray(150);
pub const COMPARE: Color32 = Color32::from_rgb(90, 160, 240);

pub fn label_color(l: ColorLabel) -> Color32 {
    match l {
        ColorLabel::Red => Color32::from_rgb(220, 60, 60),
        ColorLabel::Yellow => Color32::from_rgb(230, 200, 60),
        ColorLabel::Green => Color32::from_rgb(80, 190, 90),
        ColorLabel::Blue => Color32::from_rgb(70, 130, 230),
        ColorLabel::Purple => Color32::from_rgb(160, 90, 210),
    }
}

pub fn label_name(l: ColorLabel) -> &'static str {
    match l {
        ColorLabel::Red => "Red",
        ColorLabel::Yellow => "Yellow",
        ColorLabel::Green => "Green",
        ColorLabel::Blue => "Blue",
        ColorLabel::Purple => "Purple",
    }
}

/// Heatmap colour of a patch `delta` points above (green) or below (red) the photo's own score;
/// `range` is the delta of full colour.
pub fn heat(delta: f32, range: f32) -> Color32 {
    let t = (delta / range.max(1e-3)).clamp(-1.0, 1.0);
    let a = (40.0 + 100.0 * t.abs()) as u8;
    if t >= 0.0 { Color32::from_rgba_unmultiplied(60, 210, 90, a) } else { Color32::from_rgba_unmultiplied(235, 70, 60, a) }
}

/// DejaVu Sans (assets/fonts), after egui's own fonts: the badges' symbols (★ ✔ ✖ ▣ ● ⚠).
const SYMBOLS_FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

pub fn apply(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    fonts.font_data.insert("dejavu".into(), std::sync::Arc::new(egui::FontData::from_static(SYMBOLS_FONT)));
    for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
        fonts.families.entry(family).or_default().push("dejavu".into());
    }
    ctx.set_fonts(fonts);
    let mut v = Visuals::dark();
    v.panel_fill = PANEL;
    v.window_fill = PANEL;
    v.extreme_bg_color = SURROUND;
    v.faint_bg_color = Color32::from_gray(42);
    v.selection.bg_fill = Color32::from_rgb(70, 90, 120);
    v.selection.stroke = Stroke::new(1.0, Color32::from_gray(230));
    v.window_corner_radius = CornerRadius::same(6);
    ctx.set_visuals_of(egui::Theme::Dark, v);
    ctx.set_theme(egui::Theme::Dark);
}
