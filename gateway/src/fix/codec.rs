//! FIX 4.4 tag-value framing, decoding and encoding.
//!
//! Inbound bytes arrive from a TCP stream in arbitrary pieces. [`FrameBuffer`] collects them
//! and cuts out whole messages, checking BodyLength (9) and CheckSum (10) itself, because the
//! standard says a message failing either check is ignored and the stream resynchronises at the
//! next `8=`. A whole frame then goes to [`FixDecoder`]: `fefix`'s raw decoder checks the frame
//! and finds its payload, and one walk over the payload checks each field's structure and reads
//! it, using tables built from the `fefix` FIX 4.4 dictionary to recognise MsgTypes, tags and
//! data fields.
//!
//! Outbound messages are written by [`encode`], not by `fefix`: its encoder zero-pads
//! BodyLength, which some counterparties reject, and ours writes the standard header in the
//! order most engines expect (8, 9, 35, 49, 56, 34, 52, then 43 and 122 on resends) straight
//! into a reused buffer.
//!
//! ```text
//! 8=FIX.4.4|9=<body length>|35=<type>|49=..|56=..|34=<seq>|52=<time>|<body>|10=<ddd>|
//!           ^ body length counts from here ...                    to here ^
//! ```

use std::ops::Range;
use std::sync::Arc;

use fefix::tagvalue::{Config, RawDecoder};
use fefix::{Dictionary, GetConfig};

use smallvec::SmallVec;

use crate::message::Message;

/// The field separator, SOH.
pub const SOH: u8 = 0x01;

/// Every frame starts with these bytes; resynchronisation searches for them.
const BEGIN: &[u8] = b"8=FIX.4.4\x019=";

/// The trailer, `10=ddd` and SOH.
const TRAILER_LEN: usize = 7;

/// BodyLength digits we accept before calling the frame malformed.
const BODY_LENGTH_DIGITS_MAX: usize = 7;

/// Why bytes were dropped from the inbound stream instead of forming a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Bytes that do not start a FIX 4.4 message were skipped up to the next `8=`.
    #[error("{skipped} bytes of garbage skipped")]
    Garbage { skipped: usize },
    /// BodyLength is not a number, exceeds the limit, or does not end where the trailer starts.
    #[error("bad BodyLength")]
    BadBodyLength,
    /// The frame is well formed but its CheckSum does not match.
    #[error("bad CheckSum")]
    BadChecksum,
}

/// Collects a stream's bytes and cuts whole messages out of them.
#[derive(Debug)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
    start: usize,
    body_length_max: usize,
}

impl FrameBuffer {
    /// A buffer that refuses messages whose BodyLength exceeds `body_length_max`.
    pub fn new(body_length_max: usize) -> FrameBuffer {
        FrameBuffer { bytes: Vec::with_capacity(4096), start: 0, body_length_max }
    }

    /// Appends bytes read from the stream.
    pub fn extend(&mut self, data: &[u8]) {
        // Compact before growing so that a long-lived connection does not keep a large buffer
        // of consumed bytes; the copy is of the unconsumed tail only.
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start > 4096 && self.start * 2 > self.bytes.len() {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    /// Bytes received but not yet consumed by [`FrameBuffer::next_frame`].
    pub fn pending(&self) -> usize {
        self.bytes.len() - self.start
    }

    /// The bytes of a frame returned by [`FrameBuffer::next_frame`]; valid until the next
    /// call to [`FrameBuffer::extend`].
    pub fn frame(&self, range: Range<usize>) -> &[u8] {
        &self.bytes[range]
    }

    /// The next whole frame, an error for dropped bytes, or `None` when more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Range<usize>, FrameError>> {
        let data = &self.bytes[self.start..];
        if data.is_empty() {
            return None;
        }
        let prefix_len = data.len().min(BEGIN.len());
        if data[..prefix_len] != BEGIN[..prefix_len] {
            let skipped = resync_offset(data);
            self.start += skipped;
            return Some(Err(FrameError::Garbage { skipped }));
        }
        if prefix_len < BEGIN.len() {
            return None;
        }
        match self.frame_length(data) {
            FrameLength::Incomplete => None,
            FrameLength::Malformed => {
                // Skip the `8` so that the next call searches for the following message.
                self.start += 1;
                Some(Err(FrameError::BadBodyLength))
            }
            FrameLength::Complete { length, checksum_ok } => {
                let range = self.start..self.start + length;
                self.start += length;
                if checksum_ok {
                    Some(Ok(range))
                } else {
                    Some(Err(FrameError::BadChecksum))
                }
            }
        }
    }

    fn frame_length(&self, data: &[u8]) -> FrameLength {
        let digits = &data[BEGIN.len()..];
        let Some(digits_len) = digits.iter().position(|&byte| byte == SOH) else {
            return if digits.len() > BODY_LENGTH_DIGITS_MAX
                || !digits.iter().all(u8::is_ascii_digit)
            {
                FrameLength::Malformed
            } else {
                FrameLength::Incomplete
            };
        };
        let Some(body_length) = parse_decimal(&digits[..digits_len]) else {
            return FrameLength::Malformed;
        };
        if digits_len > BODY_LENGTH_DIGITS_MAX || body_length > self.body_length_max as u64 {
            return FrameLength::Malformed;
        }
        let Ok(body_length) = usize::try_from(body_length) else {
            return FrameLength::Malformed;
        };
        let body_start = BEGIN.len() + digits_len + 1;
        let trailer_start = body_start + body_length;
        let length = trailer_start + TRAILER_LEN;
        if data.len() < length {
            return FrameLength::Incomplete;
        }
        let trailer = &data[trailer_start..length];
        if &trailer[..3] != b"10=" || trailer[6] != SOH {
            return FrameLength::Malformed;
        }
        let Some(declared) = parse_decimal(&trailer[3..6]) else {
            return FrameLength::Malformed;
        };
        FrameLength::Complete {
            length,
            checksum_ok: declared == u64::from(checksum(&data[..trailer_start])),
        }
    }
}

enum FrameLength {
    Incomplete,
    Malformed,
    Complete { length: usize, checksum_ok: bool },
}

/// How many leading bytes of `data` to drop: up to the next `8=FIX.4.4`, or all but a tail
/// that could be the start of one.
fn resync_offset(data: &[u8]) -> usize {
    for offset in 1..data.len() {
        let rest = &data[offset..];
        let len = rest.len().min(BEGIN.len());
        if rest[..len] == BEGIN[..len] {
            return offset;
        }
    }
    data.len()
}

/// The FIX checksum: the byte sum modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte))
}

/// Parses ASCII digits; `None` for an empty, non-digit or overflowing input.
pub fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        if byte.is_ascii_digit() {
            value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
        } else {
            None
        }
    })
}

/// The text of a header field the session layer checks (a CompID, a timestamp), held inline
/// up to 32 bytes, as such fields almost always are: decoding every inbound message allocated
/// a string for each of them before. Invalid UTF-8 is replaced, as `String::from_utf8_lossy`
/// does.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderText(SmallVec<[u8; 32]>);

impl HeaderText {
    fn from_wire(value: &[u8]) -> HeaderText {
        match String::from_utf8_lossy(value) {
            std::borrow::Cow::Borrowed(text) => HeaderText(SmallVec::from_slice(text.as_bytes())),
            std::borrow::Cow::Owned(text) => HeaderText(SmallVec::from_vec(text.into_bytes())),
        }
    }
}

impl std::ops::Deref for HeaderText {
    type Target = str;

    fn deref(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a HeaderText is made of UTF-8 text only")
    }
}

impl std::fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// A decoded inbound message: the standard header fields the session layer checks, and the
/// rest as a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    /// MsgSeqNum (34); `None` when missing or not a number.
    pub seq: Option<u64>,
    /// SenderCompID (49): the counterparty's CompID.
    pub sender_comp_id: Option<HeaderText>,
    /// TargetCompID (56): ours.
    pub target_comp_id: Option<HeaderText>,
    /// SendingTime (52), as text.
    pub sending_time: Option<HeaderText>,
    /// PossDupFlag (43) is `Y`.
    pub poss_dup: bool,
    /// OrigSendingTime (122), as text.
    pub orig_sending_time: Option<HeaderText>,
    /// Whether the FIX 4.4 dictionary knows the MsgType.
    pub msg_type_known: bool,
    /// The first tag below the user-defined range (5000) that the dictionary does not know.
    pub unknown_tag: Option<u32>,
    /// MsgType and the body fields (everything but 8, 9, 10 and the header fields above).
    pub message: Message,
}

/// Why a frame that passed the framing checks still could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("malformed tag=value structure at byte {0}")]
    Malformed(usize),
    #[error("MsgType (35) missing or not the first body field")]
    MsgType,
    #[error("the fefix raw decoder refused the frame")]
    Refused,
}

/// What the decoder needs from the FIX 4.4 dictionary, computed once and shared by every
/// connection's decoder. Tag properties are bit sets indexed by tag, so that checking a field
/// is one load rather than a search of the dictionary.
#[derive(Debug)]
pub struct DecoderTables {
    dictionary: Dictionary,
    /// Tags the dictionary knows.
    known_tags: TagSet,
    /// Tags of type Length: the next field's value is that many bytes and may contain SOH.
    length_tags: TagSet,
    /// Tags of type NumInGroup: the value must be a count.
    group_tags: TagSet,
}

/// A set of tags (1..=65535), one bit each.
#[derive(Debug)]
struct TagSet(Vec<u64>);

impl TagSet {
    fn new() -> TagSet {
        TagSet(vec![0; 1 << 10])
    }

    fn insert(&mut self, tag: u16) {
        self.0[usize::from(tag >> 6)] |= 1 << (tag & 63);
    }

    fn contains(&self, tag: u16) -> bool {
        self.0[usize::from(tag >> 6)] & (1 << (tag & 63)) != 0
    }
}

impl DecoderTables {
    pub fn fix44() -> Arc<DecoderTables> {
        use fefix::dict::FixDatatype;
        let dictionary = Dictionary::fix44();
        let mut known_tags = TagSet::new();
        let mut length_tags = TagSet::new();
        let mut group_tags = TagSet::new();
        for field in dictionary.iter_fields() {
            let tag = field.tag().get();
            known_tags.insert(tag);
            match field.data_type().basetype() {
                FixDatatype::Length => length_tags.insert(tag),
                FixDatatype::NumInGroup => group_tags.insert(tag),
                _ => {}
            }
        }
        Arc::new(DecoderTables { dictionary, known_tags, length_tags, group_tags })
    }

    /// The `fefix` FIX 4.4 dictionary the tables were built from.
    pub fn dictionary(&self) -> &Dictionary {
        &self.dictionary
    }

    /// Whether the dictionary knows the MsgType.
    pub fn knows_msg_type(&self, msg_type: &str) -> bool {
        self.dictionary.message_by_msgtype(msg_type).is_some()
    }

    fn knows_tag(&self, tag: u32) -> bool {
        tag >= 5000 || u16::try_from(tag).is_ok_and(|tag| self.known_tags.contains(tag))
    }
}

/// Decodes whole frames (from [`FrameBuffer`]): `fefix`'s raw decoder checks the frame and
/// finds its payload, and one walk over the payload checks every field against the
/// dictionary's tables and builds the [`Inbound`].
///
/// The walk is ours rather than `fefix`'s full decoder because that decoder stores every field
/// in hash maps keyed by tag (a SipHash per field, about half of the cost of decoding an order)
/// and unwraps on malformed tags, counts and data lengths, so it needed a validating walk of
/// its own before it anyway. The walk reads fields in wire order, repeating groups flattened,
/// as `fefix`'s decoder lists them, except that a tag repeated outside a group keeps each of
/// its values (`fefix` reports the last one at every place); the fuzz oracle in
/// [`crate::fix::fuzzing`] holds the two to that.
#[derive(Debug)]
pub struct FixDecoder {
    tables: Arc<DecoderTables>,
    raw: RawDecoder<Config>,
}

impl FixDecoder {
    pub fn new(tables: Arc<DecoderTables>) -> FixDecoder {
        let mut raw = RawDecoder::<Config>::new();
        // FrameBuffer has checked CheckSum already.
        raw.config_mut().set_verify_checksum(false);
        raw.config_mut().set_max_message_size(None);
        FixDecoder { tables, raw }
    }

    pub fn tables(&self) -> &DecoderTables {
        &self.tables
    }

    /// The fields of one whole frame's payload in wire order, from BeginString's and
    /// BodyLength's end to CheckSum's start, each checked as it is read.
    pub fn fields<'f>(&self, frame: &'f [u8]) -> Result<FieldWalk<'_, 'f>, DecodeError> {
        let payload = self.raw.decode(frame).map_err(|_| DecodeError::Refused)?.payload;
        Ok(FieldWalk {
            tables: &self.tables,
            frame,
            position: payload.start,
            end: payload.end,
            data_length: None,
        })
    }

    /// Decodes one whole frame.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Inbound, DecodeError> {
        let mut fields = self.fields(frame)?;
        let (first_tag, first_value) = fields.next().ok_or(DecodeError::MsgType)??;
        if first_tag != 35 || first_value.is_empty() {
            return Err(DecodeError::MsgType);
        }
        let msg_type = String::from_utf8_lossy(first_value);
        let mut inbound = Inbound {
            seq: None,
            sender_comp_id: None,
            target_comp_id: None,
            sending_time: None,
            poss_dup: false,
            orig_sending_time: None,
            msg_type_known: self.tables.knows_msg_type(&msg_type),
            unknown_tag: None,
            message: Message::new(&msg_type),
        };
        let mut seq_seen = false;
        for field in fields {
            let (tag, value) = field?;
            let tag = u32::from(tag);
            let text = || HeaderText::from_wire(value);
            match tag {
                34 if !seq_seen => {
                    seq_seen = true;
                    inbound.seq = parse_decimal(value);
                }
                49 if inbound.sender_comp_id.is_none() => inbound.sender_comp_id = Some(text()),
                56 if inbound.target_comp_id.is_none() => inbound.target_comp_id = Some(text()),
                52 if inbound.sending_time.is_none() => inbound.sending_time = Some(text()),
                43 => inbound.poss_dup = value == b"Y",
                122 if inbound.orig_sending_time.is_none() => {
                    inbound.orig_sending_time = Some(text());
                }
                // PossResend and OnBehalfOf routing are not used by this venue.
                97 => {}
                _ => {
                    if inbound.unknown_tag.is_none() && !self.tables.knows_tag(tag) {
                        inbound.unknown_tag = Some(tag);
                    }
                    inbound.message.push(tag, &*String::from_utf8_lossy(value));
                }
            }
        }
        Ok(inbound)
    }
}

/// The fields of a frame's payload in wire order, each checked as it is read: `tag=value`
/// SOH with a tag in 1..=65535, a data field's value exactly as long as the Length field
/// before it says (it may contain SOH), and a group count that is a number. A malformed
/// field ends the walk with an error naming its byte offset.
#[derive(Debug)]
pub struct FieldWalk<'t, 'f> {
    tables: &'t DecoderTables,
    frame: &'f [u8],
    position: usize,
    end: usize,
    /// The previous field was of type Length: this many bytes of value follow.
    data_length: Option<usize>,
}

impl<'f> FieldWalk<'_, 'f> {
    fn field(&mut self) -> Result<(u16, &'f [u8]), DecodeError> {
        let (frame, position, end) = (self.frame, self.position, self.end);
        let equals = frame[position..end]
            .iter()
            .position(|&b| b == b'=')
            .ok_or(DecodeError::Malformed(position))?;
        let tag = parse_decimal(&frame[position..position + equals])
            .filter(|&tag| (1..=65535).contains(&tag) && equals <= 5)
            .and_then(|tag| u16::try_from(tag).ok())
            .ok_or(DecodeError::Malformed(position))?;
        let value_start = position + equals + 1;
        let value_end = match self.data_length.take() {
            Some(length) => value_start
                .checked_add(length)
                .filter(|&value_end| value_end < end && frame[value_end] == SOH)
                .ok_or(DecodeError::Malformed(value_start))?,
            None => {
                value_start
                    + frame[value_start..end]
                        .iter()
                        .position(|&b| b == SOH)
                        .ok_or(DecodeError::Malformed(value_start))?
            }
        };
        let value = &frame[value_start..value_end];
        let is_length = self.tables.length_tags.contains(tag);
        if is_length || self.tables.group_tags.contains(tag) {
            let count = std::str::from_utf8(value)
                .ok()
                .and_then(|text| text.parse::<usize>().ok())
                .ok_or(DecodeError::Malformed(value_start))?;
            if is_length {
                self.data_length = Some(count);
            }
        }
        self.position = value_end + 1;
        Ok((tag, value))
    }
}

impl<'f> Iterator for FieldWalk<'_, 'f> {
    type Item = Result<(u16, &'f [u8]), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.end {
            // A Length field must be followed by its data field.
            return self.data_length.take().map(|_| Err(DecodeError::Malformed(self.end)));
        }
        let field = self.field();
        if field.is_err() {
            // One error ends the walk.
            self.position = self.end;
        }
        Some(field)
    }
}

/// The standard header of an outbound message, beyond MsgType.
#[derive(Clone, Copy, Debug)]
pub struct Header<'a> {
    /// SenderCompID (49): ours.
    pub sender_comp_id: &'a str,
    /// TargetCompID (56): the counterparty's.
    pub target_comp_id: &'a str,
    pub seq: u64,
    /// SendingTime (52), as formatted by [`format_utc_timestamp`].
    pub sending_time: &'a str,
    /// On a resend: PossDupFlag (43) is `Y` and OrigSendingTime (122) is this.
    pub orig_sending_time: Option<&'a str>,
}

/// Appends one encoded message to `out`: `msg_type` with the standard header, then `body`,
/// the message's fields already encoded ([`Message::body`]). BodyLength is computed before
/// anything is written, so the message goes into `out` in one pass, without a scratch copy.
pub fn encode(out: &mut Vec<u8>, header: &Header<'_>, msg_type: &str, body: &[u8]) {
    let mut seq_digits = itoa::Buffer::new();
    let seq = seq_digits.format(header.seq).as_bytes();
    // `tag=` SOH around each header value: 35, 49, 56, 34, 52 take 4 bytes each beyond their
    // values, and a resend's `43=Y` SOH `122=` SOH takes 10.
    let mut body_length = 5 * 4
        + msg_type.len()
        + header.sender_comp_id.len()
        + header.target_comp_id.len()
        + seq.len()
        + header.sending_time.len()
        + body.len();
    if let Some(orig) = header.orig_sending_time {
        body_length += 10 + orig.len();
    }
    let mut length_digits = itoa::Buffer::new();
    let length = length_digits.format(body_length).as_bytes();
    out.reserve(BEGIN.len() + length.len() + 1 + body_length + TRAILER_LEN);
    let start = out.len();
    out.extend_from_slice(BEGIN);
    out.extend_from_slice(length);
    out.push(SOH);
    for (tag, value) in [
        (&b"35="[..], msg_type.as_bytes()),
        (b"49=", header.sender_comp_id.as_bytes()),
        (b"56=", header.target_comp_id.as_bytes()),
        (b"34=", seq),
        (b"52=", header.sending_time.as_bytes()),
    ] {
        out.extend_from_slice(tag);
        out.extend_from_slice(value);
        out.push(SOH);
    }
    if let Some(orig) = header.orig_sending_time {
        out.extend_from_slice(b"43=Y\x01122=");
        out.extend_from_slice(orig.as_bytes());
        out.push(SOH);
    }
    out.extend_from_slice(body);
    let sum = checksum(&out[start..]);
    out.extend_from_slice(b"10=");
    out.extend_from_slice(&[b'0' + sum / 100, b'0' + (sum / 10) % 10, b'0' + sum % 10, SOH]);
}

/// Length of a UTC timestamp with milliseconds: `YYYYMMDD-HH:MM:SS.sss`.
pub const TIMESTAMP_LEN: usize = 21;

/// Formats nanoseconds since the Unix epoch as a FIX UTCTimestamp with milliseconds.
pub fn format_utc_timestamp(time_ns: u64, out: &mut String) {
    out.push_str(std::str::from_utf8(&timestamp_text(time_ns)).expect("ASCII digits"));
}

/// A time as a FIX UTCTimestamp with milliseconds, for a message field or `Display`, written
/// without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcTimestamp(pub u64);

impl std::fmt::Display for UtcTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(&timestamp_text(self.0)).expect("ASCII digits"))
    }
}

impl crate::message::FieldValue for UtcTimestamp {
    fn write_value(&self, out: &mut String) {
        format_utc_timestamp(self.0, out);
    }
}

thread_local! {
    /// The last millisecond formatted on this thread and its text: every message a session
    /// sends carries SendingTime and most carry TransactTime, and at any real rate many share
    /// a millisecond, so a calendar conversion per message would mostly repeat the last one.
    static LAST_TIMESTAMP: std::cell::Cell<(u64, [u8; TIMESTAMP_LEN])> =
        const { std::cell::Cell::new((u64::MAX, [0; TIMESTAMP_LEN])) };
}

/// `YYYYMMDD-HH:MM:SS.sss` for nanoseconds since the Unix epoch.
fn timestamp_text(time_ns: u64) -> [u8; TIMESTAMP_LEN] {
    let millis_since_epoch = time_ns / 1_000_000;
    LAST_TIMESTAMP.with(|last| {
        let (millis, text) = last.get();
        if millis == millis_since_epoch {
            return text;
        }
        let text = civil_timestamp_text(time_ns);
        last.set((millis_since_epoch, text));
        text
    })
}

/// `YYYYMMDD-HH:MM:SS.sss` computed from the calendar.
fn civil_timestamp_text(time_ns: u64) -> [u8; TIMESTAMP_LEN] {
    let seconds = time_ns / 1_000_000_000;
    let millis = (time_ns / 1_000_000) % 1000;
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    // Years stay below 10000 for any u64 of nanoseconds (the range ends in 2554).
    let mut text = *b"00000000-00:00:00.000";
    for (range, value) in [
        (0..4, year),
        (4..6, month),
        (6..8, day),
        (9..11, second_of_day / 3600),
        (12..14, (second_of_day / 60) % 60),
        (15..17, second_of_day % 60),
        (18..21, millis),
    ] {
        let mut rest = value;
        for byte in text[range].iter_mut().rev() {
            *byte = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    }
    text
}

/// Parses a FIX UTCTimestamp (`YYYYMMDD-HH:MM:SS` with optional `.sss`, `.ssssss` or
/// `.sssssssss`) into nanoseconds since the Unix epoch; `None` for anything else.
pub fn parse_utc_timestamp(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() < 17 || bytes[8] != b'-' || bytes[11] != b':' || bytes[14] != b':' {
        return None;
    }
    let year = parse_decimal(&bytes[0..4])?;
    let month = parse_decimal(&bytes[4..6])?;
    let day = parse_decimal(&bytes[6..8])?;
    let hour = parse_decimal(&bytes[9..11])?;
    let minute = parse_decimal(&bytes[12..14])?;
    let second = parse_decimal(&bytes[15..17])?;
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    if !valid {
        return None;
    }
    let fraction_ns = match &bytes[17..] {
        [] => 0,
        [b'.', digits @ ..] if matches!(digits.len(), 3 | 6 | 9) => {
            let scale = 10u64.pow(9 - u32::try_from(digits.len()).ok()?);
            parse_decimal(digits)? * scale
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    seconds.checked_mul(1_000_000_000)?.checked_add(fraction_ns)
}

/// Year, month and day of a day count since 1970-01-01 (Howard Hinnant's civil calendar
/// algorithm, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date in 1970..=9999 (the inverse of [`civil_from_days`]).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_reads_as_the_wire_had_it_inline_or_not_and_replaces_bad_utf8() {
        let short = HeaderText::from_wire(b"20240102-03:04:05.000");
        assert_eq!(&*short, "20240102-03:04:05.000");
        assert!(!short.0.spilled(), "a timestamp is held inline");
        let long = "C".repeat(100);
        assert_eq!(&*HeaderText::from_wire(long.as_bytes()), long);
        assert_eq!(&*HeaderText::from_wire(b"AB\xffC"), "AB\u{fffd}C");
        assert_eq!(format!("{:?}", HeaderText::from_wire(b"ALICE")), "\"ALICE\"");
    }

    fn wire(text: &str) -> Vec<u8> {
        text.replace('|', "\x01").into_bytes()
    }

    fn header(seq: u64) -> Header<'static> {
        Header {
            sender_comp_id: "EXCH",
            target_comp_id: "CLIENT",
            seq,
            sending_time: "20240102-03:04:05.678",
            orig_sending_time: None,
        }
    }

    #[test]
    fn encoded_messages_frame_and_decode_back() {
        let mut out = Vec::new();
        encode(&mut out, &header(7), "1", Message::new("1").with(112, "ping").body());
        encode(&mut out, &header(8), "0", b"");
        // A resend's header carries PossDupFlag and OrigSendingTime, counted in BodyLength.
        let resend = Header { orig_sending_time: Some("20240102-03:04:05.000"), ..header(9) };
        encode(&mut out, &resend, "8", Message::new("8").with(11, "a").body());
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("8=FIX.4.4\x019=62\x0135=1\x0149=EXCH\x0156=CLIENT\x0134=7\x01"));
        let mut frames = FrameBuffer::new(4096);
        let mut decoder = FixDecoder::new(DecoderTables::fix44());
        // Byte by byte: every partial read must wait, not fail.
        let mut decoded = Vec::new();
        for byte in &out {
            frames.extend(std::slice::from_ref(byte));
            while let Some(frame) = frames.next_frame() {
                let range = frame.unwrap();
                decoded.push(decoder.decode(frames.frame(range)).unwrap());
            }
        }
        assert_eq!(decoded.len(), 3);
        assert!(decoded[2].poss_dup);
        assert_eq!(decoded[2].orig_sending_time.as_deref(), Some("20240102-03:04:05.000"));
        assert_eq!(decoded[2].message, Message::new("8").with(11, "a"));
        assert_eq!(decoded[0].seq, Some(7));
        assert_eq!(decoded[0].sender_comp_id.as_deref(), Some("EXCH"));
        assert_eq!(decoded[0].message, Message::new("1").with(112, "ping"));
        assert!(decoded[1].msg_type_known);
    }

    #[test]
    fn bad_checksum_and_body_length_are_dropped_and_the_stream_resynchronises() {
        let mut out = Vec::new();
        encode(&mut out, &header(1), "0", b"");
        let good = out.clone();
        let mut bad_sum = good.clone();
        let len = bad_sum.len();
        bad_sum[len - 2] = if bad_sum[len - 2] == b'0' { b'1' } else { b'0' };
        let mut bad_length = wire("8=FIX.4.4|9=5|35=0|49=A|56=B|34=1|10=000|");
        bad_length.extend_from_slice(&good);
        let mut frames = FrameBuffer::new(4096);
        frames.extend(b"garbage");
        frames.extend(&bad_sum);
        frames.extend(&bad_length);
        let mut results = Vec::new();
        while let Some(frame) = frames.next_frame() {
            results.push(frame.map(|range| frames.frame(range).to_vec()));
        }
        assert_eq!(results[0], Err(FrameError::Garbage { skipped: 7 }));
        assert_eq!(results[1], Err(FrameError::BadChecksum));
        assert_eq!(results[2], Err(FrameError::BadBodyLength));
        assert!(matches!(results[3], Err(FrameError::Garbage { .. })));
        assert_eq!(results[4], Ok(good));
        assert_eq!(results.len(), 5);
    }

    /// A whole frame around `body` (| for SOH), with BodyLength and CheckSum right.
    fn frame_of(body: &str) -> Vec<u8> {
        let body = wire(body);
        let mut frame = wire(&format!("8=FIX.4.4|9={}|", body.len()));
        frame.extend_from_slice(&body);
        let sum = checksum(&frame);
        frame.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
        frame
    }

    #[test]
    fn malformed_structures_are_refused_without_panicking() {
        let tables = DecoderTables::fix44();
        let mut decoder = FixDecoder::new(tables);
        for body in [
            "35=0|95=5|96=ab|",
            "35=0|453=x|",
            "35=0|x=1|",
            "35=0|99999999=1|",
            "34=1|",
            // A Length field must be followed by its data field.
            "35=0|95=2|",
            // A data field as long as its Length, but not ending in SOH.
            "35=0|95=1|96=ab|",
        ] {
            assert!(decoder.decode(&frame_of(body)).is_err(), "{body:?}");
        }
    }

    #[test]
    fn a_data_field_holds_exactly_its_length_soh_included() {
        let mut decoder = FixDecoder::new(DecoderTables::fix44());
        let inbound = decoder.decode(&frame_of("35=0|34=3|95=3|96=a|b|112=t|")).unwrap();
        assert_eq!(inbound.seq, Some(3));
        assert_eq!(inbound.message.get(96), Some("a\u{1}b"));
        assert_eq!(inbound.message.get(112), Some("t"));
        assert_eq!(inbound.unknown_tag, None);
    }

    #[test]
    fn timestamps_round_trip() {
        let mut text = String::new();
        format_utc_timestamp(1_704_164_645_678_000_000, &mut text);
        assert_eq!(text, "20240102-03:04:05.678");
        assert_eq!(parse_utc_timestamp(&text), Some(1_704_164_645_678_000_000));
        assert_eq!(parse_utc_timestamp("20240102-03:04:05"), Some(1_704_164_645_000_000_000));
        assert_eq!(parse_utc_timestamp("20240230-03:04:05.1"), None);
        assert_eq!(parse_utc_timestamp("2024010203:04:05"), None);
        format_utc_timestamp(951_782_400_000_000_000, &mut text);
        assert!(text.ends_with("20000229-00:00:00.000"));
        // The thread's cache answers for its own millisecond only, in either direction.
        for (time_ns, expected) in [
            (1_704_164_645_678_999_999, "20240102-03:04:05.678"),
            (1_704_164_645_679_000_000, "20240102-03:04:05.679"),
            (1_704_164_645_678_000_001, "20240102-03:04:05.678"),
            (1_704_164_645_678_500_000, "20240102-03:04:05.678"),
        ] {
            text.clear();
            format_utc_timestamp(time_ns, &mut text);
            assert_eq!(text, expected);
        }
    }
}
