use std::fmt;

/// Why an identifier was refused; the text is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} must be at most {1} bytes of UTF-8")]
    TooLong(&'static str, usize),
    #[error("{0} must not contain control characters")]
    ControlCharacter(&'static str),
}

/// IMKIT ids are opaque strings chosen by the integrating app, so the only rules are the
/// ones that keep storage, logs and URLs sane: 1..=255 bytes, no control characters.
pub const MAX_ID_BYTES: usize = 255;

/// The same rule as a JSON Schema pattern, for the API description: no character of
/// Unicode's control category (what [`char::is_control`] refuses), at least one character.
pub const ID_PATTERN: &str = "^[^\\x00-\\x1F\\x7F-\\x9F]+$";

fn validate(kind: &'static str, raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty(kind));
    }
    if raw.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong(kind, MAX_ID_BYTES));
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter(kind));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                validate($kind, &raw)?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An application (tenant): every table is keyed by it first.
    AppId,
    "app id"
);
id_type!(
    /// A user of an app (IMKIT calls users "clients").
    ClientId,
    "client id"
);
id_type!(
    /// A chat room of an app.
    RoomId,
    "room id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_unicode_up_to_255_bytes() {
        let id = "é".repeat(127) + "x"; // 255 bytes
        assert_eq!(RoomId::parse(id.clone()).unwrap().as_str(), id);
    }

    #[test]
    fn rejects_256_bytes() {
        assert_eq!(
            RoomId::parse("a".repeat(256)),
            Err(IdError::TooLong("room id", 255))
        );
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(ClientId::parse(""), Err(IdError::Empty("client id")));
    }

    #[test]
    fn rejects_control_characters() {
        for bad in ["a\0b", "tab\there", "nl\n", "del\u{7f}", "c1\u{85}"] {
            assert_eq!(
                RoomId::parse(bad),
                Err(IdError::ControlCharacter("room id")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_pattern_names_exactly_the_characters_validation_refuses() {
        assert_eq!(ID_PATTERN, r"^[^\x00-\x1F\x7F-\x9F]+$");
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let in_pattern = matches!(u32::from(c), 0x00..=0x1F | 0x7F..=0x9F);
            assert_eq!(c.is_control(), in_pattern, "{:#x}", u32::from(c));
        }
    }

    #[test]
    fn error_text_names_the_field() {
        assert_eq!(
            RoomId::parse("").unwrap_err().to_string(),
            "room id must not be empty"
        );
    }
}
