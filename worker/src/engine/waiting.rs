//! Decoding a record while the schema registry is out: the partitions are paused so the
//! worker keeps its group membership, and resumed where the batch stands.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::EngineError;
use super::metadata::RowMeta;
use crate::format::{BadRecord, ValueDecoder};
use crate::source::{KafkaSource, Received, TopicPartition};

/// How long a record may wait on the schema registry before the source is paused.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// Decodes one record: at once when its writer schema is cached. While the registry is out
/// (the decoder retries until it answers), the assigned partitions are paused and the
/// consumer is kept polled, so the worker stays in its group past `max.poll.interval.ms`;
/// what the poll delivers meanwhile is dropped and fetched again from `next` on resume.
/// A shutdown during the wait ends it: `None`, the record not decoded.
pub(super) async fn decode_waiting(
    decoder: &mut ValueDecoder<RowMeta>,
    value: Option<&[u8]>,
    meta: RowMeta,
    source: &KafkaSource,
    next: &BTreeMap<TopicPartition, i64>,
    shutdown: &CancellationToken,
) -> Result<Option<Result<(), BadRecord>>, EngineError> {
    let push = decoder.push(value, meta);
    tokio::pin!(push);
    // The usual case, without a timer: the push completes on its first poll.
    tokio::select! {
        biased;
        r = &mut push => return Ok(Some(r?)),
        () = std::future::ready(()) => {}
    }
    let pause_at = tokio::time::sleep(PAUSE_AFTER);
    tokio::pin!(pause_at);
    let mut paused = None;
    let mut dropped = 0u64;
    let outcome = loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break None,
            r = &mut push => break Some(r),
            () = &mut pause_at, if paused.is_none() => {
                warn!("waiting for the schema registry: partitions paused, group membership kept");
                paused = Some(source.pause()?);
            }
            received = source.recv(), if paused.is_some() => {
                if let Received::Record(_) = received? {
                    dropped += 1;
                }
            }
        }
    };
    if let (Some(p), Some(_)) = (paused, &outcome) {
        source.resume(p, next).await?;
        info!(dropped, "schema registry answered: partitions resumed");
    }
    match outcome {
        Some(r) => Ok(Some(r?)),
        None => Ok(None),
    }
}
