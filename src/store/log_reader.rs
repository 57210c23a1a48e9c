//! Reading the log in commit order with the exact snapshot cursor (docs/architecture.md,
//! "Reading the log in order").
//!
//! A snapshot of the server splits every transaction id into three classes: finished
//! (below its `xmax` and not in its `xip` list), running (in `xip`) and not yet started
//! (at or above `xmax`). The rows a snapshot sees are exactly the rows of its committed
//! finished transactions, and every row that can still appear belongs to a running or a
//! future one. So after reading everything a snapshot S sees, the reader keeps
//! `(xmax(S), xip(S))` and next reads the *window* of rows whose transaction is running or
//! future in S and finished in a newer snapshot: each event is read exactly once, none is
//! skipped, and a transaction left open anywhere on the server only waits in the `xip` list
//! instead of holding every newer event back.

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Transaction};

use super::audit::{entry_from_row, AuditEntry, ENTRY_COLUMNS};
use super::batches::Batches;
use super::{query, query_one, GenericClient, StoreError};
use crate::domain::{AppId, ClientId, STREAM_TYPE_USER_PREFERENCES};

/// What a reader has read: every event of the transactions that had finished in one
/// snapshot. `xip` is sorted; each entry is below `xmax`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogCursor {
    pub xmax: u64,
    pub xip: Vec<u64>,
}

impl LogCursor {
    /// Nothing read yet: every transaction that will ever be is still to come.
    pub fn start() -> Self {
        LogCursor::default()
    }

    /// Whether `cursor` was taken no earlier than `self`: every transaction finished for
    /// `self` is finished for it too.
    pub fn precedes(&self, later: &LogCursor) -> bool {
        self.xmax <= later.xmax
            && later
                .xip
                .iter()
                .all(|xid| *xid >= self.xmax || self.xip.binary_search(xid).is_ok())
    }

    fn xmax_text(&self) -> String {
        self.xmax.to_string()
    }

    fn xip_text(&self) -> Vec<String> {
        self.xip.iter().map(u64::to_string).collect()
    }

    fn from_row(row: &Row, xmax: usize, xip: usize) -> Result<Self, StoreError> {
        let xmax = parse_xid(row.get(xmax))?;
        let mut xip = row
            .get::<_, Vec<String>>(xip)
            .into_iter()
            .map(parse_xid)
            .collect::<Result<Vec<_>, _>>()?;
        xip.sort_unstable();
        Ok(LogCursor { xmax, xip })
    }
}

fn parse_xid(text: String) -> Result<u64, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("transaction id {text:?} is not a number")))
}

/// An event's place in the reading order: by transaction, then by position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventKey {
    pub transaction_id: u64,
    pub position: i64,
}

/// The events committed between two cursors: finished in `to`, not yet in `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: LogCursor,
    pub to: LogCursor,
}

/// An event as stored, for projectors: decoded with `Event::from_stored` by the caller.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub key: EventKey,
    pub app_id: String,
    pub stream_id: String,
    pub stream_version: i32,
    pub event_type: String,
    pub schema_version: i16,
    pub data: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// The cursor of the server's snapshot now: everything committed so far is finished in it.
#[tracing::instrument(skip(db))]
pub async fn cursor_now<C: GenericClient>(db: &C) -> Result<LogCursor, StoreError> {
    let row = query_one(
        db,
        "SELECT pg_snapshot_xmax(s)::text, ARRAY(SELECT pg_snapshot_xip(s)::text)
         FROM pg_current_snapshot() AS s",
        &[],
    )
    .await?;
    LogCursor::from_row(&row, 0, 1)
}

/// The highest position in the log: an estimate of how many events there are to read.
#[tracing::instrument(skip(db))]
pub async fn last_position<C: GenericClient>(db: &C) -> Result<i64, StoreError> {
    Ok(
        query(db, "SELECT coalesce(max(position), 0) FROM events", &[])
            .await?
            .first()
            .map_or(0, |row| row.get(0)),
    )
}

/// The rows after the snapshot cursor `$1` (xmax) / `$2` (xip), as the union of its two
/// parts, each one index scan: the transactions that were running at the cursor, looked up
/// one by one, and everything from its xmax on. One range from the oldest running
/// transaction would read every event since that transaction began: with a transaction
/// left open elsewhere for an hour, an hour of the log on every read. `columns` are
/// selected in each part, `rest` ends each part's WHERE clause and `tail` follows it (an
/// ORDER BY with a LIMIT, so that each part stops early). Transaction ids are carried as
/// text, the one form both PostgreSQL's `xid8` and Rust read losslessly.
fn after_cursor(columns: &str, rest: &str, tail: &str) -> String {
    format!(
        "(SELECT {columns} FROM events
          WHERE transaction_id = ANY($2::text[]::xid8[]) AND {rest} {tail})
         UNION ALL
         (SELECT {columns} FROM events
          WHERE transaction_id >= $1::text::xid8 AND {rest} {tail})"
    )
}

/// The rest of a window's WHERE clause: finished at its end (`$3` xmax, `$4` xip), after
/// the key `$5`/`$6`.
const WITHIN_END: &str =
    "transaction_id < $3::text::xid8 AND transaction_id <> ALL($4::text[]::xid8[])
     AND (transaction_id, position) > ($5::text::xid8, $6)";

/// Each part in reading order, for at most `$n` rows.
fn in_order_limit(n: usize) -> String {
    format!("ORDER BY transaction_id, position LIMIT ${n}")
}

/// The parameters `$1`–`$6` of a window read ([`after_cursor`] with [`WITHIN_END`]), as
/// text where they are transaction ids.
struct WindowBounds {
    from_xmax: String,
    from_xip: Vec<String>,
    to_xmax: String,
    to_xip: Vec<String>,
    after_xid: String,
    after_position: i64,
}

impl WindowBounds {
    fn new(window: &Window, after: EventKey) -> Self {
        WindowBounds {
            from_xmax: window.from.xmax_text(),
            from_xip: window.from.xip_text(),
            to_xmax: window.to.xmax_text(),
            to_xip: window.to.xip_text(),
            after_xid: after.transaction_id.to_string(),
            after_position: after.position,
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.from_xmax,
            &self.from_xip,
            &self.to_xmax,
            &self.to_xip,
            &self.after_xid,
            &self.after_position,
        ]
    }
}

/// The columns [`stored_from_row`] reads.
const EVENT_COLUMNS: &str =
    "transaction_id::text AS xid, position, app_id, stream_id, stream_version,
     event_type, data, recorded_at, schema_version";

fn stored_from_row(row: &Row) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        key: EventKey {
            transaction_id: parse_xid(row.get(0))?,
            position: row.get(1),
        },
        app_id: row.get(2),
        stream_id: row.get(3),
        stream_version: row.get(4),
        event_type: row.get(5),
        data: row.get(6),
        recorded_at: row.get(7),
        schema_version: row.get(8),
    })
}

/// How a stream-ordered read sorts users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserOrder {
    /// The database's collation, which the stream-version key's index already has: no sort.
    Indexed,
    /// Byte order (`COLLATE "C"`), which Rust's string order is, for merging with other reads
    /// sorted the same way.
    Bytes,
}

impl UserOrder {
    fn sql(self) -> &'static str {
        match self {
            UserOrder::Indexed => "app_id, stream_id, stream_version",
            UserOrder::Bytes => "app_id COLLATE \"C\", stream_id COLLATE \"C\", stream_version",
        }
    }
}

/// Every preference event the transaction sees, one user's stream after another, each in
/// stream order: what a fold that holds one user at a time reads.
#[tracing::instrument(skip(tx))]
pub async fn in_stream_order<'t, 'a>(
    tx: &'t Transaction<'a>,
    order: UserOrder,
    batch: i32,
) -> Result<Batches<'t, 'a, StoredEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE stream_type = $1 ORDER BY {}",
        order.sql()
    );
    Batches::open(
        tx,
        &sql,
        &[&STREAM_TYPE_USER_PREFERENCES],
        batch,
        stored_from_row,
    )
    .await
}

/// A stream, `(app, user)`, and how many events it got in a window.
pub type MovedStream = ((String, String), i64);

/// The streams that got events in `window`, with how many.
#[tracing::instrument(skip(db))]
pub async fn moved_in<C: GenericClient>(
    db: &C,
    window: &Window,
) -> Result<Vec<MovedStream>, StoreError> {
    let bounds = WindowBounds::new(window, EventKey::default());
    let (stream_type, mut params) = (STREAM_TYPE_USER_PREFERENCES, bounds.params());
    params.push(&stream_type);
    let rows = query(
        db,
        &format!(
            "SELECT app_id, stream_id, count(*) FROM ({}) AS moved GROUP BY app_id, stream_id",
            after_cursor(
                "app_id, stream_id",
                &format!("stream_type = $7 AND {WITHIN_END}"),
                ""
            )
        ),
        &params,
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect())
}

/// These users' events after the given stream versions, as of the snapshot `at` (events of
/// transactions finished in it), user after user, each in stream order. A user's versions
/// commit in order (each append locks the stream's version row first), so the events after
/// the version a fold reached are exactly the ones it has not folded.
#[tracing::instrument(skip_all, fields(streams = apps.len()))]
pub async fn streams_after<C: GenericClient>(
    db: &C,
    apps: &[&str],
    clients: &[&str],
    versions: &[i32],
    at: &LogCursor,
) -> Result<Vec<StoredEvent>, StoreError> {
    let rows = query(
        db,
        &format!(
            "SELECT {EVENT_COLUMNS} FROM unnest($2::text[], $3::text[], $4::int[]) AS u(app, client, version)
             JOIN events ON app_id = u.app AND stream_type = $1 AND stream_id = u.client
                        AND stream_version > u.version
             WHERE transaction_id < $5::text::xid8 AND transaction_id <> ALL($6::text[]::xid8[])
             ORDER BY {}",
            UserOrder::Indexed.sql()
        ),
        &[
            &STREAM_TYPE_USER_PREFERENCES,
            &apps,
            &clients,
            &versions,
            &at.xmax_text(),
            &at.xip_text(),
        ],
    )
    .await?;
    rows.iter().map(stored_from_row).collect()
}

/// A page of one app's change feed: its events, and the window they came from.
#[derive(Debug)]
pub struct FeedRead {
    pub entries: Vec<(EventKey, AuditEntry)>,
    /// The window read: `to` is the snapshot the read was made in, unless it continued an
    /// earlier window.
    pub window: Window,
}

fn feed_entries(rows: &[Row], first: usize) -> Result<Vec<(EventKey, AuditEntry)>, StoreError> {
    rows.iter()
        .filter(|row| row.get::<_, Option<String>>(first).is_some())
        .map(|row| {
            let key = EventKey {
                transaction_id: parse_xid(row.get(first))?,
                position: row.get(first + 1),
            };
            Ok((key, entry_from_row(row, first + 1)))
        })
        .collect()
}

/// Up to `limit` of the app's events committed after `from`, read in one statement so that
/// the snapshot it answers with is the one it read in: the events returned are exactly the
/// window's first ones.
#[tracing::instrument(skip(db))]
pub async fn read_feed_from<C: GenericClient>(
    db: &C,
    app: &AppId,
    from: &LogCursor,
    limit: i64,
) -> Result<FeedRead, StoreError> {
    let rows = query(
        db,
        &format!(
            "SELECT pg_snapshot_xmax(s)::text, ARRAY(SELECT pg_snapshot_xip(s)::text), e.*
             FROM pg_current_snapshot() AS s
             LEFT JOIN LATERAL (
                 SELECT * FROM ({}) AS w ORDER BY w.t, w.position LIMIT $4
             ) AS e ON true",
            after_cursor(
                &format!("transaction_id AS t, transaction_id::text AS xid, {ENTRY_COLUMNS}"),
                "app_id = $3",
                &in_order_limit(4)
            )
        ),
        &[&from.xmax_text(), &from.xip_text(), &app.as_str(), &limit],
    )
    .await?;
    let to = match rows.first() {
        Some(row) => LogCursor::from_row(row, 0, 1)?,
        None => return Err(StoreError::Corrupt("no snapshot".into())),
    };
    Ok(FeedRead {
        entries: feed_entries(&rows, 3)?,
        window: Window {
            from: from.clone(),
            to,
        },
    })
}

/// Up to `limit` of the app's events in `window` after `after`: the rest of a window that
/// an earlier page did not finish.
#[tracing::instrument(skip(db))]
pub async fn read_feed_window<C: GenericClient>(
    db: &C,
    app: &AppId,
    window: &Window,
    after: EventKey,
    limit: i64,
) -> Result<FeedRead, StoreError> {
    let bounds = WindowBounds::new(window, after);
    let (app, mut params) = (app.as_str(), bounds.params());
    params.extend([&app as &(dyn ToSql + Sync), &limit]);
    let rows = query(
        db,
        &format!(
            "SELECT * FROM ({}) AS w ORDER BY w.t, w.position LIMIT $8",
            after_cursor(
                &format!("transaction_id AS t, transaction_id::text AS xid, {ENTRY_COLUMNS}"),
                &format!("app_id = $7 AND {WITHIN_END}"),
                &in_order_limit(8)
            )
        ),
        &params,
    )
    .await?;
    Ok(FeedRead {
        entries: feed_entries(&rows, 1)?,
        window: window.clone(),
    })
}

/// Which streams got events since `from`, and the snapshot that answer was read in: what a
/// process polls to wake its waiting feed and stream readers.
#[tracing::instrument(level = "debug", skip(db))]
pub async fn streams_moved<C: GenericClient>(
    db: &C,
    from: &LogCursor,
) -> Result<(LogCursor, Vec<(String, String)>), StoreError> {
    let rows = query(
        db,
        &format!(
            "SELECT pg_snapshot_xmax(s)::text, ARRAY(SELECT pg_snapshot_xip(s)::text),
                    e.app_id, e.stream_id
             FROM pg_current_snapshot() AS s
             LEFT JOIN LATERAL (SELECT DISTINCT app_id, stream_id FROM ({}) AS w) AS e ON true",
            after_cursor("app_id, stream_id", "true", "")
        ),
        &[&from.xmax_text(), &from.xip_text()],
    )
    .await?;
    let to = match rows.first() {
        Some(row) => LogCursor::from_row(row, 0, 1)?,
        None => return Err(StoreError::Corrupt("no snapshot".into())),
    };
    let moved = rows
        .iter()
        .filter_map(|row| Some((row.get::<_, Option<String>>(2)?, row.get(3))))
        .collect();
    Ok((to, moved))
}

/// One user's events after stream version `after`, in stream order: what their devices'
/// live stream replays. Versions of one stream commit in order (each append locks the
/// stream's version row first), so "after version n" misses nothing.
#[tracing::instrument(skip(db))]
pub async fn stream_after<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
    after: i32,
    limit: i64,
) -> Result<Vec<(i32, AuditEntry)>, StoreError> {
    let rows = query(
        db,
        &format!(
            "SELECT stream_version, {ENTRY_COLUMNS} FROM events
             WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3 AND stream_version > $4
             ORDER BY stream_version LIMIT $5"
        ),
        &[
            &app.as_str(),
            &STREAM_TYPE_USER_PREFERENCES,
            &client.as_str(),
            &after,
            &limit,
        ],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), entry_from_row(row, 1)))
        .collect())
}

/// The user's stream version now (0 before their first event).
#[tracing::instrument(skip(db))]
pub async fn stream_version<C: GenericClient>(
    db: &C,
    app: &AppId,
    client: &ClientId,
) -> Result<i32, StoreError> {
    let row = query_one(
        db,
        "SELECT coalesce(max(stream_version), 0) FROM events
         WHERE app_id = $1 AND stream_type = $2 AND stream_id = $3",
        &[
            &app.as_str(),
            &STREAM_TYPE_USER_PREFERENCES,
            &client.as_str(),
        ],
    )
    .await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(xmax: u64, xip: &[u64]) -> LogCursor {
        LogCursor {
            xmax,
            xip: xip.to_vec(),
        }
    }

    #[test]
    fn a_cursor_precedes_a_later_snapshot() {
        assert!(cursor(10, &[4, 7]).precedes(&cursor(12, &[7, 10])));
        assert!(cursor(10, &[4]).precedes(&cursor(10, &[4])));
        assert!(LogCursor::start().precedes(&cursor(10, &[4])));
        // 5 finished before the first snapshot cannot be running in the second.
        assert!(!cursor(10, &[4]).precedes(&cursor(12, &[5])));
        assert!(!cursor(12, &[]).precedes(&cursor(10, &[])));
    }
}
