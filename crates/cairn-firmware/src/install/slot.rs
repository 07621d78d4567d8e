//! The two root slots as the install engine sees them: which one runs, which one may be written, and the
//! fixed-buffer writes and read-backs of a partition and of the boot files.

use cairn_bootenv::Slot;
use ring::digest::{Context, SHA256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The buffer every copy and read-back goes through: the install's memory does not grow with the bundle.
pub const CHUNK: usize = 64 * 1024;

/// The slot the kernel was booted from: `cairn.slot=` on its command line (U-Boot's boot script sets it).
pub fn booted(cmdline: &str) -> Option<Slot> {
    cairn_bootenv::Booted::from_cmdline(cmdline).map(|b| b.slot)
}

/// Size of a block device or file: seeking to its end works for both.
pub fn size_of(path: &Path) -> std::io::Result<u64> {
    File::open(path)?.seek(SeekFrom::End(0))
}

/// Opens a partition for writing in place (never truncating a file that stands in for one in tests).
pub fn open_for_write(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

/// Reads `len` bytes at `offset` back through [`CHUNK`] buffers and returns their SHA-256 in hex.
pub fn digest_range(path: &Path, offset: u64, len: u64) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut hash = Context::new(&SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        hash.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(crate::hex::encode(hash.finish().as_ref()))
}

/// The manifest in a partition's trailer, if it has one whose signature checks out.
pub fn manifest_of(path: &Path, keys: &crate::TrustedKeys) -> Option<crate::Manifest> {
    let mut f = File::open(path).ok()?;
    let end = f.seek(SeekFrom::End(0)).ok()?;
    crate::read_trailer(&mut f, end).ok()??.verify(keys).ok()
}
