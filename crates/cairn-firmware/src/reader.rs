//! Streaming a bundle: the header is read and its signature checked before anything else, then each payload is
//! handed out as a bounded reader that hashes what passes through and, at its end, reports a digest mismatch or
//! truncation instead of end-of-file. Memory stays the same whatever the bundle's size.

use crate::error::{FirmwareError, Region, Result};
use crate::header::{Magic, SignedManifest};
use crate::keys::TrustedKeys;
use crate::manifest::{Manifest, PayloadEntry, Sha256};
use ring::digest;
use std::io::{self, Read};

/// A bundle being read from a stream (an upload, a file, a download).
pub struct BundleReader<R> {
    inner: R,
    signed: SignedManifest,
    manifest: Manifest,
    /// Payloads handed out so far.
    started: usize,
    /// Payloads read to their end with a matching digest.
    verified: usize,
}

impl<R: Read> BundleReader<R> {
    /// Reads the header and verifies its signature against `keys`; nothing after the header is read, and no
    /// manifest field is looked at, before the signature checks out.
    pub fn open(mut inner: R, keys: &TrustedKeys) -> Result<Self> {
        let signed = SignedManifest::read_from(&mut inner, Magic::Bundle)?;
        let manifest = signed.verify(keys)?;
        Ok(BundleReader {
            inner,
            signed,
            manifest,
            started: 0,
            verified: 0,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The manifest as signed, for the slot trailer.
    pub fn signed(&self) -> &SignedManifest {
        &self.signed
    }

    /// The next payload, in the manifest's order, or `None` after the last. The previous payload must have been
    /// read to its end (its digest checked) first.
    pub fn next_payload(&mut self) -> Result<Option<PayloadReader<'_, R>>> {
        if self.verified < self.started {
            let payload = self.manifest.payloads[self.started - 1].name.to_string();
            return Err(FirmwareError::PayloadUnfinished { payload });
        }
        let Some(entry) = self.manifest.payloads.get(self.started) else {
            return Ok(None);
        };
        self.started += 1;
        Ok(Some(PayloadReader {
            inner: &mut self.inner,
            entry,
            remaining: entry.size,
            hasher: Some(digest::Context::new(&digest::SHA256)),
            outcome: None,
            verified: &mut self.verified,
        }))
    }

    /// Ends the bundle: every payload read and verified, and nothing after the last one.
    pub fn finish(mut self) -> Result<()> {
        if self.verified < self.manifest.payloads.len() {
            let payload = self.manifest.payloads[self.verified].name.to_string();
            return Err(FirmwareError::PayloadUnfinished { payload });
        }
        let mut probe = [0u8; 1];
        loop {
            match self.inner.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(FirmwareError::TrailingData),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// One payload's bytes: exactly `entry.size` of them, hashed while read. Its end-of-file comes only after the
/// digest matched; a mismatch or a stream ending early is an `io::Error` wrapping the [`FirmwareError`]
/// (`FirmwareError::from` unwraps it).
pub struct PayloadReader<'a, R> {
    inner: &'a mut R,
    entry: &'a PayloadEntry,
    remaining: u64,
    hasher: Option<digest::Context>,
    /// Set once the end was reached: the digest check's result, repeated on every later read.
    outcome: Option<std::result::Result<Sha256, String>>,
    verified: &'a mut usize,
}

impl<R: Read> PayloadReader<'_, R> {
    /// The manifest entry being read.
    pub fn entry(&self) -> &PayloadEntry {
        self.entry
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// Reads the rest (discarding it) and returns the checked digest.
    pub fn finish(mut self) -> Result<Sha256> {
        io::copy(&mut self, &mut io::sink())?;
        match &self.outcome {
            Some(Ok(d)) => Ok(*d),
            _ => Err(self.mismatch()),
        }
    }

    fn mismatch(&self) -> FirmwareError {
        let actual = match &self.outcome {
            Some(Err(actual)) => actual.clone(),
            _ => String::new(),
        };
        FirmwareError::DigestMismatch {
            payload: self.entry.name.to_string(),
            expected: self.entry.sha256.to_string(),
            actual,
        }
    }

    fn check_end(&mut self) -> io::Result<usize> {
        if let Some(hasher) = self.hasher.take() {
            let actual = Sha256::from_context(hasher);
            if actual == self.entry.sha256 {
                *self.verified += 1;
                self.outcome = Some(Ok(actual));
            } else {
                self.outcome = Some(Err(actual.to_string()));
            }
        }
        match self.outcome {
            Some(Ok(_)) => Ok(0),
            _ => Err(self.mismatch().into_io()),
        }
    }
}

impl<R: Read> Read for PayloadReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return self.check_end();
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(
                FirmwareError::Truncated(Region::Payload(self.entry.name.to_string())).into_io(),
            );
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
