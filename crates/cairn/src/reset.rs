//! `cairn reset --tier network|settings --state DIR`: applies a reset tier to the settings with every service
//! stopped. Init runs it when the reset pin is released in a tier (the daemon may be hung or dead, so init
//! never asks it), then reboots; docs/reset.md explains the tiers.

use crate::settings::schema;
use cairn_reset::{Resets, Tier, Trigger};
use cairn_store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

pub const USAGE: &str = "usage: cairn reset --tier network|settings --state DIR
  resets the settings in DIR (holding settings.db, like the daemon's --state), keeping the settings from
  before for undo; run by init with every service stopped, then the box reboots";

fn parse(args: &[String]) -> Result<(Tier, PathBuf), String> {
    let mut tier = None;
    let mut state = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--tier" => {
                let name = it.next().ok_or("--tier needs network or settings")?;
                tier = Some(
                    Tier::parse_reset(name)
                        .ok_or_else(|| format!("--tier takes network or settings, not {name:?}"))?,
                )
            }
            "--state" => state = Some(PathBuf::from(it.next().ok_or("--state needs a folder")?)),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok((
        tier.ok_or("--tier is required")?,
        state.ok_or("--state DIR is required")?,
    ))
}

/// Runs `cairn reset`.
pub fn run(args: &[String]) -> ExitCode {
    let (tier, state) = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cairn reset: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let applied = schema()
        .and_then(|schema| Store::open_migrating(&state.join("settings.db"), &schema, None))
        .map_err(|e| e.to_string())
        .and_then(|(store, _)| {
            Resets::new(store, &state)
                .apply(tier, Trigger::Pin, cairn_accounts::now_s())
                .map_err(|e| e.to_string())
        });
    match applied {
        Ok(last) => {
            println!(
                "cairn reset: {} reset done{}; undo it from the dashboard's front page or with `cairn ctl reset undo`",
                tier.name(),
                if last.cleared_admins.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (administrator passwords cleared: {}; set one from the dashboard)",
                        last.cleared_admins.join(", ")
                    )
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "cairn reset: the {} reset was not applied: {e}",
                tier.name()
            );
            ExitCode::from(1)
        }
    }
}
