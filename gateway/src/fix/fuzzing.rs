//! A byte-driven exerciser of the codec and the session layer, shared by the cargo-fuzz target
//! (`gateway/fuzz/fuzz_targets/fix_session.rs`) and the property test
//! (`gateway/tests/fix_fuzz.rs`).
//!
//! Random bytes almost never carry a valid CheckSum, so feeding them straight to the framer
//! would only ever test the framer. [`drive`] instead reads its input as a small program: each
//! step either appends raw bytes to the stream, or builds a well-framed message from tables of
//! message types, tags and awkward values (optionally corrupting one byte), or lets time pass,
//! or has the application send. The oracles: nothing panics, every byte the session writes
//! frames and decodes cleanly, and every frame the decoder's field walk accepts is read the
//! same way by `fefix`'s own full decoder.

use std::cell::RefCell;
use std::sync::Arc;

use fefix::tagvalue::{Config, Decoder};
use fefix::GetConfig;

use super::codec::{encode, format_utc_timestamp, DecoderTables, FixDecoder, FrameBuffer, Header};
use super::session::{Session, SessionConfig, SessionEvent, ThrottleConfig};
use super::store::MemoryStore;
use crate::message::Message;

const START_NS: u64 = 1_704_164_645_000_000_000;

const MSG_TYPES: [&str; 14] =
    ["A", "0", "1", "2", "3", "4", "5", "D", "F", "G", "H", "q", "ZZ", "j"];
const TAGS: [u32; 20] =
    [7, 16, 36, 108, 112, 123, 141, 553, 554, 11, 38, 44, 54, 95, 96, 453, 448, 58, 9999, 1];
const VALUES: [&str; 14] = [
    "0",
    "1",
    "2",
    "Y",
    "N",
    "30",
    "abc",
    "",
    "-1",
    "99999999999999999999999",
    "secret",
    "5",
    "3",
    "20240102-03:04:05.000",
];

thread_local! {
    // Building the dictionary tables parses XML; once per thread keeps fuzzing fast.
    static TABLES: Arc<DecoderTables> = DecoderTables::fix44();
    // The reference for the decoder's field walk.
    static FEFIX: RefCell<Decoder<Config>> = RefCell::new(fefix_decoder());
}

fn fefix_decoder() -> Decoder<Config> {
    let mut decoder = Decoder::<Config>::new(TABLES.with(|tables| tables.dictionary().clone()));
    decoder.config_mut().set_verify_checksum(false);
    decoder.config_mut().set_max_message_size(None);
    decoder
}

/// Panics unless `fefix`'s full decoder reads `frame`, which the walk of `decoder` accepted,
/// as the same fields in the same order. `fefix` keys its fields by tag and group position
/// and so reports the last value of a tag repeated outside a group for every occurrence;
/// such a tag's values are not compared, only its places.
fn assert_fefix_reads_the_same(decoder: &FixDecoder, frame: &[u8]) {
    let walked: Vec<(u16, &[u8])> = decoder
        .fields(frame)
        .and_then(|fields| fields.collect())
        .expect("the walk accepted this frame before");
    FEFIX.with(|fefix| {
        let mut fefix = fefix.borrow_mut();
        let message = fefix.decode(frame).expect("fefix decodes what the walk accepts");
        // fefix lists BeginString first and leaves BodyLength and CheckSum out.
        let read: Vec<(u16, &[u8])> =
            message.fields().skip(1).map(|(tag, value)| (tag.get(), value)).collect();
        assert_eq!(walked.len(), read.len(), "field counts differ in {frame:?}");
        for (&(tag, value), &(fefix_tag, fefix_value)) in walked.iter().zip(&read) {
            assert_eq!(tag, fefix_tag, "tags differ in {frame:?}");
            let repeated = walked.iter().filter(|(other, _)| *other == tag).count() > 1;
            if !repeated {
                assert_eq!(value, fefix_value, "values of tag {tag} differ in {frame:?}");
            }
        }
    });
}

struct Input<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl Input<'_> {
    fn next(&mut self) -> Option<u8> {
        self.bytes.next().copied()
    }

    fn pick<T: Copy>(&mut self, table: &[T]) -> Option<T> {
        Some(table[usize::from(self.next()?) % table.len()])
    }
}

/// How far one input got, so that tests can check the inputs reach the session's depths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriveSummary {
    pub messages_decoded: usize,
    pub logons: usize,
    pub application_messages: usize,
}

/// Runs one input through a framer, a decoder and a session; panics only on a broken oracle.
pub fn drive(data: &[u8]) -> DriveSummary {
    let mut summary = DriveSummary::default();
    let tables = TABLES.with(Arc::clone);
    let mut config = SessionConfig::new("EXCH", "C");
    config.password = Some("secret".to_owned());
    config.throttle = ThrottleConfig { rate_per_s: 5, burst: 3, rejects_max: 4 };
    let store = Box::new(MemoryStore::default());
    let mut session = Session::new(config, store).expect("a memory store cannot fail");
    let mut frames = FrameBuffer::new(4096);
    let mut decoder = FixDecoder::new(Arc::clone(&tables));
    let mut output_frames = FrameBuffer::new(1 << 20);
    let mut output_decoder = FixDecoder::new(tables);
    let mut now_ns = START_NS;
    let mut input = Input { bytes: data.iter() };
    let mut scratch = Vec::new();
    while let Some(op) = input.next() {
        match op % 5 {
            0 => {
                let length = usize::from(input.next().unwrap_or(0) % 64);
                let raw: Vec<u8> = (0..length).map_while(|_| input.next()).collect();
                frames.extend(&raw);
            }
            1 | 2 => {
                let Some(bytes) = build_message(&mut input, session.next_inbound(), now_ns) else {
                    break;
                };
                frames.extend(&bytes);
            }
            3 => now_ns += u64::from(input.next().unwrap_or(0)) * 250_000_000,
            _ => {
                let message = Message::new("8").with(11, "fuzz").with(150, '0');
                let _ = session.send_application(now_ns, &message);
            }
        }
        while let Some(frame) = frames.next_frame() {
            let Ok(range) = frame else { continue };
            if let Ok(inbound) = decoder.decode(frames.frame(range.clone())) {
                assert_fefix_reads_the_same(&decoder, frames.frame(range));
                summary.messages_decoded += 1;
                session.handle_inbound(now_ns, inbound).expect("a memory store cannot fail");
            }
        }
        session.handle_timeout(now_ns).expect("a memory store cannot fail");
        while let Some(event) = session.poll_event() {
            match event {
                SessionEvent::LoggedOn => summary.logons += 1,
                SessionEvent::Application { .. } => summary.application_messages += 1,
                SessionEvent::Disconnect { .. } => {
                    session.disconnect();
                    frames = FrameBuffer::new(4096);
                }
            }
        }
        scratch.clear();
        session.drain_transmit(&mut scratch);
        output_frames.extend(&scratch);
        while let Some(frame) = output_frames.next_frame() {
            let range = frame.expect("the session writes well-formed frames");
            output_decoder
                .decode(output_frames.frame(range))
                .expect("the session writes decodable messages");
        }
    }
    summary
}

/// A well-framed message from the tables, or `None` when the input runs out.
fn build_message(input: &mut Input<'_>, next_inbound: u64, now_ns: u64) -> Option<Vec<u8>> {
    let shape = input.next()?;
    let msg_type = input.pick(&MSG_TYPES)?;
    // Mostly in sequence, so that inputs get past the gap handling; sometimes off by up to 2.
    let seq_offset = match input.next()? % 8 {
        offset @ 0..=4 => i64::from(offset) - 2,
        _ => 0,
    };
    let seq = next_inbound.saturating_add_signed(seq_offset);
    let sender = if shape & 0x11 == 0x11 { "X" } else { "C" };
    // Zero to three minutes; the accuracy window is two.
    let skew_ns = u64::from(shape >> 6) * 60_000_000_000;
    let mut time = String::new();
    format_utc_timestamp(now_ns.saturating_sub(skew_ns), &mut time);
    let field_count = input.next()? % 6;
    let mut message = Message::new(msg_type);
    for _ in 0..field_count {
        let tag = input.pick(&TAGS)?;
        let value = input.pick(&VALUES)?;
        message.push(tag, value);
    }
    if msg_type == "A" && shape & 2 == 0 {
        message.push(108, "30");
        message.push(554, "secret");
    }
    let header = Header {
        sender_comp_id: sender,
        target_comp_id: "EXCH",
        seq,
        sending_time: &time,
        orig_sending_time: (shape & 4 != 0).then_some(time.as_str()),
    };
    let mut bytes = Vec::new();
    encode(&mut bytes, &header, msg_type, message.body());
    if shape & 8 != 0 {
        let position = usize::from(input.next()?) % bytes.len();
        bytes[position] = input.next()?;
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_logon_and_some_traffic_run_through() {
        // Op 1 builds a message: shape 0, MsgType index 0 (Logon), offset 2 (= expected),
        // no extra fields; then a TestRequest and a NewOrderSingle, and a pause.
        let summary =
            super::drive(&[1, 0, 0, 2, 0, 1, 0, 2, 2, 1, 4, 112, 2, 0, 7, 2, 0, 3, 200, 4]);
        assert_eq!(summary.logons, 1);
        assert_eq!(summary.application_messages, 1);
    }
}
