//! Extractors that authenticate a request before its handler runs.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Instant;

use super::errors::ApiError;
use super::request::client_address;
use super::routes::required_role;
use crate::auth_cache::AuthCache;
use crate::domain::AppId;
use crate::key_usage::KeyUsage;
use crate::ratelimit::{FailureLimiter, KeyHash};
use crate::secrets::sha256;
use crate::service::{Service, ServiceError};
use crate::store::directory::{ClientAuth, ClientRecord};
use crate::store::keys::{KeyAuth, Role};
use actix_web::{
    body::MessageBody,
    dev::{Payload, ServiceRequest, ServiceResponse},
    http::Method,
    middleware::Next,
    web, FromRequest, HttpRequest,
};

/// The documented header first, then the name the IMKIT JavaScript SDK (imkit-js-lib)
/// sends instead. Header names are case-insensitive, so `client_key` is the same header.
const CLIENT_KEY: [&str; 2] = ["im-client-key", "client_key"];
const CLIENT_TOKEN: &str = "im-authorization";
/// Older IMKIT SDKs send the token in the standard header, bare or as `Bearer <token>`.
const STANDARD_TOKEN: &str = "authorization";
const API_KEY: &str = "im-api-key";

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn first_header<'a>(req: &'a HttpRequest, names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| header(req, name))
}

/// The token of `Authorization`: bare, or with the `Bearer` scheme in any case (RFC 7235
/// makes auth schemes case-insensitive). Any other scheme carries no token of ours.
fn bearer_token(value: &str) -> Option<&str> {
    match value.split_once([' ', '\t']) {
        None => Some(value),
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Some(token.trim()).filter(|t| !t.is_empty())
        }
        Some(_) => None,
    }
}

/// The client key and token of a client-API request, in every spelling IMKIT SDKs send.
fn client_credentials(req: &HttpRequest) -> (Option<String>, Option<String>) {
    let client_key = first_header(req, &CLIENT_KEY).map(str::to_owned);
    let token = header(req, CLIENT_TOKEN)
        .or_else(|| header(req, STANDARD_TOKEN).and_then(bearer_token))
        .map(str::to_owned);
    (client_key, token)
}

fn service(req: &HttpRequest) -> Result<web::Data<Service>, ApiError> {
    req.app_data::<web::Data<Service>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the service is not configured".into()))
}

fn auth_cache(req: &HttpRequest) -> Option<web::Data<AuthCache>> {
    req.app_data::<web::Data<AuthCache>>().cloned()
}

/// The routes whose requests may change what a credential proves: a user's profile and
/// last login, or their tokens.
const CHANGING_AUTH: [&str; 3] = [
    "/admin/clients",
    "/admin/clients/{uid}/token",
    "/auths/sign/v2",
];

/// After a request that may have changed what credentials prove, waits until this
/// instance's authentication cache has heard of it, so the caller's next request here sees
/// the change at once (other instances see it within a second).
pub async fn settle_auth_changes(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let cache = (req.method() != Method::GET)
        .then(|| auth_cache(req.request()))
        .flatten()
        .filter(|_| {
            req.match_pattern()
                .is_some_and(|p| CHANGING_AUTH.contains(&p.as_str()))
        });
    let response = next.call(req).await?;
    if let Some(cache) = cache {
        cache.settle().await;
    }
    Ok(response)
}

fn record_caller(app: &AppId, client: Option<&str>) {
    let span = tracing::Span::current();
    span.record("app_id", app.as_str());
    if let Some(client) = client {
        span.record("client_id", client);
    }
}

/// One authentication attempt as the failure limiter sees it: refused up front while the
/// caller's address or a presented key is blocked, counted only if it fails.
pub(super) struct Attempt {
    limiter: Option<web::Data<FailureLimiter>>,
    address: Option<IpAddr>,
}

impl Attempt {
    pub(super) fn new(req: &HttpRequest) -> Self {
        let limiter = req.app_data::<web::Data<FailureLimiter>>().cloned();
        let address = limiter.as_ref().and_then(|_| client_address(req));
        Attempt { limiter, address }
    }

    pub(super) fn admit(&self, keys: &[KeyHash]) -> Result<(), ApiError> {
        match &self.limiter {
            Some(limiter) => limiter
                .check(self.address, keys, Instant::now())
                .map_err(ApiError::RateLimited),
            None => Ok(()),
        }
    }

    /// Counts a failure against the address and `keys`: the credentials found wrong, never
    /// a valid one presented beside them (a wrong token must not block its app's client key).
    pub(super) fn failed<T>(
        &self,
        keys: &[KeyHash],
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if let (
            Some(limiter),
            Err(ApiError::InvalidClientKey | ApiError::InvalidToken | ApiError::InvalidApiKey),
        ) = (&self.limiter, &result)
        {
            limiter.record_failure(self.address, keys, Instant::now());
        }
        result
    }

    /// Answers what one presented key names (the app and what `lookup` reads with it), or
    /// `refusal` when the key is missing or names nothing, counting that failure against the
    /// address and the key. The app is recorded on the request's span.
    async fn one_key<T>(
        &self,
        service: Result<web::Data<Service>, ApiError>,
        key: Option<String>,
        refusal: ApiError,
        lookup: impl AsyncFnOnce(&Service, &str) -> Result<Option<(AppId, T)>, ServiceError>,
    ) -> Result<(AppId, T), ApiError> {
        let Some(key) = key else {
            self.admit(&[])?;
            return self.failed(&[], Err(refusal));
        };
        let key_hash = sha256(&key);
        self.admit(&[key_hash])?;
        let Some((app, found)) = lookup(service?.get_ref(), &key).await? else {
            return self.failed(&[key_hash], Err(refusal));
        };
        record_caller(&app, None);
        Ok((app, found))
    }
}

type Extracting<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// A user of an app, proven by the app's client key and one of the user's live tokens.
#[derive(Debug)]
pub struct AuthenticatedClient {
    pub app: AppId,
    pub client: ClientRecord,
}

impl FromRequest for AuthenticatedClient {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (client_key, token) = client_credentials(req);
        let service = service(req);
        let attempt = Attempt::new(req);
        let cache = auth_cache(req);
        Box::pin(async move {
            let Some(client_key) = client_key else {
                attempt.admit(&[])?;
                return attempt.failed(&[], Err(ApiError::InvalidClientKey));
            };
            let token_hash = sha256(token.as_deref().unwrap_or_default());
            let key_hash = attempt.limiter.as_ref().map(|_| sha256(&client_key));
            let presented: Vec<KeyHash> = key_hash
                .into_iter()
                .chain(token.is_some().then_some(token_hash))
                .collect();
            attempt.admit(&presented)?;
            let cached = cache.map(|cache| {
                let key = AuthCache::client_key(&client_key, &token_hash);
                (cache, key)
            });
            if let Some((cache, key)) = &cached {
                if let Some((app, client)) = cache.client(key) {
                    record_caller(&app, Some(client.client_id.as_str()));
                    return Ok(AuthenticatedClient { app, client });
                }
            }
            let ticket = cached.as_ref().map(|(cache, _)| cache.ticket());
            match service?
                .authenticate_client(&client_key, &token_hash)
                .await?
            {
                ClientAuth::UnknownClientKey => {
                    attempt.failed(key_hash.as_slice(), Err(ApiError::InvalidClientKey))
                }
                ClientAuth::InvalidToken(app) => {
                    record_caller(&app, None);
                    let tokens: &[KeyHash] = if token.is_some() { &[token_hash] } else { &[] };
                    attempt.failed(tokens, Err(ApiError::InvalidToken))
                }
                ClientAuth::Authenticated(app, client, left) => {
                    if let (Some((cache, key)), Some(ticket)) = (cached, ticket) {
                        cache.keep_client(ticket, key, &app, &client, left);
                    }
                    record_caller(&app, Some(client.client_id.as_str()));
                    Ok(AuthenticatedClient { app, client })
                }
            }
        })
    }
}

/// An app named by its client key alone, for client sign-in: the caller has no token yet.
#[derive(Debug)]
pub struct SigningApp {
    pub app: AppId,
    /// Whether the app lets its users sign themselves in (off unless its operator said so).
    pub client_sign_in: bool,
}

impl FromRequest for SigningApp {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (client_key, _) = client_credentials(req);
        let service = service(req);
        let attempt = Attempt::new(req);
        Box::pin(async move {
            let lookup = async |service: &Service, key: &str| service.app_by_client_key(key).await;
            let (app, client_sign_in) = attempt
                .one_key(service, client_key, ApiError::InvalidClientKey, lookup)
                .await?;
            Ok(SigningApp {
                app,
                client_sign_in,
            })
        })
    }
}

/// An app's backend or its support staff, proven by an API key whose role the matched
/// route allows ([`super::routes::required_role`]): a `support` key on any other route is
/// refused with 403 `INSUFFICIENT_ROLE`.
#[derive(Debug)]
pub struct PlatformApp {
    pub app: AppId,
}

impl FromRequest for PlatformApp {
    type Error = ApiError;
    type Future = Extracting<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let api_key = header(req, API_KEY).map(str::to_owned);
        let service = service(req);
        let attempt = Attempt::new(req);
        let cache = auth_cache(req);
        let usage = req.app_data::<web::Data<KeyUsage>>().cloned();
        let needed = required_role(req.method(), req.match_pattern().as_deref());
        Box::pin(async move {
            let key = authenticate_key(api_key, service, &attempt, cache).await?;
            if let (Some(usage), Some(id)) = (usage, key.key_id) {
                usage.touch(id);
            }
            if needed == Role::Platform && key.role != Role::Platform {
                return Err(ApiError::InsufficientRole(key.role.as_str()));
            }
            Ok(PlatformApp { app: key.app })
        })
    }
}

/// The app and role an API key proves, from this process's cache when it vouches for it.
async fn authenticate_key(
    api_key: Option<String>,
    service: Result<web::Data<Service>, ApiError>,
    attempt: &Attempt,
    cache: Option<web::Data<AuthCache>>,
) -> Result<KeyAuth, ApiError> {
    let cached = cache.zip(api_key.as_deref().map(sha256));
    if let Some((cache, key_hash)) = &cached {
        attempt.admit(&[*key_hash])?;
        if let Some(key) = cache.platform(key_hash) {
            record_caller(&key.app, None);
            return Ok(key);
        }
    }
    let ticket = cached.as_ref().map(|(cache, _)| cache.ticket());
    let lookup = async |service: &Service, key: &str| {
        let found = service.key_by_hash(&sha256(key)).await?;
        Ok(found.map(|key| (key.app.clone(), key)))
    };
    let (_, key) = attempt
        .one_key(service, api_key, ApiError::InvalidApiKey, lookup)
        .await?;
    if let (Some((cache, key_hash)), Some(ticket)) = (cached, ticket) {
        cache.keep_platform(ticket, key_hash, &key);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_optional() {
        for value in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER t0k",
            "bEaReR   t0k",
            "t0k",
        ] {
            assert_eq!(bearer_token(value), Some("t0k"), "{value}");
        }
    }

    #[test]
    fn other_schemes_and_empty_credentials_carry_no_token() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer ", "Token t0k"] {
            assert_eq!(bearer_token(value), None, "{value}");
        }
    }
}
