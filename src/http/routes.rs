//! The route table: every endpoint, with who may call it. The router is built from this
//! table alone ([`configure_routes`]), the API-key extractor reads the role a route needs
//! from it, and the tests walk it, so an endpoint cannot be added without saying who may
//! call it, nor be left out of the role tests.

use actix_web::{http::Method, web, Resource};

use super::{
    admin, audit, dispatch, feed, health, me, method_not_allowed, metrics, mutes, openapi, signin,
};
use crate::store::keys::Role;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No credentials: probes, metrics, the OpenAPI document.
    Anyone,
    /// An app's public client key alone (client sign-in).
    ClientKey,
    /// A signed-in user: client key and token.
    Client,
    /// An API key of either role: the reads support staff need.
    Support,
    /// A `platform` API key: every write, token issue, and the push dispatcher's check.
    Platform,
}

/// Which handler serves a route.
#[derive(Debug, Clone, Copy)]
enum Handler {
    Me,
    LiveEvents,
    Mute,
    Unmute,
    Pause,
    Resume,
    SignIn,
    UpsertClient,
    ClientProfile,
    RevokeTokens,
    Erase,
    AsOf,
    Audit,
    Feed,
    UpsertRoom,
    CheckMuted,
    Muters,
    Healthz,
    Readyz,
    Metrics,
    OpenApi,
}

/// One route: method, path pattern (as actix matches it), who may call it.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub caller: Caller,
    handler: Handler,
}

const fn route(method: Method, path: &'static str, caller: Caller, handler: Handler) -> Route {
    Route {
        method,
        path,
        caller,
        handler,
    }
}

/// A room id is one path segment that may be empty, so that `/me/mute/` is answered as a
/// bad room id (400) rather than as an unknown endpoint.
macro_rules! room {
    () => {
        "{room:[^/]*}"
    };
}

/// Every route. Routes of one path are kept together (one resource each).
#[rustfmt::skip] // one route a line reads as the table it is
pub const ROUTES: &[Route] = &[
    route(Method::GET, "/me", Caller::Client, Handler::Me),
    route(Method::GET, "/me/events", Caller::Client, Handler::LiveEvents),
    route(Method::POST, concat!("/me/mute/", room!()), Caller::Client, Handler::Mute),
    route(Method::DELETE, concat!("/me/mute/", room!()), Caller::Client, Handler::Unmute),
    route(Method::POST, "/me/dnd", Caller::Client, Handler::Pause),
    route(Method::DELETE, "/me/dnd", Caller::Client, Handler::Resume),
    route(Method::POST, "/auths/sign/v2", Caller::ClientKey, Handler::SignIn),
    route(Method::POST, "/admin/clients", Caller::Platform, Handler::UpsertClient),
    route(Method::GET, "/admin/clients/{uid}", Caller::Support, Handler::ClientProfile),
    route(Method::DELETE, "/admin/clients/{uid}/token", Caller::Platform, Handler::RevokeTokens),
    route(Method::POST, "/admin/clients/{uid}/erase", Caller::Platform, Handler::Erase),
    route(Method::POST, concat!("/admin/clients/{uid}/mute/", room!()), Caller::Platform, Handler::Mute),
    route(Method::DELETE, concat!("/admin/clients/{uid}/mute/", room!()), Caller::Platform, Handler::Unmute),
    route(Method::POST, "/admin/clients/{uid}/dnd", Caller::Platform, Handler::Pause),
    route(Method::DELETE, "/admin/clients/{uid}/dnd", Caller::Platform, Handler::Resume),
    route(Method::GET, "/admin/clients/{uid}/mute", Caller::Support, Handler::AsOf),
    route(Method::GET, "/admin/audit", Caller::Support, Handler::Audit),
    route(Method::GET, "/admin/events", Caller::Support, Handler::Feed),
    route(Method::POST, "/rooms", Caller::Platform, Handler::UpsertRoom),
    route(Method::POST, "/rooms/", Caller::Platform, Handler::UpsertRoom),
    route(Method::POST, concat!("/admin/rooms/", room!(), "/mutes/check"), Caller::Platform, Handler::CheckMuted),
    route(Method::GET, concat!("/admin/rooms/", room!(), "/mutes"), Caller::Support, Handler::Muters),
    route(Method::GET, "/healthz", Caller::Anyone, Handler::Healthz),
    route(Method::GET, "/readyz", Caller::Anyone, Handler::Readyz),
    route(Method::GET, "/metrics", Caller::Anyone, Handler::Metrics),
    route(Method::GET, "/openapi.json", Caller::Anyone, Handler::OpenApi),
];

/// The role an API key needs on the route matched by `method` and `pattern`: `platform`
/// unless the table says the route is a support read, so a route missing from the table
/// fails closed.
pub fn required_role(method: &Method, pattern: Option<&str>) -> Role {
    let support = ROUTES
        .iter()
        .any(|r| r.method == *method && Some(r.path) == pattern && r.caller == Caller::Support);
    if support {
        Role::Support
    } else {
        Role::Platform
    }
}

fn handler(route: &Route) -> actix_web::Route {
    let at = web::method(route.method.clone());
    match route.handler {
        Handler::Me => at.to(me::get_me),
        Handler::LiveEvents => at.to(feed::live),
        Handler::Mute => at.to(mutes::mute),
        Handler::Unmute => at.to(mutes::unmute),
        Handler::Pause => at.to(mutes::pause),
        Handler::Resume => at.to(mutes::resume),
        Handler::SignIn => at.to(signin::sign_in),
        Handler::UpsertClient => at.to(admin::upsert_client),
        Handler::ClientProfile => at.to(audit::profile),
        Handler::RevokeTokens => at.to(admin::revoke_tokens),
        Handler::Erase => at.to(admin::erase_client),
        Handler::AsOf => at.to(audit::as_of),
        Handler::Audit => at.to(audit::list),
        Handler::Feed => at.to(feed::events),
        Handler::UpsertRoom => at.to(admin::upsert_room),
        Handler::CheckMuted => at.to(dispatch::check),
        Handler::Muters => at.to(dispatch::list),
        Handler::Healthz => at.to(health::healthz),
        Handler::Readyz => at.to(health::readyz),
        Handler::Metrics => at.to(metrics::scrape),
        Handler::OpenApi => at.to(openapi::serve),
    }
}

/// One resource per path, in table order, with every method the table gives it; other
/// methods are answered 405 in the envelope.
pub fn configure_routes(cfg: &mut web::ServiceConfig) {
    let mut seen: Vec<&str> = Vec::new();
    for first in ROUTES {
        if seen.contains(&first.path) {
            continue;
        }
        seen.push(first.path);
        let resource = ROUTES
            .iter()
            .filter(|r| r.path == first.path)
            .fold(resource(first.path), |res, r| res.route(handler(r)));
        cfg.service(resource);
    }
}

fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_missing_from_the_table_needs_the_platform_role() {
        assert_eq!(
            required_role(&Method::GET, Some("/admin/audit")),
            Role::Support
        );
        assert_eq!(
            required_role(&Method::POST, Some("/admin/audit")),
            Role::Platform
        );
        assert_eq!(
            required_role(&Method::GET, Some("/nowhere")),
            Role::Platform
        );
        assert_eq!(required_role(&Method::GET, None), Role::Platform);
    }

    #[test]
    fn every_write_needs_the_platform_role() {
        for route in ROUTES.iter().filter(|r| r.method != Method::GET) {
            assert_ne!(
                route.caller,
                Caller::Support,
                "{} {}",
                route.method,
                route.path
            );
        }
    }
}
