//! Pairing codes in the style of RFC 8628's user codes: eight letters from an alphabet without vowels (no
//! words) and without look-alikes, shown as `XXXX-XXXX`, drawn without bias from the system's CSPRNG, and kept
//! only as a hash.

use ring::rand::{SecureRandom, SystemRandom};

/// The 20 consonants RFC 8628 (section 6.1) suggests: no vowels, so no words; no digits to mistake.
pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const LEN: usize = 8;
/// Bytes at or above this would favour the first letters (256 = 12 x 20 + 16): they are drawn again.
const UNBIASED_BELOW: u8 = 240;

/// A fresh code, shown once to the owner; only [`PairingCode::hash`] is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingCode(String);

impl PairingCode {
    /// Draws a code from `rng`, rejecting bytes that would bias the letters.
    pub fn draw(rng: &dyn SecureRandom) -> Result<PairingCode, ring::error::Unspecified> {
        let mut letters = Vec::with_capacity(LEN);
        let mut buf = [0u8; 16];
        while letters.len() < LEN {
            rng.fill(&mut buf)?;
            take_unbiased(&mut letters, &buf);
        }
        Ok(PairingCode::from_letters(&letters))
    }

    fn from_letters(letters: &[u8]) -> PairingCode {
        let text = String::from_utf8_lossy(letters).into_owned();
        PairingCode(format!("{}-{}", &text[..4], &text[4..]))
    }

    /// A code from the system's CSPRNG.
    pub fn new() -> Result<PairingCode, ring::error::Unspecified> {
        PairingCode::draw(&SystemRandom::new())
    }

    /// The code as shown: `XXXX-XXXX`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What is stored: SHA-256 of the normalised code, in hex.
    pub fn hash(&self) -> String {
        hash_of(&self.0).unwrap_or_default()
    }
}

/// Appends the letters `bytes` give, up to a code's length, skipping bytes that would bias them.
fn take_unbiased(letters: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        if *b < UNBIASED_BELOW && letters.len() < LEN {
            letters.push(ALPHABET[usize::from(*b) % ALPHABET.len()]);
        }
    }
}

/// The code as typed, upper-cased, without separators or spaces; none when it cannot be a code.
pub fn normalise(typed: &str) -> Option<String> {
    let letters: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (letters.len() == LEN && letters.bytes().all(|b| ALPHABET.contains(&b))).then_some(letters)
}

/// The stored form of a typed code, when it can be one.
pub fn hash_of(typed: &str) -> Option<String> {
    let letters = normalise(typed)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, letters.as_bytes());
    Some(cairn_store::snapshot::hex(digest.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_look_like_rfc_8628_user_codes_and_normalise_as_typed() {
        let code = PairingCode::new().unwrap();
        let s = code.as_str();
        assert_eq!(s.len(), 9);
        assert_eq!(&s[4..5], "-");
        assert!(s
            .bytes()
            .filter(|b| *b != b'-')
            .all(|b| ALPHABET.contains(&b)));
        assert_eq!(
            normalise(&s.to_lowercase().replace('-', " ")).unwrap(),
            s.replace('-', "")
        );
        assert_eq!(hash_of(&s.to_lowercase()), Some(code.hash()));
        assert_eq!(normalise("ABCD-EFGH"), None, "vowels are never in a code");
        assert_eq!(normalise("BCDF-GHJ"), None);
    }

    #[test]
    fn bytes_that_would_bias_the_letters_are_drawn_again() {
        // 240..=255 are skipped; 0, 20 and 39 map to B, B and Z.
        let mut letters = Vec::new();
        take_unbiased(
            &mut letters,
            &[250, 0, 255, 20, 39, 241, 0, 20, 39, 240, 0, 20, 39, 7],
        );
        assert_eq!(PairingCode::from_letters(&letters).as_str(), "BBZB-BZBB");
    }

    #[test]
    fn every_letter_is_about_as_likely() {
        let mut counts = [0u32; 20];
        for _ in 0..2_000 {
            for b in PairingCode::new()
                .unwrap()
                .as_str()
                .bytes()
                .filter(|b| *b != b'-')
            {
                counts[ALPHABET.iter().position(|a| *a == b).unwrap()] += 1;
            }
        }
        // 16,000 letters, 800 expected each; a biased draw (modulo without rejection) would give the first
        // 16 letters 5 % more. Bounds far outside chance (about 8 standard deviations).
        assert!(
            counts.iter().all(|c| (580..=1020).contains(c)),
            "{counts:?}"
        );
    }
}
