//! The `keepers` command line (clap). Each subcommand lives in its own file and handles its
//! errors once, at this edge, with `anyhow` context naming the file involved.

mod bench;
mod bench_library;
mod bench_scoring;
mod brisque;
mod classify;
mod cv;
mod eval;
mod finetune_quality;
mod info;
mod predict;
mod taste;
mod train;
mod train_quality;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "keepers",
    version,
    about = "Photo culling with multi-patch aesthetic and quality networks",
    long_about = "Photo culling with multi-patch aesthetic and quality networks.\n\nWith no subcommand, opens the desktop app (on PATH when given).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Folder of photos to open in the desktop app.
    pub path: Option<PathBuf>,
}

// Parsed once per run: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the top-5 ImageNet classes of each photo (files or folders).
    Classify {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Number of classes to print per photo.
        #[arg(short, long, default_value_t = 5)]
        top: usize,
    },
    /// Quality score with per-patch scores, BRISQUE, and the heads not trained yet, per photo.
    Predict {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Decode photos to at most this long side, as the app's worker does.
        #[arg(long, default_value_t = crate::worker::ScoringConfig::DEFAULT_MAX_SIDE)]
        max_side: u32,
        /// Print every grid patch's score too.
        #[arg(long)]
        patches: bool,
        /// text (for people), json (JSON Lines: one object per photo) or csv (a row per photo,
        /// then a row per patch with --patches).
        #[arg(long, value_enum, default_value = "text")]
        format: predict::Format,
        /// Also the outputs of a model trained by `keepers train` (RUN/best).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Version, compute device, threads and the status of each weights file.
    Info,
    /// Cross-validate the small-data procedures (frozen backbone, cached features) on a CSV of
    /// photos with scores; prints SRCC/PLCC per system as mean ± std over the folds.
    Cv {
        /// CSV with a path column and a score column (e.g. ../shared/data/livec/labels.csv).
        #[arg(long)]
        data: PathBuf,
        /// Folder the CSV's paths are relative to (default: the CSV's folder, or its images/).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Systems, comma-separated: scnn-warp, scnn-center, scnn-local, dcnn, dma-stat, dma-fc, mp-avg, mp-min, mp-ada.
        #[arg(long, value_delimiter = ',', default_value = "scnn-warp,scnn-local,dma-stat,dma-fc,mp-ada")]
        systems: Vec<String>,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 40)]
        epochs: usize,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// AdamW's decoupled weight decay.
        #[arg(long, default_value_t = 1e-4)]
        weight_decay: f64,
        /// Native-resolution patches cached per photo.
        #[arg(long, default_value_t = 32)]
        native: usize,
        /// Aspect-preserving crops cached per photo.
        #[arg(long, default_value_t = 16)]
        arp: usize,
        /// Feature cache folder (default: the user cache dir, keepers/features).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Write every fold's figures and the held-out predictions as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Train the shipped quality model on a CSV of photos with MOS: ridge on multi-level
    /// frozen-Lite0 features (default; nested k-fold CV over feature plans, lambda chosen inside
    /// each training set), or `--system dma-fc` (the previous model: CV over epochs x weight decay); refit on all
    /// photos, write weights + JSON.
    TrainQuality {
        /// CSV with a path column and a score column (e.g. ../shared/data/livec/labels.csv).
        #[arg(long)]
        data: PathBuf,
        /// Folder the CSV's paths are relative to (default: the CSV's folder, or its images/).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Folder for quality_multilevel.{safetensors,json,sha256} (dma-fc: quality_dma_fc.*).
        #[arg(long, default_value = "weights")]
        out: PathBuf,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// dma-fc: epoch counts tried by the CV, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "40,80")]
        epochs: Vec<usize>,
        /// dma-fc: AdamW weight decays tried by the CV, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.0001,0.01,1")]
        weight_decays: Vec<f64>,
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// dma-fc: native-resolution patches cached per photo (training and the CV protocol).
        #[arg(long, default_value_t = 32)]
        native: usize,
        #[arg(long, default_value_t = 16)]
        arp: usize,
        /// Most grid cells per side at inference.
        #[arg(long, default_value_t = crate::model::quality::DEFAULT_GRID_MAX)]
        grid_max: u32,
        /// Feature cache folder (default: the user cache dir, keepers/features).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// `multilevel` (multi-level Lite0 features + ridge, the shipped model) or `dma-fc`
        /// (the previous model: DMA-fc on pooled features).
        #[arg(long, default_value = "multilevel")]
        system: String,
        /// multilevel: feature plans cross-validated, comma-separated; each is views joined by
        /// `+` from grid, full, half, brisque, then optionally `:b<block balance>`, `:p<power>`,
        /// `:dw` (pool the blocks' depthwise activations instead of the stage outputs;
        /// src/model/multilevel.rs) and `:a<weight>` (grid-only plans: add KADID-10k-level noisy
        /// and blurred copies of the training photos with that row weight; src/train/degrade.rs).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "grid,grid:b1,grid:b1:p0.5,full:b1,grid+full,grid+full:b1,grid+full:b1:p0.5,grid+full+half+brisque:b1,grid:p0.5:dw,grid:b0.5:p0.5:dw,grid:b1:p0.5:dw,full:p0.5:dw,grid+full:p0.5:dw,grid:p0.5:dw:a0.1,grid:b0.5:p0.5:dw:a0.1,grid:p0.5:dw:a0.3"
        )]
        plans: Vec<String>,
        /// multilevel: ridge penalties relative to the feature count (lambda = r * d), ascending.
        #[arg(long, value_delimiter = ',', default_value = "0.01,0.03,0.1,0.3,1,3,10,30,100")]
        lambdas: Vec<f64>,
        /// multilevel: inner folds choosing lambda inside each outer training set.
        #[arg(long, default_value_t = 5)]
        inner_folds: usize,
        /// multilevel: cross-validate only, write no model.
        #[arg(long)]
        cv_only: bool,
        /// multilevel: also write every photo's cached features, scores and fold ids to this
        /// safetensors file (for analysis outside Keepers, e.g. numpy).
        #[arg(long)]
        export_features: Option<PathBuf>,
        /// multilevel: photos of the acceptance check, scored by each plan's final fit (before
        /// a plan ships, each of its degraded copies — blur, JPEG + noise, motion blur, under-
        /// and overexposure, JPEG — must score lower for 80 % of the photos it applies to,
        /// pooled with --accept-live-every; src/train/degrade.rs).
        /// Default: the bundled sample album.
        #[arg(long)]
        accept_photos: Option<PathBuf>,
        /// multilevel: also every k-th training row (0, k, 2k, ...) in the acceptance check,
        /// each scored by the outer-fold head that did not see it; 0 = none.
        #[arg(long, default_value_t = 4)]
        accept_live_every: usize,
    },
    /// Cross-validates partial fine-tuning of the Lite0 column for quality (the last blocks and
    /// the head convolution, started from the frozen ridge probe) against that frozen probe, on
    /// the folds of train-quality; writes figures only (--out JSON), no model.
    FinetuneQuality {
        /// CSV with a path column and a score column (e.g. ../shared/data/livec/labels.csv).
        #[arg(long)]
        data: PathBuf,
        /// Folder the CSV's paths are relative to (default: the CSV's folder, or its images/).
        #[arg(long)]
        images: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Most grid cells per side (the app's grid).
        #[arg(long, default_value_t = crate::model::quality::DEFAULT_GRID_MAX)]
        grid_max: u32,
        /// First fine-tuned block of Lite0's 16 (16: only the head convolution).
        #[arg(long, default_value_t = 15)]
        from_block: usize,
        #[arg(long, default_value_t = 8)]
        epochs: usize,
        /// AdamW learning rates, one fine-tuning run per rate, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "0.0001")]
        lrs: Vec<f64>,
        /// The linear head's learning rate relative to the tail's.
        #[arg(long, default_value_t = 1.0)]
        head_lr_mult: f64,
        #[arg(long, default_value_t = 1e-4)]
        weight_decay: f64,
        /// Photos per step (each with all of its grid patches).
        #[arg(long, default_value_t = 8)]
        batch_photos: usize,
        /// Ridge penalties of the frozen probe relative to the feature count, ascending.
        #[arg(long, value_delimiter = ',', default_value = "0.01,0.03,0.1,0.3,1,3,10,30,100")]
        lambdas: Vec<f64>,
        #[arg(long, default_value_t = 5)]
        inner_folds: usize,
        /// Activation cache folder (default: the user cache dir, keepers/features).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Write the figures (per fold, per epoch) as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// BRISQUE score of each photo (classical no-reference quality, lower = better), or with
    /// --eval CSV the SRCC/PLCC of -BRISQUE against the CSV's scores.
    Brisque {
        /// Photos or folders to score.
        #[arg(required_unless_present = "eval")]
        paths: Vec<PathBuf>,
        /// CSV with a path column and a score column (e.g. ../shared/data/livec/labels.csv).
        #[arg(long, conflicts_with = "paths")]
        eval: Option<PathBuf>,
        /// Folder the CSV's paths are relative to (default: the CSV's folder, or its images/).
        #[arg(long, requires = "eval")]
        images: Option<PathBuf>,
        /// Folds of the seeded split of `keepers cv` / `train-quality` to report --eval per fold on.
        #[arg(long, default_value_t = 5, requires = "eval")]
        folds: usize,
        #[arg(long, default_value_t = 0, requires = "eval")]
        seed: u64,
        /// Model folder (default: weights/brisque).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Train a seed system with its paper's procedure by name (scnn, dcnn, rdcnn, dma, mp-*, theme-emd,
    /// arp-mpemd-*, adapt), or its small-data variant; progress on stderr, checkpoints in --out.
    Train(train::TrainArgs),
    /// Metrics table of a trained checkpoint (RUN/best) on a dataset.
    Eval(eval::EvalArgs),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Backbone forward time per 224x224 image at batch 1 and 16, with peak memory.
    Backbone {
        /// Timed repetitions per batch size (after one warm-up).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Time only the folded inference network (skip the trainable forward_t path).
        #[arg(long)]
        inference_only: bool,
    },
    /// Album library speed on DIR: scan files/s, thumbnails/s (cold, warm cache), full decode MP/s vs djpeg.
    Library {
        dir: PathBuf,
        /// Most JPEG files used for the decode figures.
        #[arg(long, default_value_t = 200)]
        max_files: usize,
        /// Thumbnail long side in pixels.
        #[arg(long, default_value_t = crate::library::thumbs::DEFAULT_SIDE)]
        side: u32,
    },
    /// Time the app takes to score a shoot: the worker scores N photos (DIR's, repeated under
    /// distinct names in a temporary album) end to end, then ms per photo by stage.
    Scoring {
        #[arg(default_value = "assets/samples")]
        dir: PathBuf,
        /// Photos in the temporary album (DIR's photos repeated).
        #[arg(long, default_value_t = 64)]
        photos: usize,
    },
    /// Few-shot taste profiles (issue 8): keep = top third of a CSV's scores, reject = bottom
    /// third; profiles from N labels, several draws each, ROC AUC on the other labelled photos.
    Taste {
        /// CSV with a path column and a score column (e.g. ../shared/data/livec/labels.csv).
        #[arg(long)]
        data: PathBuf,
        /// Folder the CSV's paths are relative to (default: the CSV's folder, or its images/).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Taste systems, comma-separated: logistic-warp, logistic-native, logistic-arp, mp-ada-native, mp-ada-arp.
        #[arg(long, value_delimiter = ',', default_value = "mp-ada-native,logistic-native,logistic-warp,mp-ada-arp")]
        systems: Vec<String>,
        /// Label counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10,25,50,100")]
        labels: Vec<usize>,
        /// Random draws per label count.
        #[arg(long, default_value_t = 10)]
        draws: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = crate::train::taste::TasteConfig::default().steps)]
        steps: usize,
        #[arg(long, default_value_t = crate::train::taste::TasteConfig::default().lr)]
        lr: f64,
        /// L2 penalties, comma-separated (each one a variant).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        l2: Vec<f64>,
        /// Standardise each feature dimension by its own spread.
        #[arg(long)]
        per_dim_scale: bool,
        /// Skip the untuned quality model's AUC (it scores every photo from pixels).
        #[arg(long)]
        no_untuned: bool,
        /// Feature cache folder (default: the user cache dir, keepers/features).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Write every draw's figures as JSON.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Simulate labelling rounds up to this many labels: random picks vs "label these next".
        #[arg(long)]
        active: Option<usize>,
    },
}

/// The photos named on the command line: files as given, folders listed as the album scan lists
/// them ([`crate::library::scan::list_photos`]), with the files it could not take (empty, not an
/// image, an unsupported format) passed on so that decoding reports them like any other; and the
/// number of folders that could not be read (reported here), which count as failures.
pub(crate) fn collect_files(paths: &[PathBuf]) -> anyhow::Result<(Vec<PathBuf>, usize)> {
    let (mut files, mut folder_problems) = (Vec::new(), 0);
    for p in paths {
        if p.is_dir() {
            let (photos, issues) = crate::library::scan::list_photos(p);
            files.extend(photos);
            for i in issues {
                if matches!(i.kind, crate::library::scan::IssueKind::SymlinkLoop) {
                    // The folder it leads back to is read anyway.
                    eprintln!("skipped: {i}");
                } else if i.path.is_dir() {
                    folder_problems += 1;
                    eprintln!("error: {i}");
                } else {
                    // Decoded like the others, so that it is reported (and counted) as they are.
                    files.push(i.path);
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        anyhow::bail!("no photos found in {}", paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "));
    }
    Ok((files, folder_problems))
}

/// The end of a command over photos: says how many photos (of `total`) and folders could not be
/// read, and exits 1 if any could not.
pub(crate) fn photos_exit_code(failed: usize, total: usize, folder_problems: usize) -> std::process::ExitCode {
    if failed > 0 {
        eprintln!("{failed} of {total} photos could not be read");
    }
    if folder_problems > 0 {
        eprintln!("{folder_problems} folder(s) could not be read");
    }
    if failed + folder_problems > 0 { std::process::ExitCode::from(1) } else { std::process::ExitCode::SUCCESS }
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Some(Command::Classify { paths, top }) => classify::run(&paths, top),
        Some(Command::Info) => info::run(),
        Some(Command::Train(a)) => train::run(a),
        Some(Command::Eval(a)) => eval::run(a),
        Some(Command::Predict { paths, max_side, patches, format, checkpoint }) => {
            predict::run(predict::PredictArgs { paths: &paths, max_side, patches, format, checkpoint: checkpoint.as_deref() })
        }
        Some(Command::Cv { data, images, systems, folds, seed, epochs, lr, weight_decay, native, arp, cache, out }) => {
            cv::run(cv::CvArgs {
                data: &data,
                images: images.as_deref(),
                systems: &systems,
                folds,
                seed,
                fit: crate::train::small_data::FitConfig { epochs, lr, weight_decay, seed, ..Default::default() },
                plan: crate::train::features::FeaturePlan { native, arp, seed },
                cache,
                out: out.as_deref(),
            })
        }
        Some(Command::TrainQuality {
            data,
            images,
            out,
            folds,
            seed,
            epochs,
            weight_decays,
            lr,
            native,
            arp,
            grid_max,
            cache,
            system,
            plans,
            lambdas,
            inner_folds,
            cv_only,
            export_features,
            accept_photos,
            accept_live_every,
        }) => match system.as_str() {
            "multilevel" => {
                let plans = plans
                    .iter()
                    .map(|p| {
                        crate::model::multilevel::LevelsPlan::parse(p)
                            .ok_or_else(|| anyhow::anyhow!("unknown plan {p:?} (views grid, full, half, brisque joined by +)"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                train_quality::run_multilevel(train_quality::MultilevelArgs {
                    data: &data,
                    images: images.as_deref(),
                    out: &out,
                    folds,
                    seed,
                    plans: &plans,
                    lambdas: &lambdas,
                    inner_folds,
                    grid_max,
                    cache,
                    cv_only,
                    export_features: export_features.as_deref(),
                    accept_photos: accept_photos.unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples")),
                    accept_live_every,
                })
            }
            "dma-fc" => train_quality::run(train_quality::TrainQualityArgs {
                data: &data,
                images: images.as_deref(),
                out: &out,
                folds,
                seed,
                epochs: &epochs,
                weight_decays: &weight_decays,
                lr,
                plan: crate::train::features::FeaturePlan { native, arp, seed },
                grid_max,
                cache,
            }),
            other => anyhow::bail!("unknown --system {other:?} (multilevel or dma-fc)"),
        },
        Some(Command::FinetuneQuality {
            data,
            images,
            folds,
            seed,
            grid_max,
            from_block,
            epochs,
            lrs,
            head_lr_mult,
            weight_decay,
            batch_photos,
            lambdas,
            inner_folds,
            cache,
            out,
        }) => finetune_quality::run(finetune_quality::FinetuneArgs {
            data: &data,
            images: images.as_deref(),
            folds,
            seed,
            grid_max,
            lambdas: &lambdas,
            inner_folds,
            lrs: &lrs,
            tail: crate::train::tail_finetune::TailConfig {
                from_block,
                epochs,
                lr: lrs.first().copied().unwrap_or_default(),
                head_lr_mult,
                weight_decay,
                batch_photos,
                seed,
            },
            cache,
            out: out.as_deref(),
        }),
        Some(Command::Brisque { paths, eval, images, folds, seed, model }) => match eval {
            Some(csv) => brisque::eval(&csv, images.as_deref(), model.as_deref(), folds, seed),
            None => brisque::score(&paths, model.as_deref()),
        },
        Some(Command::Bench { what: BenchWhat::Backbone { reps, inference_only } }) => bench::backbone(reps, inference_only),
        Some(Command::Bench { what: BenchWhat::Library { dir, max_files, side } }) => bench_library::library(&dir, max_files, side),
        Some(Command::Bench { what: BenchWhat::Scoring { dir, photos } }) => bench_scoring::scoring(&dir, photos),
        Some(Command::Bench {
            what:
                BenchWhat::Taste { data, images, systems, labels, draws, seed, steps, lr, l2, per_dim_scale, no_untuned, cache, out, active },
        }) => taste::run(taste::TasteBenchArgs {
            data: &data,
            images: images.as_deref(),
            systems: &systems,
            labels: &labels,
            draws,
            seed,
            steps,
            lr,
            l2: &l2,
            per_dim_scale,
            untuned: !no_untuned,
            plan: crate::train::features::FeaturePlan::default(),
            cache,
            out: out.as_deref(),
            active,
        }),
        None => {
            if let Some(p) = &cli.path
                && !p.is_dir()
            {
                anyhow::bail!("{}: not a folder (keepers PATH opens a folder of photos)", p.display());
            }
            crate::app::run(crate::app::AppOptions::platform(cli.path)?)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// A progress line, redrawn in place with `\r`: only when stderr is a terminal (piped logs get
/// the summary lines alone).
pub(crate) fn progress(line: std::fmt::Arguments) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprint!("\r{line}");
    }
}
