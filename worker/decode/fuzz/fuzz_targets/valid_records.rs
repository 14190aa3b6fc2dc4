//! Valid Avro bodies of every schema of the corpus, generated from the fuzzer's bytes
//! (every type, blocks with negative counts, recursion, resolution to a different reader):
//! each one decodes, and every batch has one row per body. One decoder per schema lives
//! across inputs and builds its batch every 256 rows.
#![no_main]

use std::cell::RefCell;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use spillway_decode::AvroDecoder;
use spillway_decode_fuzz::{Generator, corpus};

thread_local! {
    static DECODERS: RefCell<Vec<AvroDecoder>> = RefCell::new(
        corpus().iter().map(|(_, plan)| AvroDecoder::new(plan.clone())).collect()
    );
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let corpus = corpus();
    let Ok(i) = u.choose_index(corpus.len()) else {
        return;
    };
    let writer = &corpus[i].0;
    let mut bodies = Vec::new();
    for _ in 0..u.int_in_range(1..=4u8).unwrap_or(1) {
        let mut body = Vec::new();
        if Generator::new(&mut u).body(writer, &mut body).is_err() {
            break; // the fuzzer's bytes ran out mid-body
        }
        bodies.push(body);
    }
    DECODERS.with_borrow_mut(|decoders| {
        let decoder = &mut decoders[i];
        for body in &bodies {
            if let Err(e) = decoder.push(body) {
                panic!("a valid body of schema {i} was refused: {e} ({body:02x?})");
            }
        }
        if decoder.len() >= 256 {
            let rows = decoder.len();
            let batch = decoder.finish().unwrap_or_else(|e| panic!("finish: {e}"));
            assert_eq!(batch.num_rows(), rows);
        }
    });
});
