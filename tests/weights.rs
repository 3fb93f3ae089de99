//! A missing, truncated or foreign weights file gives a clear error naming the file and the
//! fix, from the library and from the CLI, and never a panic.

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device};
use keepers::model::imagenet::load_lite0;
use keepers::model::weights::{WeightsError, WeightsFile, read_verified};

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("keepers-weights-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn missing_file_is_named_with_fix() {
    let p = tmpdir("missing").join("efficientnet_lite0.safetensors");
    let err = load_lite0(&p, DType::F32, &Device::Cpu).unwrap_err();
    assert!(matches!(err, WeightsError::Missing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&p.display().to_string()) && msg.contains("convert_weights.py"), "{msg}");
}

#[test]
fn truncated_file_fails_checksum() {
    let real = std::fs::read(WeightsFile::EfficientNetLite0.path()).unwrap();
    let p = tmpdir("truncated").join("efficientnet_lite0.safetensors");
    std::fs::write(&p, &real[..real.len() / 2]).unwrap();
    let err = load_lite0(&p, DType::F32, &Device::Cpu).unwrap_err();
    assert!(matches!(err, WeightsError::Checksum { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&p.display().to_string()) && msg.contains("corrupt"), "{msg}");
}

#[test]
fn one_flipped_byte_is_detected() {
    let mut bytes = std::fs::read(WeightsFile::EfficientNetLite0.path()).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let p = tmpdir("flipped").join("efficientnet_lite0.safetensors");
    std::fs::write(&p, &bytes).unwrap();
    assert!(matches!(read_verified(WeightsFile::EfficientNetLite0, &p), Err(WeightsError::Checksum { .. })));
}

#[test]
fn shipped_file_verifies() {
    let p = WeightsFile::EfficientNetLite0.path();
    assert!(read_verified(WeightsFile::EfficientNetLite0, &p).is_ok());
}

#[test]
fn cli_reports_missing_weights_without_panic() {
    let dir = tmpdir("cli");
    let exe = env!("CARGO_BIN_EXE_keepers");
    let coffee = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/coffee.png");
    let out = Command::new(exe).arg("classify").arg(&coffee).env("KEEPERS_WEIGHTS_DIR", &dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("efficientnet_lite0.safetensors") && err.contains("is missing"), "{err}");
    let out = Command::new(exe).arg("info").env("KEEPERS_WEIGHTS_DIR", &dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(text.contains("MISSING"), "{text}");
}

/// `KEEPERS_DEVICE=cpu` keeps a GPU build on the CPU, and `keepers info` says why.
#[test]
fn keepers_device_cpu_is_honoured_and_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_keepers")).arg("info").env("KEEPERS_DEVICE", "cpu").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.contains("CPU") && l.contains("chosen by KEEPERS_DEVICE=cpu")), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_keepers")).arg("info").env_remove("KEEPERS_DEVICE").output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("KEEPERS_DEVICE"));
}

#[test]
fn cli_reports_unreadable_photo_and_goes_on() {
    let dir = tmpdir("photos");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/coffee.png"), dir.join("a.png")).unwrap();
    std::fs::write(dir.join("b.jpg"), b"").unwrap();
    std::fs::write(dir.join("c.jpg"), b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keepers")).arg("classify").arg(&dir).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("espresso"), "{stdout}");
    assert!(stderr.contains("b.jpg") && stderr.contains("empty"), "{stderr}");
    assert!(stderr.contains("c.jpg") && stderr.contains("2 of 3"), "{stderr}");
}
