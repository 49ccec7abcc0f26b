//! Integration tests of manifest reading, validation, ids and the plan.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vidbatch::cli::{cmd_plan, cmd_validate};
use vidbatch::manifest::{self, Inputs, Plan, load_plan};

fn args(paths: &[&Path]) -> Inputs {
    Inputs {
        manifests: paths.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

fn plan_of(dir: &Path, name: &str, text: &str) -> Plan {
    let p = write(dir, name, text);
    load_plan(&args(&[&p])).unwrap_or_else(|e| panic!("{e}"))
}

fn errors_of(dir: &Path, name: &str, text: &str) -> String {
    let p = write(dir, name, text);
    match load_plan(&args(&[&p])) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.to_string(),
    }
}

fn ids(p: &Plan) -> Vec<String> {
    p.jobs.iter().map(|j| j.id.clone()).collect()
}

#[test]
fn examples_validate() {
    for ex in [
        "examples/quickstart.yaml",
        "examples/storyboard.yaml",
        "examples/storyboard-chain.yaml",
        "examples/prompts.csv",
        "examples/prompts.xlsx",
    ] {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = cmd_validate(&args(&[Path::new(ex)]), &mut out, &mut err);
        assert_eq!(code, 0, "{ex}: {}", String::from_utf8_lossy(&err));
    }
    for ex in std::fs::read_dir("examples").expect("examples") {
        let p = ex.expect("entry").path();
        if p.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&p).expect("read");
            assert!(
                text.starts_with("# yaml-language-server: $schema=../schemas/manifest.schema.json\n"),
                "{p:?} lacks the schema line"
            );
        }
    }
}

#[test]
fn quickstart_is_six_short_jobs_with_a_matrix() {
    let p = load_plan(&args(&[Path::new("examples/quickstart.yaml")])).expect("valid");
    assert_eq!(p.jobs.len(), 6);
    let models: std::collections::BTreeSet<_> = p.jobs.iter().map(|j| j.request.model.as_str()).collect();
    assert_eq!(
        models.into_iter().collect::<Vec<_>>(),
        ["seedance-1.5-pro", "seedance-2.0"]
    );
    for j in &p.jobs {
        assert!(matches!(j.request.duration, Some(4 | 5)), "{}", j.id);
        assert!(
            matches!(j.request.resolution.map(|r| r.as_str()), Some("480p" | "720p")),
            "{}",
            j.id
        );
    }
    assert!(ids(&p).contains(&"owl-desert".to_string()));
}

#[test]
fn schema_file_is_up_to_date() {
    let want = manifest::manifest_schema();
    crate::util::assert_schema_file(
        "manifest.schema.json",
        &want,
        "manifest::schema_file_is_up_to_date",
    );
}

const BASE: &str = "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  duration: 5\n";

#[test]
fn yaml_anchors_aliases_and_merge_keys() {
    let d = tempfile::tempdir().expect("tmp");
    let p = plan_of(
        d.path(),
        "m.yaml",
        "x-hd: &hd {resolution: 720p, ratio: \"9:16\"}\njobs:\n  - {<<: *hd, id: a, prompt: one, model: seedance-2.0}\n  - <<: *hd\n    id: b\n    prompt: two\n    ratio: \"1:1\"\n    model: seedance-2.0\n",
    );
    assert_eq!(p.jobs[0].request.ratio.map(|r| r.as_str()), Some("9:16"));
    assert_eq!(p.jobs[1].request.ratio.map(|r| r.as_str()), Some("1:1"));
    assert_eq!(p.jobs[1].request.resolution.map(|r| r.as_str()), Some("720p"));
}

#[test]
fn alias_bomb_is_an_error_not_a_crash() {
    let d = tempfile::tempdir().expect("tmp");
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        s.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 10].join(", ")
        ));
    }
    assert!(errors_of(d.path(), "bomb.yaml", &s).contains("more than"));
}

#[test]
fn matrix_expands_with_templates_and_field_axes() {
    let d = tempfile::tempdir().expect("tmp");
    let p = plan_of(
        d.path(),
        "m.yaml",
        &format!(
            "{BASE}jobs:\n  - id: \"{{animal}}-{{duration}}\"\n    name: \"clip_{{id}}\"\n    prompt: \"A {{animal}}\"\n    matrix: {{animal: [fox, owl], duration: [4, 6]}}\n"
        ),
    );
    assert_eq!(ids(&p), ["fox-4", "fox-6", "owl-4", "owl-6"]);
    assert_eq!(p.jobs[1].request.duration, Some(6));
    assert_eq!(p.jobs[2].request.prompt, "A owl");
    assert_eq!(p.jobs[3].name, "clip_owl-6");
}

#[test]
fn repeat_appends_an_index() {
    let d = tempfile::tempdir().expect("tmp");
    let p = plan_of(
        d.path(),
        "m.yaml",
        &format!(
            "{BASE}jobs:\n  - prompt: same\n    repeat: 3\n  - id: named\n    prompt: x\n    repeat: 2\n"
        ),
    );
    let i = ids(&p);
    assert_eq!(i.len(), 5);
    assert!(i[0].starts_with("j-") && i[0].ends_with("-1") && i[2].ends_with("-3"));
    assert_eq!(&i[3..], ["named-1", "named-2"]);
}

#[test]
fn unknown_key_suggests_the_nearest() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(d.path(), "m.yaml", &format!("{BASE}jobs:\n  - promt: hi\n"));
    assert!(
        e.contains("m.yaml:6:5: error: unknown key `promt`; did you mean `prompt`?"),
        "{e}"
    );
    let e = errors_of(d.path(), "m.yaml", "job:\n  - prompt: hi\n");
    assert!(e.contains("did you mean `jobs`?"), "{e}");
}

#[test]
fn all_errors_are_reported_at_once_with_locations() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!(
            "{BASE}jobs:\n  - prompt: a\n    duration: 99\n  - prompt: b\n    ratio: wide\n  - prompt: c\n    seed: x\n"
        ),
    );
    assert!(
        e.contains("m.yaml:7:15: error: field `duration`: found `99`"),
        "{e}"
    );
    assert!(
        e.contains("m.yaml:9:12: error: field `ratio`: found `wide`"),
        "{e}"
    );
    assert!(
        e.contains("m.yaml:11:11: error: field `seed`: found `x`, expected a whole number"),
        "{e}"
    );
    assert!(e.contains("3 errors"), "{e}");
}

#[test]
fn duplicate_ids_name_both_places() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!("{BASE}jobs:\n  - {{id: a, prompt: x}}\n  - {{id: a, prompt: y}}\n"),
    );
    assert!(
        e.contains("m.yaml:7:10: error: field `id`: found duplicate id `a`, also at ")
            && e.contains("m.yaml:6:10"),
        "{e}"
    );
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!("{BASE}jobs:\n  - prompt: x\n  - prompt: x\n"),
    );
    assert!(e.contains("use `repeat: N`"), "{e}");
}

#[test]
fn file_names_must_be_unique_ignoring_case() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!("{BASE}jobs:\n  - {{id: Cat, prompt: x}}\n  - {{id: cat, prompt: y}}\n"),
    );
    assert!(e.contains("file name `cat` already used"), "{e}");
}

#[test]
fn unsafe_ids_and_names_are_refused() {
    let d = tempfile::tempdir().expect("tmp");
    for bad in ["../up", "a/b", "NUL", "..", "tab\\there"] {
        let e = errors_of(
            d.path(),
            "m.yaml",
            &format!("{BASE}jobs:\n  - id: \"{bad}\"\n    prompt: x\n"),
        );
        assert!(e.contains("field `id`"), "{bad}: {e}");
    }
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!("{BASE}jobs:\n  - name: \"../x\"\n    prompt: x\n"),
    );
    assert!(e.contains("field `name`"), "{e}");
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!("{BASE}jobs:\n  - id: \"{}\"\n    prompt: x\n", "a".repeat(130)),
    );
    assert!(e.contains("field `id`"), "{e}");
}

#[test]
fn templates_with_unknown_variables_are_errors() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!(
            "{BASE}jobs:\n  - id: \"{{animal}}-{{color}}\"\n    prompt: \"{{animal}}\"\n    matrix: {{animal: [fox]}}\n"
        ),
    );
    assert!(
        e.contains("unknown template variable `{color}`, expected a defined variable: animal"),
        "{e}"
    );
}

#[test]
fn urls_must_have_an_allowed_scheme() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!(
            "{BASE}jobs:\n  - prompt: x\n    first_frame: \"asset://me\"\n    callback_url: \"javascript:alert(1)\"\n"
        ),
    );
    assert!(e.contains("field `first_frame`: found `asset://me`"), "{e}");
    assert!(e.contains("field `callback_url`"), "{e}");
    let p = plan_of(
        d.path(),
        "ok.yaml",
        "jobs:\n  - {model: seedance-2.0, prompt: x, reference_image: [\"asset://me\", \"https://x.test/a.png\"]}\n",
    );
    assert_eq!(p.jobs[0].request.content.len(), 2);
}

#[test]
fn shorthands_become_content_items() {
    let d = tempfile::tempdir().expect("tmp");
    let p = plan_of(
        d.path(),
        "m.yaml",
        "jobs:\n  - model: seedance-2.0\n    prompt: x\n    first_frame: https://x.test/f.png\n    last_frame: https://x.test/l.png\n    reference_video: https://x.test/v.mp4\n    reference_audio: https://x.test/a.mp3\n    draft_task: vgen_123\n",
    );
    let v = serde_json::to_value(&p.jobs[0].request).expect("json");
    let roles: Vec<&str> = v["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|c| c["role"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        roles,
        [
            "first_frame",
            "last_frame",
            "reference_video",
            "reference_audio",
            "-"
        ]
    );
    assert_eq!(v["input_has_video"], true);
}

#[test]
fn unknown_model_is_a_warning() {
    let d = tempfile::tempdir().expect("tmp");
    let p = plan_of(
        d.path(),
        "m.yaml",
        "jobs:\n  - {model: seedance-3.0, prompt: x, duration: 30}\n",
    );
    assert_eq!(p.warnings.len(), 1);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = cmd_validate(&args(&[&d.path().join("m.yaml")]), &mut out, &mut err);
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&err).contains("warning: field `model`"));
}

#[test]
fn run_section_is_read_and_checked() {
    let d = tempfile::tempdir().expect("tmp");
    let p = plan_of(
        d.path(),
        "m.yaml",
        &format!("{BASE}jobs: [{{prompt: x}}]\nrun: {{rpm: 30, poll_interval: 2s, out: o}}\n"),
    );
    assert_eq!(p.run.rpm, Some(30));
    assert_eq!(p.run.poll_interval, Some(std::time::Duration::from_secs(2)));
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!("{BASE}jobs: [{{prompt: x}}]\nrun: {{rpm: 30, polling: 2s}}\n"),
    );
    assert!(
        e.contains("unknown key `polling`; did you mean `poll_interval`?")
            || e.contains("unknown key `polling`"),
        "{e}"
    );
}

#[test]
fn csv_alone_takes_defaults_from_flags() {
    let d = tempfile::tempdir().expect("tmp");
    let p = write(d.path(), "p.csv", "prompt,duration\nA cat,\nA dog,6\n");
    let mut a = args(&[&p]);
    a.model = Some("seedance-2.0".into());
    a.set = vec!["duration=5".into(), "resolution=480p".into()];
    let plan = load_plan(&a).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.jobs[0].request.duration, Some(5));
    assert_eq!(plan.jobs[1].request.duration, Some(6));
    assert_eq!(plan.jobs[1].request.model, "seedance-2.0");
    a.set = vec!["durration=5".into()];
    let e = load_plan(&a).expect_err("bad --set").to_string();
    assert!(
        e.contains(
            "command line `--set durration=5`: error: unknown key `durration`; did you mean `duration`?"
        ),
        "{e}"
    );
}

#[test]
fn csv_dialects_give_the_same_jobs() {
    let d = tempfile::tempdir().expect("tmp");
    let plain = "id,model,prompt,duration\na,seedance-1.5-pro,\"Hello, \"\"world\"\"\nline 2\",5\n";
    let semi =
        "\u{feff}id;model;prompt;duration\r\na;seedance-1.5-pro;\"Hello, \"\"world\"\"\nline 2\";5\r\n";
    let tab = "id\tmodel\tprompt\tduration\r\n# comment\r\na\tseedance-1.5-pro\t\"Hello, \"\"world\"\"\nline 2\"\t5\r\n";
    let a = plan_of(d.path(), "a.csv", plain);
    let b = plan_of(d.path(), "b.csv", semi);
    let c = plan_of(d.path(), "c.tsv", tab);
    assert_eq!(a.jobs[0].request, b.jobs[0].request);
    assert_eq!(a.jobs[0].request, c.jobs[0].request);
    assert_eq!(a.jobs[0].request.prompt, "Hello, \"world\"\nline 2");
    // --delimiter forces the delimiter
    let p = write(d.path(), "d.csv", "prompt|model\nx, y|seedance-2.0\n");
    let mut ar = args(&[&p]);
    ar.delimiter = Some("|".into());
    let plan = load_plan(&ar).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.jobs[0].request.prompt, "x, y");
}

#[test]
fn choices_read_through_stray_spaces_and_prompts_keep_theirs() {
    let d = tempfile::tempdir().expect("tmp");
    // a space, a tab and the no-break space (U+00A0) that Excel and LibreOffice exports carry
    let csv = plan_of(
        d.path(),
        "p.csv",
        "id,model,prompt,ratio,resolution,service_tier\n\
         a, seedance-1.5-pro\u{a0},  A cat surfing ,16:9\u{a0}, 720p,\tflex \n",
    );
    let yaml = plan_of(
        d.path(),
        "m.yaml",
        "version: 1\njobs:\n  - id: a\n    model: \"seedance-1.5-pro \"\n    prompt: \"  A cat surfing \"\n    \
         ratio: \"\\u00a016:9\"\n    resolution: \"720p\\t\"\n    service_tier: \" flex\"\n",
    );
    for plan in [&csv, &yaml] {
        let r = &plan.jobs[0].request;
        assert_eq!(
            (
                r.ratio.map(|x| x.as_str()),
                r.resolution.map(|x| x.as_str()),
                r.service_tier.map(|x| x.as_str())
            ),
            (Some("16:9"), Some("720p"), Some("flex"))
        );
        assert_eq!(r.model, "seedance-1.5-pro", "a model id has no spaces around it");
        assert_eq!(r.prompt, "  A cat surfing ", "a prompt is the user's text");
    }
    // the value a cell names is the one an error shows
    let e = errors_of(
        d.path(),
        "q.csv",
        "prompt,model,ratio\nok,seedance-1.5-pro,\u{a0}16:10 \n",
    );
    assert!(
        e.contains("column `ratio`: error: field `ratio`: found `16:10`, expected one of"),
        "{e}"
    );
}

#[test]
fn a_manifest_larger_than_vidbatch_reads_is_refused_unread() {
    let d = tempfile::tempdir().expect("tmp");
    for name in ["big.csv", "big.yaml"] {
        let p = d.path().join(name);
        // sparse: no disk is used, and vidbatch must not read it to find out
        std::fs::File::create(&p)
            .and_then(|f| f.set_len(manifest::sheet::MAX_MANIFEST_BYTES + 1))
            .expect("sparse file");
        let e = load_plan(&args(&[&p])).expect_err("too large").to_string();
        assert!(
            e.contains(&format!(
                "{name}: error: the file holds more than 512 MB, the most vidbatch reads of one manifest"
            )) && e.contains("split the jobs over several manifests or rows files"),
            "{e}"
        );
    }
}

#[test]
fn a_ratio_a_spreadsheet_made_a_date_is_an_error_saying_so() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "p.csv",
        "prompt,model,ratio\n\
         a,seedance-1.5-pro,9/16/2024\n\
         b,seedance-1.5-pro,2024-09-16\n\
         c,seedance-1.5-pro,16-Sep\n\
         d,seedance-1.5-pro,Sep-16\n\
         e,seedance-1.5-pro,16:10\n",
    );
    let line = |row: u32| {
        e.lines()
            .find(|l| l.contains(&format!("row {row}, column `ratio`: error")))
            .unwrap_or_else(|| panic!("no error in row {row}: {e}"))
    };
    for (row, cell) in [(2, "9/16/2024"), (3, "2024-09-16"), (4, "16-Sep"), (5, "Sep-16")] {
        assert!(
            line(row).contains(&format!("found `{cell}`, expected one of"))
                && line(row).contains("looks like a date that a spreadsheet app made of a ratio")
                && line(row).contains("format the ratio column as Text"),
            "{e}"
        );
    }
    assert!(
        !line(6).contains("date"),
        "a ratio that is no date gets no date help: {e}"
    );
}

#[test]
fn csv_errors_name_row_and_column() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "p.csv",
        "prompt,model,duration\nok,seedance-1.5-pro,5\nbad,seedance-1.5-pro,99\n",
    );
    assert!(
        e.contains("p.csv: row 3, column `duration`: error: field `duration`: found `99`"),
        "{e}"
    );
}

#[test]
fn sheets_first_or_named_and_ods() {
    let p = load_plan(&args(&[Path::new("examples/prompts.xlsx")])).expect("xlsx");
    let o = load_plan(&args(&[Path::new("tests/fixtures/prompts.ods")])).expect("ods");
    assert_eq!(ids(&p), ids(&o), "a re-export keeps the ids");
    let mut a = args(&[Path::new("tests/fixtures/two_sheets.xlsx")]);
    assert!(load_plan(&a).is_err(), "the first sheet is notes");
    a.sheet = Some("Jobs".into());
    assert_eq!(ids(&load_plan(&a).expect("named sheet")), ids(&p));
    a.sheet = Some("Nope".into());
    assert!(
        load_plan(&a)
            .expect_err("no sheet")
            .to_string()
            .contains("field `sheet`: found `Nope`")
    );
}

#[test]
fn yaml_rows_pull_a_sheet_under_its_defaults() {
    let d = tempfile::tempdir().expect("tmp");
    write(d.path(), "rows.csv", "prompt,who\nHi {who},Ann\nBye {who},Bob\n");
    let p = plan_of(
        d.path(),
        "m.yaml",
        "defaults: {model: seedance-2.0, duration: 4, name: \"{who}\"}\nrows: rows.csv\njobs: [{prompt: extra, name: extra}]\n",
    );
    assert_eq!(p.jobs.len(), 3);
    assert_eq!(p.jobs[1].request.prompt, "Hi Ann");
    assert_eq!(p.jobs[2].name, "Bob");
    assert_eq!(p.sources.len(), 2);
    write(
        d.path(),
        "m2.yaml",
        "defaults: {model: seedance-2.0}\nrows: {path: rows.xlsx, sheet: S}\n",
    );
    let e = load_plan(&args(&[&d.path().join("m2.yaml")]))
        .expect_err("missing")
        .to_string();
    assert!(e.contains("rows.xlsx"), "{e}");
}

#[test]
fn several_manifests_make_one_plan() {
    let d = tempfile::tempdir().expect("tmp");
    let a = write(
        d.path(),
        "a.yaml",
        &format!("{BASE}jobs: [{{id: one, prompt: x}}]\n"),
    );
    let b = write(
        d.path(),
        "b.csv",
        "id,model,prompt\ntwo,seedance-2.0,y\none,seedance-2.0,z\n",
    );
    let e = load_plan(&args(&[&a, &b]))
        .expect_err("dup across files")
        .to_string();
    assert!(
        e.contains("duplicate id `one`, also at") && e.contains("a.yaml:5:13"),
        "{e}"
    );
    let b = write(d.path(), "b.csv", "id,model,prompt\ntwo,seedance-2.0,y\n");
    assert_eq!(ids(&load_plan(&args(&[&a, &b])).expect("ok")), ["one", "two"]);
}

#[test]
fn ids_are_stable_across_reorder_additions_and_reformatting() {
    let d = tempfile::tempdir().expect("tmp");
    let one = plan_of(
        d.path(),
        "a.csv",
        "prompt,model,duration\nA cat,seedance-2.0,5\nA dog,seedance-2.0,4\n",
    );
    let two = plan_of(
        d.path(),
        "b.csv",
        "duration;model;prompt;notes\r\n4;seedance-2.0;A dog;\r\n6;seedance-2.0;A bird;new row\r\n5;seedance-2.0;A cat;\r\n",
    );
    let find = |p: &Plan, prompt: &str| {
        p.jobs
            .iter()
            .find(|j| j.request.prompt == prompt)
            .map(|j| j.id.clone())
    };
    assert_eq!(find(&one, "A cat"), find(&two, "A cat"));
    assert_eq!(find(&one, "A dog"), find(&two, "A dog"));
    let y1 = plan_of(
        d.path(),
        "a.yaml",
        "defaults: {model: seedance-2.0}\njobs:\n  - prompt: A cat\n    duration: 5\n  - prompt: A dog\n    duration: 4\n",
    );
    let y2 = plan_of(
        d.path(),
        "b.yaml",
        "# reformatted\ndefaults:\n    model: \"seedance-2.0\"\njobs:\n-   duration: 4\n    prompt: 'A dog'\n-   {duration: 5, prompt: A cat}\n",
    );
    assert_eq!(find(&y1, "A cat"), find(&one, "A cat"));
    assert_eq!(find(&y2, "A cat"), find(&one, "A cat"));
    assert_eq!(find(&y2, "A dog"), find(&one, "A dog"));
    let changed = plan_of(
        d.path(),
        "c.yaml",
        "jobs: [{model: seedance-2.0, prompt: A cat, duration: 6}]\n",
    );
    assert_ne!(find(&changed, "A cat"), find(&one, "A cat"));
    assert_eq!(y1.jobs[0].fingerprint().len(), 64);
    assert!(
        y1.jobs[0]
            .id
            .starts_with(&format!("j-{}", &y1.jobs[0].fingerprint()[..12]))
    );
}

#[test]
fn plan_prints_table_and_json() {
    let a = args(&[Path::new("examples/quickstart.yaml")]);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(cmd_plan(&a, false, &mut out, &mut err), 0);
    let t = String::from_utf8_lossy(&out);
    assert!(
        t.starts_with("ID ") && t.contains("videos/cat-surf.mp4") && t.contains("6 jobs"),
        "{t}"
    );
    let mut out = Vec::new();
    assert_eq!(cmd_plan(&a, true, &mut out, &mut err), 0);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
    assert_eq!(v["count"], 6);
    assert_eq!(v["estimated_tokens_total"], 302_400);
    assert_eq!(v["jobs"][0]["request"]["model"], "seedance-1.5-pro");
}

#[test]
fn unknown_estimate_is_not_zero() {
    let d = tempfile::tempdir().expect("tmp");
    let p = write(
        d.path(),
        "m.yaml",
        "jobs: [{model: seedance-2.0, prompt: x, duration: -1}, {model: seedance-2.0, prompt: y}]\n",
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(cmd_plan(&args(&[&p]), false, &mut out, &mut err), 0);
    let t = String::from_utf8_lossy(&out);
    assert!(
        t.contains("unknown") && t.contains("estimated tokens: unknown (at least 108000; 1 job(s) unknown)"),
        "{t}"
    );
}

#[test]
fn validate_exits_2_on_errors() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(
        cmd_validate(&args(&[Path::new("tests/fixtures/bad.yaml")]), &mut out, &mut err),
        2
    );
    assert_eq!(
        cmd_validate(&args(&[Path::new("no/such.yaml")]), &mut out, &mut err),
        2
    );
    assert_eq!(cmd_validate(&args(&[Path::new("x.json")]), &mut out, &mut err), 2);
}

#[test]
fn snapshot_yaml_errors() {
    let e = load_plan(&args(&[Path::new("tests/fixtures/bad.yaml")])).expect_err("bad");
    insta::assert_snapshot!(e.to_string());
}

/// Each usual YAML mistake gives the source line with a caret and a hint for its cause.
#[test]
fn snapshot_yaml_syntax_errors_show_the_line_a_caret_and_a_hint() {
    for case in [
        "unquoted_colon",
        "tab_indent",
        "key_indented_too_far",
        "list_items_misaligned",
        "quote_inside_quotes",
        "unclosed_quote",
        "unclosed_list",
        "value_starts_with_at",
    ] {
        let path = PathBuf::from(format!("tests/fixtures/yaml_syntax/{case}.yaml"));
        let e = load_plan(&args(&[&path])).expect_err(case).to_string();
        assert!(e.contains("YAML syntax error") && e.contains('^'), "{case}: {e}");
        insta::assert_snapshot!(format!("yaml_syntax_{case}"), e);
    }
}

#[test]
fn snapshot_csv_errors() {
    let e = load_plan(&args(&[Path::new("tests/fixtures/bad.csv")])).expect_err("bad");
    insta::assert_snapshot!(e.to_string());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_yaml_plans_or_errors(s in "(jobs|defaults|matrix|rows|prompt|model|id|repeat|<<|&a|\\*a|[-:{}\\[\\],\\n '\"#]|[a-z0-9.]{1,6}){0,60}") {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(d.path(), "f.yaml", &s);
        let _ = load_plan(&args(&[&p]));
    }

    #[test]
    fn any_csv_plans_or_errors(s in "(prompt|model|id|duration|seedance-2.0|\\{x\\}|[,;\\t\\r\\n\"#]|[a-z0-9 ]{1,5}){0,60}") {
        let d = tempfile::tempdir().expect("tmp");
        let p = write(d.path(), "f.csv", &s);
        let _ = load_plan(&args(&[&p]));
    }

    #[test]
    fn any_bytes_plan_or_error(b in proptest::collection::vec(any::<u8>(), 0..200), ext in "(yaml|csv|xlsx|ods)") {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join(format!("f.{ext}"));
        std::fs::write(&p, &b).expect("write");
        let _ = load_plan(&args(&[&p]));
    }
}

#[test]
fn large_sheets_keep_row_order_and_find_duplicates_across_batches() {
    let d = tempfile::tempdir().expect("tmp");
    let mut csv = String::from("id,prompt,model\n");
    for i in 0..10_000 {
        csv.push_str(&format!("r{i},take {i},seedance-2.0\n"));
    }
    let p = plan_of(d.path(), "big.csv", &csv);
    assert_eq!(p.jobs.len(), 10_000);
    assert!(p.jobs.iter().enumerate().all(|(i, j)| j.id == format!("r{i}")));
    csv.push_str("r5,again,seedance-2.0\n,same,seedance-2.0\n,same,seedance-2.0\n");
    let e = errors_of(d.path(), "big.csv", &csv);
    assert!(
        e.contains("row 10002, column `id`: error: field `id`: found duplicate id `r5`, also at"),
        "{e}"
    );
    assert!(e.contains("big.csv: row 7, column `id`"), "{e}");
    assert!(
        e.contains("row 10004: error: field `id`: found duplicate id `j-") && e.contains("use `repeat: N`"),
        "{e}"
    );
}

#[test]
fn rows_with_errors_do_not_also_report_duplicate_derived_ids() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "p.csv",
        "prompt,model,duration\nx,seedance-2.0,five\nx,seedance-2.0,six\n",
    );
    assert!(!e.contains("duplicate"), "{e}");
    assert!(e.contains("2 errors"), "{e}");
}

#[test]
fn a_file_given_twice_is_read_once_with_a_warning() {
    let d = tempfile::tempdir().expect("tmp");
    let p = write(d.path(), "p.csv", "prompt,model\nA cat,seedance-2.0\n");
    let plan = load_plan(&args(&[&p, &p])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.jobs.len(), 1);
    let w = plan
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        w.contains("warning: the file is given twice: its jobs are read once"),
        "{w}"
    );
    assert!(!w.contains("duplicate"), "{w}");
}

#[test]
fn a_missing_rows_file_names_the_manifest_line_and_the_path_looked_for() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "m.yaml",
        "defaults: {model: seedance-2.0}\nrows: nope.csv\n",
    );
    assert!(
        e.contains("m.yaml:2:7: error: field `rows`: found `nope.csv`, which does not exist (looked for `")
            && e.contains("nope.csv`)"),
        "{e}"
    );
}

#[test]
fn an_unsafe_id_names_the_offending_character() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(
        d.path(),
        "m.yaml",
        &format!(
            "{BASE}jobs:\n  - id: \"cat-{{duration}}s-{{ratio}}\"\n    prompt: x\n    matrix: {{duration: [5], ratio: [\"16:9\"]}}\n"
        ),
    );
    assert!(
        e.contains("found `cat-5s-16:9` (the character `:` is not allowed)"),
        "{e}"
    );
}

#[test]
fn a_missing_model_in_many_rows_is_one_grouped_error_with_the_fixes() {
    let d = tempfile::tempdir().expect("tmp");
    let mut csv = String::from("prompt\n");
    for i in 0..500 {
        csv.push_str(&format!("take {i}\n"));
    }
    let e = errors_of(d.path(), "p.csv", &csv);
    assert_eq!(
        e,
        "p.csv: rows 2–501: error: field `model` is empty; add a model column (or `model:` to the job), set `defaults.model`, or pass `--model`\n1 error, 0 warnings"
            .replace("p.csv", &d.path().join("p.csv").display().to_string())
    );
}

#[test]
fn ragged_rows_and_a_wrong_delimiter_have_hints() {
    let d = tempfile::tempdir().expect("tmp");
    let e = errors_of(d.path(), "p.csv", "prompt,model\nA fox, at dawn,seedance-2.0\n");
    assert!(
        e.contains("found 3 cells, expected at most 2 cells") && e.contains("must be in double quotes"),
        "{e}"
    );
    let p = write(d.path(), "q.csv", "prompt,model\nA fox,seedance-2.0\n");
    let mut a = args(&[&p]);
    a.delimiter = Some(";".into());
    let e = load_plan(&a).expect_err("wrong delimiter").to_string();
    assert!(
        e.contains("the file looks `,`-separated") && e.contains("1 error,"),
        "{e}"
    );
}

#[test]
fn a_yaml_manifest_in_utf16_is_read_and_one_in_latin1_names_the_byte_and_the_fix() {
    let d = tempfile::tempdir().expect("tmp");
    let text = "version: 1\njobs:\n  - prompt: Café at dawn\n    model: seedance-2.0\n";
    // Windows Notepad's "Unicode": UTF-16 little-endian with a byte order mark.
    let utf16: Vec<u8> = "\u{feff}"
        .encode_utf16()
        .chain(text.encode_utf16())
        .flat_map(u16::to_le_bytes)
        .collect();
    let p = d.path().join("notepad.yaml");
    std::fs::write(&p, utf16).expect("write");
    let plan = load_plan(&args(&[&p])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.jobs[0].request.prompt, "Café at dawn");
    let latin1: Vec<u8> = text
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1"))
        .collect();
    let p = d.path().join("latin1.yaml");
    std::fs::write(&p, latin1).expect("write");
    let e = load_plan(&args(&[&p])).expect_err("not UTF-8").to_string();
    assert!(
        e.contains("latin1.yaml")
            && e.contains("byte 0xE9")
            && e.contains("at line 3")
            && e.contains("save it as UTF-8"),
        "{e}"
    );
}

#[test]
fn a_zero_padded_number_keeps_its_zeros_in_ids_and_still_counts_in_number_fields() {
    let d = tempfile::tempdir().expect("tmp");
    let plan = plan_of(
        d.path(),
        "shots.yaml",
        "version: 1\ndefaults: {model: seedance-2.0, duration: 05}\njobs:\n  - {id: 007, prompt: a}\n  \
         - id: \"s{shot}\"\n    prompt: \"shot {shot}\"\n    matrix: {shot: [001, 002]}\n",
    );
    assert_eq!(ids(&plan), ["007", "s001", "s002"]);
    assert_eq!(plan.jobs[1].request.prompt, "shot 001");
    assert!(plan.jobs.iter().all(|j| j.request.duration == Some(5)));
}
