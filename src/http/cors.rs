//! CORS for the browser SDKs, with two rules actix-cors 0.7 cannot express: every request
//! header a browser SDK asks for is allowed except `IM-API-KEY`, and an origin that is not
//! allowed gets no CORS header at all (actix-cors still adds `Access-Control-Expose-Headers`).

use actix_web::{
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        header::{self, HeaderMap, HeaderValue},
        Method,
    },
    middleware::Next,
    HttpResponse, ResponseError,
};

use super::errors::ApiError;
use super::request::X_REQUEST_ID;

/// The origins whose scripts may call the client API, matched exactly (scheme, host, port).
#[derive(Debug, Clone, Default)]
pub struct CorsOrigins(pub Vec<String>);

/// Request headers never offered to a browser: the platform API's key is for servers, and
/// a page holding it would leak it.
const REFUSED_HEADERS: [&str; 1] = ["im-api-key"];
const ALLOWED_METHODS: &str = "GET, POST, DELETE";
const MAX_AGE_SECONDS: &str = "3600";

/// Answers preflights from allowed origins and marks their answers readable; leaves every
/// other request and answer alone. `Vary: Origin` is added whenever CORS is configured,
/// since the answer then depends on `Origin` and shared caches must keep them apart.
pub async fn cors(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let configured = request
        .app_data::<CorsOrigins>()
        .filter(|origins| !origins.0.is_empty());
    let Some(origins) = configured else {
        return Ok(next.call(request).await?.map_into_left_body());
    };
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .filter(|origin| {
            origins
                .0
                .iter()
                .any(|allowed| origin.as_bytes() == allowed.as_bytes())
        })
        .cloned();
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match origin {
        Some(origin) if preflight => {
            let response = answer_preflight(request.headers(), origin);
            Ok(request.into_response(response).map_into_right_body())
        }
        Some(origin) => {
            let mut response = next.call(request).await?;
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_name(X_REQUEST_ID),
            );
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            Ok(response.map_into_left_body())
        }
        None => {
            let mut response = next.call(request).await?;
            response
                .headers_mut()
                .append(header::VARY, HeaderValue::from_static("Origin"));
            Ok(response.map_into_left_body())
        }
    }
}

/// Allows the headers the browser asks for, echoed back (those the service ignores are
/// harmless), unless it asks for a refused one: then 400, with no CORS header, so the
/// browser does not send the request.
fn answer_preflight(request: &HeaderMap, origin: HeaderValue) -> HttpResponse {
    let asked = request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect::<Vec<_>>();
    if let Some(refused) = asked
        .iter()
        .find(|name| REFUSED_HEADERS.contains(&name.as_str()))
    {
        let mut response = ApiError::invalid(format!(
            "{refused} is for servers and may not be sent from a browser"
        ))
        .error_response();
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Origin"));
        return response;
    }
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECONDS))
        .insert_header((
            header::VARY,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ));
    if !asked.is_empty() {
        response.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, asked.join(", ")));
    }
    response.finish()
}
