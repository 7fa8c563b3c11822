//! The fuzz target's driver (`gateway::fix::fuzzing::drive`) under proptest, for a bounded
//! number of cases, so that `cargo test` exercises it where cargo-fuzz is not installed.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_input_never_panics_and_output_always_decodes(
        data in proptest::collection::vec(any::<u8>(), 0..1024)
    ) {
        gateway::fix::fuzzing::drive(&data);
    }

    /// Inputs biased towards whole messages (ops 1 and 2), which reach deeper session states.
    #[test]
    fn message_heavy_input_never_panics(
        steps in proptest::collection::vec(
            (1u8..3, any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>(), any::<[u8; 4]>()),
            0..64,
        )
    ) {
        gateway::fix::fuzzing::drive(&message_program(&steps));
    }
}

type Step = (u8, u8, u8, u8, u8, [u8; 4]);

/// Encodes steps as driver input: ops 1 and 2 build a message each.
fn message_program(steps: &[Step]) -> Vec<u8> {
    let mut data = Vec::new();
    for &(op, shape, msg_type, seq, count, fields) in steps {
        // At most two fields, and exactly two bytes each, so that no field byte is read as
        // the next op.
        let count = count % 3;
        data.extend([op, shape & !8, msg_type, seq, count]);
        data.extend(&fields[..usize::from(count) * 2]);
    }
    data
}

/// The message-heavy inputs are not all refused at the door: with a fixed pseudo-random
/// sequence, some log on and some application messages reach the application.
#[test]
fn message_heavy_inputs_reach_logged_on_states() {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state.to_le_bytes()[0]
    };
    let mut logons = 0;
    let mut application_messages = 0;
    for _ in 0..200 {
        let steps: Vec<Step> = (0..32)
            .map(|_| (1, byte(), byte(), byte(), byte(), [byte(), byte(), byte(), byte()]))
            .collect();
        let summary = gateway::fix::fuzzing::drive(&message_program(&steps));
        logons += summary.logons;
        application_messages += summary.application_messages;
    }
    assert!(logons > 0 && application_messages > 0, "{logons} {application_messages}");
}
