//! Board descriptions: the one place where boards differ.
//!
//! Each board is a `board/<name>/board.toml` in the source tree, copied into the image as
//! `/etc/cairn/board.toml`. This crate owns its schema and its validation; it never touches hardware.
//! Init reads it to know which modules, partitions and lines to use, the daemon to report the board,
//! and the QEMU harness to know how to boot an image. Tested on the host against the real board files.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

use serde::Deserialize;
use std::path::Path;

/// Where the board description lives inside the image.
pub const IMAGE_BOARD_FILE: &str = "/etc/cairn/board.toml";

/// A board, as described by its `board.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    pub description: String,
    /// Rust target triple the board's binaries are built for.
    pub target: String,
    /// Debian architecture whose packages supply the kernel and userland.
    pub debian_arch: String,
    pub kernel: Kernel,
    pub qemu: Option<Qemu>,
    pub modules: Modules,
    pub watchdog: Option<Watchdog>,
    pub network: Network,
    pub gpio: Gpio,
    pub storage: Storage,
    pub boot: Boot,
    pub partitions: Vec<Partition>,
}

/// How the board's boot loader (U-Boot) starts a slot and where the A/B boot state lives: the image build writes
/// the boot script and the first boot state from it, Cairn reads and writes the same state (docs/updates.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// U-Boot's binary for this machine: under QEMU the host's copy from Debian's u-boot-qemu (a real board has
    /// its own in flash).
    pub u_boot: String,
    /// U-Boot's name for the boot medium, `<interface> <device>` (`virtio 0`, `mmc 1`): the boot partition is its
    /// partition 1. U-Boot's own environment loads the boot script from there, never from a data disk.
    pub medium: String,
    /// The U-Boot command that makes the medium visible before the first load (`virtio scan`, `mmc rescan`).
    pub medium_scan: String,
    /// U-Boot's command for this kernel format: `booti` (arm64 Image) or `bootz` (zImage).
    pub command: String,
    /// Load addresses of the kernel and initrd in the board's RAM.
    pub kernel_addr: String,
    pub ramdisk_addr: String,
    /// The boot state's two copies on the boot partition (U-Boot environment format), in separate directories
    /// so one directory sector never holds both.
    pub state_files: [String; 2],
    /// Size of each copy in bytes, as U-Boot's `env export -s` writes it.
    pub state_size: u32,
    /// Boot attempts a newly installed or committed slot gets before U-Boot falls back to the other one.
    pub tries: u8,
}

/// Kernel choice and how it is started.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// Debian kernel flavour (`arm64`, `armmp-lpae`): selects the package in `rootfs/packages.lock`.
    pub flavour: String,
    /// File name of the kernel on the boot partition.
    pub boot_file: String,
    /// Serial console device, without `/dev/`.
    pub console: String,
    pub cmdline: String,
}

/// How to emulate the board; absent for real hardware.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Qemu {
    pub system: String,
    pub machine: String,
    pub cpu: String,
    pub memory_mib: u32,
    #[serde(default)]
    pub extra_devices: Vec<String>,
}

/// Kernel modules, in load order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modules {
    pub initramfs: Vec<String>,
    /// Needed before services start (config filesystem, network).
    pub boot: Vec<String>,
    /// Loaded while services start (the SMB server): they do not hold up the dashboard.
    #[serde(default)]
    pub late: Vec<String>,
    /// In the image but loaded only when needed (md RAID levels: raid456 takes seconds to load on armv7).
    #[serde(default)]
    pub on_demand: Vec<String>,
}

/// The hardware watchdog that init keeps petting.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watchdog {
    pub device: String,
    pub timeout_s: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The Ethernet interface the LAN is on.
    pub interface: String,
    /// The name a new box (or one reset to factory settings) answers to until its owner picks one.
    pub hostname: String,
}

impl Default for Network {
    /// What a process uses when no board file can be read (a development host): the one copy of these facts
    /// outside `board/*.toml`.
    fn default() -> Network {
        Network {
            interface: "eth0".into(),
            hostname: "cairn".into(),
        }
    }
}

/// One line on a GPIO chip, addressed through the character device.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GpioLine {
    pub chip: String,
    pub line: u32,
    pub active_low: bool,
}

/// The reset pin and the status LED. A board wires its reset button as a GPIO line read through the
/// character device, or through the `gpio-keys` driver, which reports it as a key on an input event device
/// (`reset_key`, a Linux key code); init watches both when both are given, whichever the kernel offers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpio {
    pub reset_button: GpioLine,
    /// The key code input event devices report for the reset button (116 is KEY_POWER).
    #[serde(default)]
    pub reset_key: Option<u16>,
    pub status_led: Option<GpioLine>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Glob over the boot medium's resolved sysfs path (`/sys/devices/...`); never offered as a data disk.
    pub boot_device: String,
    /// Glob (`*`, `?`, `[a-z]`) over kernel block device names that are data-disk bays.
    pub data_disk_pattern: String,
    /// How a disk's bay number is told, so owners find the disk to pull by the number on the case.
    #[serde(default)]
    pub bays: Vec<Bay>,
    /// Bays numbered by the PCI hot-plug slot the disk sits behind (`/sys/bus/pci/slots/N`).
    #[serde(default)]
    pub bays_from_pci_slots: bool,
    /// MiB of the config partition kept free for the settings: the `system` volume's image gets the rest,
    /// so shares filled over SMB can never starve the settings store.
    #[serde(default = "default_config_headroom_mib")]
    pub config_headroom_mib: u64,
}

/// The settings' headroom on config when a board does not state it.
pub const DEFAULT_CONFIG_HEADROOM_MIB: u64 = 16;

fn default_config_headroom_mib() -> u64 {
    DEFAULT_CONFIG_HEADROOM_MIB
}

/// One bay: its number on the case and the sysfs device path (glob) of whatever disk sits in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bay {
    pub number: u32,
    pub device: String,
}

/// Filesystem a partition of the boot medium carries.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PartitionFs {
    Vfat,
    Squashfs,
    Ext4,
}

/// One partition of the boot medium, in GPT order; its name is the GPT partition name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub name: String,
    pub size_mib: u32,
    pub fs: PartitionFs,
}

/// Partition names every board must have: the layout A/B updates and settings rely on.
pub const REQUIRED_PARTITIONS: [&str; 4] = ["boot", "root-a", "root-b", "config"];

/// Why a board description cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("cannot read board file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("board file {path} is not valid TOML for a board: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("board file {path} has problems: {}", problems.join("; "))]
    Invalid { path: String, problems: Vec<String> },
}

impl Board {
    /// Reads and validates a board file.
    pub fn load(path: &Path) -> Result<Board, BoardError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| BoardError::Read {
            path: display.clone(),
            source,
        })?;
        Board::parse(&text, &display)
    }

    /// Parses and validates board text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Board, BoardError> {
        let board: Board = toml::from_str(text).map_err(|source| BoardError::Parse {
            path: origin.to_string(),
            source,
        })?;
        let problems = board.validate();
        if problems.is_empty() {
            Ok(board)
        } else {
            Err(BoardError::Invalid {
                path: origin.to_string(),
                problems,
            })
        }
    }

    /// Every problem at once, so a board author fixes them in one pass.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_simple_name(&self.name) {
            problems.push(format!(
                "name {:?} must be lowercase letters, digits and '-'",
                self.name
            ));
        }
        if !is_simple_name(&self.network.hostname) || self.network.hostname.len() > 63 {
            problems.push(format!(
                "network.hostname {:?} must be 1 to 63 lowercase letters, digits and '-'",
                self.network.hostname
            ));
        }
        if !matches!(self.boot.command.as_str(), "booti" | "bootz") {
            problems.push(format!(
                "boot.command {:?} must be booti or bootz",
                self.boot.command
            ));
        }
        if self.boot.state_size < 1024 || !self.boot.state_size.is_multiple_of(512) {
            problems.push(format!(
                "boot.state_size {} must be a multiple of 512 of at least 1024",
                self.boot.state_size
            ));
        }
        if self.boot.state_files[0] == self.boot.state_files[1] {
            problems.push("boot.state_files must name two different files".to_string());
        }
        if !(1..=9).contains(&self.boot.tries) {
            problems.push(format!("boot.tries {} must be 1 to 9", self.boot.tries));
        }
        if !matches!(self.debian_arch.as_str(), "arm64" | "armhf") {
            problems.push(format!(
                "debian_arch {:?} must be arm64 or armhf",
                self.debian_arch
            ));
        }
        for required in REQUIRED_PARTITIONS {
            let count = self
                .partitions
                .iter()
                .filter(|p| p.name == required)
                .count();
            if count != 1 {
                problems.push(format!(
                    "partition {required:?} must appear exactly once (found {count})"
                ));
            }
        }
        for p in &self.partitions {
            if p.size_mib == 0 {
                problems.push(format!("partition {:?} has size 0", p.name));
            }
            if !is_simple_name(&p.name) || p.name.len() > 36 {
                problems.push(format!(
                    "partition name {:?} must be short lowercase letters, digits and '-'",
                    p.name
                ));
            }
        }
        if let Some(config) = self.partition("config") {
            let headroom = self.storage.config_headroom_mib;
            // The settings need a few MiB; the system volume's image at least 4 MiB besides.
            if headroom < 4 || headroom + 8 > u64::from(config.size_mib) {
                problems.push(format!(
                    "storage.config_headroom_mib {headroom} must be at least 4 and leave 8 MiB of the {} MiB config partition",
                    config.size_mib
                ));
            }
        }
        let expect = [
            ("boot", PartitionFs::Vfat),
            ("root-a", PartitionFs::Squashfs),
            ("root-b", PartitionFs::Squashfs),
            ("config", PartitionFs::Ext4),
        ];
        for (name, fs) in expect {
            if let Some(p) = self.partition(name) {
                if p.fs != fs {
                    problems.push(format!("partition {name:?} must be {fs:?}"));
                }
            }
        }
        for m in self
            .modules
            .initramfs
            .iter()
            .chain(&self.modules.boot)
            .chain(&self.modules.late)
        {
            if m.is_empty()
                || !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                problems.push(format!("module name {m:?} is not a kernel module name"));
            }
        }
        if !self.storage.boot_device.starts_with("/sys/devices/") {
            problems.push("storage.boot_device is a glob over a /sys/devices/... path".to_string());
        }
        if self.storage.data_disk_pattern.contains('/') {
            problems.push(
                "storage.data_disk_pattern is a glob over kernel names like sd*, not a path"
                    .to_string(),
            );
        }
        problems
    }

    /// The partition with this GPT name.
    pub fn partition(&self, name: &str) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// 1-based partition number of a named partition on the boot medium.
    pub fn partition_number(&self, name: &str) -> Option<usize> {
        self.partitions
            .iter()
            .position(|p| p.name == name)
            .map(|i| i + 1)
    }

    /// Whether a disk, by its resolved sysfs device path, is the boot medium.
    pub fn is_boot_device(&self, device_path: &str) -> bool {
        glob_match(&self.storage.boot_device, device_path)
    }

    /// Whether a disk is one of this board's data-disk bays: its name matches and it is not the boot medium.
    /// The bay a disk with this resolved sysfs device path sits in, from the board's bay globs.
    pub fn bay_of(&self, device_path: &str) -> Option<u32> {
        self.storage
            .bays
            .iter()
            .find(|b| glob_match(&b.device, device_path))
            .map(|b| b.number)
    }

    pub fn is_data_disk(&self, kernel_name: &str, device_path: &str) -> bool {
        !self.is_boot_device(device_path)
            && glob_match(&self.storage.data_disk_pattern, kernel_name)
    }
}

fn is_simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Shell-style glob with `*`, `?` and `[a-z]`/`[abc]` classes; enough for device names.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class_end(p: &[char], start: usize) -> Option<usize> {
        p[start..].iter().position(|&c| c == ']').map(|i| start + i)
    }
    fn class_matches(class: &[char], c: char) -> bool {
        let mut i = 0;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == '-' {
                if class[i] <= c && c <= class[i + 2] {
                    return true;
                }
                i += 3;
            } else {
                if class[i] == c {
                    return true;
                }
                i += 1;
            }
        }
        false
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => match class_end(p, 1) {
                Some(end) => {
                    !n.is_empty() && class_matches(&p[1..end], n[0]) && go(&p[end + 1..], &n[1..])
                }
                None => n.first() == Some(&'[') && go(&p[1..], &n[1..]),
            },
            Some(&c) => n.first() == Some(&c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board_file(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../board")
            .join(name)
            .join("board.toml")
    }

    #[test]
    fn every_board_in_the_tree_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../board");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path().join("board.toml");
            let board = Board::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                path.parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap(),
                board.name
            );
            seen += 1;
        }
        assert!(seen >= 2, "expected both QEMU boards, found {seen}");
    }

    #[test]
    fn data_disks_never_include_the_boot_disk() {
        let board = Board::load(&board_file("qemu-aarch64-virt")).unwrap();
        let mmio = "/sys/devices/platform/a003e00.virtio_mmio/virtio31/block/vdc";
        let pci = "/sys/devices/platform/4010000000.pcie/pci0000:00/0000:00:02.0/0000:01:00.0/virtio1/block/vda";
        assert!(
            board.is_data_disk("vda", pci),
            "a PCIe disk named vda is a data disk"
        );
        assert!(
            !board.is_data_disk("vdc", mmio),
            "the boot medium never is, whatever its name"
        );
        assert!(board.is_boot_device(mmio));
        assert!(!board.is_data_disk("loop0", "/sys/devices/virtual/block/loop0"));
    }

    #[test]
    fn partition_numbers_follow_the_layout() {
        let board = Board::load(&board_file("qemu-armv7-virt")).unwrap();
        assert_eq!(board.partition_number("boot"), Some(1));
        assert_eq!(board.partition_number("root-a"), Some(2));
        assert_eq!(board.partition_number("config"), Some(4));
        assert_eq!(board.partition_number("nope"), None);
    }

    #[test]
    fn validation_reports_every_problem_at_once() {
        let text = std::fs::read_to_string(board_file("qemu-aarch64-virt")).unwrap();
        let broken = text
            .replace("name = \"qemu-aarch64-virt\"", "name = \"Bad Name\"")
            .replace("name = \"root-b\"", "name = \"spare\"")
            .replace(
                "data_disk_pattern = \"vd*\"",
                "data_disk_pattern = \"/dev/vd*\"",
            );
        match Board::parse(&broken, "test") {
            Err(BoardError::Invalid { problems, .. }) => {
                assert_eq!(problems.len(), 3, "{problems:?}");
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_settings_headroom_must_leave_room_for_the_system_volume() {
        let text = std::fs::read_to_string(board_file("qemu-aarch64-virt")).unwrap();
        assert_eq!(
            Board::parse(&text, "test")
                .unwrap()
                .storage
                .config_headroom_mib,
            16
        );
        for bad in ["config_headroom_mib = 60", "config_headroom_mib = 1"] {
            let broken = text.replace("config_headroom_mib = 16", bad);
            match Board::parse(&broken, "test") {
                Err(BoardError::Invalid { problems, .. }) => {
                    assert!(problems[0].contains("config_headroom_mib"), "{problems:?}")
                }
                other => panic!("{bad}: expected invalid, got {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = std::fs::read_to_string(board_file("qemu-aarch64-virt")).unwrap();
        let broken = text.replacen(
            "debian_arch = \"arm64\"",
            "debian_arch = \"arm64\"\nturbo = true",
            1,
        );
        assert!(matches!(
            Board::parse(&broken, "test"),
            Err(BoardError::Parse { .. })
        ));
    }

    #[test]
    fn glob_classes_and_stars() {
        assert!(glob_match("sd[a-d]", "sdc"));
        assert!(!glob_match("sd[a-d]", "sde"));
        assert!(glob_match("mmcblk*", "mmcblk1"));
        assert!(glob_match("vd?", "vdb"));
        assert!(!glob_match("vd?", "vdb1"));
    }
}
