//! The closed sets of values a create request takes: [`Ratio`], [`Resolution`] and
//! [`ServiceTier`], each with `ALL` (what validation, the manifest's JSON schema and the help
//! list) and its API spelling.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Defines an enum spelled as the API spells it: `ALL`, `as_str`, `Display` and `FromStr`
/// (exact spelling; the error lists every value).
macro_rules! api_values {
    ($(#[$attr:meta])* $name:ident { $($(#[$vattr:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $($(#[$vattr])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the order the API's page lists them.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The value as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Every value as the API spells it, comma-separated (for messages).
            pub fn listed() -> String {
                Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("one of {}", Self::listed()))
            }
        }
    };
}

api_values! {
    /// An aspect ratio.
    Ratio {
        /// 16:9, landscape.
        Landscape = "16:9",
        /// 9:16, portrait.
        Portrait = "9:16",
        /// 4:3.
        Standard = "4:3",
        /// 3:4.
        StandardPortrait = "3:4",
        /// 21:9.
        Ultrawide = "21:9",
        /// 1:1.
        Square = "1:1",
        /// The model picks the ratio (from the first frame, when there is one).
        Adaptive = "adaptive",
    }
}

api_values! {
    /// A video resolution.
    Resolution {
        /// 480p.
        P480 = "480p",
        /// 720p.
        P720 = "720p",
        /// 1080p.
        P1080 = "1080p",
    }
}

api_values! {
    /// The service tier of a task.
    ServiceTier {
        /// `default`.
        Default = "default",
        /// `flex`.
        Flex = "flex",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_reads_back_from_its_spelling_and_serializes_as_it() {
        for r in Ratio::ALL {
            assert_eq!(r.as_str().parse::<Ratio>(), Ok(*r));
            assert_eq!(serde_json::to_string(r).unwrap(), format!("\"{r}\""));
        }
        assert_eq!(
            "16:10".parse::<Ratio>(),
            Err("one of 16:9, 9:16, 4:3, 3:4, 21:9, 1:1, adaptive".to_string())
        );
        assert_eq!("1080p".parse::<Resolution>(), Ok(Resolution::P1080));
        assert!("1080P".parse::<Resolution>().is_err(), "the API's spelling only");
        assert_eq!(ServiceTier::listed(), "default, flex");
    }
}
