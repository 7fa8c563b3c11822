//! A FIX message without its standard header and trailer: its MsgType (35) and its body fields
//! in wire order.
//!
//! The session layer decodes the standard header and trailer itself and hands the application
//! layer only what it needs; the encoder writes the header and trailer around these fields.
//! Values are kept as text, as they came off the wire, so that a field the application never
//! reads costs no parsing and a reject can quote it back exactly.
//!
//! The body is kept already encoded, one `tag=value` SOH after another, with a small index of
//! where each value lies. A field costs no allocation of its own, reading one is a scan of the
//! index, and encoding the message is a copy of the body between header and trailer:
//!
//! ```text
//! body:  11=ord-1|54=1|38=1.5|     (| is SOH)
//!           ^   ^    ^ ^
//! index: (11, 3..8), (54, 12..13), (38, 17..20)
//! ```

use std::fmt;

use engine::decimal::DecimalDisplay;

/// The field separator, SOH.
const SOH: char = '\u{1}';

/// Where one field's value lies in the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Field {
    tag: u32,
    start: u32,
    end: u32,
}

/// A FIX message without its standard header and trailer; see the module documentation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// MsgType (35), e.g. `D` for NewOrderSingle.
    pub msg_type: String,
    body: String,
    fields: Vec<Field>,
}

/// A value a field can be written from, without going through a formatter.
pub trait FieldValue {
    /// Appends the value's text to `out`.
    fn write_value(&self, out: &mut String);
}

impl FieldValue for str {
    fn write_value(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl FieldValue for String {
    fn write_value(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl FieldValue for char {
    fn write_value(&self, out: &mut String) {
        out.push(*self);
    }
}

impl FieldValue for DecimalDisplay {
    fn write_value(&self, out: &mut String) {
        self.write_to(out);
    }
}

impl<T: FieldValue + ?Sized> FieldValue for &T {
    fn write_value(&self, out: &mut String) {
        (**self).write_value(out);
    }
}

/// Unsigned integers, as their decimal digits.
macro_rules! unsigned_field_value {
    ($($type:ty),*) => {$(
        impl FieldValue for $type {
            fn write_value(&self, out: &mut String) {
                push_decimal(out, u64::from(*self));
            }
        }
    )*};
}

unsigned_field_value!(u8, u16, u32, u64);

impl FieldValue for usize {
    fn write_value(&self, out: &mut String) {
        push_decimal(out, u64::try_from(*self).unwrap_or(u64::MAX));
    }
}

impl FieldValue for i64 {
    fn write_value(&self, out: &mut String) {
        if *self < 0 {
            out.push('-');
        }
        push_decimal(out, self.unsigned_abs());
    }
}

impl FieldValue for i32 {
    fn write_value(&self, out: &mut String) {
        i64::from(*self).write_value(out);
    }
}

/// Appends the decimal digits of `value`.
pub fn push_decimal(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
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

/// Spare messages of this thread, whose buffers [`Message::new`] reuses.
///
/// The FIX thread decodes a message for every one it receives and builds one for every report
/// it sends, and drops each once it is handled or encoded: three allocations and three frees
/// apiece (its type, body and index), the larger part of that thread's calls to the allocator.
/// A dropped message's buffers wait here for the next one instead. Few are ever in flight at
/// once in a steady flow, but after a stall the thread builds a report for every order answered
/// meanwhile before it sends any. With 64 kept, such bursts were built afresh: half the FIX
/// thread's allocations in a run at 20,000/s. Beyond the bound, buffers are freed as before;
/// the bound holds about half a megabyte.
const SPARE_MAX: usize = 1024;

/// A message's buffers: its type, body and index.
type Buffers = (String, String, Vec<Field>);

thread_local! {
    static SPARE: std::cell::RefCell<Vec<Buffers>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for Message {
    fn drop(&mut self) {
        // Only buffers of the usual size are kept: an occasional huge message (a long Text)
        // would otherwise pin its memory here for good.
        if self.body.capacity() > 4 * Message::BODY_CAPACITY
            || self.fields.capacity() > 4 * Message::FIELDS_CAPACITY
            || self.body.capacity() == 0
        {
            return;
        }
        let spare = (
            std::mem::take(&mut self.msg_type),
            std::mem::take(&mut self.body),
            std::mem::take(&mut self.fields),
        );
        // During thread teardown the list may be gone already; the buffers are then freed
        // (plain strings and a vector: nothing here runs again).
        let _ = SPARE.try_with(|list| {
            if let Ok(mut list) = list.try_borrow_mut() {
                if list.len() < SPARE_MAX {
                    list.push(spare);
                }
            }
        });
    }
}

impl Message {
    /// Room for a typical execution report, so that building one does not reallocate.
    const BODY_CAPACITY: usize = 256;
    const FIELDS_CAPACITY: usize = 20;

    pub fn new(msg_type: &str) -> Message {
        let spare = SPARE.try_with(|list| list.try_borrow_mut().ok()?.pop()).ok().flatten();
        let (kind, body, fields) = spare.unwrap_or_else(|| {
            let body = String::with_capacity(Message::BODY_CAPACITY);
            (String::new(), body, Vec::with_capacity(Message::FIELDS_CAPACITY))
        });
        let mut message = Message { msg_type: kind, body, fields };
        message.reset(msg_type);
        message
    }

    /// Empties the message for reuse as `msg_type`, keeping its allocations.
    pub fn reset(&mut self, msg_type: &str) {
        self.msg_type.clear();
        self.msg_type.push_str(msg_type);
        self.body.clear();
        self.fields.clear();
    }

    /// Appends a field; builder style, for writing messages.
    #[must_use]
    pub fn with(mut self, tag: u32, value: impl FieldValue) -> Message {
        self.push(tag, value);
        self
    }

    /// Appends a field.
    pub fn push(&mut self, tag: u32, value: impl FieldValue) {
        push_decimal(&mut self.body, u64::from(tag));
        self.body.push('=');
        let start = self.body.len();
        value.write_value(&mut self.body);
        let end = self.body.len();
        self.body.push(SOH);
        self.fields.push(Field { tag, start: offset(start), end: offset(end) });
    }

    /// The first occurrence of `tag`, if any.
    pub fn get(&self, tag: u32) -> Option<&str> {
        let field = self.fields.iter().find(|field| field.tag == tag)?;
        Some(self.value(field))
    }

    /// Every field in order, as tag and value.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (u32, &str)> + '_ {
        self.fields.iter().map(|field| (field.tag, self.value(field)))
    }

    /// How many body fields the message has.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The body fields encoded, `tag=value` SOH after another, as they go on the wire.
    pub fn body(&self) -> &[u8] {
        self.body.as_bytes()
    }

    /// Keeps only the fields for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(u32, &str) -> bool) {
        let old = std::mem::replace(self, Message::new(&self.msg_type));
        for (tag, value) in old.fields() {
            if keep(tag, value) {
                self.push(tag, value);
            }
        }
    }

    /// Puts a field before all others.
    pub fn insert_first(&mut self, tag: u32, value: impl FieldValue) {
        let old = std::mem::replace(self, Message::new(&self.msg_type));
        self.push(tag, value);
        for (tag, value) in old.fields() {
            self.push(tag, value);
        }
    }

    fn value(&self, field: &Field) -> &str {
        &self.body[field.start as usize..field.end as usize]
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

/// A body offset. Bodies are bounded by the frame limit, far below 4 GiB; a body beyond it
/// would be a bug in this module, not bad input.
fn offset(position: usize) -> u32 {
    u32::try_from(position).expect("message bodies stay below 4 GiB")
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("msg_type", &self.msg_type)
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_messages_buffers_serve_the_next_and_nothing_of_it_shows() {
        // Each test runs on a thread of its own, so this thread's spare list starts empty.
        let first = Message::new("8").with(11, "order-1").with(58, "filled");
        let body = first.body().as_ptr();
        drop(first);
        let second = Message::new("D");
        assert_eq!(second.body().as_ptr(), body, "the buffer was reused");
        assert_eq!(second, Message::new("D"), "and emptied: no field of the first remains");
        assert_eq!(second.get(11), None);
        assert_eq!(second.msg_type, "D");
        // A message grown far past the usual size gives its memory back instead.
        let spare = || SPARE.with_borrow(Vec::len);
        let mut large = Message::new("8");
        large.push(58, "x".repeat(64 * 1024));
        let before = spare();
        drop(large);
        assert_eq!(spare(), before, "not kept");
        drop(second);
        assert_eq!(spare(), before + 1, "an ordinary one is");
    }

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

    #[test]
    fn the_body_is_the_wire_encoding_and_edits_keep_the_index_true() {
        let mut message = Message::new("8")
            .with(37, 42u64)
            .with(11, "a")
            .with(44, engine::decimal::format_units(6_000_150, 2))
            .with(58, String::from("text"))
            .with(8000, -3i64);
        assert_eq!(message.body(), b"37=42\x0111=a\x0144=60001.5\x0158=text\x018000=-3\x01");
        message.insert_first(45, 7u32);
        message.retain(|tag, _| tag != 11);
        assert_eq!(message.body(), b"45=7\x0137=42\x0144=60001.5\x0158=text\x018000=-3\x01");
        assert_eq!(message.get(44), Some("60001.5"));
        assert_eq!(
            message.fields().map(|(tag, _)| tag).collect::<Vec<_>>(),
            [45, 37, 44, 58, 8000]
        );
        message.reset("9");
        assert!(message.is_empty() && message.body().is_empty() && message.msg_type == "9");
    }
}
