//! The sink, idle or writing one batch on a task of its own: the loop fetches and decodes
//! the next batch meanwhile (on the runtime's other thread), and hands it over only once
//! the one in flight has landed — at most one batch is written at a time, in order, so each
//! commit still expects the positions the previous one recorded.

use tokio::task::JoinHandle;

use super::EngineError;
use crate::sink::{Committed, Sink, SinkBatch, SinkError};

/// A written batch handed back to the loop, with what the loop kept of it.
pub(super) type Landed<T> = (T, Result<Committed, SinkError>);

/// What the writing task gives back: the sink, and how the write went.
type Written = (Sink, Result<Committed, SinkError>);

/// The sink and the batch in flight, if any (`T`: what the loop keeps of it for its report).
pub(super) struct Writer<T> {
    idle: Option<Sink>,
    writing: Option<(JoinHandle<Written>, T)>,
}

impl<T> Writer<T> {
    pub fn new(sink: Sink) -> Self {
        Self {
            idle: Some(sink),
            writing: None,
        }
    }

    /// Whether a batch is in flight.
    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// The idle sink. The loop waits for the batch in flight ([`Writer::landed`]) before it
    /// asks; `SinkBusy` only if it did not.
    pub fn sink(&mut self) -> Result<&mut Sink, EngineError> {
        self.idle.as_mut().ok_or(EngineError::SinkBusy)
    }

    /// Starts writing `batch` on its own task.
    pub fn start(&mut self, batch: SinkBatch, kept: T) -> Result<(), EngineError> {
        let mut sink = self.idle.take().ok_or(EngineError::SinkBusy)?;
        let task = tokio::spawn(async move {
            let r = sink.write(batch).await;
            (sink, r)
        });
        self.writing = Some((task, kept));
        Ok(())
    }

    /// The batch in flight once it landed (cancel-safe: dropped before, it stays in flight);
    /// `None` if there is none.
    pub async fn landed(&mut self) -> Result<Option<Landed<T>>, EngineError> {
        let Some((task, _)) = self.writing.as_mut() else {
            return Ok(None);
        };
        let joined = task.await;
        let Some((_, kept)) = self.writing.take() else {
            return Ok(None);
        };
        let (sink, result) = joined?;
        self.idle = Some(sink);
        Ok(Some((kept, result)))
    }
}
