//! Reads the headers of a consumed Kafka message as bytes.
//!
//! rdkafka 0.39's `Headers::try_get` turns each header name into `&str` with
//! `CStr::to_str().unwrap()`, so a record whose header name is not UTF-8 (the protocol says
//! it is a string, but librdkafka passes any bytes through) panics the consumer — and, since
//! the record is read again after the restart, crash-loops it. [`headers`] reads the names
//! and values through librdkafka's own accessors instead and decodes names lossily (invalid
//! sequences become U+FFFD), as the Java client and Spark's Kafka source do.
//!
//! This is the project's only `unsafe` code; the rest of the workspace forbids it.

use std::ffi::CStr;
use std::ptr;

use rdkafka::bindings as rd;
use rdkafka::message::BorrowedMessage;

/// One header: its name (lossily decoded) and its value (`None` for a null value).
pub type Header = (String, Option<Vec<u8>>);

/// The headers of `msg`, in order; empty when it has none.
pub fn headers(msg: &BorrowedMessage<'_>) -> Vec<Header> {
    let mut hdrs: *mut rd::rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: `msg.ptr()` is a live message for the borrow's duration; librdkafka only
    // writes the message's own header list (or nothing) into `hdrs`.
    let err = unsafe { rd::rd_kafka_message_headers(msg.ptr(), &mut hdrs) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
        return Vec::new();
    }
    // SAFETY: `hdrs` is the message's header list, owned by the message and alive as long as it.
    let count = unsafe { rd::rd_kafka_header_cnt(hdrs) };
    let mut out = Vec::with_capacity(count);
    for idx in 0..count {
        let mut name = ptr::null();
        let mut value = ptr::null();
        let mut size = 0usize;
        // SAFETY: `idx < count`; the out-pointers are valid locals; the returned pointers
        // point into `hdrs`, which outlives this loop.
        let err =
            unsafe { rd::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            continue;
        }
        // SAFETY: librdkafka stores header names NUL-terminated.
        let key = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        let value = (!value.is_null()).then(|| {
            // SAFETY: `value` points to `size` bytes owned by `hdrs`.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec()
        });
        out.push((key, value));
    }
    out
}

/// Produces one record with a single header whose name is arbitrary bytes (rdkafka's safe
/// API takes names as `&str` only): for tests of consumers that meet such records.
/// `name` must not contain NUL. Returns librdkafka's error text when it refuses.
pub fn produce_with_raw_header(
    producer: &rdkafka::producer::BaseProducer,
    topic: &str,
    partition: i32,
    value: &[u8],
    name: &[u8],
    header_value: &[u8],
) -> Result<(), String> {
    use rdkafka::producer::Producer;
    use std::ffi::CString;
    use std::os::raw::c_void;
    let topic = CString::new(topic).map_err(|e| e.to_string())?;
    let name = CString::new(name).map_err(|e| e.to_string())?;
    let vu = |vtype, u| rd::rd_kafka_vu_t { vtype, u };
    let vus = [
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_TOPIC,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                cstr: topic.as_ptr(),
            },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_PARTITION,
            rd::rd_kafka_vu_s__bindgen_ty_1 { i32_: partition },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_VALUE,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                mem: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                    ptr: value.as_ptr().cast::<c_void>().cast_mut(),
                    size: value.len(),
                },
            },
        ),
        vu(
            rd::rd_kafka_vtype_t::RD_KAFKA_VTYPE_HEADER,
            rd::rd_kafka_vu_s__bindgen_ty_1 {
                header: rd::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                    name: name.as_ptr(),
                    val: header_value.as_ptr().cast::<c_void>(),
                    size: header_value.len() as isize,
                },
            },
        ),
    ];
    // SAFETY: the producer's handle is live; every pointer in `vus` outlives the call, and
    // librdkafka copies the value, the topic name and the header (no RD_KAFKA_MSG_F_FREE).
    let err =
        unsafe { rd::rd_kafka_produceva(producer.client().native_ptr(), vus.as_ptr(), vus.len()) };
    if err.is_null() {
        return Ok(());
    }
    // SAFETY: `err` is a live error object that we own; its string is NUL-terminated.
    let text = unsafe { CStr::from_ptr(rd::rd_kafka_error_string(err)) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: we own `err` and destroy it once.
    unsafe { rd::rd_kafka_error_destroy(err) };
    Err(text)
}
