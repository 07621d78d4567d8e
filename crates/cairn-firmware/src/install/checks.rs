//! The refusals decided before one byte is written: board, floor, versions that failed here, space.

use super::InstallError;
use crate::manifest::{Manifest, Target};
use crate::version::Version;
use std::path::Path;

/// Versions recorded in `failed` (one per line, written by init when a trial fell back); lines that are not
/// a version are ignored.
pub fn failed_versions(path: &Path) -> Vec<Version> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Everything about the bundle that can be refused from its manifest alone. `floor` is the running
/// firmware's floor (from the booted slot's trailer), absent on a box whose slot has none.
pub fn check_manifest(
    manifest: &Manifest,
    board: &str,
    floor: Option<Version>,
    failed: &[Version],
    insist: bool,
) -> Result<(), InstallError> {
    if manifest.board.as_str() != board {
        return Err(InstallError::WrongBoard {
            bundle: manifest.board.to_string(),
            board: board.to_string(),
        });
    }
    if let Some(floor) = floor {
        if manifest.version < floor {
            return Err(InstallError::BelowFloor {
                version: manifest.version,
                floor,
            });
        }
    }
    if !insist && failed.contains(&manifest.version) {
        return Err(InstallError::FailedBefore(manifest.version));
    }
    let slot_payloads = manifest
        .payloads
        .iter()
        .filter(|p| p.target == Target::Slot)
        .count();
    if slot_payloads != 1 {
        return Err(InstallError::BadManifest(format!(
            "{slot_payloads} root payloads instead of one"
        )));
    }
    Ok(())
}

/// The room the settings snapshot needs next to the settings, refused when the partition lacks it.
pub fn check_space(needed: u64, free: u64) -> Result<(), InstallError> {
    if needed > free {
        return Err(InstallError::NoSpace { needed, free });
    }
    Ok(())
}
