//! `cairn migrate`: the settings' schema steps from the command line. The install runs the NEW slot's binary
//! with `--dry-run` on the running slot's settings snapshot before it reboots, and shows the report with the
//! pending update (docs/updates.md, "Settings across versions").

use crate::settings::schema;
use cairn_store::{DryRun, DryRunError, Headroom, Store, SCHEMA_VERSION};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub const USAGE: &str = "usage: cairn migrate [--dry-run] --state DIR [--to N]
  --state DIR  a settings folder (holding settings.db, like the daemon's --state) or a settings snapshot
               folder (holding settings.export, e.g. /config/cairn/snapshots/a)
  --to N       the schema to migrate to (default: this firmware's)
  --dry-run    migrate a copy and leave DIR as it was (a snapshot folder is only ever dry-run)
prints the report as JSON; exits 0 when every step ran and nothing was dropped, 1 otherwise, 2 on bad usage";

struct Options {
    dry_run: bool,
    state: PathBuf,
    to: u32,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut dry_run = false;
    let mut state = None;
    let mut to = SCHEMA_VERSION;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--dry-run" => dry_run = true,
            "--state" => state = Some(PathBuf::from(it.next().ok_or("--state needs a folder")?)),
            "--to" => {
                to = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--to needs a schema number")?
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let state = state.ok_or("--state DIR is required")?;
    Ok(Options { dry_run, state, to })
}

/// Runs `cairn migrate`.
pub fn run(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cairn migrate: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let report = if options.dry_run {
        dry_run(&options)
    } else {
        in_place(&options)
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The settings in `state`: a snapshot folder as it is, a daemon state folder's database.
fn source(state: &Path) -> PathBuf {
    if state.join(cairn_store::snapshot::FILE).exists() {
        state.to_path_buf()
    } else {
        state.join("settings.db")
    }
}

fn failed(from: u32, to: u32, e: cairn_store::StoreError) -> DryRun {
    DryRun {
        dry_run: true,
        firmware_schema: SCHEMA_VERSION,
        from,
        to,
        ok: false,
        steps: Vec::new(),
        dropped: 0,
        error: Some(DryRunError {
            code: e.migration_code(),
            message: e.to_string(),
        }),
    }
}

fn dry_run(options: &Options) -> DryRun {
    let scratch = std::env::temp_dir().join(format!("cairn-migrate-{}", std::process::id()));
    let source = source(&options.state);
    if !source.exists() {
        return failed(0, options.to, missing(&options.state));
    }
    match schema().and_then(|s| cairn_store::dry_run(&source, &s, options.to, &scratch)) {
        Ok(run) => run,
        Err(e) => failed(0, options.to, e),
    }
}

fn missing(state: &Path) -> cairn_store::StoreError {
    cairn_store::StoreError::Sync {
        path: state.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no settings.db or settings.export here",
        ),
    }
}

fn in_place(options: &Options) -> DryRun {
    let database = options.state.join("settings.db");
    if !database.exists() {
        return failed(0, options.to, missing(&options.state));
    }
    let opened = Store::open_unmigrated(
        &database,
        Headroom::CONFIG,
        Arc::new(cairn_store::statvfs_free),
    );
    let store = match opened {
        Ok(s) => s,
        Err(e) => return failed(0, options.to, e),
    };
    let from = store.schema_version().unwrap_or(0);
    match schema().and_then(|s| store.migrate_to(&s, options.to)) {
        Ok(steps) => {
            let dropped = steps
                .iter()
                .map(|s| s.dropped.values().sum::<usize>())
                .sum();
            DryRun {
                dry_run: false,
                firmware_schema: SCHEMA_VERSION,
                from,
                to: options.to,
                ok: dropped == 0,
                steps,
                dropped,
                error: None,
            }
        }
        Err(e) => DryRun {
            dry_run: false,
            from,
            ..failed(from, options.to, e)
        },
    }
}
