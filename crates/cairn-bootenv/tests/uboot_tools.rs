//! The format proven against U-Boot's own implementations: an environment made by `mkenvimage` (u-boot-tools)
//! parses, and one Cairn writes is read by `fw_printenv` and changed by `fw_setenv` (libubootenv-tool), both
//! installed by scripts/bootstrap.
// Runs U-Boot's host tools, argument vectors only.
#![allow(clippy::disallowed_methods)]

use cairn_bootenv::{BootFiles, BootState, Env, Slot};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const SIZE: usize = 0x4000;

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}): install it with scripts/bootstrap")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A libubootenv configuration for one copy at offset 0 of `env` ("device offset size").
fn config(dir: &Path, env: &Path) -> String {
    let cfg = dir.join("fw_env.config");
    fs::write(&cfg, format!("{} 0x0 {SIZE:#x}\n", env.display())).unwrap();
    cfg.display().to_string()
}

fn printenv(cfg: &str) -> Vec<String> {
    let out = Command::new("fw_printenv")
        .args(["-c", cfg])
        .output()
        .expect("fw_printenv: run scripts/bootstrap");
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    lines
}

fn trial_state() -> BootState {
    let mut state = BootState::factory(3);
    state.activate(Slot::B, 3);
    state.seq = 0x2a;
    state
}

#[test]
fn mkenvimage_output_parses() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("env.txt");
    fs::write(
        &text,
        "BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=2\nBOOT_SEQ=1f\nBOOT_TRIAL=B\n",
    )
    .unwrap();
    let image = dir.path().join("cairn.env");
    run(
        "mkenvimage",
        &[
            "-s",
            "0x4000",
            "-o",
            image.to_str().unwrap(),
            text.to_str().unwrap(),
        ],
    );
    let env = Env::parse(&fs::read(&image).unwrap(), SIZE).unwrap();
    let state = BootState::from_env(&env).unwrap();
    assert_eq!(
        state,
        BootState {
            order: vec![Slot::B, Slot::A],
            left: [3, 2],
            seq: 0x1f,
            trial: Some(Slot::B)
        }
    );
}

#[test]
fn fw_printenv_reads_what_cairn_writes() {
    let dir = tempfile::tempdir().unwrap();
    let files = BootFiles::at(
        [
            dir.path().join("env-1/cairn.env"),
            dir.path().join("env-2/cairn.env"),
        ],
        SIZE,
    );
    let current = files.reset(&BootState::factory(3)).unwrap();
    files.store(&current, &trial_state()).unwrap();
    let cfg = config(dir.path(), files.paths()[1]);
    assert_eq!(
        printenv(&cfg),
        [
            "BOOT_A_LEFT=3",
            "BOOT_B_LEFT=3",
            "BOOT_ORDER=B A",
            "BOOT_SEQ=1",
            "BOOT_TRIAL=B"
        ]
    );

    // The same file with one byte changed is refused by U-Boot's implementation too: the CRC is the real one.
    let mut bytes = fs::read(files.paths()[1]).unwrap();
    bytes[10] ^= 1;
    fs::write(files.paths()[1], &bytes).unwrap();
    assert!(
        !printenv(&cfg).iter().any(|line| line.starts_with("BOOT_")),
        "{:?}",
        printenv(&cfg)
    );
}

#[test]
fn cairn_reads_what_fw_setenv_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.env");
    let mut env = Env::new();
    trial_state().write_env(&mut env).unwrap();
    fs::write(&path, env.serialize(SIZE).unwrap()).unwrap();
    let cfg = config(dir.path(), &path);
    run("fw_setenv", &["-c", &cfg, "BOOT_B_LEFT", "1"]);
    run("fw_setenv", &["-c", &cfg, "BOOT_SEQ", "2b"]);
    let state = BootState::from_env(&Env::parse(&fs::read(&path).unwrap(), SIZE).unwrap()).unwrap();
    assert_eq!(
        state,
        BootState {
            left: [3, 1],
            seq: 0x2b,
            ..trial_state()
        }
    );
}
