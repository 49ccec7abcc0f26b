//! The terminal display: one indicatif bar for the whole run; the main structure here is [`BarDisplay`].
//!
//! The bar's line shows the elapsed time, the bar, jobs done of the total, failures, tasks in
//! flight (and how many the server still has queued), whether requests are being held back
//! (`throttled`), the time left once this run has finished jobs ([`super::eta`]), and the
//! latest job done. It is laid out anew at every draw for the terminal's width of that moment
//! ([`super::fit::bar_line`]), so it never wraps, and a terminal made narrower leaves no stale
//! copy behind ([`Screen`]). Lines (rate limits, failures, notices, and with `-v` every job's
//! steps) are printed above the bar, wrapped at spaces to the width, through
//! [`ProgressBar::println`]; so are the text log's warnings ([`AroundBar`]). Counts come from
//! the [`Tally`] the runner passes with each event; the only timer is indicatif's steady tick,
//! which redraws the line.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use console::Term;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

use crate::events::Event;
use crate::runner::Observer;
use crate::state::{RunState, Tally};

use super::Verbosity;
use super::eta::{self, Eta};
use super::fit::{self, BarView};
use super::lines;

/// The bar on screen, if any, for the text log to print around ([`AroundBar`]).
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn set_shown(bar: Option<ProgressBar>) {
    *SHOWN.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// Stderr for the text log (`tracing`'s warnings): a record written while the bar is on screen
/// is printed above it (the bar is cleared, the record written, the bar drawn again), so it
/// neither lands on the bar's row nor leaves a stale bar behind.
pub struct AroundBar;

impl io::Write for AroundBar {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = SHOWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// The spinner's frames, one per tenth of a second.
const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

/// What the line shows, shared by the observer (which moves it) and the draws (which read it).
#[derive(Debug)]
struct Shown {
    view: BarView,
    eta: Eta,
}

/// Draws the run's bar on stderr and prints lines above it.
pub struct BarDisplay {
    bar: ProgressBar,
    shown: Arc<Mutex<Shown>>,
    verbosity: Verbosity,
}

impl BarDisplay {
    /// A bar drawn on stderr when it is a terminal (`force`: draw even when it does not look
    /// like one, for `--progress always`; then the width is console's default).
    pub fn new(verbosity: Verbosity, force: bool) -> BarDisplay {
        let columns = Arc::new(AtomicU16::new(80));
        let screen = Screen {
            term: Term::buffered_stderr(),
            columns: columns.clone(),
            drawn: AtomicU16::new(0),
            filler: Mutex::new(0),
        };
        let shows = force || screen.term.is_term();
        let target = if shows {
            ProgressDrawTarget::term_like_with_hz(Box::new(screen), 10)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        if shows {
            set_shown(Some(bar.clone()));
        }
        let shown = Arc::new(Mutex::new(Shown {
            view: BarView::default(),
            eta: Eta::new(0),
        }));
        let (from, width) = (shown.clone(), columns);
        let draw = move |state: &ProgressState, w: &mut dyn fmt::Write| {
            let mut view = {
                let shown = lock(&from);
                let mut view = shown.view.clone();
                view.eta = shown.eta.left(Instant::now()).map(eta::format);
                view
            };
            let elapsed = state.elapsed();
            view.spinner = SPINNER[(elapsed.as_millis() / 100) as usize % SPINNER.len()].to_string();
            view.elapsed = elapsed_text(elapsed);
            let _ = w.write_str(&fit::bar_line(&view, usize::from(width.load(Ordering::Relaxed))));
        };
        let style = ProgressStyle::with_template("{line}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("line", draw);
        bar.set_style(style);
        BarDisplay {
            bar,
            shown,
            verbosity,
        }
    }

    /// Whether the event gets a line above the bar at this verbosity.
    fn shows_line(&self, event: &Event) -> bool {
        match event {
            Event::JobFailed { .. } => true,
            Event::SubmissionsStopped { .. } => true,
            Event::RateLimited { .. } | Event::FileInvalid { .. } | Event::Notice { .. } => {
                self.verbosity >= Verbosity::Normal
            }
            Event::RunStarted { .. } | Event::RunFinished { .. } | Event::Throttled { .. } => false,
            _ => self.verbosity >= Verbosity::Verbose,
        }
    }

    /// The terminal's width now.
    fn width(&self) -> usize {
        usize::from(Term::stderr().size().1)
    }
}

fn lock(shown: &Mutex<Shown>) -> MutexGuard<'_, Shown> {
    shown.lock().unwrap_or_else(|e| e.into_inner())
}

/// Elapsed time as the bar shows it: `42s`, `3m05s`, `1h02m`.
fn elapsed_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Observer for BarDisplay {
    fn on_event(&mut self, event: &Event, state: &RunState, tally: &Tally) {
        let finished = (tally.done + tally.failed).min(tally.total);
        if let Event::RunStarted { total_jobs, .. } = event {
            self.bar.set_length(*total_jobs as u64);
            self.bar.set_position(finished as u64);
            // Jobs finished by an earlier run must not count as speed.
            lock(&self.shown).eta = Eta::new(finished);
            self.bar.enable_steady_tick(Duration::from_millis(100));
        }
        if self.shows_line(event)
            && let Some(line) = lines::line(event, state, tally, self.verbosity)
        {
            for part in fit::wrap(&line, self.width()) {
                self.bar.println(part);
            }
        }
        if let Event::RunFinished { outcome, .. } = event {
            set_shown(None);
            self.bar.finish_and_clear();
            for part in fit::wrap(&lines::summary(state, *outcome), self.width()) {
                eprintln!("{part}");
            }
            return;
        }
        {
            let mut shown = lock(&self.shown);
            let v = &mut shown.view;
            v.finished = finished;
            v.done = tally.done;
            v.total = tally.total;
            v.failed = tally.failed;
            v.in_flight = tally.in_flight;
            v.queued = tally.queued;
            match event {
                Event::Throttled { by } => v.throttled = *by,
                Event::JobDone { job, .. } => v.latest = Some(lines::clean(job)),
                _ => {}
            }
            shown.eta.observe(Instant::now(), finished, tally.total);
        }
        if finished as u64 != self.bar.position() {
            self.bar.set_position(finished as u64);
        }
    }
}

impl Drop for BarDisplay {
    fn drop(&mut self) {
        // A run that ended without RunFinished (an error) must not leave a half-drawn bar.
        set_shown(None);
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

/// Stderr as indicatif's draw target, aware of resizes and of a `^C` echoed after the bar.
///
/// indicatif ends each line it draws with spaces out to the terminal's width, so that the next
/// line starts on the next row. After the last line (the bar) that only parks the cursor in
/// the last column, where a `^C` the terminal echoes wraps to a row of its own, and the next
/// draw (which clears the rows it drew last time) leaves the bar above it as a stale copy. So
/// the spaces after the last line are not written: the cursor stays after the bar's text.
///
/// A terminal that re-wraps its rows when made narrower (tmux, VTE, kitty, iTerm2, Windows
/// Terminal) turns the bar's row into several, the cursor on the last; clearing only that one
/// would leave the others behind. So a clear after a narrowing starts as many rows up as the
/// last bar now takes, and clears to the end of the screen.
#[derive(Debug)]
struct Screen {
    term: Term,
    /// The width as last read (shared with the line's layout, which is made for it).
    columns: Arc<AtomicU16>,
    /// Columns of the text of the last line drawn.
    drawn: AtomicU16,
    /// Spaces written after a line, held until something follows them.
    filler: Mutex<usize>,
}

impl Screen {
    /// Writes the spaces held back: something follows them on the screen.
    fn release_filler(&self) -> io::Result<()> {
        let mut filler = self.filler.lock().unwrap_or_else(|e| e.into_inner());
        if *filler > 0 {
            self.term.write_str(&" ".repeat(*filler))?;
            *filler = 0;
        }
        Ok(())
    }

    fn drop_filler(&self) {
        *self.filler.lock().unwrap_or_else(|e| e.into_inner()) = 0;
    }
}

impl TermLike for Screen {
    fn width(&self) -> u16 {
        let (_, columns) = self.term.size();
        self.columns.store(columns, Ordering::Relaxed);
        columns
    }

    fn height(&self) -> u16 {
        self.term.size().0
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        self.drop_filler();
        self.term.move_cursor_up(n)
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.release_filler()?;
        self.term.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.release_filler()?;
        self.term.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.release_filler()?;
        self.term.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.release_filler()?;
        self.term.write_line(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        if !s.is_empty() && s.bytes().all(|b| b == b' ') {
            *self.filler.lock().unwrap_or_else(|e| e.into_inner()) += s.len();
            return Ok(());
        }
        self.release_filler()?;
        let columns = console::measure_text_width(s);
        self.drawn
            .store(u16::try_from(columns).unwrap_or(u16::MAX), Ordering::Relaxed);
        self.term.write_str(s)
    }

    fn clear_line(&self) -> io::Result<()> {
        self.drop_filler();
        let now = usize::from(self.term.size().1.max(1));
        let drawn = usize::from(self.drawn.swap(0, Ordering::Relaxed));
        if drawn > now {
            self.term.move_cursor_up(drawn.div_ceil(now) - 1)?;
            self.term.write_str("\r")?;
            return self.term.clear_to_end_of_screen();
        }
        self.term.clear_line()
    }

    fn flush(&self) -> io::Result<()> {
        // The spaces after the last line drawn are not written (see above).
        self.drop_filler();
        self.term.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_time_is_short() {
        assert_eq!(elapsed_text(Duration::from_secs(42)), "42s");
        assert_eq!(elapsed_text(Duration::from_secs(185)), "3m05s");
        assert_eq!(elapsed_text(Duration::from_secs(3720)), "1h02m");
    }
}
