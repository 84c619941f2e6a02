//! The HTTP side of the console: the embedded page and its JSON API, with server-sent events
//! for job results.
//!
//! Every request passes [`Console::guard`] first: the `Host` must be one the console answers
//! to, a login (when the console has users) must be current, and a state-changing request
//! (every `POST`) must carry the session's CSRF token and come from the console's own origin.
//! The page is plain HTML, CSS and JavaScript compiled into the binary, served with a
//! Content-Security-Policy that allows nothing but the console's own scripts and styles.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{self, AllowedHosts, RequestOrigin, Sessions, Users};
use super::jobs::{JobError, JobEvent, JobRequest, Jobs, Requester};
use super::registry::Registry;
use super::store::Store;
use crate::protocol::filter::{Filter, FilterSpec};
use crate::protocol::now_ms;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// How many jobs the history page lists.
const HISTORY_PAGE: usize = 100;

/// Everything the handlers share.
pub struct Console {
    pub users: Option<Users>,
    pub sessions: Sessions,
    /// The CSRF token of a console without login (one per process).
    pub anonymous_csrf: String,
    pub hosts: AllowedHosts,
    pub registry: Arc<Registry>,
    pub rollouts: Arc<super::rollouts::Board>,
    pub jobs: Jobs,
    pub store: Arc<Store>,
    pub collective: String,
    pub registration_interval: Duration,
    /// Password checks allowed at once: PBKDF2 is slow on purpose, and a flood of logins must
    /// not take every core.
    pub password_checks: tokio::sync::Semaphore,
    /// Slows password guessing down, per client address and per user name.
    pub login_throttle: auth::LoginThrottle,
    /// Reached through a reverse proxy (`--origin` given): a login from a loopback peer names
    /// its client in `X-Real-IP`.
    pub behind_proxy: bool,
    pub metrics: super::metrics::ConsoleMetrics,
}

/// How many password checks may run at once.
pub const PASSWORD_CHECKS: usize = 2;

/// A refused or failed API call: a status and a message for the page.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> ApiError {
        let status = match &error {
            JobError::Invalid(_) | JobError::Identity(_) => StatusCode::BAD_REQUEST,
            JobError::Client(client) if client.is_usage() => StatusCode::BAD_REQUEST,
            JobError::Client(_) => StatusCode::BAD_GATEWAY,
            JobError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        ApiError(status, error.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Whether a request changes anything (and so needs the CSRF checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    No,
    Yes,
}

impl Console {
    fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).and_then(|value| value.to_str().ok())
    }

    fn origin_of<'a>(headers: &'a HeaderMap) -> RequestOrigin<'a> {
        RequestOrigin {
            host: Console::header(headers, "host"),
            origin: Console::header(headers, "origin"),
            fetch_site: Console::header(headers, "sec-fetch-site"),
            csrf_header: Console::header(headers, auth::CSRF_HEADER),
        }
    }

    fn session_token(headers: &HeaderMap) -> Option<&str> {
        Console::header(headers, "cookie").and_then(|cookie| auth::cookie_value(cookie, auth::SESSION_COOKIE))
    }

    /// Who is asking, once the host, login and (for changes) forgery checks pass.
    fn guard(&self, headers: &HeaderMap, change: Change) -> ApiResult<Requester> {
        let request = Console::origin_of(headers);
        let host = request.host.unwrap_or_default();
        if !self.hosts.allows(host) {
            return Err(ApiError(StatusCode::FORBIDDEN, auth::Refusal::Host(host.to_owned()).to_string()));
        }
        let (user, csrf) = match &self.users {
            None => (None, self.anonymous_csrf.clone()),
            Some(_) => {
                let session = Console::session_token(headers)
                    .and_then(|token| self.sessions.find(token))
                    .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "log in first".to_owned()))?;
                (Some(session.user), session.csrf)
            }
        };
        if change == Change::Yes {
            auth::check_request(&request, &self.hosts, Some(&csrf))
                .map_err(|refusal| ApiError(StatusCode::FORBIDDEN, refusal.to_string()))?;
        }
        Ok(Requester { user })
    }
}

/// The router with every page and API route.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/favicon.svg", get(favicon))
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/nodes", get(nodes))
        .route("/api/agents", get(agents))
        .route("/api/jobs", get(history).post(start_job))
        .route("/api/jobs/{id}", get(job))
        .route("/api/jobs/{id}/events", get(job_events))
        .route("/api/jobs/{id}/cancel", post(cancel_job))
        .route("/api/resources/clone", post(clone_resource))
        .route("/api/rollouts", get(rollouts))
        .route("/api/rollouts/events", get(rollout_events))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(console)
}

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn index(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    // The page itself needs no login (it shows the login form), but the host check applies.
    let host = Console::header(&headers, "host").unwrap_or_default();
    if !console.hosts.allows(host) {
        return ApiError(StatusCode::FORBIDDEN, auth::Refusal::Host(host.to_owned()).to_string())
            .into_response();
    }
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn session(State(console): State<Arc<Console>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    let login_required = console.users.is_some();
    match console.guard(&headers, Change::No) {
        Ok(requester) => {
            let csrf = match &requester.user {
                None => console.anonymous_csrf.clone(),
                Some(_) => Console::session_token(&headers)
                    .and_then(|token| console.sessions.find(token))
                    .map(|session| session.csrf)
                    .unwrap_or_default(),
            };
            Ok(Json(json!({
                "login_required": login_required,
                "logged_in": true,
                "user": requester.user,
                "csrf": csrf,
                "collective": console.collective,
            })))
        }
        Err(ApiError(StatusCode::UNAUTHORIZED, _)) => {
            Ok(Json(json!({"login_required": true, "logged_in": false, "collective": console.collective})))
        }
        Err(error) => Err(error),
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// A 429 answer: try again after `wait` (rounded up to whole seconds), said in the message
/// (`{wait}` in it) and in `Retry-After`.
fn too_many(message: &str, wait: Duration) -> Response {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let wait = format!("{secs} second{}", if secs == 1 { "" } else { "s" });
    let mut response =
        ApiError(StatusCode::TOO_MANY_REQUESTS, message.replace("{wait}", &wait)).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

async fn login(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Json(login): Json<Login>,
) -> Response {
    // No CSRF token exists before login; the Host, Origin and Sec-Fetch-Site checks apply.
    let request = Console::origin_of(&headers);
    if let Err(refusal) = auth::check_request(&request, &console.hosts, None) {
        return ApiError(StatusCode::FORBIDDEN, refusal.to_string()).into_response();
    }
    let Some(users) = console.users.clone() else {
        return ApiError(StatusCode::BAD_REQUEST, "this console has no login".to_owned()).into_response();
    };
    // Behind a proxy on this machine every peer is the proxy; it names the client.
    let client = match Console::header(&headers, "x-real-ip") {
        Some(real) if console.behind_proxy && peer.ip().is_loopback() => {
            real.trim().parse().unwrap_or(peer.ip())
        }
        _ => peer.ip(),
    };
    let name = login.user.clone();
    if let Some(wait) = console.login_throttle.wait(client, &name, std::time::Instant::now()) {
        return too_many("too many failed logins: wait {wait} before trying again", wait);
    }
    // Never queue: a flood of logins is refused rather than piled up behind the slow checks.
    let Ok(_permit) = console.password_checks.try_acquire() else {
        return too_many(
            "the console is busy checking other logins: try again in {wait}",
            Duration::from_secs(1),
        );
    };
    // PBKDF2 is deliberately slow: keep it off the async workers.
    let accepted = tokio::task::spawn_blocking(move || users.authenticate(&login.user, &login.password))
        .await
        .unwrap_or(false);
    if !accepted {
        console.login_throttle.failed(client, &name, std::time::Instant::now());
        tracing::warn!(user = %name, %client, "console login refused");
        return ApiError(StatusCode::UNAUTHORIZED, "wrong user name or password".to_owned()).into_response();
    }
    console.login_throttle.succeeded(client, &name);
    let (token, session) = console.sessions.create(&name);
    tracing::info!(user = %name, %client, "console login");
    let mut response = Json(json!({"user": session.user, "csrf": session.csrf})).into_response();
    let secure = console.hosts.secure(&request);
    if let Ok(cookie) = HeaderValue::from_str(&auth::session_cookie(&token, secure)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap) -> ApiResult<Response> {
    console.guard(&headers, Change::Yes)?;
    if let Some(token) = Console::session_token(&headers) {
        console.sessions.remove(token);
    }
    let mut response = Json(json!({"logged_out": true})).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&auth::expired_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct NodesQuery {
    /// The filter as JSON: `{"identity": [...], "class": [...], "fact": [...], "agent": [...], "select": [...]}`.
    filter: Option<String>,
}

fn parse_filter(text: Option<&str>) -> ApiResult<FilterSpec> {
    match text.filter(|text| !text.is_empty()) {
        None => Ok(FilterSpec::default()),
        Some(text) => super::jobs::parse_strict_filter(text)
            .map_err(|error| ApiError(StatusCode::BAD_REQUEST, format!("the filter is not valid: {error}"))),
    }
}

fn compile(spec: &FilterSpec) -> ApiResult<Filter> {
    Filter::compile(spec).map_err(|error| {
        let caret = error.caret().map(|caret| format!("\n{caret}")).unwrap_or_default();
        ApiError(StatusCode::BAD_REQUEST, format!("{error}{caret}"))
    })
}

async fn nodes(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<NodesQuery>,
) -> ApiResult<Json<Value>> {
    console.guard(&headers, Change::No)?;
    let spec = parse_filter(query.filter.as_deref())?;
    let filter = compile(&spec)?;
    let now = now_ms();
    let nodes = console.registry.matching(&filter, now);
    Ok(Json(json!({
        "filter": filter.describe(),
        "nodes": nodes,
        "now_ms": now,
        "quiet_after_secs": console.registration_interval.as_secs() * u64::from(super::registry::QUIET_INTERVALS),
        "rejected_registrations": console.registry.rejected(),
        "filled_from": console.registry.filling(),
    })))
}

async fn agents(State(console): State<Arc<Console>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    console.guard(&headers, Change::No)?;
    let definitions: Vec<Value> = console
        .jobs
        .catalog()
        .definitions()
        .map(|definition| serde_json::to_value(definition.as_ref()).unwrap_or_default())
        .collect();
    Ok(Json(json!({"agents": definitions})))
}

/// The console's own metrics (`console::metrics`): no login, but the `Host` check.
async fn metrics(State(console): State<Arc<Console>>, headers: HeaderMap) -> ApiResult<Response> {
    let host = Console::header(&headers, "host").unwrap_or_default();
    if !console.hosts.allows(host) {
        return Err(ApiError(StatusCode::FORBIDDEN, auth::Refusal::Host(host.to_owned()).to_string()));
    }
    let text =
        console.metrics.render(console.registry.len(), console.jobs.running(), console.registry.rejected());
    Ok(([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response())
}

/// A request body that does not parse (an unknown filter key, a missing field) is the
/// user's to fix: 400 with serde's words, which name the key and the valid ones.
fn bad_json(rejection: JsonRejection) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, rejection.body_text())
}

async fn start_job(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    request: Result<Json<JobRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let requester = console.guard(&headers, Change::Yes)?;
    let Json(request) = request.map_err(bad_json)?;
    let id = console.jobs.start(&requester, request).await?;
    console.metrics.job_started();
    Ok(Json(json!({"id": id})))
}

#[derive(Deserialize)]
struct HistoryQuery {
    /// Also list the jobs the page sent on its own (status refreshes).
    #[serde(default)]
    automatic: bool,
}

async fn history(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<HistoryQuery>,
) -> ApiResult<Json<Value>> {
    console.guard(&headers, Change::No)?;
    let jobs = console
        .store
        .call(move |store| store.recent_jobs(HISTORY_PAGE, query.automatic))
        .await
        .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?;
    Ok(Json(json!({"jobs": jobs})))
}

async fn job(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    console.guard(&headers, Change::No)?;
    let wanted = id.clone();
    match console.store.call(move |store| store.job(&wanted)).await {
        Ok(Some(job)) => Ok(Json(json!({"job": job}))),
        Ok(None) => Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}"))),
        Err(error) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string())),
    }
}

/// Cancels a running job: nothing more is sent or waited for; its record says who cancelled
/// it and which nodes were still awaited.
async fn cancel_job(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let requester = console.guard(&headers, Change::Yes)?;
    let cancelled = console.jobs.cancel(&requester, &id)?;
    Ok(Json(json!({"id": id, "cancelled": cancelled})))
}

/// Streams a job's events: everything so far, then each new one, ending after `finished`.
async fn job_events(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    console.guard(&headers, Change::No)?;
    let Some(live) = console.jobs.live(&id) else {
        // Not live (an older job, or the console restarted): its record, as one final event.
        let wanted = id.clone();
        let job = console
            .store
            .call(move |store| store.job(&wanted))
            .await
            .map_err(|error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))?
            .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))?;
        let event = JobEvent::Finished { job: &job }.to_json();
        let once = futures_util::stream::once(async move {
            Ok::<_, Infallible>(SseEvent::default().data(event.to_string()))
        });
        return Ok(Sse::new(once).into_response());
    };
    let progress = live.subscribe();
    // Counted while the stream lives: the guard goes with it.
    let client = console.metrics.sse_client();
    let batches = futures_util::stream::unfold(
        (live, progress, 0usize, false, client),
        |(live, mut progress, next, done, client)| async move {
            if done {
                return None;
            }
            loop {
                let events = live.events_from(next);
                if !events.is_empty() {
                    let finished = events.iter().any(|event| event["type"] == "finished");
                    let next = next + events.len();
                    return Some((events, (live, progress, next, finished, client)));
                }
                if progress.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    let stream = batches.flat_map(|events| {
        futures_util::stream::iter(
            events.into_iter().map(|event| Ok::<_, Infallible>(SseEvent::default().data(event.to_string()))),
        )
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

/// Every rollout of the last day, the latest change first.
async fn rollouts(State(console): State<Arc<Console>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    console.guard(&headers, Change::No)?;
    Ok(Json(json!({"rollouts": console.rollouts.rows(), "now_ms": now_ms()})))
}

/// Streams the rollouts: the whole list at once, then again at every change.
async fn rollout_events(State(console): State<Arc<Console>>, headers: HeaderMap) -> ApiResult<Response> {
    console.guard(&headers, Change::No)?;
    let changes = console.rollouts.changes();
    let client = console.metrics.sse_client();
    let lists = futures_util::stream::unfold(
        (console, changes, true, client),
        |(console, mut changes, first, client)| async move {
            if !first && changes.changed().await.is_err() {
                return None;
            }
            changes.borrow_and_update();
            let list = json!({"rollouts": console.rollouts.rows(), "now_ms": now_ms()});
            Some((
                Ok::<_, Infallible>(SseEvent::default().data(list.to_string())),
                (console, changes, false, client),
            ))
        },
    );
    Ok(Sse::new(lists).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Deserialize)]
struct CloneRequest {
    #[serde(rename = "type")]
    kind: String,
    title: String,
    source: String,
    targets: Vec<String>,
    #[serde(default, deserialize_with = "super::jobs::strict_filter")]
    filter: FilterSpec,
    /// How many nodes the user confirmed the create may touch (see [`super::jobs::check_confirmed`]).
    #[serde(default)]
    confirmed_nodes: Option<usize>,
}

/// Clones a resource: `resource find` on the source node, then `resource create` with the
/// properties found, on the targets. Returns both jobs' ids; the create job's results stream
/// like any other job's.
async fn clone_resource(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    clone: Result<Json<CloneRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let requester = console.guard(&headers, Change::Yes)?;
    let Json(clone) = clone.map_err(bad_json)?;
    if clone.targets.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "choose at least one node to clone onto".to_owned()));
    }
    if clone.targets.contains(&clone.source) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{} is the source; it cannot be a target", clone.source),
        ));
    }
    let inputs = |properties: Option<&Value>| {
        let mut inputs = serde_json::Map::new();
        inputs.insert("type".to_owned(), json!(clone.kind));
        inputs.insert("title".to_owned(), json!(clone.title));
        if let Some(properties) = properties {
            inputs.insert("properties".to_owned(), json!(properties.to_string()));
        }
        inputs
    };
    // Nothing is looked up before the create is known to be confirmed for these targets.
    super::jobs::check_confirmed("resource#create", false, clone.confirmed_nodes, clone.targets.len())?;
    let mut find = JobRequest::new("resource", "find", inputs(None), clone.filter.clone());
    find.nodes = Some(vec![clone.source.clone()]);
    let find_id = console.jobs.start(&requester, find).await?;
    let live = console
        .jobs
        .live(&find_id)
        .ok_or_else(|| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the find job vanished".to_owned()))?;
    let mut progress = live.subscribe();
    while !progress.borrow_and_update().1 {
        if progress.changed().await.is_err() {
            break;
        }
    }
    let finished =
        live.events_from(0).into_iter().find(|event| event["type"] == "finished").unwrap_or_default();
    let reply = finished["job"]["outcome"]["replies"]
        .as_array()
        .and_then(|replies| replies.iter().find(|reply| reply["node"] == clone.source.as_str()))
        .cloned()
        .ok_or_else(|| {
            ApiError(StatusCode::BAD_GATEWAY, format!("{} did not answer resource find", clone.source))
        })?;
    if reply["status"] != 0 {
        return Err(ApiError(
            StatusCode::BAD_GATEWAY,
            format!(
                "{} could not find the resource: {}",
                clone.source,
                reply["message"].as_str().unwrap_or_default()
            ),
        ));
    }
    if reply["data"]["exists"] != true {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{} has no {} {:?} to clone", clone.source, clone.kind, clone.title),
        ));
    }
    let mut create = JobRequest::new(
        "resource",
        "create",
        inputs(Some(&reply["data"]["properties"])),
        clone.filter.clone(),
    );
    create.nodes = Some(clone.targets.clone());
    create.confirmed_nodes = clone.confirmed_nodes;
    let id = console.jobs.start(&requester, create).await?;
    Ok(Json(json!({"id": id, "find_job": find_id, "properties": reply["data"]["properties"]})))
}
