//! Token estimates of a job before it runs.
//!
//! Formula: `tokens = width × height × 24 fps × duration_s / 1024`, rounded down, where
//! width × height come from the resolution and ratio ([`dimensions`]: 16:9 is 864×480, 1280×720,
//! 1920×1080; 1:1 is the short side squared; 4:3 and 21:9 keep the short side; portrait ratios
//! swap width and height; `adaptive` counts as 16:9). With `frames` set, `frames / 24` seconds
//! are used instead of `duration`. Unset fields count as the API defaults assumed here: 720p,
//! 16:9, 5 s. `duration: -1` (the model decides) gives no estimate ("unknown"), never 0.

use crate::api::{CreateRequest, Ratio, Resolution};

/// Frames per second of every model.
pub const FPS: u64 = 24;
/// Resolution assumed when unset.
pub const DEFAULT_RESOLUTION: Resolution = Resolution::P720;
/// Ratio assumed when unset.
pub const DEFAULT_RATIO: Ratio = Ratio::Landscape;
/// Duration assumed when unset, in seconds.
pub const DEFAULT_DURATION: u64 = 5;
/// The formula, for display.
pub const FORMULA: &str = "tokens = width x height x 24 fps x seconds / 1024 (unset: 720p, 16:9, 5 s)";

/// Width and height in pixels of a resolution and ratio (`adaptive` counted as 16:9).
pub fn dimensions(resolution: Resolution, ratio: Ratio) -> (u64, u64) {
    let (short, long_16_9) = match resolution {
        Resolution::P480 => (480, 864),
        Resolution::P720 => (720, 1280),
        Resolution::P1080 => (1080, 1920),
    };
    match ratio {
        Ratio::Landscape | Ratio::Adaptive => (long_16_9, short),
        Ratio::Portrait => (short, long_16_9),
        Ratio::Standard => (short * 4 / 3, short),
        Ratio::StandardPortrait => (short, short * 4 / 3),
        Ratio::Ultrawide => (short * 21 / 9, short),
        Ratio::Square => (short, short),
    }
}

/// The estimated tokens of a request, or `None` when it cannot be known.
pub fn estimate_tokens(req: &CreateRequest) -> Option<u64> {
    let (w, h) = dimensions(
        req.resolution.unwrap_or(DEFAULT_RESOLUTION),
        req.ratio.unwrap_or(DEFAULT_RATIO),
    );
    let frames: u64 = match (req.frames, req.duration) {
        (Some(f), _) => u64::try_from(f).ok()?,
        (None, Some(d)) => u64::try_from(d).ok()?.checked_mul(FPS)?,
        (None, None) => DEFAULT_DURATION * FPS,
    };
    Some(w.checked_mul(h)?.checked_mul(frames)? / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(res: Option<&str>, ratio: Option<&str>, d: Option<i64>, f: Option<i64>) -> CreateRequest {
        CreateRequest {
            resolution: res.map(|v| v.parse().unwrap()),
            ratio: ratio.map(|v| v.parse().unwrap()),
            duration: d,
            frames: f,
            ..Default::default()
        }
    }

    #[test]
    fn formula_and_defaults() {
        assert_eq!(
            estimate_tokens(&r(None, None, None, None)),
            Some(1280 * 720 * 24 * 5 / 1024)
        );
        assert_eq!(
            estimate_tokens(&r(Some("480p"), Some("9:16"), Some(4), None)),
            Some(864 * 480 * 24 * 4 / 1024)
        );
        assert_eq!(
            estimate_tokens(&r(Some("720p"), Some("1:1"), Some(5), None)),
            Some(720 * 720 * 120 / 1024)
        );
        assert_eq!(
            estimate_tokens(&r(Some("1080p"), Some("adaptive"), Some(10), None)),
            Some(1920 * 1080 * 240 / 1024)
        );
    }

    #[test]
    fn unknown_when_the_model_decides() {
        assert_eq!(estimate_tokens(&r(None, None, Some(-1), None)), None);
    }

    #[test]
    fn huge_values_do_not_overflow() {
        assert_eq!(estimate_tokens(&r(None, None, None, Some(i64::MAX))), None);
        assert_eq!(estimate_tokens(&r(None, None, Some(i64::MAX), None)), None);
    }

    #[test]
    fn frames_take_precedence() {
        assert_eq!(
            estimate_tokens(&r(None, None, Some(10), Some(121))),
            Some(1280 * 720 * 121 / 1024)
        );
    }
}
