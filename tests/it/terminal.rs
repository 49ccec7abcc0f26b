//! The bar in a real terminal: the binary runs in tmux against the simulator (`--sim`, or one
//! shared by a run and its rerun) at 80 and at 200 columns; the screen is read with
//! `tmux capture-pane` while it runs. Needs tmux (`.ci/run`
//! installs it); without it the tests fail, saying so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vidbatch_sim::{Sim, SimConfig};

/// Lines printed before vidbatch runs, so the bar is not on the top row: a terminal that
/// re-wraps the bar's row when made narrower pushes the top row into its history, where a
/// stale copy would not show.
const BEFORE: &str = "printf 'before the run %s\\n' 1 2 3 4";

/// Jobs of the test's manifest, and the start of their (long) ids.
const JOBS: usize = 12;
const ID: &str = "a-rather-long-job-name-from-a-matrix-of-animals-and-places";

/// A tmux server of the test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        let found = std::process::Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "tmux is not installed: these terminal tests need it (`apt-get install tmux`; .ci/run installs it)"
        );
        Tmux {
            socket: format!("vidbatch-{name}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let o = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux ran");
        assert!(
            o.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    }

    /// The screen, wrapped rows joined into the lines written, trailing spaces dropped, and
    /// without the lines printed before vidbatch ([`BEFORE`]).
    fn screen(&self) -> Vec<String> {
        let o = self.run(&["capture-pane", "-p", "-J", "-t", "run"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with("before the run "))
            .collect()
    }

    /// Reads the screen until `done` says so of it, at most 90 s; returns every screen read.
    fn watch(&self, mut done: impl FnMut(&[String]) -> bool) -> Vec<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut screens = Vec::new();
        loop {
            let screen = self.screen();
            let stop = done(&screen);
            screens.push(screen);
            if stop {
                return screens;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; last screen:\n{}",
                screens.last().map(|s| s.join("\n")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(40));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn manifest(dir: &Path) -> PathBuf {
    let mut text = String::from(
        "version: 1\ndefaults:\n  model: seedance-1.5-pro\n  duration: 5\n  ratio: \"16:9\"\n  resolution: 480p\njobs:\n",
    );
    for i in 0..JOBS {
        text.push_str(&format!(
            "  - id: {ID}-{i:02}\n    prompt: \"terminal test shot {i}\"\n"
        ));
    }
    let path = dir.join("manifest.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A shell command running vidbatch with a clean environment of settings (and `env`, e.g.
/// the simulator's address).
fn vidbatch(env: &str, args: &str) -> String {
    let unset: Vec<String> = crate::util::vidbatch_env()
        .iter()
        .map(|v| format!("-u {v}"))
        .collect();
    format!("env {} {env} {} {args}", unset.join(" "), crate::util::BIN)
}

/// Columns a line takes on the screen.
fn columns(line: &str) -> usize {
    line.chars().count()
}

/// The bar's lines on a screen.
fn bars(screen: &[String]) -> Vec<&String> {
    let count = format!("/{JOBS} done");
    screen.iter().filter(|l| l.contains(&count)).collect()
}

/// Every line of `screen` fits `width`; the bar's leaves room for an echoed `^C`.
fn assert_fits(screen: &[String], width: usize) {
    for line in screen {
        assert!(
            columns(line) <= width,
            "a line of {} columns at {width}:\n{}",
            columns(line),
            screen.join("\n")
        );
    }
    for bar in bars(screen) {
        assert!(columns(bar) <= width - 3, "{bar:?} at {width}");
    }
}

/// The text of the lines from the last one starting with `start`, wrapped lines joined again.
fn unwrapped_from(screen: &[String], start: &str) -> String {
    let at = screen
        .iter()
        .rposition(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starts with {start:?}:\n{}", screen.join("\n")));
    let mut text = screen[at].clone();
    for l in &screen[at + 1..] {
        match l.strip_prefix("  ") {
            Some(rest) => {
                text.push(' ');
                text.push_str(rest);
            }
            None => break,
        }
    }
    text
}

/// A run at 80 columns, throttled by `--rpm`: the bar fits and shows the throttle; made 60
/// wide mid-run it leaves no stale copy; Ctrl-C says what still runs on the server and how
/// to go on; the rerun says it resumes, and ends with the outcome and the report's path.
/// The story of an interrupted run in a terminal `width` columns wide, made `narrow` wide
/// mid-run: the bar fits and shows the throttle, the resize leaves no stale copy, Ctrl-C says
/// what still runs on the server and how to go on, and the rerun (back at `width`) says it
/// resumes, warns above the bar, finishes and names the report.
fn story_of_an_interrupted_run(width: usize, narrow: usize) {
    let (w, n) = (width.to_string(), narrow.to_string());
    let tmux = Tmux::new(&format!("story-{width}"));
    // The rerun must find the first run's tasks: both runs use one simulator (as fast as
    // `--sim`'s), not one each.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(Sim::start(SimConfig {
            time_scale: 0.01,
            rpm: 0,
            concurrency: 10,
            ..SimConfig::default()
        }))
        .unwrap();
    let env = format!(
        "ALLTOKEN_API_KEY=terminal-test ALLTOKEN_BASE_URL={}",
        sim.base_url()
    );
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path());
    let out = dir.path().join("out");
    let (m, o) = (m.display(), out.display());
    // The first run holds 1 request a second, so it is throttled and still running when the
    // test interrupts it; the shell survives the Ctrl-C and waits for the test to go on.
    let command = format!(
        "trap true INT; {BEFORE}; {}; echo exit1=$?; tmux -L {} wait-for resume; {}; echo exit2=$?; sleep 60",
        vidbatch(&env, &format!("run '{m}' --out '{o}' --rpm 60 --burst 1")),
        tmux.socket,
        vidbatch(&env, &format!("run '{m}' --out '{o}' --rpm 1200")),
    );
    tmux.run(&["new-session", "-d", "-s", "run", "-x", &w, "-y", "30", &command]);

    // Running: the bar is there, fits, and shows the throttle.
    let screens = tmux.watch(|s| bars(s).iter().any(|b| b.contains("throttled (--rpm)")));
    for s in &screens {
        assert_fits(s, width);
    }
    let bar = bars(screens.last().unwrap())[0].clone();
    assert!(bar.contains("in flight") && bar.contains('['), "{bar}");
    assert!(!bar.contains("ETA"), "an ETA before any job is done: {bar}");

    // Narrowed mid-run: one bar, fitting, and no stale copy (the run goes on for
    // seconds yet at 1 request a second).
    tmux.run(&["resize-window", "-t", "run", "-x", &n]);
    std::thread::sleep(Duration::from_millis(1500));
    let after = tmux.screen();
    assert_eq!(bars(&after).len(), 1, "stale bars:\n{}", after.join("\n"));
    assert_fits(&after, narrow);
    assert_eq!(
        after.len(),
        1,
        "the screen holds more than the bar:\n{}",
        after.join("\n")
    );

    // Ctrl-C: what still runs on the server, the two ways on, the outcome and the report.
    tmux.run(&["send-keys", "-t", "run", "C-c"]);
    let screens = tmux.watch(|s| s.iter().any(|l| l.starts_with("exit1=")));
    let end = screens.last().unwrap();
    assert_fits(end, narrow);
    assert!(bars(end).is_empty(), "a bar left:\n{}", end.join("\n"));
    assert_eq!(end.last().unwrap(), "exit1=130", "{}", end.join("\n"));
    assert!(
        unwrapped_from(end, "interrupted: ").contains("interrupt again to leave at once"),
        "{}",
        end.join("\n")
    );
    let billing = unwrapped_from(
        end,
        end.iter()
            .find(|l| l.contains("tasks are still queued or processing"))
            .unwrap_or_else(|| panic!("nothing says what still runs:\n{}", end.join("\n"))),
    );
    assert!(
        billing.contains(&format!("vidbatch cancel --out {o}")),
        "{billing}"
    );
    assert!(unwrapped_from(end, "run finished (interrupted): ").contains("submitted"));
    let report = unwrapped_from(end, "report: ");
    assert!(
        report.starts_with(&format!(
            "report: {o}/report.json and {o}/report.html; next: run the same command again"
        )),
        "{report}"
    );

    // The rerun, back at full width, of a manifest whose first job (sent before the interrupt) was
    // edited since: it warns (the text log) above the bar, says it resumes, finishes, and
    // names the report.
    let text = std::fs::read_to_string(dir.path().join("manifest.yaml")).unwrap();
    let edited = text.replacen("terminal test shot 0\"", "terminal test shot 0, edited\"", 1);
    assert_ne!(text, edited);
    std::fs::write(dir.path().join("manifest.yaml"), edited).unwrap();
    tmux.run(&["resize-window", "-t", "run", "-x", &w]);
    tmux.run(&["wait-for", "-S", "resume"]);
    let screens = tmux.watch(|s| s.iter().any(|l| l.starts_with("exit2=")));
    let resumed = screens
        .iter()
        .find(|s| s.iter().any(|l| l.starts_with("resuming: ")))
        .map(|s| unwrapped_from(s, "resuming: "))
        .expect("a line saying the run resumes");
    assert!(
        resumed.contains("done and verified") && resumed.contains("tasks still on the server"),
        "{resumed}"
    );
    let end = screens.last().unwrap();
    let warned: Vec<&String> = screens
        .iter()
        .flatten()
        .filter(|l| l.contains("the job's request changed since it was submitted"))
        .collect();
    assert!(!warned.is_empty(), "no warning:\n{}", end.join("\n"));
    for w in warned {
        assert!(
            !w.contains(&format!("/{JOBS} done")),
            "the warning is on the bar's row: {w}"
        );
    }
    assert_eq!(end.last().unwrap(), "exit2=0", "{}", end.join("\n"));
    assert!(bars(end).is_empty(), "a bar left:\n{}", end.join("\n"));
    let finished = format!("run finished (success): {JOBS} done");
    assert!(end.contains(&finished), "{}", end.join("\n"));
    assert_eq!(
        unwrapped_from(end, "report: "),
        format!("report: {o}/report.json and {o}/report.html")
    );
}

#[test]
fn at_80_columns_the_bar_fits_survives_a_resize_and_tells_the_story_of_an_interrupted_run() {
    story_of_an_interrupted_run(80, 60);
}

#[test]
fn at_200_columns_the_bar_fits_survives_a_resize_and_tells_the_story_of_an_interrupted_run() {
    story_of_an_interrupted_run(200, 120);
}

/// A run at 200 columns, made 120 wide mid-run: the bar has room for everything (the latest
/// job's name too), the resize leaves no stale copy, and the end is two lines.
#[test]
fn at_200_columns_the_bar_shows_everything_and_a_resize_leaves_no_stale_copy() {
    let tmux = Tmux::new("200");
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(dir.path());
    let out = dir.path().join("out");
    let command = format!(
        "{BEFORE}; {}; echo exit=$?; sleep 60",
        vidbatch(
            "",
            &format!(
                "run '{}' --sim --out '{}' --rpm 120 --burst 1",
                m.display(),
                out.display()
            )
        ),
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "run",
        "-x",
        "200",
        "-y",
        "30",
        &command,
    ]);
    // Running at 200: no ETA before jobs are done; once their pace shows, the bar has an ETA
    // and names the latest job done.
    let screens = tmux.watch(|s| bars(s).iter().any(|b| b.contains("ETA ")));
    for s in &screens {
        assert_fits(s, 200);
        assert!(bars(s).len() <= 1, "two bars:\n{}", s.join("\n"));
        for bar in bars(s) {
            assert!(
                !(bar.contains(&format!(" 0/{JOBS} done")) && bar.contains("ETA")),
                "an ETA before any job is done: {bar}"
            );
        }
    }
    let bar = bars(screens.last().unwrap())[0].clone();
    assert!(bar.contains(&format!(", last {ID}-")), "{bar}");
    assert!(bar.contains("[="), "jobs are done, the bar has moved: {bar}");

    tmux.run(&["resize-window", "-t", "run", "-x", "120"]);
    let mut seen_after = 0;
    let screens = tmux.watch(|s| {
        if bars(s).first().is_some_and(|b| columns(b) <= 117) {
            seen_after += 1;
        }
        seen_after >= 5 || s.iter().any(|l| l.starts_with("exit="))
    });
    for s in screens
        .iter()
        .skip_while(|s| bars(s).iter().any(|b| columns(b) > 117))
    {
        assert!(bars(s).len() <= 1, "stale bars:\n{}", s.join("\n"));
        assert_fits(s, 120);
    }
    let screens = tmux.watch(|s| s.iter().any(|l| l.starts_with("exit=")));
    let end = screens.last().unwrap();
    assert_eq!(
        end,
        &vec![
            format!("run finished (success): {JOBS} done"),
            format!(
                "report: {}/report.json and {}/report.html",
                out.display(),
                out.display()
            ),
            "exit=0".to_string(),
        ],
        "{}",
        end.join("\n")
    );
}
