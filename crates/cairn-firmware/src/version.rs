//! Firmware versions: `MAJOR.MINOR.PATCH`, numbers only, compared numerically (so 0.10.0 is newer than 0.9.0).

use crate::error::FirmwareError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A firmware version. One spelling per version (no leading zeros, signs or suffixes), so a signed manifest's
/// version reads the same everywhere and the anti-rollback floor cannot be dodged by writing it differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// A version from its three numbers.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl FromStr for Version {
    type Err = FirmwareError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || FirmwareError::InvalidVersion(text.chars().take(64).collect());
        let mut numbers = text.split('.').map(|part| {
            let canonical = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            if canonical {
                part.parse::<u32>().map_err(|_| invalid())
            } else {
                Err(invalid())
            }
        });
        let mut next = || numbers.next().unwrap_or_else(|| Err(invalid()));
        let version = Version::new(next()?, next()?, next()?);
        if numbers.next().is_some() {
            return Err(invalid());
        }
        Ok(version)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl TryFrom<String> for Version {
    type Error = FirmwareError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        text.parse().unwrap()
    }

    #[test]
    fn parses_three_numbers() {
        assert_eq!(v("0.1.0"), Version::new(0, 1, 0));
        assert_eq!(v("10.20.30"), Version::new(10, 20, 30));
        assert_eq!(v("4294967295.0.0"), Version::new(u32::MAX, 0, 0));
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
    }

    #[test]
    fn refuses_every_other_spelling() {
        for bad in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "1..3",
            ".1.2",
            "1.2.",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "+1.2.3",
            "-1.2.3",
            "1.2.3-rc1",
            "v1.2.3",
            " 1.2.3",
            "1.2.3 ",
            "1.2.3\n",
            "4294967296.0.0",
            "1.2.x",
            "１.2.3",
        ] {
            assert!(
                matches!(
                    bad.parse::<Version>(),
                    Err(FirmwareError::InvalidVersion(_))
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn compares_numerically_not_as_text() {
        assert!(v("0.10.0") > v("0.9.0"));
        assert!(v("1.0.0") > v("0.99.99"));
        assert!(v("0.1.10") > v("0.1.9"));
        assert!(v("2.0.0") > v("1.999.999"));
        assert_eq!(v("0.0.0").cmp(&v("0.0.0")), std::cmp::Ordering::Equal);
    }

    #[test]
    fn serde_uses_the_text_form() {
        assert_eq!(serde_json::to_string(&v("1.2.3")).unwrap(), "\"1.2.3\"");
        assert!(serde_json::from_str::<Version>("\"01.2.3\"").is_err());
    }
}
