//! Disks, volumes, jobs and the storage event log under /api/v1. The work is the storage manager's;
//! here are only access rules, JSON shapes and the shares a volume carries.

use crate::error::ApiError;
use crate::http::{self, Resp};
use crate::routes::Ctx;
use cairn_storage::{CreateRequest, Storage};
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Confirm {
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Replace {
    failed: String,
    with: String,
    #[serde(default)]
    confirm: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    disk: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Import {
    #[serde(default, rename = "as")]
    as_name: Option<String>,
}

fn value(v: impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(ApiError::internal)
}

/// A JSON body that may be left out entirely.
fn optional_body<T: serde::de::DeserializeOwned + Default>(ctx: &Ctx) -> Result<T, ApiError> {
    if ctx.body.iter().all(|b| b.is_ascii_whitespace()) {
        Ok(T::default())
    } else {
        http::parse_json(&ctx.body)
    }
}

pub(crate) fn storage<'a>(ctx: &'a Ctx) -> Result<&'a Storage, ApiError> {
    ctx.app
        .storage
        .as_ref()
        .ok_or_else(ApiError::storage_unavailable)
}

/// Runs storage work (disk reads, mdadm) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    storage: &Storage,
    f: impl FnOnce(Storage) -> Result<T, cairn_storage::StorageError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = storage.clone();
    tokio::task::spawn_blocking(move || f(s))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// Names of the shares placed on `volume`.
pub(crate) fn shares_on(ctx: &Ctx, volume: &str) -> Result<Vec<String>, ApiError> {
    Ok(ctx
        .app
        .accounts
        .shares()?
        .into_iter()
        .filter(|s| s.volume == volume)
        .map(|s| s.name)
        .collect())
}

fn job_answer(job: cairn_storage::JobView) -> Result<Resp, ApiError> {
    Ok(http::json(
        StatusCode::ACCEPTED,
        &json!({"job": value(job)?}),
    ))
}

/// Routes under /api/v1/{disks,volumes,jobs,storage}; `None` when the path is not one of them.
pub(crate) async fn route(
    ctx: &Ctx<'_>,
    method: &Method,
    segs: &[&str],
) -> Option<Result<Resp, ApiError>> {
    let answer = match (method, segs) {
        (&Method::GET, ["disks"]) => disks(ctx).await,
        (_, ["disks"]) => Err(ApiError::method()),
        (&Method::GET, ["volumes"]) => {
            async {
                ctx.admin()?;
                let v = blocking(storage(ctx)?, |s| s.volumes()).await?;
                Ok(http::json(StatusCode::OK, &value(v)?))
            }
            .await
        }
        (&Method::POST, ["volumes"]) => {
            async {
                ctx.admin()?;
                let req: CreateRequest = http::parse_json(&ctx.body)?;
                job_answer(blocking(storage(ctx)?, move |s| s.create(req)).await?)
            }
            .await
        }
        (&Method::GET, ["volumes", name]) => {
            async {
                ctx.admin()?;
                let n = name.to_string();
                let v = blocking(storage(ctx)?, move |s| s.volume(&n)).await?;
                Ok(http::json(StatusCode::OK, &value(v)?))
            }
            .await
        }
        (&Method::DELETE, ["volumes", name]) => {
            async {
                ctx.admin()?;
                let c: Confirm = optional_body(ctx)?;
                let shares = shares_on(ctx, name)?;
                let n = name.to_string();
                blocking(storage(ctx)?, move |s| {
                    s.delete(&n, c.confirm.as_deref(), &shares)
                })
                .await?;
                ctx.app.changed();
                Ok(http::json(StatusCode::OK, &json!({"deleted": name})))
            }
            .await
        }
        (&Method::POST, ["volumes", name, "replace"]) => {
            async {
                ctx.admin()?;
                let r: Replace = http::parse_json(&ctx.body)?;
                let n = name.to_string();
                job_answer(
                    blocking(storage(ctx)?, move |s| {
                        s.replace(&n, &r.failed, &r.with, r.confirm.as_deref())
                    })
                    .await?,
                )
            }
            .await
        }
        (&Method::POST, ["volumes", name, "fail"]) => {
            async {
                let by = ctx.admin()?.user.name.clone();
                let f: Fail = http::parse_json(&ctx.body)?;
                let n = name.to_string();
                let v = blocking(storage(ctx)?, move |s| s.fail(&n, &f.disk, &by)).await?;
                Ok(http::json(StatusCode::OK, &value(v)?))
            }
            .await
        }
        (&Method::POST, ["volumes", name, "scrub"]) => {
            async {
                ctx.admin()?;
                let n = name.to_string();
                job_answer(blocking(storage(ctx)?, move |s| s.scrub(&n)).await?)
            }
            .await
        }
        (&Method::POST, ["volumes", name, "import"]) => {
            async {
                ctx.admin()?;
                let i: Import = optional_body(ctx)?;
                let n = name.to_string();
                let v =
                    blocking(storage(ctx)?, move |s| s.import(&n, i.as_name.as_deref())).await?;
                ctx.app.changed();
                Ok(http::json(StatusCode::OK, &value(v)?))
            }
            .await
        }
        (&Method::GET, ["jobs"]) => {
            async {
                ctx.admin()?;
                let v = blocking(storage(ctx)?, |s| s.jobs(50)).await?;
                Ok(http::json(StatusCode::OK, &value(v)?))
            }
            .await
        }
        (&Method::GET, ["jobs", id]) => {
            async {
                ctx.admin()?;
                let id = id.to_string();
                let v = blocking(storage(ctx)?, move |s| s.job(&id)).await?;
                Ok(http::json(StatusCode::OK, &value(v)?))
            }
            .await
        }
        (&Method::GET, ["storage", "events"]) => {
            async {
                ctx.admin()?;
                let v = blocking(storage(ctx)?, |s| s.events(200)).await?;
                Ok(http::json(StatusCode::OK, &value(v)?))
            }
            .await
        }
        (
            _,
            ["volumes"]
            | ["volumes", _]
            | ["volumes", _, "replace" | "fail" | "scrub" | "import"]
            | ["jobs"]
            | ["jobs", _]
            | ["storage", "events"],
        ) => Err(ApiError::method()),
        _ => return None,
    };
    Some(answer)
}

async fn disks(ctx: &Ctx<'_>) -> Result<Resp, ApiError> {
    ctx.admin()?;
    let v = match &ctx.app.storage {
        Some(s) => value(blocking(s, |s| s.disks()).await?)?,
        None => match &ctx.app.board {
            Some(board) => value(cairn_storage::discover(&ctx.app.sys_root, board))?,
            None => json!([]),
        },
    };
    Ok(http::json(StatusCode::OK, &v))
}
