//! An owned FIX message: its MsgType (35) and its body fields in wire order.
//!
//! The session layer decodes the standard header and trailer itself and hands the application
//! layer only what it needs; the encoder writes the header and trailer around these fields.
//! Values are kept as text, as they came off the wire, so that a field the application never
//! reads costs no parsing and a reject can quote it back exactly.

/// A FIX message without its standard header and trailer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// MsgType (35), e.g. `D` for NewOrderSingle.
    pub msg_type: String,
    /// Body fields, in the order they appeared or will be written.
    pub fields: Vec<(u32, String)>,
}

/// Why a field could not be read; the session layer turns it into a Reject (3) with the
/// matching SessionRejectReason (373) and RefTagID (371).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// SessionRejectReason 1.
    #[error("required tag {0} missing")]
    Missing(u32),
    /// SessionRejectReason 6.
    #[error("tag {tag} has an incorrect data format: {value:?}")]
    BadFormat { tag: u32, value: String },
    /// SessionRejectReason 5.
    #[error("tag {tag} has a value out of range: {value:?}")]
    BadValue { tag: u32, value: String },
}

impl FieldError {
    /// The SessionRejectReason (373) a Reject for this error carries.
    pub fn session_reject_reason(&self) -> u32 {
        match self {
            FieldError::Missing(_) => 1,
            FieldError::BadValue { .. } => 5,
            FieldError::BadFormat { .. } => 6,
        }
    }

    /// The RefTagID (371) a Reject for this error carries.
    pub fn tag(&self) -> u32 {
        match self {
            FieldError::Missing(tag)
            | FieldError::BadFormat { tag, .. }
            | FieldError::BadValue { tag, .. } => *tag,
        }
    }
}

impl Message {
    pub fn new(msg_type: &str) -> Message {
        Message { msg_type: msg_type.to_owned(), fields: Vec::new() }
    }

    /// Appends a field; builder style, for writing messages.
    #[must_use]
    pub fn with(mut self, tag: u32, value: impl ToString) -> Message {
        self.push(tag, value);
        self
    }

    pub fn push(&mut self, tag: u32, value: impl ToString) {
        self.fields.push((tag, value.to_string()));
    }

    /// The first occurrence of `tag`, if any.
    pub fn get(&self, tag: u32) -> Option<&str> {
        self.fields.iter().find(|(t, _)| *t == tag).map(|(_, value)| value.as_str())
    }

    /// The value of a required tag.
    pub fn required(&self, tag: u32) -> Result<&str, FieldError> {
        self.get(tag).ok_or(FieldError::Missing(tag))
    }

    /// A required tag parsed as an unsigned integer.
    pub fn required_u64(&self, tag: u32) -> Result<u64, FieldError> {
        let value = self.required(tag)?;
        value.parse().map_err(|_| FieldError::BadFormat { tag, value: value.to_owned() })
    }

    /// An optional tag parsed as an unsigned integer.
    pub fn optional_u64(&self, tag: u32) -> Result<Option<u64>, FieldError> {
        match self.get(tag) {
            None => Ok(None),
            Some(value) => value
                .parse()
                .map(Some)
                .map_err(|_| FieldError::BadFormat { tag, value: value.to_owned() }),
        }
    }

    /// A required single-character tag (Side, OrdType, TimeInForce...).
    pub fn required_char(&self, tag: u32) -> Result<char, FieldError> {
        let value = self.required(tag)?;
        let mut chars = value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(c),
            _ => Err(FieldError::BadFormat { tag, value: value.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_back_with_specific_errors() {
        let message = Message::new("D").with(11, "order-1").with(38, "1.5").with(54, '1');
        assert_eq!(message.get(11), Some("order-1"));
        assert_eq!(message.required_char(54), Ok('1'));
        assert_eq!(message.required(44), Err(FieldError::Missing(44)));
        let error = message.required_u64(38).unwrap_err();
        assert_eq!((error.session_reject_reason(), error.tag()), (6, 38));
        assert_eq!(message.optional_u64(34), Ok(None));
    }
}
