//! The support console at `/console`: server-rendered pages (maud, escaped by default), a
//! stylesheet and one small script embedded in the binary, every answer under a
//! Content-Security-Policy that allows no inline script.
//!
//! Signing in exchanges an API key (support or platform), posted in a form, for a session:
//! a random secret in an `HttpOnly; SameSite=Strict; Path=/console` cookie (`Secure` when
//! a trusted proxy says the request came over TLS), stored as SHA-256 with the key's hash,
//! so revoking or replacing the key ends the session. The key is never put in a URL, a log
//! or the browser's storage. POSTs must come from the console's own origin (`Origin`), on
//! top of SameSite. Every read goes through [`Service`], as the API's support routes do.
//! The console has no writes: a support session can do nothing a support key cannot.

mod pages;

use std::time::Duration;

use actix_web::{
    cookie::{Cookie, SameSite},
    dev::Payload,
    http::{header, StatusCode},
    middleware::DefaultHeaders,
    web, FromRequest, HttpRequest, HttpResponse, ResponseError,
};
use serde::Deserialize;

use super::auth::Attempt;
use super::errors::ApiError;
use super::request::over_tls;
use crate::audit::{self, AuditError, AuditPage, AuditParams};
use crate::domain::{AppId, ClientId, RoomId};
use crate::secrets::sha256;
use crate::service::{Service, ServiceError};
use crate::store::keys::Role;

const COOKIE: &str = "chatprefs_console";
/// How long a sign-in lasts; after it the console answers 401 with a link to sign in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// What every console answer may load: only its own files; no inline script or style, no
/// framing, forms only to itself.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'; object-src 'none'";
/// Console URLs name users and rooms: never sent to another site. Not `no-referrer`, under
/// which browsers send `Origin: null` on the console's own form posts, and the origin check
/// would refuse them.
const REFERRER_POLICY: &str = "same-origin";
/// Muters per page of a room.
const MUTERS_PAGE: i64 = 100;

const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

/// The console's routes, all under `/console`, in one place.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/console")
            .wrap(
                DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CSP))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, REFERRER_POLICY))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .route("", web::get().to(home))
            .route("/", web::get().to(home))
            .route("/sign-in", web::post().to(sign_in))
            .route("/sign-out", web::post().to(sign_out))
            .route("/user", web::get().to(user))
            .route("/user.csv", web::get().to(user_csv))
            .route("/as-of", web::get().to(as_of))
            .route("/room", web::get().to(room))
            .route("/version", web::get().to(version))
            .route("/console.js", web::get().to(script))
            .route("/console.css", web::get().to(style))
            .default_service(web::to(not_found)),
    );
}

/// What a console request can fail with: each is a page.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("you are not signed in")]
    SignedOut,
    #[error("your session has expired")]
    Expired,
    #[error("that key is unknown or revoked")]
    UnknownKey,
    #[error("this form must be sent from the console itself")]
    ForeignOrigin,
    #[error("too many failed sign-ins; try again later")]
    RateLimited,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the service is temporarily unavailable; try again in a moment")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::SignedOut | ConsoleError::Expired | ConsoleError::UnknownKey => {
                StatusCode::UNAUTHORIZED
            }
            ConsoleError::ForeignOrigin => StatusCode::FORBIDDEN,
            ConsoleError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::Invalid(_) => StatusCode::BAD_REQUEST,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ConsoleError::Internal(detail) = self {
            tracing::error!(error = %detail, "console: internal error");
        }
        let status = self.status_code();
        let sign_in = matches!(
            self,
            ConsoleError::SignedOut | ConsoleError::Expired | ConsoleError::UnknownKey
        );
        let mut response = HttpResponse::build(status);
        if matches!(self, ConsoleError::Expired) {
            response.cookie(removal_cookie());
        }
        html(response, pages::error(status, &self.to_string(), sign_in))
    }
}

impl From<ServiceError> for ConsoleError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::ClientNotFound => {
                ConsoleError::NotFound("no such user in this app".into())
            }
            ServiceError::RoomNotFound => ConsoleError::NotFound("no such room in this app".into()),
            ServiceError::Store(store) if crate::store::Retryable::is_unavailable(&store) => {
                ConsoleError::Unavailable
            }
            other => ConsoleError::Internal(other.to_string()),
        }
    }
}

impl From<AuditError> for ConsoleError {
    fn from(err: AuditError) -> Self {
        match err {
            AuditError::Invalid(invalid) => ConsoleError::Invalid(invalid.to_string()),
            AuditError::ClientNotFound => ConsoleError::NotFound("no such user in this app".into()),
            AuditError::Store(store) => ServiceError::Store(store).into(),
        }
    }
}

impl From<crate::domain::IdError> for ConsoleError {
    fn from(err: crate::domain::IdError) -> Self {
        ConsoleError::Invalid(err.to_string())
    }
}

fn html(mut response: actix_web::HttpResponseBuilder, page: maud::Markup) -> HttpResponse {
    response
        .content_type("text/html; charset=utf-8")
        .body(page.into_string())
}

fn service(req: &HttpRequest) -> Result<web::Data<Service>, ConsoleError> {
    req.app_data::<web::Data<Service>>()
        .cloned()
        .ok_or_else(|| ConsoleError::Internal("the service is not configured".into()))
}

/// A signed-in console user: the app and the role of the key they signed in with.
pub struct Session {
    pub app: AppId,
    pub role: Role,
}

impl FromRequest for Session {
    type Error = ConsoleError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, ConsoleError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let secret = req.cookie(COOKIE).map(|c| c.value().to_owned());
        let service = service(req);
        Box::pin(async move {
            let secret = secret.ok_or(ConsoleError::SignedOut)?;
            let found = service?.console_session(&sha256(&secret)).await?;
            let session = found.ok_or(ConsoleError::SignedOut)?;
            if session.expired {
                return Err(ConsoleError::Expired);
            }
            tracing::Span::current().record("app_id", session.app.as_str());
            Ok(Session {
                app: session.app,
                role: session.role,
            })
        })
    }
}

fn session_cookie(secret: String, secure: bool) -> Cookie<'static> {
    Cookie::build(COOKIE, secret)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            SESSION_LIFETIME.as_secs() as i64,
        ))
        .finish()
}

fn removal_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::build(COOKIE, "")
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    cookie
}

/// A POST must name the console's own origin: the `Origin` a browser sends must be this
/// request's `Host` (SameSite=Strict already keeps the cookie off other sites' requests;
/// this also covers the sign-in form, which has no cookie yet).
fn same_origin(req: &HttpRequest) -> Result<(), ConsoleError> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let origin_host = origin
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (host, origin_host) {
        (Some(host), Some(origin)) if host.eq_ignore_ascii_case(origin) => Ok(()),
        _ => Err(ConsoleError::ForeignOrigin),
    }
}

async fn home(req: HttpRequest) -> Result<HttpResponse, ConsoleError> {
    match Session::extract(&req).await {
        Ok(session) => Ok(html(HttpResponse::Ok(), pages::home(&session))),
        Err(ConsoleError::SignedOut | ConsoleError::Expired) => {
            Ok(html(HttpResponse::Ok(), pages::sign_in(None)))
        }
        Err(other) => Err(other),
    }
}

#[derive(Deserialize)]
struct SignInForm {
    key: String,
}

async fn sign_in(
    req: HttpRequest,
    form: web::Form<SignInForm>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ConsoleError> {
    same_origin(&req)?;
    let key_hash = sha256(form.into_inner().key.trim());
    // Counted with the API's failed authentications, per address and per key.
    let attempt = Attempt::new(&req);
    attempt
        .admit(&[key_hash])
        .map_err(|_| ConsoleError::RateLimited)?;
    let opened = service
        .open_console_session(&key_hash, SESSION_LIFETIME)
        .await?;
    let Some((secret, key)) = opened else {
        let _ = attempt.failed::<()>(&[key_hash], Err(ApiError::InvalidApiKey));
        return Ok(html(
            HttpResponse::Unauthorized(),
            pages::sign_in(Some("That key is unknown or revoked.")),
        ));
    };
    tracing::info!(
        app_id = key.app.as_str(),
        role = key.role.as_str(),
        "console sign-in"
    );
    Ok(HttpResponse::SeeOther()
        .cookie(session_cookie(secret, over_tls(&req)))
        .insert_header((header::LOCATION, "/console"))
        .finish())
}

async fn sign_out(
    req: HttpRequest,
    service: web::Data<Service>,
) -> Result<HttpResponse, ConsoleError> {
    same_origin(&req)?;
    if let Some(cookie) = req.cookie(COOKIE) {
        service
            .close_console_session(&sha256(cookie.value()))
            .await?;
    }
    Ok(HttpResponse::SeeOther()
        .cookie(removal_cookie())
        .insert_header((header::LOCATION, "/console"))
        .finish())
}

/// A user's timeline query: the audit filters, as the form and the links send them.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct TimelineQuery {
    pub id: Option<String>,
    pub room: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub after: Option<String>,
    pub limit: Option<String>,
}

impl TimelineQuery {
    fn user(&self) -> Result<ClientId, ConsoleError> {
        let id = self.id.clone().filter(|id| !id.is_empty());
        let id = id.ok_or_else(|| ConsoleError::Invalid("give a user id".into()))?;
        Ok(ClientId::parse(id)?)
    }

    /// The audit filter this query means; empty form fields mean "no filter".
    fn params(&self) -> AuditParams {
        let given = |v: &Option<String>| v.clone().filter(|v| !v.trim().is_empty());
        AuditParams {
            client: self.id.clone(),
            room: given(&self.room),
            since: given(&self.since).map(|v| local_instant(&v)),
            until: given(&self.until).map(|v| local_instant(&v)),
            limit: given(&self.limit),
            after: given(&self.after),
        }
    }

    /// The page of the audit this query shows: the timeline and its CSV read the same one.
    async fn page(&self, session: &Session, service: &Service) -> Result<AuditPage, ConsoleError> {
        let filter = self
            .params()
            .into_filter(session.app.clone())
            .map_err(AuditError::from)?;
        Ok(service.audit(&filter).await?)
    }
}

/// A browser's `datetime-local` value (`2026-11-26T15:02`, no zone) read as UTC; anything
/// else passes through to the audit's own parsing (RFC 3339 or epoch milliseconds).
fn local_instant(raw: &str) -> String {
    let raw = raw.trim();
    let local = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"));
    match local {
        Ok(at) => at.and_utc().to_rfc3339(),
        Err(_) => raw.to_owned(),
    }
}

async fn user(
    session: Session,
    query: web::Query<TimelineQuery>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ConsoleError> {
    let query = query.into_inner();
    let id = query.user()?;
    let (profile, mutes) = service.client_profile(&session.app, &id).await?;
    let page = query.page(&session, &service).await?;
    let version = service
        .stream_version(&session.app, &id)
        .await
        .map_err(ServiceError::from)?;
    Ok(html(
        HttpResponse::Ok(),
        pages::user(&session, &query, &profile, &mutes, &page, version),
    ))
}

/// The page of [`user`] as CSV: the same query, so exactly the rows shown.
async fn user_csv(
    session: Session,
    query: web::Query<TimelineQuery>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ConsoleError> {
    let query = query.into_inner();
    let id = query.user()?;
    let page = query.page(&session, &service).await?;
    let mut body = Vec::new();
    audit::output::write_csv(&mut body, &page.entries)
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    let name = format!("timeline-{}.csv", hex::encode(&sha256(id.as_str())[..6]));
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ))
        .body(body))
}

#[derive(Debug, Default, Deserialize)]
pub struct AsOfQuery {
    pub id: Option<String>,
    pub at: Option<String>,
}

/// Most muted rooms whose deciding event the as-of page looks up.
const AS_OF_ROOMS: usize = 50;

async fn as_of(
    session: Session,
    query: web::Query<AsOfQuery>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ConsoleError> {
    let query = query.into_inner();
    let id = TimelineQuery {
        id: query.id.clone(),
        ..TimelineQuery::default()
    }
    .user()?;
    let at = query
        .at
        .as_deref()
        .filter(|at| !at.trim().is_empty())
        .map(|at| audit::parse_instant("at", &local_instant(at)))
        .transpose()
        .map_err(|e| ConsoleError::Invalid(e.to_string()))?;
    let answer = service.muted_as_of(&session.app, &id, at).await?;
    // The event that put each room in the set: its last mute at or before the instant.
    let mut deciding = Vec::new();
    for room in answer.mutes.iter().map(|mute| &mute.room).take(AS_OF_ROOMS) {
        let filter = crate::store::audit::AuditFilter {
            app: session.app.clone(),
            client: Some(id.clone()),
            room: Some(room.clone()),
            since: None,
            until: Some(answer.at + chrono::Duration::microseconds(1)),
            after: None,
            limit: audit::MAX_LIMIT,
        };
        let page = service.audit(&filter).await?;
        if let Some(last) = page
            .entries
            .into_iter()
            .rev()
            .find(|e| e.event_type == "RoomMuted")
        {
            deciding.push(last);
        }
    }
    Ok(html(
        HttpResponse::Ok(),
        pages::as_of(&session, &answer, &deciding),
    ))
}

#[derive(Debug, Default, Deserialize)]
pub struct RoomQuery {
    pub id: Option<String>,
    pub after: Option<String>,
}

async fn room(
    session: Session,
    query: web::Query<RoomQuery>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ConsoleError> {
    let query = query.into_inner();
    let room = query
        .id
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ConsoleError::Invalid("give a room id".into()))?;
    let room = RoomId::parse(room)?;
    let after = query
        .after
        .clone()
        .filter(|a| !a.is_empty())
        .map(ClientId::parse)
        .transpose()?;
    let muters = service
        .muters(&session.app, &room, after.as_ref(), MUTERS_PAGE + 1)
        .await?;
    Ok(html(
        HttpResponse::Ok(),
        pages::room(&session, &room, &muters, MUTERS_PAGE as usize),
    ))
}

/// The user's stream version, which the timeline's script compares to decide to refresh.
async fn version(
    session: Session,
    query: web::Query<TimelineQuery>,
    service: web::Data<Service>,
) -> Result<HttpResponse, ConsoleError> {
    let id = query.into_inner().user()?;
    let version = service
        .stream_version(&session.app, &id)
        .await
        .map_err(ServiceError::from)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "version": version })))
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(SCRIPT)
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(STYLE)
}

async fn not_found() -> Result<HttpResponse, ConsoleError> {
    Err(ConsoleError::NotFound("no such page".into()))
}
