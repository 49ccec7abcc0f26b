//! Lines that fit the terminal: the bar's line laid out for a width, and text wrapped to one;
//! the main functions here are [`bar_line`] and [`wrap`].
//!
//! The bar's line is made of parts, each with a priority. What does not fit the width goes,
//! least needed first: the name of the latest job done (shortened in its middle first), the
//! count of queued tasks, the elapsed time, the tasks in flight, the bar (which narrows
//! first), the time left, the throttled state, then the failures; `N/M done` always stays (cut
//! at the width, as a last resort). Widths are counted in terminal columns.

use console::measure_text_width as width_of;

use crate::events::Throttle;

/// What the bar's line shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarView {
    /// The spinner's current frame.
    pub spinner: String,
    /// Time since the run started, already formatted.
    pub elapsed: String,
    /// Jobs finished (done or failed) of `total`, for the bar.
    pub finished: usize,
    /// Jobs done.
    pub done: usize,
    /// Jobs in the plan.
    pub total: usize,
    /// Jobs failed.
    pub failed: usize,
    /// Tasks in flight.
    pub in_flight: usize,
    /// Of those, queued on the server.
    pub queued: usize,
    /// What holds requests back, if anything.
    pub throttled: Option<Throttle>,
    /// The time left, already formatted (none before this run's completions show a pace).
    pub eta: Option<String>,
    /// The latest job done.
    pub latest: Option<String>,
}

/// The widest the bar itself gets, and the narrowest worth drawing.
const BAR_MAX: usize = 30;
const BAR_MIN: usize = 8;
/// Columns left free after the bar's line: room for an echoed `^C`, and the last column.
const ECHO_ROOM: usize = 3;
/// The shortest a job's name gets before it is left out.
const NAME_MIN: usize = 8;

/// The parts of the line after the counts, in the order shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Elapsed,
    Bar,
    Failed,
    Flight,
    Queued,
    Throttled,
    Eta,
}

/// The parts in the order they are given room: the most needed first.
const BY_NEED: [Part; 7] = [
    Part::Failed,
    Part::Throttled,
    Part::Eta,
    Part::Bar,
    Part::Flight,
    Part::Elapsed,
    Part::Queued,
];

/// The bar's line for a terminal `columns` wide: never wider than `columns - 3`, so neither
/// the line nor a `^C` the terminal echoes after it wraps to another row.
pub fn bar_line(v: &BarView, columns: usize) -> String {
    let room = columns.saturating_sub(ECHO_ROOM).max(1);
    let text = |part: Part| -> Option<String> {
        match part {
            Part::Elapsed => (!v.elapsed.is_empty()).then(|| format!("{} ", v.elapsed)),
            Part::Bar => Some(format!("[{}] ", " ".repeat(BAR_MIN))),
            Part::Failed => (v.failed > 0).then(|| format!(", {} failed", v.failed)),
            Part::Flight => Some(format!(", {} in flight", v.in_flight)),
            Part::Queued => (v.queued > 0).then(|| format!(" ({} queued)", v.queued)),
            Part::Throttled => v.throttled.map(|t| match t {
                Throttle::Rpm => ", throttled (--rpm)".to_string(),
                Throttle::RateLimited => ", throttled (429)".to_string(),
            }),
            Part::Eta => v.eta.as_ref().map(|e| format!(", ETA {e}")),
        }
    };
    let spinner = if v.spinner.is_empty() {
        String::new()
    } else {
        format!("{} ", v.spinner)
    };
    let counts = format!("{}/{} done", v.done, v.total.max(v.done));
    // The counts always; then each part, most needed first, while it fits.
    let mut used = width_of(&spinner) + width_of(&counts);
    let mut kept: Vec<Part> = Vec::new();
    for part in BY_NEED {
        let Some(t) = text(part) else { continue };
        if part == Part::Queued && !kept.contains(&Part::Flight) {
            continue;
        }
        if used + width_of(&t) <= room {
            used += width_of(&t);
            kept.push(part);
        }
    }
    // What is left widens the bar, then holds the latest job's name.
    let mut bar_width = BAR_MIN;
    if kept.contains(&Part::Bar) {
        let extra = (room - used).min(BAR_MAX - BAR_MIN);
        bar_width += extra;
        used += extra;
    }
    let latest = v.latest.as_ref().and_then(|name| {
        let label = room.checked_sub(used + ", last ".len())?;
        (label >= NAME_MIN).then(|| format!(", last {}", elide(name, label)))
    });

    let shown = |part: Part| -> String {
        match part {
            _ if !kept.contains(&part) => String::new(),
            Part::Bar => format!("[{}] ", bar(v.finished, v.total, bar_width)),
            _ => text(part).unwrap_or_default(),
        }
    };
    let mut line = spinner.clone();
    line.push_str(&shown(Part::Elapsed));
    line.push_str(&shown(Part::Bar));
    line.push_str(&counts);
    for part in [
        Part::Failed,
        Part::Flight,
        Part::Queued,
        Part::Throttled,
        Part::Eta,
    ] {
        line.push_str(&shown(part));
    }
    line.push_str(&latest.unwrap_or_default());
    console::truncate_str(&line, room, "").into_owned()
}

/// The bar's inside, `width` columns: `=` for finished jobs, `>` at the front, spaces after.
fn bar(finished: usize, total: usize, width: usize) -> String {
    let filled = (finished.min(total) * width).checked_div(total).unwrap_or(0);
    let mut s = "=".repeat(filled);
    if filled < width {
        s.push(if filled > 0 { '>' } else { ' ' });
        s.push_str(&" ".repeat(width - filled - 1));
    }
    s
}

/// `text` in at most `columns` columns, shortened in its middle with `…`.
pub fn elide(text: &str, columns: usize) -> String {
    if width_of(text) <= columns {
        return text.to_string();
    }
    if columns < 2 {
        return console::truncate_str(text, columns, "").into_owned();
    }
    let head = (columns - 1).div_ceil(2);
    let tail = columns - 1 - head;
    let start = console::truncate_str(text, head, "");
    let chars: Vec<char> = text.chars().collect();
    let mut end = String::new();
    for c in chars.iter().rev() {
        let candidate = format!("{c}{end}");
        if width_of(&candidate) > tail {
            break;
        }
        end = candidate;
    }
    format!("{start}…{end}")
}

/// `text` wrapped at spaces into lines of at most `columns - 1` columns (a word longer than
/// that is cut); lines after the first are indented by two spaces.
pub fn wrap(text: &str, columns: usize) -> Vec<String> {
    let room = columns.saturating_sub(1).max(8);
    let mut lines = Vec::new();
    let mut line = String::new();
    // Whether the line holds no word yet (it may hold the indent).
    let mut fresh = true;
    for word in text.split(' ') {
        if !fresh && width_of(&line) + 1 + width_of(word) > room {
            lines.push(std::mem::take(&mut line));
            line.push_str("  ");
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        let mut rest = word;
        // A word wider than a line is cut where the line ends.
        while width_of(&line) + width_of(rest) > room {
            let fits = room.saturating_sub(width_of(&line));
            let head = console::truncate_str(rest, fits, "").into_owned();
            if head.is_empty() {
                break;
            }
            rest = &rest[head.len()..];
            line.push_str(&head);
            lines.push(std::mem::take(&mut line));
            line.push_str("  ");
        }
        line.push_str(rest);
        fresh = false;
    }
    lines.push(line);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> BarView {
        BarView {
            spinner: "⠋".into(),
            elapsed: "1m05s".into(),
            finished: 13,
            done: 12,
            total: 20,
            failed: 1,
            in_flight: 4,
            queued: 1,
            throttled: Some(Throttle::RateLimited),
            eta: Some("2m10s".into()),
            latest: Some("a-very-long-job-name-made-from-a-matrix-of-animals-and-places-fox-forest".into()),
        }
    }

    #[test]
    fn the_line_fits_every_width_and_keeps_what_matters_most() {
        for columns in 10..=240 {
            let line = bar_line(&view(), columns);
            assert!(
                width_of(&line) + ECHO_ROOM <= columns.max(ECHO_ROOM + 1),
                "{columns} columns: {line:?} is {} wide",
                width_of(&line)
            );
            assert!(line.contains("12/20 done") || columns < 16, "{columns}: {line:?}");
        }
        let at80 = bar_line(&view(), 80);
        for part in [
            "12/20 done",
            "1 failed",
            "4 in flight",
            "throttled (429)",
            "ETA 2m10s",
            "[",
        ] {
            assert!(at80.contains(part), "{at80:?} lacks {part}");
        }
        let at45 = bar_line(&view(), 45);
        assert!(
            at45.contains("1 failed") && at45.contains("throttled"),
            "{at45:?}"
        );
        assert!(!at45.contains('['), "{at45:?}");
        let at200 = bar_line(&view(), 200);
        assert!(at200.contains("last a-very-long-job-name"), "{at200:?}");
        assert!(at200.contains("ETA 2m10s") && at200.contains("4 in flight (1 queued)"));
        // 13 of 20 finished: 19 of the bar's 30 columns.
        assert!(
            at200.starts_with(&format!("⠋ 1m05s [{}>", "=".repeat(19))),
            "{at200:?}"
        );
    }

    #[test]
    fn no_eta_part_before_there_is_one_and_the_bar_fills() {
        let v = BarView {
            eta: None,
            throttled: None,
            failed: 0,
            finished: 10,
            total: 20,
            ..view()
        };
        let line = bar_line(&v, 120);
        assert!(!line.contains("ETA") && !line.contains("failed"), "{line}");
        let inside = line.split('[').nth(1).unwrap().split(']').next().unwrap();
        assert_eq!(inside.len(), BAR_MAX);
        assert_eq!(inside.matches('=').count(), BAR_MAX / 2);
    }

    #[test]
    fn names_are_shortened_in_the_middle() {
        assert_eq!(elide("abcdefghij", 10), "abcdefghij");
        let short = elide("abcdefghijklmnop", 9);
        assert_eq!(short, "abcd…mnop");
        assert_eq!(width_of(&short), 9);
    }

    #[test]
    fn wrapped_lines_fit_and_keep_every_word() {
        let text = "interrupted: 3 tasks are still queued or processing on the server and are paid for \
                    when they finish: run the same command again, or `vidbatch cancel --out /tmp/a/very/long/path/that/does/not/fit/anywhere/at/all/in/forty/columns`";
        for columns in [40, 60, 80] {
            let lines = wrap(text, columns);
            assert!(lines.len() > 1);
            for l in &lines {
                assert!(width_of(l) < columns, "{columns}: {l:?}");
            }
            let joined: String = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
            assert_eq!(joined.replace(' ', ""), text.replace(' ', ""));
        }
        assert_eq!(wrap("short", 80), vec!["short".to_string()]);
    }
}
