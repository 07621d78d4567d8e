//! The Storage page: disks by bay, volumes with their state and progress, and every storage action as a plain
//! form. Destructive forms ask the owner to type the volume's name; the page refreshes itself while a job runs.

use super::{csrf_field as csrf, human, problem, status_of, Form};
use crate::auth::{Caller, Ctx, Params};
use crate::controller::storage as ctl;
use crate::error::Error;
use crate::http::{self, esc, Resp};
use cairn_storage::{CreateRequest, DiskView, StorageError, VolumeView};
use cairn_system::clock::utc;

fn disk_row(d: &DiskView) -> String {
    let role = match d.disk.role {
        cairn_storage::DiskRole::Boot => "system disk".to_string(),
        cairn_storage::DiskRole::Free => "free".to_string(),
        cairn_storage::DiskRole::Unreadable if d.in_use.is_none() => format!(
            "unreadable: {}",
            d.read_error.as_deref().unwrap_or("unknown error")
        ),
        _ => match (&d.in_use, &d.holds) {
            (Some(u), _) => format!("in use: {u}"),
            (None, Some(h)) => format!("holds {h}"),
            _ => "in use".to_string(),
        },
    };
    format!(
        "<tr><td>{bay}</td><td>{model}</td><td>{serial}</td><td>{size}</td><td>{role}</td><td class=\"opt\">{smart}</td></tr>",
        bay = d.disk.slot.map(|s| s.to_string()).unwrap_or_else(|| "–".into()),
        model = esc(&d.disk.model),
        serial = esc(&d.disk.serial),
        size = human(d.disk.size_bytes),
        role = esc(&role),
        smart = esc(&d.smart),
    )
}

fn volume_card(c: &Caller, v: &VolumeView, free: &[&DiskView], shares: &[String]) -> String {
    let n = esc(&v.name);
    let members: String = v
        .members
        .iter()
        .map(|m| {
            let fail = if m.state == "in_sync" && v.state == "clean" {
                format!(
                    r#"<form method="post" action="/storage/volumes/{n}/fail" class="inline">{csrf}<input type="hidden" name="disk" value="{id}"><button class="link">Mark failed</button></form>"#,
                    csrf = csrf(c),
                    id = esc(&m.id)
                )
            } else {
                String::new()
            };
            format!(
                "<li>{} · <b>{}</b> {fail}</li>",
                esc(&m.description),
                esc(&m.state.replace('_', " "))
            )
        })
        .collect();
    let job = match &v.job {
        Some(j) if j.state == "running" => format!(
            r#"<p>{kind}: {msg}</p><progress max="100" value="{p}" data-job="{id}">{p} %</progress> <span class="pct">{p} %</span>{eta}"#,
            kind = esc(&j.kind),
            msg = esc(&j.message),
            p = j.percent,
            id = esc(&j.id),
            eta = j
                .eta_s
                .map(|s| format!(" · about {} min left", s / 60 + 1))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let problem = v
        .problem
        .as_ref()
        .map(|p| format!(r#"<p class="problem" role="alert">{}</p>"#, esc(p)))
        .unwrap_or_default();
    let options: String = free
        .iter()
        .map(|d| {
            format!(
                r#"<option value="{}">{}</option>"#,
                esc(&d.disk.id),
                esc(&d.describe())
            )
        })
        .collect();
    let lost: String = v
        .members
        .iter()
        .filter(|m| m.state != "in_sync")
        .chain(v.members.iter().filter(|m| m.state == "in_sync"))
        .map(|m| {
            format!(
                r#"<option value="{}">{}</option>"#,
                esc(&m.id),
                esc(&m.description)
            )
        })
        .collect();
    if v.state == "found" {
        return format!(
            r#"<section class="card"><h2>Found: {n} <small>({level}, made by {origin})</small></h2>{problem}<ul>{members}</ul>
<form method="post" action="/storage/volumes/{n}/import" class="stack">{csrf}<label>Import as<input name="as" value="{n}" maxlength="32"></label><button type="submit">Import with its data</button></form></section>"#,
            level = esc(&v.level),
            origin = if v.origin == Some("cairn") {
                "a Cairn box"
            } else {
                "another Linux system"
            },
            csrf = csrf(c),
        );
    }
    let replace = if !free.is_empty() && matches!(v.state, "degraded" | "clean") {
        format!(
            r#"<form method="post" action="/storage/volumes/{n}/replace" class="stack">{csrf}<div class="grid2"><label>Replace<select name="failed">{lost}</select></label><label>with<select name="with">{options}</select></label></div><button type="submit">Replace and rebuild</button></form>"#,
            csrf = csrf(c)
        )
    } else {
        String::new()
    };
    let scrub = if v.state == "clean" && v.job.is_none() && v.level != "raid0" {
        format!(
            r#"<form method="post" action="/storage/volumes/{n}/scrub" class="inline">{csrf}<button type="submit">Scrub now</button></form>"#,
            csrf = csrf(c)
        )
    } else {
        String::new()
    };
    let delete = if shares.is_empty() {
        format!(
            r#"<details><summary>Delete this volume</summary><form method="post" action="/storage/volumes/{n}/delete" class="stack">{csrf}<label>Type <b>{n}</b> to erase it and all its data<input name="confirm" autocomplete="off" required></label><button type="submit" class="danger">Delete volume</button></form></details>"#,
            csrf = csrf(c)
        )
    } else {
        format!(
            "<p class=\"help\">Shares on this volume: {}. A volume with shares cannot be deleted.</p>",
            esc(&shares.join(", "))
        )
    };
    format!(
        r#"<section class="card"><h2>{n} <small>{level} · <span class="state">{state}</span></small></h2>{problem}
<p>{used} used of {size} · {free_b} free · {path}</p>{job}<ul>{members}</ul>
<p class="help">Last scrub: {scrub_at}</p>{scrub}{replace}{delete}</section>"#,
        level = esc(&v.level),
        state = v.state,
        used = human(v.used_bytes),
        size = human(v.size_bytes),
        free_b = human(v.free_bytes),
        path = esc(&v.path),
        scrub_at = match (v.last_scrub_s, v.last_mismatches) {
            (Some(_), Some(m)) => format!("{m} mismatched blocks"),
            _ => "not yet".into(),
        },
    )
}

async fn page(ctx: &Ctx, c: &Caller, e: Option<&Error>, note: &str) -> Result<Resp, Error> {
    let (disks, volumes, events) = ctl::overview(&ctx.app).await?;
    let free: Vec<&DiskView> = disks
        .iter()
        .filter(|d| d.disk.role != cairn_storage::DiskRole::Boot && d.in_use.is_none())
        .collect();
    let mut cards = String::new();
    for v in &volumes {
        let shares = if v.state == "found" {
            vec![]
        } else {
            ctl::shares_on(&ctx.app, &v.name)?
        };
        cards.push_str(&volume_card(c, v, &free, &shares));
    }
    let checkboxes: String = free
        .iter()
        .map(|d| {
            format!(
                r#"<label class="check"><input type="checkbox" name="disk" value="{}"> {} · {}{}</label>"#,
                esc(&d.disk.id),
                esc(&d.describe()),
                human(d.disk.size_bytes),
                d.holds.as_ref().map(|h| format!(" · holds {} (will be erased)", esc(h))).unwrap_or_default()
            )
        })
        .collect();
    let events: String = events
        .iter()
        .map(|ev| {
            format!(
                r#"<li class="{lvl}"><time data-s="{s}">{t}</time> {msg}{detail}</li>"#,
                lvl = esc(&ev.level),
                s = ev.time_s,
                t = utc(ev.time_s),
                msg = esc(&ev.message),
                detail = if ev.detail.is_empty() {
                    String::new()
                } else {
                    format!("<pre>{}</pre>", esc(&ev.detail))
                }
            )
        })
        .collect();
    let running = volumes
        .iter()
        .any(|v| v.job.as_ref().is_some_and(|j| j.state == "running"));
    let body = format!(
        r#"{refresh}{note}<section class="card"><h1>Storage</h1>
<table><thead><tr><th>Bay</th><th>Model</th><th>Serial</th><th>Size</th><th>Use</th><th class="opt">Health</th></tr></thead><tbody>{rows}</tbody></table></section>
{cards}
<section class="card"><h2>New volume</h2>{problem}{create}</section>
<section class="card"><h2>Events</h2><ul class="events">{events}</ul></section>"#,
        refresh = if running {
            r#"<meta http-equiv="refresh" content="3">"#
        } else {
            ""
        },
        note = if note.is_empty() {
            String::new()
        } else {
            format!(r#"<div class="notice" role="status">{}</div>"#, esc(note))
        },
        rows = disks.iter().map(disk_row).collect::<String>(),
        problem = problem(e),
        create = if free.is_empty() {
            "<p>No free disks. Put a disk in an empty bay to build a volume.</p>".to_string()
        } else {
            format!(
                r#"<form method="post" action="/storage/volumes" class="stack">{csrf}
<div class="grid2"><label>Name<input name="name" required maxlength="32" autocapitalize="none"></label>
<label>Layout<select name="level"><option value="single">Single disk</option><option value="raid1">RAID 1 (mirror)</option><option value="raid5" selected>RAID 5 (one disk may fail)</option><option value="raid6">RAID 6 (two disks may fail)</option><option value="raid10">RAID 10</option><option value="raid0">RAID 0 (no redundancy)</option></select></label></div>
<fieldset><legend>Disks</legend>{checkboxes}</fieldset>
<label>If a chosen disk holds data, type the volume's name again to erase it (for a disk that could not be read, the words the refusal gives)<input name="confirm" autocomplete="off"></label>
<button type="submit">Create volume</button></form>"#,
                csrf = csrf(c)
            )
        },
    );
    Ok(super::page(c, "Storage", status_of(e), body))
}

/// What the page says after a change, by the code in `?done=`.
const NOTES: &[(&str, &str)] = &[
    ("created", "The volume is being built; it is usable once mounted, and redundant when the job reaches 100 %."),
    ("deleted", "The volume was deleted and its disks are free."),
    ("replaced", "The rebuild started."),
    ("failed", "The disk was taken out of the volume."),
    ("scrub", "The scrub started."),
    ("imported", "The volume was imported with its data."),
];

/// Post, then redirect: reloading the page (or its auto-refresh) never repeats the change. A refusal, or a
/// tool that failed, re-renders the page with the problem; anything else is an error page.
async fn after(ctx: &Ctx, outcome: Result<&'static str, Error>) -> Result<Resp, Error> {
    match outcome {
        Ok(code) => Ok(http::redirect(&format!("/storage?done={code}"), None)),
        Err(e @ Error::Storage(StorageError::Tool { .. })) => {
            page(ctx, ctx.caller()?, Some(&e), "").await
        }
        Err(e) if e.status().is_client_error() => page(ctx, ctx.caller()?, Some(&e), "").await,
        Err(e) => Err(e),
    }
}

pub(crate) async fn storage(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let note = ctx
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("done="))
        .and_then(|code| NOTES.iter().find(|(c, _)| *c == code))
        .map(|(_, text)| *text)
        .unwrap_or("");
    page(ctx, ctx.caller()?, None, note).await
}

pub(crate) async fn create(ctx: &Ctx, _: &Params) -> Result<Resp, Error> {
    let f = Form::of(ctx);
    let req = CreateRequest {
        name: f.trimmed("name"),
        level: f.trimmed("level"),
        disks: f.all("disk"),
        confirm: f.optional("confirm"),
    };
    after(ctx, ctl::create(&ctx.app, req).await.map(|_| "created")).await
}

pub(crate) async fn delete(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let confirm = Form::of(ctx).optional("confirm");
    let outcome = ctl::delete(&ctx.app, p.get("name"), confirm).await;
    after(ctx, outcome.map(|_| "deleted")).await
}

pub(crate) async fn replace(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let f = Form::of(ctx);
    let outcome = ctl::replace(
        &ctx.app,
        p.get("name"),
        f.trimmed("failed"),
        f.trimmed("with"),
        f.optional("confirm"),
    )
    .await;
    after(ctx, outcome.map(|_| "replaced")).await
}

pub(crate) async fn fail(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let by = ctx.caller()?.user.name.clone();
    let outcome = ctl::fail(&ctx.app, p.get("name"), Form::of(ctx).trimmed("disk"), by).await;
    after(ctx, outcome.map(|_| "failed")).await
}

pub(crate) async fn scrub(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    after(
        ctx,
        ctl::scrub(&ctx.app, p.get("name")).await.map(|_| "scrub"),
    )
    .await
}

pub(crate) async fn import(ctx: &Ctx, p: &Params) -> Result<Resp, Error> {
    let as_name = Form::of(ctx).optional("as");
    let outcome = ctl::import(&ctx.app, p.get("name"), as_name).await;
    after(ctx, outcome.map(|_| "imported")).await
}
