//! The device-mapper control interface (`/dev/mapper/control`), just what a verity root needs: create a
//! device, load a one-target table, resume. The only `unsafe` of the crate is here, in the ioctl calls.
//!
//! The structures mirror `include/uapi/linux/dm-ioctl.h` (interface version 4). Their layout is fixed by the
//! kernel ABI and is the same on aarch64 and on armv7 EABI (8-byte alignment of `__u64` on both):
//!
//! ```text
//! struct dm_ioctl (312 bytes)           struct dm_target_spec (40 bytes)
//!   0  __u32 version[3]                   0  __u64 sector_start
//!  12  __u32 data_size                    8  __u64 length
//!  16  __u32 data_start                  16  __s32 status
//!  20  __u32 target_count                20  __u32 next
//!  24  __s32 open_count                  24  char  target_type[16]
//!  28  __u32 flags                       40  parameters: a NUL-terminated string
//!  32  __u32 event_nr
//!  36  __u32 padding
//!  40  __u64 dev
//!  48  char  name[128]
//! 176  char  uuid[129]
//! 305  char  data[7]
//! ```
//!
//! A request is one buffer: the `dm_ioctl` header, then (from `data_start`) the payload; `data_size` is the
//! whole buffer's length. All commands are `_IOWR(0xfd, nr, struct dm_ioctl)`.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `DM_NAME_LEN`, `DM_UUID_LEN`, `DM_MAX_TYPE_NAME`.
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
const TYPE_NAME_LEN: usize = 16;
/// Room for a target's parameters (a verity line is under 300 bytes).
const PARAMS_LEN: usize = 1024;

/// The interface version this code speaks; the kernel accepts any request of major 4 with a minor it knows.
const VERSION: [u32; 3] = [4, 0, 0];
/// `DM_READONLY_FLAG`: the table maps a device nobody may write through.
const FLAG_READONLY: u32 = 1 << 0;
/// `DM_SUSPEND_FLAG` on DM_DEV_SUSPEND: suspend; without it the same command resumes (and swaps tables).
const FLAG_SUSPEND: u32 = 1 << 1;

const DM_IOCTL: u8 = 0xfd;
const DM_DEV_CREATE_CMD: u8 = 3;
const DM_DEV_REMOVE_CMD: u8 = 4;
const DM_DEV_SUSPEND_CMD: u8 = 6;
const DM_TABLE_LOAD_CMD: u8 = 9;

/// `struct dm_ioctl`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DmIoctl {
    pub version: [u32; 3],
    pub data_size: u32,
    pub data_start: u32,
    pub target_count: u32,
    pub open_count: i32,
    pub flags: u32,
    pub event_nr: u32,
    pub padding: u32,
    pub dev: u64,
    pub name: [u8; NAME_LEN],
    pub uuid: [u8; UUID_LEN],
    pub data: [u8; 7],
}

/// `struct dm_target_spec`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DmTargetSpec {
    pub sector_start: u64,
    pub length: u64,
    pub status: i32,
    pub next: u32,
    pub target_type: [u8; TYPE_NAME_LEN],
}

/// A DM_TABLE_LOAD request with one target: header, target spec, its parameter string.
#[repr(C)]
struct TableLoad {
    header: DmIoctl,
    spec: DmTargetSpec,
    params: [u8; PARAMS_LEN],
}

nix::ioctl_readwrite!(dm_dev_create, DM_IOCTL, DM_DEV_CREATE_CMD, DmIoctl);
nix::ioctl_readwrite!(dm_dev_remove, DM_IOCTL, DM_DEV_REMOVE_CMD, DmIoctl);
nix::ioctl_readwrite!(dm_dev_suspend, DM_IOCTL, DM_DEV_SUSPEND_CMD, DmIoctl);
nix::ioctl_readwrite!(dm_table_load, DM_IOCTL, DM_TABLE_LOAD_CMD, DmIoctl);

/// Why a device-mapper request failed: which step, on which device, and the kernel's errno.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    #[error("cannot open {path}: {source} (is dm-mod loaded?)")]
    Control {
        path: String,
        source: std::io::Error,
    },
    #[error("device-mapper {step} of {name} failed: {errno}")]
    Ioctl {
        step: &'static str,
        name: String,
        errno: nix::errno::Errno,
    },
    #[error("device-mapper name {0:?} is empty or too long")]
    Name(String),
    #[error("device-mapper target type {0:?} is empty or too long")]
    TargetType(String),
    #[error("device-mapper table parameters are {0} bytes, more than {PARAMS_LEN}")]
    Params(usize),
}

/// One target of a table: which sectors it covers, its type and its parameter line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sectors: u64,
    pub target_type: String,
    pub params: String,
}

/// A header for `name` with the interface version and the size of a bare request.
pub fn header(name: &str) -> Result<DmIoctl, DmError> {
    let mut h = DmIoctl {
        version: VERSION,
        data_size: std::mem::size_of::<DmIoctl>() as u32,
        data_start: std::mem::size_of::<DmIoctl>() as u32,
        target_count: 0,
        open_count: 0,
        flags: 0,
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: [0; NAME_LEN],
        uuid: [0; UUID_LEN],
        data: [0; 7],
    };
    copy_c_string(&mut h.name, name).ok_or_else(|| DmError::Name(name.to_string()))?;
    Ok(h)
}

/// The DM_TABLE_LOAD request for one read-only target mapped from sector 0.
fn table_load(name: &str, target: &Target) -> Result<Box<TableLoad>, DmError> {
    let mut header = header(name)?;
    header.data_size = std::mem::size_of::<TableLoad>() as u32;
    header.data_start = std::mem::offset_of!(TableLoad, spec) as u32;
    header.target_count = 1;
    header.flags = FLAG_READONLY;
    let mut spec = DmTargetSpec {
        sector_start: 0,
        length: target.sectors,
        status: 0,
        next: 0,
        target_type: [0; TYPE_NAME_LEN],
    };
    copy_c_string(&mut spec.target_type, &target.target_type)
        .ok_or_else(|| DmError::TargetType(target.target_type.clone()))?;
    let mut params = [0; PARAMS_LEN];
    copy_c_string(&mut params, &target.params).ok_or(DmError::Params(target.params.len()))?;
    Ok(Box::new(TableLoad {
        header,
        spec,
        params,
    }))
}

/// Copies `s` with a terminating NUL; `None` when it is empty, does not fit or holds a NUL itself.
fn copy_c_string(into: &mut [u8], s: &str) -> Option<()> {
    if s.is_empty() || s.len() >= into.len() || s.as_bytes().contains(&0) {
        return None;
    }
    into[..s.len()].copy_from_slice(s.as_bytes());
    into[s.len()..].fill(0);
    Some(())
}

/// The major and minor number of a device from the kernel's `huge_encode_dev` (what `dm_ioctl.dev` holds).
pub fn decode_dev(dev: u64) -> (u64, u64) {
    let major = (dev & 0xfff00) >> 8;
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    (major, minor)
}

/// An open `/dev/mapper/control`.
pub struct Control {
    file: File,
}

impl Control {
    /// The control node devtmpfs makes once `dm-mod` is loaded.
    pub const PATH: &'static str = "/dev/mapper/control";

    pub fn open(path: &Path) -> Result<Control, DmError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|source| DmError::Control {
                path: path.display().to_string(),
                source,
            })?;
        Ok(Control { file })
    }

    /// Creates an empty device named `name`; returns its (major, minor).
    pub fn create(&self, name: &str, uuid: &str) -> Result<(u64, u64), DmError> {
        let mut h = header(name)?;
        copy_c_string(&mut h.uuid, uuid).ok_or_else(|| DmError::Name(uuid.to_string()))?;
        // SAFETY: `h` is a valid, initialised `struct dm_ioctl` whose data_size is its own size; the kernel
        // reads and writes only those bytes.
        unsafe { dm_dev_create(self.file.as_raw_fd(), &mut h) }
            .map_err(|errno| ioctl_error("create", name, errno))?;
        Ok(decode_dev(h.dev))
    }

    /// Loads a one-target, read-only table as the device's inactive table.
    pub fn load(&self, name: &str, target: &Target) -> Result<(), DmError> {
        let mut request = table_load(name, target)?;
        let pointer = std::ptr::addr_of_mut!(request.header);
        // SAFETY: `request` is one `#[repr(C)]` allocation starting with the header, data_size is its full
        // size and data_start the offset of the target spec, so the kernel stays inside it; the parameter
        // string is NUL-terminated within `params`.
        unsafe { dm_table_load(self.file.as_raw_fd(), pointer) }
            .map_err(|errno| ioctl_error("table load", name, errno))?;
        Ok(())
    }

    /// Resumes the device, making the loaded table live (and swapping out a previous one).
    pub fn resume(&self, name: &str) -> Result<(), DmError> {
        self.suspend_command(name, 0, "resume")
    }

    /// Suspends the device (I/O waits) so that the next resume can swap its table.
    pub fn suspend(&self, name: &str) -> Result<(), DmError> {
        self.suspend_command(name, FLAG_SUSPEND, "suspend")
    }

    /// Removes the device (used to leave nothing half-made behind a failed step).
    pub fn remove(&self, name: &str) -> Result<(), DmError> {
        let mut h = header(name)?;
        // SAFETY: as in `create`: a bare, initialised header of its own size.
        unsafe { dm_dev_remove(self.file.as_raw_fd(), &mut h) }
            .map_err(|errno| ioctl_error("remove", name, errno))?;
        Ok(())
    }

    fn suspend_command(&self, name: &str, flags: u32, step: &'static str) -> Result<(), DmError> {
        let mut h = header(name)?;
        h.flags = flags;
        // SAFETY: as in `create`: a bare, initialised header of its own size.
        unsafe { dm_dev_suspend(self.file.as_raw_fd(), &mut h) }
            .map_err(|errno| ioctl_error(step, name, errno))?;
        Ok(())
    }
}

fn ioctl_error(step: &'static str, name: &str, errno: nix::errno::Errno) -> DmError {
    DmError::Ioctl {
        step,
        name: name.to_string(),
        errno,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn dm_ioctl_matches_the_kernel_header() {
        assert_eq!(size_of::<DmIoctl>(), 312);
        assert_eq!(offset_of!(DmIoctl, version), 0);
        assert_eq!(offset_of!(DmIoctl, data_size), 12);
        assert_eq!(offset_of!(DmIoctl, data_start), 16);
        assert_eq!(offset_of!(DmIoctl, target_count), 20);
        assert_eq!(offset_of!(DmIoctl, open_count), 24);
        assert_eq!(offset_of!(DmIoctl, flags), 28);
        assert_eq!(offset_of!(DmIoctl, event_nr), 32);
        assert_eq!(offset_of!(DmIoctl, padding), 36);
        assert_eq!(offset_of!(DmIoctl, dev), 40);
        assert_eq!(offset_of!(DmIoctl, name), 48);
        assert_eq!(offset_of!(DmIoctl, uuid), 176);
        assert_eq!(offset_of!(DmIoctl, data), 305);
    }

    #[test]
    fn dm_target_spec_matches_the_kernel_header() {
        assert_eq!(size_of::<DmTargetSpec>(), 40);
        assert_eq!(offset_of!(DmTargetSpec, sector_start), 0);
        assert_eq!(offset_of!(DmTargetSpec, length), 8);
        assert_eq!(offset_of!(DmTargetSpec, status), 16);
        assert_eq!(offset_of!(DmTargetSpec, next), 20);
        assert_eq!(offset_of!(DmTargetSpec, target_type), 24);
    }

    #[test]
    fn request_codes_are_iowr_0xfd_with_the_header_size() {
        // _IOWR(0xfd, 3, struct dm_ioctl) as dmsetup sends it on arm and arm64: 0xc138fd03.
        let create =
            nix::request_code_readwrite!(DM_IOCTL, DM_DEV_CREATE_CMD, size_of::<DmIoctl>());
        assert_eq!(create as u32, 0xc138_fd03);
        let load = nix::request_code_readwrite!(DM_IOCTL, DM_TABLE_LOAD_CMD, size_of::<DmIoctl>());
        assert_eq!(load as u32, 0xc138_fd09);
        let resume =
            nix::request_code_readwrite!(DM_IOCTL, DM_DEV_SUSPEND_CMD, size_of::<DmIoctl>());
        assert_eq!(resume as u32, 0xc138_fd06);
    }

    #[test]
    fn a_table_load_request_points_the_kernel_at_one_target() {
        let target = Target {
            sectors: 40000,
            target_type: "verity".into(),
            params: "1 /dev/vda2 /dev/vda2 4096 4096 5000 5000 sha256 ab -".into(),
        };
        let r = table_load("root", &target).unwrap();
        assert_eq!(r.header.version, [4, 0, 0]);
        assert_eq!(r.header.data_start, 312);
        assert_eq!(r.header.data_size as usize, 312 + 40 + PARAMS_LEN);
        assert_eq!(offset_of!(TableLoad, params), 352);
        assert_eq!(r.header.target_count, 1);
        assert_eq!(r.header.flags, FLAG_READONLY);
        assert_eq!(&r.header.name[..5], b"root\0");
        assert_eq!(r.spec.length, 40000);
        assert_eq!(r.spec.sector_start, 0);
        assert_eq!(&r.spec.target_type[..7], b"verity\0");
        let end = r.params.iter().position(|&b| b == 0).unwrap();
        assert_eq!(&r.params[..end], target.params.as_bytes());
    }

    #[test]
    fn names_and_parameters_that_do_not_fit_are_refused() {
        assert!(matches!(header(""), Err(DmError::Name(_))));
        assert!(matches!(header(&"x".repeat(128)), Err(DmError::Name(_))));
        assert!(header(&"x".repeat(127)).is_ok());
        assert!(matches!(header("ro\0ot"), Err(DmError::Name(_))));
        let long = Target {
            sectors: 8,
            target_type: "verity".into(),
            params: "a".repeat(PARAMS_LEN),
        };
        assert!(matches!(table_load("root", &long), Err(DmError::Params(_))));
        let bad_type = Target {
            sectors: 8,
            target_type: "a-type-name-too-long".into(),
            params: "x".into(),
        };
        assert!(matches!(
            table_load("root", &bad_type),
            Err(DmError::TargetType(_))
        ));
    }

    #[test]
    fn device_numbers_decode_from_the_kernels_encoding() {
        assert_eq!(decode_dev(0xfe00), (254, 0));
        assert_eq!(decode_dev(0xfe05), (254, 5));
        // Minor 256 on major 253: new_encode_dev puts the high minor bits above the major.
        assert_eq!(decode_dev((253 << 8) | (1 << 20)), (253, 256));
    }
}
