//! The console's pages. maud escapes every interpolated value (text and attributes); ids,
//! nicknames and user agents are also wrapped in `<bdi>` so that a right-to-left override
//! in one (U+202E) cannot reorder the text around it.

use actix_web::http::StatusCode;
use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::{Session, TimelineQuery};
use crate::audit::{AsOf, AuditPage};
use crate::domain::{MuteState, RoomId};
use crate::projections::room_mutes::Muter;
use crate::store::audit::{format_instant, AuditEntry};
use crate::store::directory::ClientRecord;

/// A console URL with its query, each value percent-encoded.
pub fn url(path: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn layout(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · chatprefs console" }
                link rel="stylesheet" href="/console/console.css";
                script src="/console/console.js" defer {}
            }
            body {
                header {
                    a href="/console" { "chatprefs console" }
                    @if let Some(session) = session {
                        span.who { "app " bdi { (session.app.as_str()) } " · " (session.role.as_str()) " key" }
                        form method="post" action="/console/sign-out" {
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

pub fn sign_in(problem: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(problem) = problem { p.problem role="alert" { (problem) } }
            form method="post" action="/console/sign-in" {
                label for="key" { "API key (support or platform)" }
                input #key type="password" name="key" autocomplete="off" required;
                button type="submit" { "Sign in" }
            }
            p { "Support staff get a key from an operator: "
                code { "chatprefs app key create --app APP --role support --name YOU" } "." }
        },
    )
}

pub fn home(session: &Session) -> Markup {
    layout(
        "Find",
        Some(session),
        html! {
            form method="get" action="/console/user" {
                label for="user-id" { "User id" }
                input #user-id type="text" name="id" required;
                button type="submit" { "Show timeline" }
            }
            form method="get" action="/console/as-of" {
                label for="asof-id" { "User id" }
                input #asof-id type="text" name="id" required;
                label for="asof-at" { "Instant (UTC)" }
                input #asof-at type="datetime-local" name="at" step="1";
                button type="submit" { "Mutes at that instant" }
            }
            form method="get" action="/console/room" {
                label for="room-id" { "Room id" }
                input #room-id type="text" name="id" required;
                button type="submit" { "Who muted it" }
            }
        },
    )
}

fn or_dash(value: &Option<String>) -> Markup {
    match value {
        Some(v) => html! { bdi { (v) } },
        None => html! { "—" },
    }
}

/// A personal field of an event: the value, or why it is gone ([`AuditEntry::personal_data`]:
/// erased or expired), so support staff can tell removed data from data never recorded.
fn personal(value: &Option<String>, removed: &Option<String>) -> Markup {
    match removed {
        Some(reason) => html! { em { "(" (reason) ")" } },
        None => or_dash(value),
    }
}

fn timeline_rows(entries: &[AuditEntry], highlight: &[i64]) -> Markup {
    html! {
        table {
            caption.visually-hidden { "Preference events, oldest first" }
            thead { tr {
                th scope="col" { "Time (UTC)" } th scope="col" { "Type" } th scope="col" { "Room" }
                th scope="col" { "Until" } th scope="col" { "Actor kind" } th scope="col" { "Actor id" }
                th scope="col" { "Address" } th scope="col" { "User agent" } th scope="col" { "Request id" }
            } }
            tbody {
                @for e in entries {
                    tr.led-here[highlight.contains(&e.position)] data-position=(e.position) {
                        td { time datetime=(format_instant(&e.recorded_at)) { (format_instant(&e.recorded_at)) } }
                        td { (e.event_type) }
                        td { @if let Some(room) = &e.room {
                            a href=(url("/console/room", &[("id", room)])) { bdi { (room) } }
                        } @else { "—" } }
                        td { @if let Some(until) = &e.until { (format_instant(until)) } @else { "—" } }
                        td { (or_dash(&e.actor.kind)) }
                        td { (or_dash(&e.actor.id)) }
                        td { (personal(&e.address, &e.personal_data)) }
                        td { (personal(&e.user_agent, &e.personal_data)) }
                        td { (or_dash(&e.request_id)) }
                    }
                }
            }
        }
    }
}

pub fn user(
    session: &Session,
    query: &TimelineQuery,
    profile: &ClientRecord,
    mutes: &MuteState,
    page: &AuditPage,
    version: i32,
) -> Markup {
    let id = profile.client_id.as_str();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let (room, since, until, limit) = (
        value(&query.room),
        value(&query.since),
        value(&query.until),
        value(&query.limit),
    );
    let shown = [
        ("id", id),
        ("room", room.as_str()),
        ("since", since.as_str()),
        ("until", until.as_str()),
        ("limit", limit.as_str()),
    ];
    let after = value(&query.after);
    let mut this_page = shown.to_vec();
    this_page.push(("after", after.as_str()));
    let next = page.next.map(|n| n.to_string()).unwrap_or_default();
    let mut next_page = shown.to_vec();
    next_page.push(("after", next.as_str()));
    layout(
        "User timeline",
        Some(session),
        html! {
            section aria-labelledby="profile-h" {
                h2 #profile-h { "User " bdi.id { (id) } }
                dl {
                    dt { "Nickname" } dd { (or_dash(&profile.nickname)) }
                    dt { "Email" } dd { (or_dash(&profile.email)) }
                    dt { "Last login (ms)" } dd { (profile.last_login_ms.map(|m| m.to_string()).unwrap_or_else(|| "—".into())) }
                }
                h3 { "Muted now" }
                @if mutes.mutes().is_empty() { p { "No room is muted." } }
                ul #mutes {
                    @for m in mutes.mutes() {
                        li {
                            a href=(url("/console/room", &[("id", m.room.as_str())])) { bdi { (m.room.as_str()) } }
                            " since " (format_instant(&m.since))
                            @if let Some(until) = &m.until { " until " (format_instant(until)) }
                        }
                    }
                }
                p { a href=(url("/console/as-of", &[("id", id)])) { "Mutes at an instant…" } }
            }
            section aria-labelledby="timeline-h" {
                h2 #timeline-h { "Timeline" }
                form method="get" action="/console/user" {
                    input type="hidden" name="id" value=(id);
                    label for="f-room" { "Room" }
                    input #f-room type="text" name="room" value=(room);
                    label for="f-since" { "From (UTC, inclusive)" }
                    input #f-since type="text" name="since" value=(since) placeholder="2026-11-26T15:00:00Z";
                    label for="f-until" { "Before (UTC)" }
                    input #f-until type="text" name="until" value=(until) placeholder="2026-11-27T00:00:00Z";
                    label for="f-limit" { "Per page" }
                    input #f-limit type="number" name="limit" min="1" max="1000" value=(limit);
                    button type="submit" { "Filter" }
                }
                p {
                    a #csv href=(url("/console/user.csv", &this_page)) download { "Download these rows as CSV" }
                }
                div #timeline data-version=(version) data-user=(id) data-live="on" aria-live="polite" {
                    @if page.entries.is_empty() { p { "No events match." } }
                    @else { (timeline_rows(&page.entries, &[])) }
                    @if page.has_more {
                        p { a #next rel="next" href=(url("/console/user", &next_page)) { "Next page" } }
                    }
                }
            }
        },
    )
}

pub fn as_of(session: &Session, answer: &AsOf, deciding: &[AuditEntry]) -> Markup {
    let id = answer.client.as_str();
    let at = format_instant(&answer.at);
    let positions: Vec<i64> = deciding.iter().map(|e| e.position).collect();
    layout(
        "Mutes at an instant",
        Some(session),
        html! {
            form method="get" action="/console/as-of" {
                input type="hidden" name="id" value=(id);
                label for="at" { "Instant (UTC)" }
                input #at type="text" name="at" value=(at);
                button type="submit" { "Show" }
            }
            h2 { "User " bdi.id { (id) } " at " time datetime=(at) { (at) } }
            @if answer.mutes.is_empty() { p #asof-set { "No room was muted." } }
            ul #asof-set {
                @for mute in &answer.mutes {
                    li {
                        bdi { (mute.room.as_str()) }
                        @if let Some(until) = mute.until { " until " (until.to_rfc3339()) }
                    }
                }
            }
            @if let Some(pause) = &answer.pause {
                p #asof-pause {
                    "All notifications paused"
                    @if let Some(until) = pause.until { " until " (until.to_rfc3339()) }
                    "."
                }
            }
            h3 { "The events that led there" }
            p { "Each room's last mute at or before the instant (highlighted)." }
            (timeline_rows(deciding, &positions))
            p { a href=(url("/console/user", &[("id", id), ("until", &at)])) { "Whole timeline up to then" } }
        },
    )
}

pub fn room(session: &Session, room: &RoomId, muters: &[Muter], page: usize) -> Markup {
    let more = muters.len() > page;
    let shown = &muters[..muters.len().min(page)];
    let next = shown
        .last()
        .map(|m| m.client_id.as_str())
        .unwrap_or_default();
    layout(
        "Who muted a room",
        Some(session),
        html! {
            h2 { "Room " bdi.id { (room.as_str()) } }
            @if shown.is_empty() { p { "Nobody has it muted." } }
            @else {
                table #muters {
                    thead { tr { th scope="col" { "User" } th scope="col" { "Muted since (UTC)" } } }
                    tbody {
                        @for m in shown {
                            tr {
                                td { a href=(url("/console/user", &[("id", m.client_id.as_str())])) { bdi { (m.client_id.as_str()) } } }
                                td { (format_instant(&m.muted_at)) }
                            }
                        }
                    }
                }
            }
            @if more {
                p { a rel="next" href=(url("/console/room", &[("id", room.as_str()), ("after", next)])) { "Next page" } }
            }
        },
    )
}

pub fn error(status: StatusCode, message: &str, sign_in: bool) -> Markup {
    layout(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            p.problem role="alert" { (message) }
            @if sign_in { p { a #sign-in href="/console" { "Sign in" } } }
            @else { p { a href="/console" { "Back to the console" } } }
        },
    )
}
