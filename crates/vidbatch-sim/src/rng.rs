//! Deterministic randomness: every random decision is a hash of the seed, a purpose label and a counter.
//!
//! A decision never consumes shared RNG state, so the same seed and the same sequence of
//! requests (counted per purpose: `/v1` requests, downloads, created tasks, issued URLs)
//! give the same decisions, whatever else happens in between.

/// SplitMix64 finaliser: a good 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits for decision `n` of purpose `label` under `seed`.
pub(crate) fn bits(seed: u64, label: &str, n: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in label.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    mix(mix(seed ^ mix(h)) ^ n)
}

/// A uniform number in `[0, 1)` for decision `n` of purpose `label`.
pub(crate) fn unit(seed: u64, label: &str, n: u64) -> f64 {
    (bits(seed, label, n) >> 11) as f64 / (1u64 << 53) as f64
}

/// True with probability `rate` for decision `n` of purpose `label`.
pub(crate) fn chance(seed: u64, label: &str, n: u64, rate: f64) -> bool {
    rate > 0.0 && unit(seed, label, n) < rate
}

/// A standard normal draw (Box-Muller) for decision `n` of purpose `label`.
pub(crate) fn normal(seed: u64, label: &str, n: u64) -> f64 {
    let u1 = unit(seed, label, 2 * n).max(1e-12);
    let u2 = unit(seed, label, 2 * n + 1);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `len` lowercase Crockford base32 characters for decision `n` of purpose `label`.
pub(crate) fn base32(seed: u64, label: &str, n: u64, len: usize) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut out = String::with_capacity(len);
    let mut word = 0u64;
    for i in 0..len {
        if i % 12 == 0 {
            word = bits(seed, label, n.wrapping_mul(16).wrapping_add(i as u64 / 12));
        }
        out.push(char::from(ALPHABET[(word & 31) as usize]));
        word >>= 5;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_reproducible_and_spread() {
        assert_eq!(bits(7, "drop", 3), bits(7, "drop", 3));
        assert_ne!(bits(7, "drop", 3), bits(8, "drop", 3));
        assert_ne!(bits(7, "drop", 3), bits(7, "fail", 3));
        let hits = (0..10_000).filter(|&n| chance(1, "x", n, 0.3)).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert!(!chance(1, "x", 0, 0.0));
        let id = base32(1, "id", 5, 26);
        assert_eq!(id.len(), 26);
        assert_ne!(id, base32(1, "id", 6, 26));
    }
}
