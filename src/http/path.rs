//! Ids from the path, by the name the route gives them (`{room}`, `{uid}`), decoded
//! strictly and parsed into the domain's id types.

use std::future::{ready, Ready};

use actix_web::{dev::Payload, FromRequest, HttpRequest};

use super::errors::ApiError;
use super::request::strip_segment_regexes;
use crate::domain::{ClientId, IdError, RoomId};

/// An id type a route names as one path segment.
pub trait PathParam: Sized {
    /// The segment's name in the route pattern.
    const NAME: &'static str;
    fn parse(decoded: String) -> Result<Self, IdError>;
}

impl PathParam for RoomId {
    const NAME: &'static str = "room";
    fn parse(decoded: String) -> Result<Self, IdError> {
        RoomId::parse(decoded)
    }
}

impl PathParam for ClientId {
    const NAME: &'static str = "uid";
    fn parse(decoded: String) -> Result<Self, IdError> {
        ClientId::parse(decoded)
    }
}

/// The id the matched route names [`PathParam::NAME`]: `PathId<RoomId>` is `{room}`.
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<T: PathParam> FromRequest for PathId<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(path_param(req))
    }
}

/// [`PathId`] outside an extractor's argument list.
pub fn path_param<T: PathParam>(req: &HttpRequest) -> Result<PathId<T>, ApiError> {
    let raw = raw_segment(req, T::NAME)?;
    Ok(PathId(T::parse(decode_strictly(raw)?)?))
}

/// The raw (still percent-encoded) path segment the matched route names `{name}`.
///
/// actix decodes path parameters lossily (invalid UTF-8 becomes U+FFFD), which would let
/// different byte strings name one room, so the segment is taken from the raw path, at
/// the position the route pattern gives the name. Every route variable here is one whole
/// segment, so positions in the pattern and in the path agree.
fn raw_segment<'a>(req: &'a HttpRequest, name: &str) -> Result<&'a str, ApiError> {
    let unnamed = || ApiError::Internal(format!("the route has no path segment {{{name}}}"));
    let pattern = req.match_pattern().ok_or_else(unnamed)?;
    let variable = format!("{{{name}}}");
    let position = strip_segment_regexes(&pattern)
        .split('/')
        .position(|segment| segment == variable)
        .ok_or_else(unnamed)?;
    req.uri()
        .path()
        .split('/')
        .nth(position)
        .ok_or_else(|| ApiError::invalid("missing path segment"))
}

/// Percent-decodes a segment, refusing malformed escapes and invalid UTF-8.
fn decode_strictly(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(ApiError::invalid("malformed percent-encoding in the path"));
    }
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| ApiError::invalid("path segment is not valid UTF-8"))
}
