//! "Who muted this room": the push dispatcher's reads of the read model, served by the
//! index `room_mutes_room_client_idx (app_id, room_id, client_id)`.

use chrono::{DateTime, Utc};

use super::{query, query_opt, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, RoomId};

fn client_id(raw: String) -> Result<ClientId, StoreError> {
    ClientId::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Which of `clients` muted `room`, sorted by id, each once; `None` when the room is not in
/// the app. One statement: the room lookup and the muters' lookup travel together.
///
/// The ids are joined as a set (`unnest`) rather than tested with `client_id = ANY($3)`:
/// once PostgreSQL switches the prepared statement to its generic plan, `= ANY` of a
/// parameter is a linear search per index entry (about 0.5 s for 1,000 ids against a
/// room of 50,000 muters, against 11 ms for the join; docs/api.md).
#[tracing::instrument(skip(db, clients), fields(clients = clients.len()))]
pub async fn muted_among<C: GenericClient>(
    db: &C,
    app: &AppId,
    room: &RoomId,
    clients: &[ClientId],
) -> Result<Option<Vec<ClientId>>, StoreError> {
    let ids: Vec<&str> = clients.iter().map(ClientId::as_str).collect();
    let row = query_opt(
        db,
        "SELECT ARRAY(SELECT m.client_id
                      FROM unnest($3::text[]) AS wanted(client_id)
                      JOIN room_mutes m ON m.app_id = $1 AND m.room_id = $2
                                       AND m.client_id = wanted.client_id)
         FROM rooms r WHERE r.app_id = $1 AND r.room_id = $2",
        &[&app.as_str(), &room.as_str(), &ids],
    )
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut muted = row.get::<_, Vec<String>>(0);
    muted.sort_unstable();
    muted.dedup();
    muted
        .into_iter()
        .map(client_id)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// One who muted a room, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Muter {
    pub client_id: ClientId,
    pub muted_at: DateTime<Utc>,
}

/// Up to `limit` muters of `room` with ids after `after` (keyset paging, id order); `None`
/// when the room is not in the app.
#[tracing::instrument(skip(db))]
pub async fn page<C: GenericClient>(
    db: &C,
    app: &AppId,
    room: &RoomId,
    after: Option<&ClientId>,
    limit: i64,
) -> Result<Option<Vec<Muter>>, StoreError> {
    // No user id is empty, so '' starts at the first; a plain `client_id > $3` keeps the
    // range an index condition, which `$3 IS NULL OR …` would not.
    let after = after.map_or("", ClientId::as_str);
    // The room row comes first so that an unknown room (no row) differs from a room nobody
    // muted (one row of NULLs).
    let rows = query(
        db,
        "SELECT m.client_id, m.muted_at
         FROM rooms r
         LEFT JOIN LATERAL (
             SELECT client_id, muted_at FROM room_mutes
             WHERE app_id = r.app_id AND room_id = r.room_id AND client_id > $3
             ORDER BY client_id LIMIT $4
         ) m ON true
         WHERE r.app_id = $1 AND r.room_id = $2
         ORDER BY m.client_id",
        &[&app.as_str(), &room.as_str(), &after, &limit],
    )
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    rows.iter()
        .filter_map(|row| {
            let id: Option<String> = row.get(0);
            id.map(|id| {
                Ok(Muter {
                    client_id: client_id(id)?,
                    muted_at: row.get(1),
                })
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
