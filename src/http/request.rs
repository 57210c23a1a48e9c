//! Per-request facts: the request id, and where the request came from.

use std::future::{ready, Ready};
use std::net::{IpAddr, SocketAddr};

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue, USER_AGENT},
    middleware::Next,
    FromRequest, HttpMessage, HttpRequest,
};
use uuid::Uuid;

use super::errors::ApiError;
use crate::domain::{Actor, EventMetadata};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A longer user agent is cut: it is provenance, not a place to store payloads.
const MAX_USER_AGENT_BYTES: usize = 512;

#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A caller's id is kept when it is short and plain enough to be safe in logs and headers.
fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_owned())
}

/// Gives every request an id (the caller's, or a new UUID) and echoes it on the response.
pub async fn assign_request_id(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let header = HeaderValue::from_str(&id).expect("request ids are plain ASCII");
    request.extensions_mut().insert(RequestId(id));
    let mut response = next.call(request).await?;
    response.headers_mut().insert(X_REQUEST_ID, header);
    Ok(response)
}

/// The route pattern a request matches, without the regex of its segments
/// (`/me/mute/{room}`), or `unmatched`: a bounded label for logs and metrics, unlike the
/// raw path with its ids.
pub fn route_of(request: &ServiceRequest) -> String {
    let Some(pattern) = request.match_pattern() else {
        return "unmatched".into();
    };
    strip_segment_regexes(&pattern)
}

/// A route pattern without the regex of its segments: `{room:[^/]*}` becomes `{room}`.
pub(super) fn strip_segment_regexes(pattern: &str) -> String {
    let mut route = String::with_capacity(pattern.len());
    let (mut depth, mut in_regex) = (0u32, false);
    for c in pattern.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ':' if depth == 1 => in_regex = true,
            _ => {}
        }
        if in_regex && depth == 0 {
            in_regex = false;
        }
        if !in_regex {
            route.push(c);
        }
    }
    route
}

/// Proxies whose `X-Forwarded-For` is believed; everyone else's is ignored.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpAddr>);

/// Where a request came from and who sent it, as recorded in event metadata and echoed
/// in the user object.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub user_agent: Option<String>,
}

impl RequestContext {
    pub fn metadata(&self, actor: Actor) -> EventMetadata {
        EventMetadata {
            actor,
            request_id: self.request_id.clone(),
            address: self.address.map(|a| a.to_string()),
            port: self.port,
            user_agent: self.user_agent.clone(),
        }
    }

    fn from_request(req: &HttpRequest) -> Self {
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let peer = req.peer_addr();
        let trusted = req
            .app_data::<TrustedProxies>()
            .map(|t| t.0.as_slice())
            .unwrap_or_default();
        let (address, port) = client_origin(peer, forwarded_for(req), trusted);
        let user_agent = req.headers().get(USER_AGENT).map(|v| {
            let text = String::from_utf8_lossy(v.as_bytes());
            truncate_utf8(&text, MAX_USER_AGENT_BYTES).to_owned()
        });
        RequestContext {
            request_id,
            address,
            port,
            user_agent,
        }
    }
}

/// Whether the request reached the service over TLS: the service speaks plain HTTP, so only
/// a trusted proxy's `X-Forwarded-Proto: https` says so (anyone else's is ignored).
pub fn over_tls(req: &HttpRequest) -> bool {
    let trusted = req
        .app_data::<TrustedProxies>()
        .map(|t| t.0.as_slice())
        .unwrap_or_default();
    let from_proxy = req
        .peer_addr()
        .is_some_and(|peer| trusted.contains(&peer.ip().to_canonical()));
    from_proxy
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The client's address as [`RequestContext`] reports it (trusted proxies walked).
pub fn client_address(req: &HttpRequest) -> Option<IpAddr> {
    let trusted = req
        .app_data::<TrustedProxies>()
        .map(|t| t.0.as_slice())
        .unwrap_or_default();
    client_origin(req.peer_addr(), forwarded_for(req), trusted).0
}

/// `X-Forwarded-For` hops, leftmost first; `None` for an entry that is not an address.
///
/// RFC 7239 `Forwarded` is not read: a proxy that appends to `X-Forwarded-For` usually
/// passes a caller's `Forwarded` through untouched, so believing it would let the caller
/// write its own address.
fn forwarded_for(req: &HttpRequest) -> Vec<Option<Hop>> {
    req.headers()
        .get_all("x-forwarded-for")
        .flat_map(|v| match v.to_str() {
            Ok(text) => text.split(',').map(parse_hop).collect(),
            Err(_) => vec![None],
        })
        .collect()
}

/// One proxy's record of who connected to it: an address, with its port when the proxy
/// wrote one (`198.51.100.7:5678`, `[2001:db8::1]:443`).
type Hop = (IpAddr, Option<u16>);

fn parse_hop(entry: &str) -> Option<Hop> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse() {
        return Some((ip, None));
    }
    if let Ok(socket) = entry.parse::<SocketAddr>() {
        return Some((socket.ip(), Some(socket.port())));
    }
    let bracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
    bracketed
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(|ip| (IpAddr::V6(ip), None))
}

/// The client is the nearest hop not run by us: walk `X-Forwarded-For` from the right while
/// the sender is a trusted proxy. An entry that is not an address (`unknown`, garbage)
/// ends the walk at the hop to its right, the last one a trusted proxy vouched for:
/// skipping it would let the caller's own entries further left be believed.
fn client_origin(
    peer: Option<SocketAddr>,
    forwarded: Vec<Option<Hop>>,
    trusted: &[IpAddr],
) -> (Option<IpAddr>, Option<u16>) {
    let Some(peer) = peer else {
        return (None, None);
    };
    let mut origin = (peer.ip().to_canonical(), Some(peer.port()));
    for hop in forwarded.into_iter().rev() {
        if !trusted.contains(&origin.0) {
            break;
        }
        let Some((ip, port)) = hop else {
            break;
        };
        origin = (ip.to_canonical(), port);
    }
    (Some(origin.0), origin.1)
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl FromRequest for RequestContext {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(Ok(RequestContext::from_request(req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let peer = Some("203.0.113.9:4000".parse().unwrap());
        assert_eq!(
            client_origin(peer, hops("1.2.3.4"), &[]),
            (Some(ip("203.0.113.9")), Some(4000))
        );
    }

    #[test]
    fn trusted_proxy_chain_is_walked_from_the_right() {
        let peer = Some("10.0.0.1:4000".parse().unwrap());
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            client_origin(peer, hops("6.6.6.6, 198.51.100.7, 10.0.0.2"), &trusted),
            (Some(ip("198.51.100.7")), None)
        );
    }

    fn hops(header: &str) -> Vec<Option<Hop>> {
        header.split(',').map(parse_hop).collect()
    }

    #[test]
    fn hops_with_ports_are_addresses() {
        assert_eq!(
            parse_hop(" 198.51.100.7:5678"),
            Some((ip("198.51.100.7"), Some(5678)))
        );
        assert_eq!(
            parse_hop("[2001:db8::1]:443"),
            Some((ip("2001:db8::1"), Some(443)))
        );
        assert_eq!(parse_hop("[2001:db8::1]"), Some((ip("2001:db8::1"), None)));
        assert_eq!(parse_hop("2001:db8::1"), Some((ip("2001:db8::1"), None)));
        for junk in [
            "unknown",
            "",
            "_hidden",
            "1.2.3.4:99999",
            "[1.2.3.4]",
            "1.2.3",
        ] {
            assert_eq!(parse_hop(junk), None, "{junk}");
        }
    }

    #[test]
    fn an_entry_that_is_no_address_stops_the_walk_at_the_hop_on_its_right() {
        let peer = Some("10.0.0.1:4000".parse().unwrap());
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let walk = |header| client_origin(peer, hops(header), &trusted);
        assert_eq!(
            walk("6.6.6.6, unknown, 10.0.0.2"),
            (Some(ip("10.0.0.2")), None)
        );
        assert_eq!(walk("6.6.6.6, garbage"), (Some(ip("10.0.0.1")), Some(4000)));
        assert_eq!(
            walk("6.6.6.6, 198.51.100.7:5678"),
            (Some(ip("198.51.100.7")), Some(5678))
        );
        assert_eq!(
            walk("6.6.6.6, [2001:db8::1]:443, 10.0.0.2"),
            (Some(ip("2001:db8::1")), Some(443))
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_reported_as_ipv4() {
        let peer = Some("[::ffff:127.0.0.1]:5".parse().unwrap());
        assert_eq!(client_origin(peer, vec![], &[]).0, Some(ip("127.0.0.1")));
    }

    #[test]
    fn request_ids_must_be_plain() {
        assert!(sane_request_id(&HeaderValue::from_static("abc-123_x.y:z")).is_some());
        assert!(sane_request_id(&HeaderValue::from_static("has space")).is_none());
        assert!(sane_request_id(&HeaderValue::from_str(&"a".repeat(129)).unwrap()).is_none());
    }

    #[test]
    fn route_labels_leave_segment_regexes_out() {
        assert_eq!(
            strip_segment_regexes("/admin/clients/{uid}/mute/{room:[^/]*}"),
            "/admin/clients/{uid}/mute/{room}"
        );
        assert_eq!(strip_segment_regexes("/x/{n:\\d{1,3}}/y"), "/x/{n}/y");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_utf8("ééé", 3), "é");
    }
}
