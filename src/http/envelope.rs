//! The IMKIT success envelope and the user object every preference endpoint answers with.

use std::net::IpAddr;

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::request::RequestContext;
use crate::api_types::MuteDetail;
use crate::domain::{AppId, MuteState};
use crate::store::directory::ClientRecord;

/// The IMKIT success envelope: `RC` is 0 and `RM` is `OK`.
#[derive(Serialize, ToSchema)]
#[allow(non_snake_case)]
pub struct Success<T> {
    #[schema(minimum = 0, maximum = 0)]
    RC: u16,
    RM: &'static str,
    result: T,
}

pub fn ok<T: Serialize>(result: T) -> HttpResponse {
    HttpResponse::Ok().json(Success {
        RC: 0,
        RM: "OK",
        result,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Address {
    /// `null` when the request came through a trusted proxy.
    pub port: Option<u16>,
    #[schema(value_type = String, pattern = "^IPv[46]$")]
    pub family: &'static str,
    pub address: String,
}

/// The IMKIT user object.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(rename = "_id")]
    pub id: String,
    pub nickname: Option<String>,
    pub email: Option<String>,
    #[serde(rename = "appID")]
    pub app_id: String,
    pub avatar_url: Option<String>,
    pub address: Option<Address>,
    pub user_agent: Option<String>,
    /// The muted rooms (mutes in force), oldest mute first: IMKIT's field.
    pub mute: Vec<String>,
    /// The same mutes in the same order, with since when and until when.
    pub mute_details: Vec<MuteDetail>,
    #[serde(rename = "lastLoginTimeMS")]
    pub last_login_time_ms: Option<i64>,
    /// IMKIT's field: `false` while the user has paused all notifications (do not disturb),
    /// `true` otherwise (also once a pause's end has passed).
    pub notification_enabled: bool,
    /// When the pause in force ends, milliseconds since the epoch; `null` when not paused or
    /// paused until resumed (see `notificationEnabled`).
    pub notifications_paused_until: Option<i64>,
}

impl User {
    /// The user with `mutes`: their mutes and pause in force.
    pub fn new(
        app: &AppId,
        client: ClientRecord,
        mutes: MuteState,
        request: &RequestContext,
    ) -> Self {
        let pause = mutes.pause().copied();
        User {
            id: client.client_id.into_inner(),
            nickname: client.nickname,
            email: client.email,
            app_id: app.as_str().to_owned(),
            avatar_url: client.avatar_url,
            address: request.address.map(|ip| Address {
                port: request.port,
                family: match ip {
                    IpAddr::V4(_) => "IPv4",
                    IpAddr::V6(_) => "IPv6",
                },
                address: ip.to_string(),
            }),
            user_agent: request.user_agent.clone(),
            mute: mutes
                .mutes()
                .iter()
                .map(|m| m.room.as_str().to_owned())
                .collect(),
            mute_details: mutes
                .into_mutes()
                .into_iter()
                .map(MuteDetail::from)
                .collect(),
            last_login_time_ms: client.last_login_ms,
            notification_enabled: client.notification_enabled && pause.is_none(),
            notifications_paused_until: pause.and_then(|p| p.until).map(|u| u.timestamp_millis()),
        }
    }
}
