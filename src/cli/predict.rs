//! `keepers predict IMG|DIR...`: what Keepers knows of each photo from the shipped models: the
//! technical quality score (LIVE Challenge MOS scale) with every grid patch's own score (the
//! heatmap the app draws), BRISQUE, and which heads are not trained yet. Photos are decoded as the
//! app's worker decodes them (long side at most `--max-side`), and patch rectangles are given in
//! the photo's full-resolution pixels. A photo that cannot be read is reported and the others go on.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::library::decode::{Size, decode_path};
use crate::model::brisque::Brisque;
use crate::model::quality::{self, QualityModel};

pub fn run(paths: &[PathBuf], max_side: u32, patches: bool) -> anyhow::Result<ExitCode> {
    let files = super::collect_files(paths)?;
    let (device, _) = crate::device::best_device();
    let (config, lite0) = quality::default_paths();
    let model = match QualityModel::load(&config, &lite0, &device) {
        Ok(m) => Some(m),
        Err(e) if e.is_not_trained() => {
            eprintln!("quality: {e}");
            None
        }
        Err(e) => return Err(e).with_context(|| format!("loading the quality model {}", config.display())),
    };
    let brisque = Brisque::load(&Brisque::default_dir()).map_err(|e| eprintln!("brisque: {e}")).ok();
    let mut failed = 0;
    for f in &files {
        let d = match decode_path(f, Size::Fit(max_side)) {
            Ok(d) => d,
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
                continue;
            }
        };
        println!("{}", f.display());
        match &model {
            Some(m) => {
                let q = m.score(&[&d.image]).with_context(|| format!("scoring {}", f.display()))?.remove(0);
                println!("  quality   {:6.1}  (LIVE Challenge MOS scale, {} {})", q.score, quality::MODEL_ID, m.version());
                if patches {
                    let (sx, sy) = (d.full_width as f64 / d.image.width() as f64, d.full_height as f64 / d.image.height() as f64);
                    println!("  patches (grid cell in photo pixels: x y w h -> score)");
                    for p in &q.patches {
                        let c = p.cell;
                        println!("    {:6.0} {:6.0} {:6.0} {:6.0} -> {:5.1}", c.x * sx, c.y * sy, c.w * sx, c.h * sy, p.score);
                    }
                }
            }
            None => println!("  quality   not trained yet"),
        }
        if let Some(b) = &brisque {
            println!("  brisque   {:6.1}  (lower is better)", b.score(&d.image));
        }
        println!("  aesthetic, style, theme: not trained yet");
    }
    if failed > 0 {
        eprintln!("{failed} of {} photos could not be read", files.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
