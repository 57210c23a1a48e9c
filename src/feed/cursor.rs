//! The change feed's cursor on the wire: opaque, versioned, URL-safe, and bound to one app.
//!
//! Inside: the snapshot cursor read up to and, when a page stopped inside a window, that
//! window's end and the last event served. A keyed checksum over the app id and the
//! payload tells a cursor damaged in transit or copied from another app apart from a good
//! one. It is not a secret: whoever holds the app's key may read its whole feed anyway, so
//! a cursor crafted by hand can only make its maker read their own events twice or not at
//! all; it can never reach another app's events, which every read filters by app.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::domain::AppId;
use crate::store::log_reader::{EventKey, LogCursor, Window};

const VERSION: u8 = 1;
const TAG_BYTES: usize = 12;
/// Far more in-progress transactions than any server allows connections: a bound on what
/// a cursor may make the server decode.
const MAX_XIP: usize = 65_535;

/// Where a feed reader stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedCursor {
    /// Every event committed in this snapshot has been served.
    Seen(LogCursor),
    /// Inside `window`: its events up to `last` have been served.
    Within { window: Window, last: EventKey },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the cursor is not one this feed gave out for this app")]
pub struct InvalidCursor;

impl FeedCursor {
    pub fn start() -> Self {
        FeedCursor::Seen(LogCursor::start())
    }

    pub fn encode(&self, app: &AppId) -> String {
        let mut payload = vec![VERSION];
        match self {
            FeedCursor::Seen(seen) => {
                payload.push(0);
                put_cursor(&mut payload, seen);
            }
            FeedCursor::Within { window, last } => {
                payload.push(1);
                put_cursor(&mut payload, &window.from);
                put_cursor(&mut payload, &window.to);
                payload.extend_from_slice(&last.transaction_id.to_be_bytes());
                payload.extend_from_slice(&last.position.to_be_bytes());
            }
        }
        let tag = tag(app, &payload);
        payload.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(payload)
    }

    pub fn decode(app: &AppId, text: &str) -> Result<Self, InvalidCursor> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| InvalidCursor)?;
        let split = bytes.len().checked_sub(TAG_BYTES).ok_or(InvalidCursor)?;
        let (payload, given) = bytes.split_at(split);
        // Not a secret being compared (see the module comment), so no constant-time need.
        if given != tag(app, payload) {
            return Err(InvalidCursor);
        }
        let mut reader = Reader(payload);
        if reader.u8()? != VERSION {
            return Err(InvalidCursor);
        }
        let cursor = match reader.u8()? {
            0 => FeedCursor::Seen(reader.cursor()?),
            1 => {
                let from = reader.cursor()?;
                let to = reader.cursor()?;
                let last = EventKey {
                    transaction_id: reader.u64()?,
                    position: reader.u64()? as i64,
                };
                let inside = last.transaction_id < to.xmax
                    && to.xip.binary_search(&last.transaction_id).is_err();
                if !from.precedes(&to) || !inside {
                    return Err(InvalidCursor);
                }
                FeedCursor::Within {
                    window: Window { from, to },
                    last,
                }
            }
            _ => return Err(InvalidCursor),
        };
        if !reader.0.is_empty() {
            return Err(InvalidCursor);
        }
        Ok(cursor)
    }
}

fn tag(app: &AppId, payload: &[u8]) -> [u8; TAG_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"chatprefs feed cursor\0");
    hasher.update((app.as_str().len() as u64).to_be_bytes());
    hasher.update(app.as_str().as_bytes());
    hasher.update(payload);
    let digest = hasher.finalize();
    let mut tag = [0; TAG_BYTES];
    tag.copy_from_slice(&digest[..TAG_BYTES]);
    tag
}

fn put_cursor(out: &mut Vec<u8>, cursor: &LogCursor) {
    out.extend_from_slice(&cursor.xmax.to_be_bytes());
    out.extend_from_slice(&(cursor.xip.len() as u16).to_be_bytes());
    for xid in &cursor.xip {
        out.extend_from_slice(&xid.to_be_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], InvalidCursor> {
        if self.0.len() < N {
            return Err(InvalidCursor);
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        Ok(head.try_into().expect("split at N"))
    }

    fn u8(&mut self) -> Result<u8, InvalidCursor> {
        Ok(self.take::<1>()?[0])
    }

    fn u64(&mut self) -> Result<u64, InvalidCursor> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    /// A snapshot cursor as the server makes them: running transactions in ascending
    /// order, each below `xmax`.
    fn cursor(&mut self) -> Result<LogCursor, InvalidCursor> {
        let xmax = self.u64()?;
        let count = usize::from(u16::from_be_bytes(self.take()?));
        if count > MAX_XIP {
            return Err(InvalidCursor);
        }
        let xip = (0..count)
            .map(|_| self.u64())
            .collect::<Result<Vec<_>, _>>()?;
        let ascending = xip.windows(2).all(|pair| pair[0] < pair[1]);
        if !ascending || xip.last().is_some_and(|last| *last >= xmax) {
            return Err(InvalidCursor);
        }
        Ok(LogCursor { xmax, xip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    fn within() -> FeedCursor {
        FeedCursor::Within {
            window: Window {
                from: LogCursor {
                    xmax: 100,
                    xip: vec![90, 95],
                },
                to: LogCursor {
                    xmax: 120,
                    xip: vec![95, 110],
                },
            },
            last: EventKey {
                transaction_id: 101,
                position: 7,
            },
        }
    }

    #[test]
    fn cursors_survive_the_round_trip_and_are_url_safe() {
        let seen = FeedCursor::Seen(LogCursor {
            xmax: 42,
            xip: vec![3, 40],
        });
        for cursor in [FeedCursor::start(), seen, within()] {
            let text = cursor.encode(&app("a"));
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text}"
            );
            assert_eq!(FeedCursor::decode(&app("a"), &text), Ok(cursor));
        }
    }

    #[test]
    fn another_apps_cursor_is_refused() {
        let text = within().encode(&app("a"));
        assert_eq!(FeedCursor::decode(&app("b"), &text), Err(InvalidCursor));
    }

    #[test]
    fn damaged_truncated_and_garbage_cursors_are_refused() {
        let text = within().encode(&app("a"));
        let mut flipped = text.clone().into_bytes();
        flipped[5] = if flipped[5] == b'A' { b'B' } else { b'A' };
        let bad = [
            String::from_utf8(flipped).unwrap(),
            text[..text.len() - 3].to_owned(),
            format!("{text}AA"),
            String::new(),
            "%%%".into(),
            "12345".into(),
            "A".repeat(10_000),
        ];
        for bad in bad {
            assert_eq!(
                FeedCursor::decode(&app("a"), &bad),
                Err(InvalidCursor),
                "{bad}"
            );
        }
    }

    /// Checksummed but impossible: what only a hand-made cursor can be.
    #[test]
    fn impossible_snapshots_are_refused() {
        let impossible = [
            FeedCursor::Seen(LogCursor {
                xmax: 10,
                xip: vec![10],
            }),
            FeedCursor::Seen(LogCursor {
                xmax: 10,
                xip: vec![5, 3],
            }),
            FeedCursor::Within {
                window: Window {
                    from: LogCursor {
                        xmax: 200,
                        xip: vec![],
                    },
                    to: LogCursor {
                        xmax: 120,
                        xip: vec![],
                    },
                },
                last: EventKey {
                    transaction_id: 101,
                    position: 7,
                },
            },
            FeedCursor::Within {
                window: Window {
                    from: LogCursor {
                        xmax: 100,
                        xip: vec![],
                    },
                    to: LogCursor {
                        xmax: 120,
                        xip: vec![],
                    },
                },
                last: EventKey {
                    transaction_id: 130,
                    position: 7,
                },
            },
        ];
        for cursor in impossible {
            let text = cursor.encode(&app("a"));
            assert_eq!(
                FeedCursor::decode(&app("a"), &text),
                Err(InvalidCursor),
                "{cursor:?}"
            );
        }
    }
}
