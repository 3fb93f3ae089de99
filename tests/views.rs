//! Views and patches on real sample photos: deterministic from a seed, the right geometry,
//! and rectangles that point at the pixels the patch shows.

use std::path::Path;

use image::RgbImage;
use keepers::library::decode::load_rgb;
use keepers::model::views::{GlobalView, Patch, arp_crops, corner_crops, normalized_input, random_patches, test_views};
use keepers::rng::SeededRng;

fn photo(name: &str) -> RgbImage {
    load_rgb(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name)).unwrap()
}

fn same(a: &[Patch], b: &[Patch]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.image == q.image && p.rect == q.rect && p.flipped == q.flipped)
}

#[test]
fn deterministic_from_seed() {
    let img = photo("china.jpg");
    let run = |seed| {
        let mut r = SeededRng::new(seed);
        let mut v = random_patches(&img, 224, 5, &mut r);
        v.extend(arp_crops(&img, 256, 224, 4, true, &mut r));
        v.extend(test_views(&img, GlobalView::LocalRandomCrop, 3, &mut r));
        v
    };
    assert!(same(&run(42), &run(42)));
    assert!(!same(&run(42), &run(43)));
}

#[test]
fn full_resolution_patches_show_their_rectangle() {
    let img = photo("life_by_Aitzol_Berasategi.jpg"); // 2048 px long side
    let mut r = SeededRng::new(1);
    let bag = random_patches(&img, 224, 5, &mut r);
    assert_eq!(bag.len(), 5);
    for p in &bag {
        assert_eq!(p.image.dimensions(), (224, 224));
        let (x, y) = (p.rect.x as u32, p.rect.y as u32);
        assert_eq!((p.rect.w, p.rect.h), (224.0, 224.0));
        assert!(x + 224 <= img.width() && y + 224 <= img.height());
        let crop = image::imageops::crop_imm(&img, x, y, 224, 224).to_image();
        assert!(crop == p.image, "patch pixels differ from the photo at its rectangle");
    }
    // Five random positions are not all the same.
    assert!(bag.windows(2).any(|w| w[0].rect != w[1].rect));
}

#[test]
fn global_views_geometry() {
    let img = photo("china.jpg"); // 640 x 427, landscape
    let (w, h) = (img.width() as f64, img.height() as f64);
    let mut r = SeededRng::new(2);
    let warp = normalized_input(&img, GlobalView::Warp, 256, &mut r);
    assert_eq!(warp.image.dimensions(), (256, 256));
    assert_eq!((warp.rect.w, warp.rect.h), (w, h));
    let center = normalized_input(&img, GlobalView::CenterCrop, 256, &mut r);
    assert_eq!(center.image.dimensions(), (256, 256));
    assert!((center.rect.h - h).abs() < 1.0 && (center.rect.w - h).abs() < 2.0, "{:?}", center.rect);
    assert!((center.rect.x - (w - h) / 2.0).abs() < 2.0);
    // Padding keeps the aspect ratio: 256 x ~171 content centred, black bands above and below.
    let pad = normalized_input(&img, GlobalView::Padding, 256, &mut r);
    let content_h = (h * 256.0 / w).round() as u32;
    let band = (256 - content_h) / 2;
    let row_sum = |y: u32| (0..256).map(|x| pad.image.get_pixel(x, y).0.iter().map(|&v| v as u32).sum::<u32>()).sum::<u32>();
    assert!(band > 30);
    assert_eq!(row_sum(0), 0);
    assert_eq!(row_sum(band - 1), 0);
    assert!(row_sum(128) > 0);
    assert_eq!(row_sum(255), 0);
    // Its rectangle is the whole canvas in photo pixels: full width, bands outside the photo.
    assert!(pad.rect.x.abs() < 1e-9 && (pad.rect.w - w).abs() < 1e-9, "{:?}", pad.rect);
    let band_photo = band as f64 * h / content_h as f64;
    assert!((pad.rect.y + band_photo).abs() < 1e-6 && (pad.rect.h - 256.0 * h / content_h as f64).abs() < 1e-6, "{:?}", pad.rect);
}

#[test]
fn aspect_preserving_crops_and_corners() {
    let img = photo("china.jpg");
    let mut r = SeededRng::new(3);
    let crops = arp_crops(&img, 256, 224, 40, true, &mut r);
    let side = 224.0 * img.height() as f64 / 256.0;
    for c in &crops {
        assert_eq!(c.image.dimensions(), (224, 224));
        assert!((c.rect.w - side).abs() < 1.0 && (c.rect.h - side).abs() < 1.0, "{:?}", c.rect);
        assert!(c.rect.x >= 0.0 && c.rect.x + c.rect.w <= img.width() as f64 + 1.0);
    }
    let flips = crops.iter().filter(|c| c.flipped).count();
    assert!(flips > 5 && flips < 35, "{flips} of 40 flipped");
    let corners = corner_crops(&img);
    assert_eq!(corners.len(), 6);
    assert!(corners[1].flipped);
    let (cw, ch) = (img.width() * 7 / 8, img.height() * 7 / 8);
    assert_eq!(corners[5].image.dimensions(), (cw, ch));
    assert_eq!((corners[5].rect.x, corners[5].rect.y), ((img.width() - cw) as f64, (img.height() - ch) as f64));
}

#[test]
fn fifty_test_views_of_every_kind() {
    let img = photo("coffee.png");
    let mut r = SeededRng::new(4);
    for v in [GlobalView::LocalRandomCrop, GlobalView::Warp, GlobalView::CenterCrop, GlobalView::Padding] {
        let views = test_views(&img, v, 50, &mut r);
        assert_eq!(views.len(), 50);
        assert!(views.iter().all(|p| p.image.dimensions() == (224, 224)));
    }
}
