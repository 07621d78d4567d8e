//! The System page's Firmware section: both slots, the last update's outcome, an update waiting for its
//! reboot, the bundle upload (with `cairn.js`: the upload's progress, then the install job's, refusals with
//! their message and hint, and a Reboot button once installed) and the update check.

use super::{csrf_field, notice_line};
use crate::auth::{Caller, Ctx, Params};
use crate::controller::firmware as ctl;
use crate::error::Error;
use crate::http::{self, esc, Resp};
use cairn_firmware::install::status::FirmwareView;

/// What the section shows after the owner asked for an update check.
pub(crate) enum Checked {
    Not,
    Found(serde_json::Value),
    Failed(Error),
}

fn slot_rows(view: &FirmwareView) -> String {
    view.slots
        .iter()
        .map(|s| {
            let state = match s.state {
                "booted" => "Running now",
                "good" => "Ready to boot",
                "bad" => "Not bootable",
                _ => "Empty",
            };
            format!(
                r#"<tr><td>{}</td><td>{}</td><td data-state="{}">{state}</td></tr>"#,
                s.name.to_uppercase(),
                esc(s.version.as_deref().unwrap_or("—")),
                s.state
            )
        })
        .collect()
}

fn last_update(view: &FirmwareView) -> String {
    let Some(last) = &view.last_update else {
        return String::new();
    };
    let s = |k: &str| last[k].as_str().unwrap_or("").to_string();
    let outcome = match s("outcome").as_str() {
        "committed" => "installed, healthy and kept",
        "rolled_back" => "failed its health check; the box went back to the previous version",
        other => other,
    }
    .to_string();
    format!(
        r#"<p id="firmware-last">Last update: version {} in slot {} — {} ({})</p>"#,
        esc(&s("version")),
        esc(&s("slot").to_uppercase()),
        esc(&outcome),
        esc(&s("at"))
    )
}

fn check_result(checked: &Checked) -> String {
    match checked {
        Checked::Not => String::new(),
        Checked::Found(v) if v["update_available"] == true => notice_line(&format!(
            "Version {} is available (this box runs {}): {}",
            v["newest"]["version"].as_str().unwrap_or(""),
            v["running"].as_str().unwrap_or(""),
            v["newest"]["url"].as_str().unwrap_or("")
        )),
        Checked::Found(v) => notice_line(&format!(
            "This box runs the newest version the update source lists ({}).",
            v["running"].as_str().unwrap_or("")
        )),
        Checked::Failed(e) => super::problem(Some(e)),
    }
}

/// What the pending update's settings migrations will do, as its dry run reported (a list of steps; a
/// dropped field is always named).
fn migration_summary(report: &serde_json::Value) -> String {
    let steps = report["steps"].as_array().map_or(&[][..], Vec::as_slice);
    if steps.is_empty() {
        return " Its settings need no migration.".into();
    }
    let items: String = steps
        .iter()
        .map(|s| {
            let dropped = s["dropped"]
                .as_object()
                .map(|d| d.keys().map(|k| esc(k)).collect::<Vec<_>>().join(", "))
                .filter(|d| !d.is_empty())
                .map_or(String::new(), |d| format!(" <strong>Dropped: {d}</strong>"));
            format!(
                "<li>Schema {} → {} ({}): {}.{dropped}</li>",
                s["from"],
                s["to"],
                esc(s["owner"].as_str().unwrap_or("")),
                esc(s["describe"].as_str().unwrap_or("")),
            )
        })
        .collect();
    format!(" Its settings migrations, tried on a copy of the settings:<ul class=\"migration\">{items}</ul>")
}

/// The section, from the status read off the async threads.
pub(crate) async fn section(ctx: &Ctx, c: &Caller, checked: &Checked) -> String {
    let view = match ctl::status(&ctx.app).await {
        Ok(v) => v,
        Err(_) => {
            return r#"<section class="card" id="firmware"><h2>Firmware</h2><p>This server does not install firmware (a development server without root slots).</p></section>"#.into();
        }
    };
    let pending = view.pending.as_ref().map_or(String::new(), |p| {
        format!(
            r#"<div class="notice" role="status">Version {} is installed in slot {} and runs after a reboot.{}</div>"#,
            esc(p.version.as_deref().unwrap_or("")),
            p.slot.to_uppercase(),
            p.migration.as_ref().map_or(String::new(), migration_summary)
        )
    });
    let source = ctl::update_source(&ctx.app);
    format!(
        r#"<section class="card" id="firmware"><h2>Firmware</h2>
<table><thead><tr><th>Slot</th><th>Version</th><th>State</th></tr></thead><tbody>{rows}</tbody></table>
{last}{pending}
<form class="stack" data-firmware-upload>{csrf}
<label>Firmware bundle (.cfw)<input type="file" name="bundle" accept=".cfw" required></label>
<label class="check"><input type="checkbox" name="insist"> Install it even if this version failed on this box before</label>
<p class="help">The bundle's signature and board are checked before anything is written; the running system is never touched. Uploading needs JavaScript; without it use <code>cairn ctl firmware install FILE</code>.</p>
<button type="submit">Install</button>
<progress max="100" value="0" hidden></progress>
<p class="firmware-status" role="status"></p>
<div class="problem" hidden></div>
</form>
<form method="post" action="/system/reboot" data-firmware-reboot{reboot_hidden}>{csrf}<button type="submit">Reboot now</button></form>
<h3>Update check</h3>{checked}
<form method="post" action="/system/firmware/source" class="stack">{csrf}
<label>Update source<input name="url" value="{source}" placeholder="https://…/index.json" autocapitalize="none"></label>
<p class="help">{source_help}</p>
<button type="submit">Save</button></form>
<form method="post" action="/system/firmware/check">{csrf}<button type="submit">Check for updates</button></form>
</section>"#,
        rows = slot_rows(&view),
        last = last_update(&view),
        csrf = csrf_field(c),
        reboot_hidden = if view.pending.is_some() {
            ""
        } else {
            " hidden"
        },
        checked = check_result(checked),
        source = esc(source.as_deref().unwrap_or("")),
        source_help = if source.is_some() {
            "The box reads the signed update index there when you check; it installs nothing by itself."
        } else {
            "No update source is configured: set the address of a signed update index to check for new versions."
        },
    )
}

pub(crate) async fn set_source(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let url = super::Form::of(ctx).trimmed("url");
    match ctl::set_update_source(&ctx.app, url).await {
        Ok(()) => Ok(http::redirect("/system#firmware", None)),
        Err(e) => super::system::system_page(ctx, ctx.caller()?, Some(&e), &Checked::Not).await,
    }
}

pub(crate) async fn check(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let checked = match ctl::check(&ctx.app).await {
        Ok(v) => Checked::Found(v),
        Err(e) => Checked::Failed(e),
    };
    super::system::system_page(ctx, ctx.caller()?, None, &checked).await
}
