//! What a task costs: the main item here is [`cost_tokens`].
//!
//! tokens = width × height × 24 fps × duration_seconds / 1024 (integer division, rounded down),
//! with width × height from [`frame_size`]. A duration of -1 ("model decides") is charged as the
//! duration the simulator picks for the task (drawn in the model's range and reported on the
//! completed task). The `flex` service tier is charged the same (no discount is modelled).

/// Frames per second of every generated video.
pub const FPS: u64 = 24;

/// Width and height in pixels for a resolution (`480p`/`720p`/`1080p`) and ratio; `adaptive` counts as 16:9.
///
/// The short side is the resolution's height; the long side follows the ratio
/// (480p 16:9 = 854×480, 720p 16:9 = 1280×720, 1080p 16:9 = 1920×1080, 720p 21:9 = 1680×720, 720p 1:1 = 720×720).
/// Returns `None` for an unknown resolution or ratio.
pub fn frame_size(resolution: &str, ratio: &str) -> Option<(u64, u64)> {
    let short: u64 = match resolution {
        "480p" => 480,
        "720p" => 720,
        "1080p" => 1080,
        _ => return None,
    };
    let long = |num: u64, den: u64| (short * num).div_ceil(den);
    Some(match ratio {
        "16:9" | "adaptive" => (long(16, 9), short),
        "9:16" => (short, long(16, 9)),
        "4:3" => (long(4, 3), short),
        "3:4" => (short, long(4, 3)),
        "21:9" => (long(21, 9), short),
        "1:1" => (short, short),
        _ => return None,
    })
}

/// Tokens charged for a video of this resolution, ratio and duration in seconds (see the module doc).
///
/// Returns `None` for an unknown resolution or ratio, or a duration below 1.
pub fn cost_tokens(resolution: &str, ratio: &str, duration_seconds: i64) -> Option<u64> {
    let (w, h) = frame_size(resolution, ratio)?;
    let d = u64::try_from(duration_seconds).ok().filter(|&d| d > 0)?;
    Some(w * h * FPS * d / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_formula() {
        assert_eq!(frame_size("720p", "16:9"), Some((1280, 720)));
        assert_eq!(frame_size("480p", "16:9"), Some((854, 480)));
        assert_eq!(frame_size("1080p", "9:16"), Some((1080, 1920)));
        assert_eq!(frame_size("720p", "adaptive"), frame_size("720p", "16:9"));
        assert_eq!(cost_tokens("720p", "16:9", 5), Some(108_000));
        assert_eq!(cost_tokens("720p", "16:9", -1), None);
        assert_eq!(cost_tokens("4k", "16:9", 5), None);
    }
}
