//! What a downloaded file must be, and the structural checks that tell: the main structure here
//! is [`MediaKind`]; [`mp4`] and [`png`] walk their formats reading only headers.

pub(crate) mod mp4;
pub(crate) mod png;

use std::io::{self, Read, Seek};

/// What a downloaded file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An MP4 video (ISO base media file).
    Mp4,
    /// A PNG image (the last frame of a video).
    Png,
}

impl MediaKind {
    /// A sensible size cap for this kind: 4 GiB for videos, 64 MiB for frames.
    pub fn default_max_bytes(self) -> u64 {
        match self {
            MediaKind::Mp4 => 4 << 30,
            MediaKind::Png => 64 << 20,
        }
    }

    /// The format's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            MediaKind::Mp4 => "MP4",
            MediaKind::Png => "PNG",
        }
    }

    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            MediaKind::Mp4 => "mp4",
            MediaKind::Png => "png",
        }
    }
}

/// Checks that an input of `len` bytes is a well-formed file of `kind`, reading only its
/// structure. The outer error is a read error; the inner one says what is malformed.
pub fn check<R: Read + Seek>(r: &mut R, len: u64, kind: MediaKind) -> io::Result<Result<(), String>> {
    match kind {
        MediaKind::Mp4 => match mp4::verify(r, len) {
            Ok(_) => Ok(Ok(())),
            Err(mp4::Mp4Error::Io(e)) => Err(e),
            Err(mp4::Mp4Error::Malformed(m)) => Ok(Err(m)),
        },
        MediaKind::Png => png::check(r, len),
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` when the input ends first.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
