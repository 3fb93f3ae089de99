//! Thumbnail cache: reduced-size thumbnails stored and served from disk, keyed by path + size + mtime,
//! damaged entries replaced, least recently used entries evicted past the size limit.

mod libsupport;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use keepers::library::thumbs::{ThumbCache, ThumbKey};
use libsupport::*;

fn write(p: &Path, bytes: &[u8]) -> PathBuf {
    fs::write(p, bytes).unwrap();
    p.to_owned()
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in fs::read_dir(dir).unwrap().flatten() {
        if sub.path().is_dir() {
            v.extend(fs::read_dir(sub.path()).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "jpg")));
        }
    }
    v
}

#[test]
fn thumbnail_is_cached_and_keyed_by_file_version() {
    let album = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let photo = write(&album.path().join("IMG_1.JPG"), &encode_jpeg(&quadrants(800, 600), 92));
    let cache = ThumbCache::open(cache_dir.path(), 10 << 20).unwrap();
    let key = ThumbKey::for_file(&photo, 200).unwrap();
    let t = cache.get_or_make(&key).unwrap();
    assert!(!t.from_cache && t.cache_error.is_none());
    assert_eq!(t.image.dimensions(), (200, 150));
    assert_eq!(cache_files(cache_dir.path()).len(), 1);
    let again = cache.get_or_make(&key).unwrap();
    assert!(again.from_cache);
    assert_eq!(again.image.dimensions(), (200, 150));
    // Same colours as the fresh one (stored as JPEG: close, not identical).
    for (x, y) in [(50, 37), (150, 37), (50, 112), (150, 112)] {
        let (a, b) = (mean_at(&t.image, x, y, 5), mean_at(&again.image, x, y, 5));
        assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 6.0), "{a:?} vs {b:?}");
    }
    // Another size is another entry.
    assert!(!cache.get_or_make(&ThumbKey::for_file(&photo, 100).unwrap()).unwrap().from_cache);
    // The photo changes (new content, new mtime): a new thumbnail, not the stale one.
    write(&photo, &encode_jpeg(&image::RgbImage::from_pixel(400, 400, image::Rgb([0, 0, 255])), 92));
    let f = fs::File::options().write(true).open(&photo).unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
    let key2 = ThumbKey::for_file(&photo, 200).unwrap();
    assert_ne!(key2.hash(), key.hash());
    let t2 = cache.get_or_make(&key2).unwrap();
    assert!(!t2.from_cache);
    assert_eq!(t2.image.dimensions(), (200, 200));
    assert!(close(mean_at(&t2.image, 100, 100, 5), [0, 0, 255], 10.0));
    // A cache reopened later still has them.
    let reopened = ThumbCache::open(cache_dir.path(), 10 << 20).unwrap();
    assert_eq!(reopened.total_bytes(), cache_files(cache_dir.path()).iter().map(|p| fs::metadata(p).unwrap().len()).sum::<u64>());
    assert!(reopened.get_or_make(&key2).unwrap().from_cache);
}

#[test]
fn damaged_cache_entry_is_replaced() {
    let album = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let photo = write(&album.path().join("a.jpg"), &jpeg(300, 200));
    let cache = ThumbCache::open(cache_dir.path(), 10 << 20).unwrap();
    let key = ThumbKey::for_file(&photo, 64).unwrap();
    cache.get_or_make(&key).unwrap();
    let entry = cache_files(cache_dir.path()).pop().unwrap();
    let bytes = fs::read(&entry).unwrap();
    fs::write(&entry, &bytes[..bytes.len() / 3]).unwrap(); // a crash of some other program mid-copy
    let t = cache.get_or_make(&key).unwrap();
    assert!(!t.from_cache, "a truncated entry must not be served");
    assert_eq!(fs::read(&entry).unwrap().len(), bytes.len());
}

#[test]
fn eviction_keeps_the_cache_under_its_limit_dropping_least_recently_used() {
    let album = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let photos: Vec<PathBuf> =
        (0..12).map(|i| write(&album.path().join(format!("p{i}.jpg")), &encode_jpeg(&pattern(640, 480, i), 90))).collect();
    // Measure one entry, then allow about five.
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = ThumbCache::open(probe_dir.path(), u64::MAX).unwrap();
    for p in &photos {
        probe.get_or_make(&ThumbKey::for_file(p, 160).unwrap()).unwrap();
    }
    let per = probe.total_bytes() / photos.len() as u64;
    let limit = per * 5 + per / 2;
    let cache = ThumbCache::open(cache_dir.path(), limit).unwrap();
    let keys: Vec<ThumbKey> = photos.iter().map(|p| ThumbKey::for_file(p, 160).unwrap()).collect();
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    for (i, k) in keys.iter().enumerate().take(4) {
        cache.get_or_make(k).unwrap();
        // Distinct, increasing use times (file systems may have coarse clocks).
        for f in cache_files(cache_dir.path()) {
            if fs::metadata(&f).unwrap().modified().unwrap() > t0 + Duration::from_secs(100) {
                fs::File::options().write(true).open(&f).unwrap().set_modified(t0 + Duration::from_secs(i as u64 * 10)).unwrap();
            }
        }
    }
    // Keep using the first one while the others arrive: it stays among the most recent.
    for k in &keys[4..] {
        assert!(cache.get_or_make(&keys[0]).unwrap().from_cache, "recently used entry evicted");
        cache.get_or_make(k).unwrap();
        assert!(cache.total_bytes() <= limit, "{} > {limit}", cache.total_bytes());
    }
    let on_disk: u64 = cache_files(cache_dir.path()).iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    assert!(on_disk <= limit, "{on_disk} > {limit}");
    assert_eq!(on_disk, cache.total_bytes());
    // The recently used first entry survived; the least recently used second one did not.
    assert!(cache.get(&keys[0]).is_some(), "recently used entry evicted");
    assert!(cache.get(&keys[1]).is_none(), "least recently used entry kept");
    assert!(cache.get(&keys[11]).is_some(), "newest entry evicted");
}

#[test]
fn thumbnail_of_a_bad_file_is_an_error_naming_it() {
    let album = tempfile::tempdir().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let photo = write(&album.path().join("broken.jpg"), b"\xFF\xD8\xFF\xE0 nothing else");
    let cache = ThumbCache::open(cache_dir.path(), 1 << 20).unwrap();
    let e = cache.get_or_make(&ThumbKey::for_file(&photo, 64).unwrap()).unwrap_err();
    assert!(e.to_string().contains("broken.jpg"), "{e}");
    assert!(cache_files(cache_dir.path()).is_empty());
}
