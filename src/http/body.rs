//! Request bodies: JSON objects only, and one rule for optional fields.

use serde::de::{Deserialize, Deserializer, Visitor};
use serde::forward_to_deserialize_any;

/// A JSON body that must be an object. serde also reads a struct from an array of its
/// fields in order (`["c9","nick",null,null,true,1]`), which no client means to send and
/// which would make field order part of the API.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(ObjectOnly(deserializer)).map(Object)
    }
}

/// A body that may be left out: empty (or only whitespace) is `None`; anything else must be
/// a JSON object of `T`, or the request is 400 (an unreadable body never counts as absent).
pub fn optional_object<T: for<'de> Deserialize<'de>>(
    body: &[u8],
) -> Result<Option<T>, super::ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Object(parsed) = serde_json::from_slice(body)
        .map_err(|e| super::ApiError::invalid(format!("invalid JSON body: {e}")))?;
    Ok(Some(parsed))
}

/// Asks the format for a map whatever the type asks for, so anything else is an error
/// with the format's own message and position.
struct ObjectOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// An optional field of a request body. Every optional field follows one rule: left out,
/// the stored value is kept; `null`, it is cleared (or, for an option of the request
/// itself, its default applies); a value sets it. Declare it with `#[serde(default)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    /// `None` to keep what is stored, `Some(None)` to clear it, `Some(Some(v))` to set it.
    pub fn into_change(self) -> Option<Option<T>> {
        match self {
            Field::Absent => None,
            Field::Null => Some(None),
            Field::Value(v) => Some(Some(v)),
        }
    }

    /// The value given, if any: for options of the request, where left out and `null`
    /// both mean the default.
    pub fn into_option(self) -> Option<T> {
        match self {
            Field::Value(v) => Some(v),
            Field::Absent | Field::Null => None,
        }
    }

    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Field<U>, E> {
        Ok(match self {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Value(v) => Field::Value(f(v)?),
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(deserializer).map(|v| v.map_or(Field::Null, Field::Value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        id: String,
        #[serde(default)]
        nickname: Field<String>,
    }

    fn parse(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str::<Object<Body>>(json).map(|o| o.0)
    }

    #[test]
    fn only_objects_are_bodies() {
        assert!(parse(r#"{"id": "a"}"#).is_ok());
        for other in [r#"["a", "n"]"#, r#""a""#, "1", "null", "true"] {
            assert!(parse(other).is_err(), "{other}");
        }
        let err = parse(r#"["a"]"#).unwrap_err().to_string();
        assert!(err.contains("expected"), "{err}");
    }

    #[test]
    fn absent_null_and_value_are_told_apart() {
        assert_eq!(parse(r#"{"id": "a"}"#).unwrap().nickname, Field::Absent);
        let null = parse(r#"{"id": "a", "nickname": null}"#).unwrap();
        assert_eq!(null.nickname, Field::Null);
        let set = parse(r#"{"id": "a", "nickname": "n"}"#).unwrap();
        assert_eq!(set.nickname.into_change(), Some(Some("n".to_owned())));
    }

    #[test]
    fn duplicate_fields_are_still_refused() {
        assert!(parse(r#"{"id": "a", "id": "b"}"#).is_err());
    }
}
