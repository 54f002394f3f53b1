//! The routes and their JSON.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use cohort_config::{Config, Workspace};
use cohort_scheduler::{JobTimes, Policy, job_key};
use cohort_store::{RecordError, RunRow, RunStatus, Store};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, principal};
use crate::metrics::Metrics;

/// What the API needs from the daemon.
pub trait Control: Send + Sync + 'static {
    /// The config the daemon runs now.
    fn config(&self) -> Arc<Config>;
    /// Reads the config again. `Err` carries every problem; the old config keeps running.
    fn reload(&self) -> Result<(), Vec<String>>;
    /// A run was queued: wake the workers.
    fn queued(&self);
}

struct Api {
    store: Store,
    control: Arc<dyn Control>,
    metrics: Arc<Metrics>,
}

/// The API's routes over `store`, the daemon's `control` and its `metrics`.
pub fn router(store: Store, control: Arc<dyn Control>, metrics: Arc<Metrics>) -> Router {
    let api = Arc::new(Api {
        store,
        control,
        metrics,
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/workspaces", get(workspaces))
        .route("/api/v1/workspaces/{ws}/jobs", get(jobs))
        .route("/api/v1/workspaces/{ws}/jobs/{job}/trigger", post(trigger))
        .route("/api/v1/workspaces/{ws}/runs", get(runs))
        .route("/api/v1/workspaces/{ws}/runs/{id}", get(run))
        .route("/api/v1/workspaces/{ws}/segments", get(segments))
        .route("/api/v1/reload", post(reload))
        .fallback(not_found)
        .with_state(api)
}

/// An error answer: `{"error": {"code", "message"}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid bearer token is required (Authorization: Bearer TOKEN)",
        )
    }

    fn no_workspace(ws: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no workspace `{ws}`"),
        )
    }

    fn store(e: &cohort_store::StoreError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            cohort_config::mask::redact(&e.to_string()).into_owned(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if !self.details.is_empty() {
            error["details"] = json!(self.details);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

type Answer = Result<Json<Value>, ApiError>;

impl Api {
    fn who(&self, config: &Config, headers: &HeaderMap) -> Result<Principal, ApiError> {
        principal(config, headers).ok_or_else(ApiError::unauthorized)
    }

    /// The workspace `ws` if the caller may see it; 404 otherwise, whether or not it exists.
    fn workspace<'c>(
        &self,
        config: &'c Config,
        headers: &HeaderMap,
        ws: &str,
    ) -> Result<&'c Workspace, ApiError> {
        let who = self.who(config, headers)?;
        match config.workspace(ws) {
            Some(w) if who.sees(ws) => Ok(w),
            _ => Err(ApiError::no_workspace(ws)),
        }
    }
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(api): State<Arc<Api>>) -> Response {
    let config = api.control.config();
    match api.store.ping().await {
        Ok(()) => Json(json!({
            "status": "ready",
            "workspaces": config.workspaces.len(),
        }))
        .into_response(),
        Err(e) => ApiError::store(&e).into_response(),
    }
}

async fn metrics_text(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    let config = api.control.config();
    // Metrics name every client's workspace: admins only.
    if principal(&config, &headers) != Some(Principal::Admin) {
        return ApiError::unauthorized().into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.metrics.render(),
    )
        .into_response()
}

async fn workspaces(State(api): State<Arc<Api>>, headers: HeaderMap) -> Answer {
    let config = api.control.config();
    let who = api.who(&config, &headers)?;
    let list: Vec<Value> = config
        .workspaces
        .iter()
        .filter(|w| who.sees(&w.id))
        .map(|w| json!({"id": w.id, "name": w.name, "timezone": w.timezone.name()}))
        .collect();
    Ok(Json(json!({ "workspaces": list })))
}

async fn jobs(State(api): State<Arc<Api>>, headers: HeaderMap, Path(ws): Path<String>) -> Answer {
    let config = api.control.config();
    let w = api.workspace(&config, &headers, &ws)?;
    let store = api.store.workspace(&w.id);
    let now = Utc::now();
    let mut out = Vec::new();
    for job in &w.jobs {
        let next_run_at = match (&job.schedule, job.enabled) {
            (Some(s), true) => {
                let times = JobTimes::new(
                    s.clone(),
                    w.timezone,
                    Policy::of(job),
                    &job_key(&w.id, &job.name),
                );
                times
                    .next_tick(now)
                    .map(|t| t + chrono::Duration::from_std(times.offset()).unwrap_or_default())
            }
            _ => None,
        };
        let last = store
            .runs_where(Some(&job.name), None, 1)
            .await
            .map_err(|e| ApiError::store(&e))?;
        out.push(json!({
            "name": job.name,
            "schedule": job.schedule.as_ref().map(|s| s.as_written()),
            "enabled": job.enabled,
            "misfire": job.misfire.as_str(),
            "timeout_seconds": job.timeout.map(|t| t.as_secs_f64()),
            "retries": job.retries,
            "next_run_at": next_run_at.map(|t| t.to_rfc3339()),
            "last_run": last.first().map(run_json),
        }));
    }
    Ok(Json(json!({ "jobs": out })))
}

#[derive(Debug, Deserialize)]
struct RunsQuery {
    job: Option<String>,
    status: Option<String>,
    limit: Option<u64>,
}

async fn runs(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(ws): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Answer {
    let config = api.control.config();
    let w = api.workspace(&config, &headers, &ws)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "status `{s}` is not one of queued, running, succeeded, partially_failed, failed, timed_out"
                ),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let rows = api
        .store
        .workspace(&w.id)
        .runs_where(q.job.as_deref().filter(|j| !j.is_empty()), status, limit)
        .await
        .map_err(|e| ApiError::store(&e))?;
    Ok(Json(
        json!({ "runs": rows.iter().map(run_json).collect::<Vec<_>>() }),
    ))
}

async fn run(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((ws, id)): Path<(String, String)>,
) -> Answer {
    let config = api.control.config();
    let w = api.workspace(&config, &headers, &ws)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no run `{id}`"));
    let run_id: i64 = id.parse().map_err(|_| not_found())?;
    let Some((row, errors)) = api
        .store
        .workspace(&w.id)
        .run(run_id)
        .await
        .map_err(|e| ApiError::store(&e))?
    else {
        return Err(not_found());
    };
    Ok(Json(run_detail_json(&row, &errors)))
}

/// `GET .../segments`: each segment's size, one point per finished run, oldest first.
async fn segments(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(ws): Path<String>,
) -> Answer {
    let config = api.control.config();
    let w = api.workspace(&config, &headers, &ws)?;
    let rows = api
        .store
        .workspace(&w.id)
        .runs_where(None, None, 500)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let mut series: std::collections::BTreeMap<String, Vec<Value>> = w
        .segments
        .iter()
        .map(|s| (s.name.clone(), Vec::new()))
        .collect();
    for row in rows.iter().rev() {
        let Some(summary) = &row.summary else {
            continue;
        };
        if summary.get("dry_run").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        for s in summary
            .get("segments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(members)) = (
                s.get("name").and_then(Value::as_str),
                s.get("members").and_then(Value::as_u64),
            ) else {
                continue;
            };
            series.entry(name.to_owned()).or_default().push(json!({
                "run_id": row.id,
                "at": time(row.finished_at.or(Some(row.started_at))),
                "size": members,
            }));
        }
    }
    let list: Vec<Value> = series
        .into_iter()
        .map(|(name, points)| json!({"name": name, "points": points}))
        .collect();
    Ok(Json(json!({ "segments": list })))
}

async fn trigger(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((ws, job)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let config = api.control.config();
    let w = api.workspace(&config, &headers, &ws)?;
    if w.job(&job).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("workspace `{ws}` has no job `{job}`"),
        ));
    }
    let id = api
        .store
        .workspace(&w.id)
        .enqueue(&job, "manual", Utc::now())
        .await
        .map_err(|e| ApiError::store(&e))?;
    api.control.queued();
    tracing::info!(workspace = %w.id, job = %job, run_id = id, "Manual run queued through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": RunStatus::Queued.as_str()})),
    ))
}

async fn reload(State(api): State<Arc<Api>>, headers: HeaderMap) -> Answer {
    let config = api.control.config();
    if api.who(&config, &headers)? != Principal::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "reloading the config takes an admin token",
        ));
    }
    let control = api.control.clone();
    let result = tokio::task::spawn_blocking(move || control.reload())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the reload stopped: {e}"),
            )
        })?;
    match result {
        Ok(()) => Ok(Json(json!({"reloaded": true}))),
        Err(problems) => {
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_config",
                format!(
                    "the new config has {} problem(s); the old one keeps running",
                    problems.len()
                ),
            );
            e.details = problems;
            Err(e)
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

/// A run as the API and `cohort runs list --json` show it.
pub fn run_json(r: &RunRow) -> Value {
    let queued = r.status == RunStatus::Queued;
    json!({
        "id": r.id,
        "job": r.job,
        "status": r.status.as_str(),
        "trigger": r.trigger,
        "scheduled_for": time(r.scheduled_for),
        "started_at": if queued { Value::Null } else { time(Some(r.started_at)) },
        "finished_at": time(r.finished_at),
        "daemon": r.owner,
        "attempt": r.attempt,
        "error": r.error,
        "summary": r.summary.clone().unwrap_or(Value::Null),
    })
}

/// A run with its per-record errors, as `GET .../runs/{id}` and `cohort runs show --json`
/// show it.
pub fn run_detail_json(r: &RunRow, errors: &[RecordError]) -> Value {
    let mut v = run_json(r);
    v["errors"] = errors
        .iter()
        .map(|e| json!({"stage": e.stage, "location": e.location, "message": e.message}))
        .collect();
    v
}
