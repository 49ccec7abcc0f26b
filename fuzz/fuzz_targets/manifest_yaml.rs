//! The YAML manifest reader on arbitrary bytes: the located-tree parser, then the whole
//! loader (expansion, validation, plan) through a file.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vidbatch::manifest::{ManifestArgs, load_plan, yaml};

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = yaml::parse(&Arc::from("fuzz.yaml"), text);
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"));
    let path = dir.path().join("m.yaml");
    if std::fs::write(&path, data).is_ok() {
        let _ = load_plan(&ManifestArgs {
            manifests: vec![path],
            ..Default::default()
        });
    }
});
