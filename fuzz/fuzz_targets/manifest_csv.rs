//! The CSV manifest reader on arbitrary bytes: the table reader with each delimiter, then the
//! whole loader through a file.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vidbatch::manifest::{ManifestArgs, load_plan, sheet};

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    for delimiter in [None, Some(b';'), Some(b'\t')] {
        let mut diags = Vec::new();
        let _ = sheet::read_csv_bytes(data, &Arc::from("fuzz.csv"), delimiter, &mut diags);
    }
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"));
    let path = dir.path().join("m.csv");
    if std::fs::write(&path, data).is_ok() {
        let _ = load_plan(&ManifestArgs {
            manifests: vec![path],
            ..Default::default()
        });
    }
});
