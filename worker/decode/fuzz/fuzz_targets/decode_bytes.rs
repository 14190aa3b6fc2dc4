//! Arbitrary bytes into the decoder, bare or Confluent-framed, for every schema of the
//! corpus: a body is decoded or refused with a typed error, never a panic, never an
//! allocation beyond what the bytes can hold; after a refusal the decoder still works.
//! One decoder per schema lives across inputs (as in the worker, where it lives across a
//! batch) and builds its batch every 256 rows.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use spillway_decode::{AvroDecoder, split_confluent};
use spillway_decode_fuzz::corpus;

thread_local! {
    static DECODERS: RefCell<Vec<AvroDecoder>> = RefCell::new(
        corpus().iter().map(|(_, plan)| AvroDecoder::new(plan.clone())).collect()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let body = if choice & 1 == 1 {
        match split_confluent(rest) {
            Ok((_, body)) => body,
            Err(_) => return,
        }
    } else {
        rest
    };
    DECODERS.with_borrow_mut(|decoders| {
        let n = decoders.len();
        let decoder = &mut decoders[usize::from(choice >> 1) % n];
        // The bytes, then their first half: a refusal leaves nothing behind.
        for b in [body, &body[..body.len() / 2]] {
            let before = decoder.len();
            let ok = decoder.push(b).is_ok();
            assert_eq!(decoder.len(), before + usize::from(ok));
        }
        if decoder.len() >= 256 {
            let rows = decoder.len();
            let batch = decoder.finish().unwrap_or_else(|e| panic!("finish: {e}"));
            assert_eq!(batch.num_rows(), rows);
        }
    });
});
