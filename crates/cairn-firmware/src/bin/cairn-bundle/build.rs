//! The image build's outputs as `scripts/image/mkimage.py` describes them in `out/<board>/manifest.json`: the
//! root slot file, the slot's boot files, the verity parameters and where slot A sits in the image.

use cairn_firmware::{Manifest, Name, PayloadEntry, Target, Verity, Version, FORMAT};
use serde::Deserialize;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// The payload name of the root slot in every bundle.
pub const SLOT_PAYLOAD: &str = "root";
/// Where mkimage copies the keys the image trusts (the same files as the root slot's /etc/cairn/keys/).
pub const TRUSTED_KEYS_DIR: &str = "trusted-keys";

/// The parts of mkimage's manifest.json this tool reads (the file has more, for the QEMU harness and the bench).
#[derive(Debug, Deserialize)]
pub struct BuildManifest {
    pub board: String,
    pub version: String,
    pub image: String,
    pub slot: SlotOutput,
    pub boot_files: Vec<String>,
    pub verity: Verity,
}

/// The root slot file (squashfs + hash tree) and the partition of the image it was written into.
#[derive(Debug, Deserialize)]
pub struct SlotOutput {
    pub file: String,
    pub partition: String,
    /// Byte offset of the partition in the image.
    pub offset: u64,
    /// The partition's size in bytes.
    pub size: u64,
}

/// A build directory (`out/<board>`) and its manifest.
pub struct Build {
    pub dir: PathBuf,
    pub manifest: BuildManifest,
}

/// What a firmware manifest takes beyond the build outputs: chosen by the Makefile.
pub struct Release {
    pub version: Option<Version>,
    pub floor: Version,
    pub schema_version: u32,
}

impl Build {
    pub fn open(dir: &Path) -> Result<Build, String> {
        let path = dir.join("manifest.json");
        let file = File::open(&path)
            .map_err(|e| format!("{}: {e} (run `make image` first)", path.display()))?;
        let manifest = serde_json::from_reader(BufReader::new(file)).map_err(|e| {
            format!(
                "{}: {e} (an image from before signed slots? run `make image`)",
                path.display()
            )
        })?;
        Ok(Build {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn image_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.image)
    }

    pub fn slot_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.slot.file)
    }

    /// The payload files in bundle order: the root slot, then the boot files.
    pub fn payload_files(&self) -> Result<Vec<(Name, Target, PathBuf)>, String> {
        let mut files = vec![(name(SLOT_PAYLOAD)?, Target::Slot, self.slot_path())];
        for f in &self.manifest.boot_files {
            files.push((name(f)?, Target::Boot, self.dir.join(f)));
        }
        Ok(files)
    }

    /// The firmware manifest describing this build's outputs (each payload read once for its digest).
    pub fn firmware_manifest(&self, release: &Release) -> Result<Manifest, String> {
        let build_version: Version = self
            .manifest
            .version
            .parse()
            .map_err(|e| format!("the build's version: {e}"))?;
        let mut payloads = Vec::new();
        for (name, target, path) in self.payload_files()? {
            let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            payloads.push(
                PayloadEntry::from_reader(name, target, BufReader::new(file))
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            );
        }
        let manifest = Manifest {
            format: FORMAT,
            board: name(&self.manifest.board)?,
            version: release.version.unwrap_or(build_version),
            floor: release.floor,
            schema_version: release.schema_version,
            payloads,
            verity: self.manifest.verity.clone(),
        };
        manifest.validate().map_err(|e| e.to_string())?;
        Ok(manifest)
    }
}

fn name(text: &str) -> Result<Name, String> {
    Name::new(text).map_err(|e| e.to_string())
}
