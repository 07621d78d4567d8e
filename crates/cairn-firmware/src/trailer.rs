//! The slot trailer: the last 64 KiB of a root partition hold the slot's signed manifest (the bundle's header
//! with the magic `CAIRNSLT`), zero-padded. All zeros means an empty slot (never installed, or an install that
//! did not finish: install zeroes it first and writes it last).

use crate::error::{FirmwareError, Result};
use crate::header::{Magic, SignedManifest, MAX_HEADER_LEN};
use std::io::{Read, Seek, SeekFrom, Write};

/// The trailer's size, at the end of the partition.
pub const TRAILER_SIZE: u64 = MAX_HEADER_LEN as u64;

/// Where the trailer starts in a partition that ends at `partition_end` (its size, for a partition device; its
/// offset plus size, in a whole-disk image).
pub fn trailer_offset(partition_end: u64) -> Result<u64> {
    partition_end
        .checked_sub(TRAILER_SIZE)
        .ok_or(FirmwareError::PartitionTooSmall {
            partition_end,
            needed: TRAILER_SIZE,
        })
}

/// Reads the trailer of the partition ending at `partition_end`: `None` for an empty slot. The signature is not
/// checked here: call [`SignedManifest::verify`] before trusting anything in it.
pub fn read_trailer<R: Read + Seek>(
    r: &mut R,
    partition_end: u64,
) -> Result<Option<SignedManifest>> {
    r.seek(SeekFrom::Start(trailer_offset(partition_end)?))?;
    let mut buf = vec![0u8; TRAILER_SIZE as usize];
    crate::header::read_region(r, &mut buf, crate::error::Region::Header)?;
    if buf.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    SignedManifest::read_from(&mut buf.as_slice(), Magic::Trailer).map(Some)
}

/// Writes `signed` as the trailer of the partition ending at `partition_end`. The caller syncs the device.
pub fn write_trailer<W: Write + Seek>(
    w: &mut W,
    partition_end: u64,
    signed: &SignedManifest,
) -> Result<()> {
    let mut buf = signed.encode(Magic::Trailer);
    buf.resize(TRAILER_SIZE as usize, 0);
    write_at_trailer(w, partition_end, &buf)
}

/// Zeroes the trailer, making the slot empty (install's first write, so a half-written slot never looks whole).
pub fn clear_trailer<W: Write + Seek>(w: &mut W, partition_end: u64) -> Result<()> {
    write_at_trailer(w, partition_end, &vec![0u8; TRAILER_SIZE as usize])
}

fn write_at_trailer<W: Write + Seek>(w: &mut W, partition_end: u64, buf: &[u8]) -> Result<()> {
    w.seek(SeekFrom::Start(trailer_offset(partition_end)?))?;
    w.write_all(buf)?;
    w.flush()?;
    Ok(())
}
