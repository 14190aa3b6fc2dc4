//! Pure: merges the ready workers' `/progress` reports into one progress, lag and conditions.
//!
//! Each Kafka partition belongs to one worker of the consumer group, so the pipeline's progress
//! is the sum of its workers': rows and rates add up, per-partition offsets are a union (the
//! greater offset wins when two workers report a partition, e.g. during a rebalance), lag adds
//! up, the watermark is the minimum (no worker has passed it), stage durations are the maximum
//! (the slowest worker), and the latest batch id of every pod lands in `sink.metrics` under
//! `batchId.<pod>`.

use std::collections::BTreeMap;

use spillway_api::{
    EventTimeStats, SinkProgress, SourceProgress, StreamingQueryProgress, TopicOffsets,
};

use spillway_api::report::{WorkerConditionType, WorkerProgress};

/// The sink-metrics key prefix of per-pod latest batch ids.
pub const BATCH_ID_METRIC_PREFIX: &str = "batchId.";

/// The merge of every answering worker's report.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Merged {
    /// The merged latest progress; `None` when no worker has committed a batch yet.
    pub progress: Option<StreamingQueryProgress>,
    /// Summed lag; `None` when no worker reports one.
    pub lag: Option<i64>,
    /// Known conditions with the pod reporting each, sorted by type then pod.
    pub conditions: Vec<PodCondition>,
}

/// A condition reported by one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCondition {
    /// The reporting pod.
    pub pod: String,
    /// Its type.
    pub kind: WorkerConditionType,
    /// The worker's reason.
    pub reason: String,
    /// The worker's message.
    pub message: String,
}

impl Merged {
    /// Adds the conditions of ended worker containers (their termination messages) that
    /// the pod does not already report on `/progress`.
    pub fn add_terminated(&mut self, ended: &[crate::dereference::Terminated]) {
        for t in ended {
            let Some(kind) = t.condition.kind() else {
                continue;
            };
            if self
                .conditions
                .iter()
                .any(|c| c.pod == t.pod && c.kind == kind)
            {
                continue;
            }
            self.conditions.push(PodCondition {
                pod: t.pod.clone(),
                kind,
                reason: t.condition.reason.clone(),
                message: t.condition.message.clone(),
            });
        }
        self.conditions
            .sort_by(|a, b| (a.kind, &a.pod).cmp(&(b.kind, &b.pod)));
    }

    /// Conditions of one type.
    pub fn of(&self, kind: WorkerConditionType) -> impl Iterator<Item = &PodCondition> {
        self.conditions.iter().filter(move |c| c.kind == kind)
    }
}

/// Merges reports given as `(pod name, report)`; the order of the input does not matter.
pub fn merge(reports: &[(&str, &WorkerProgress)]) -> Merged {
    let mut reports = reports.to_vec();
    reports.sort_by(|a, b| a.0.cmp(b.0));

    let lags: Vec<i64> = reports.iter().filter_map(|(_, r)| r.lag).collect();
    let lag = (!lags.is_empty()).then(|| lags.iter().sum());

    let mut conditions: Vec<PodCondition> = reports
        .iter()
        .flat_map(|(pod, r)| {
            r.conditions.iter().filter_map(move |c| {
                c.kind().map(|kind| PodCondition {
                    pod: (*pod).to_string(),
                    kind,
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
            })
        })
        .collect();
    conditions.sort_by(|a, b| (a.kind, &a.pod).cmp(&(b.kind, &b.pod)));

    let latest: Vec<(&str, &StreamingQueryProgress)> = reports
        .iter()
        .filter_map(|(pod, r)| r.latest.as_ref().map(|l| (*pod, l)))
        .collect();
    Merged {
        progress: merge_latest(&latest),
        lag,
        conditions,
    }
}

fn merge_latest(latest: &[(&str, &StreamingQueryProgress)]) -> Option<StreamingQueryProgress> {
    let newest = latest.iter().map(|(_, p)| *p).reduce(|a, b| {
        if later(&b.timestamp, &a.timestamp) {
            b
        } else {
            a
        }
    })?;
    let progresses: Vec<&StreamingQueryProgress> = latest.iter().map(|(_, p)| *p).collect();

    let mut duration_ms = BTreeMap::new();
    for p in &progresses {
        for (k, v) in &p.duration_ms {
            let e = duration_ms.entry(k.clone()).or_insert(*v);
            *e = (*e).max(*v);
        }
    }

    let mut sources: Vec<SourceProgress> = vec![];
    for p in &progresses {
        for s in &p.sources {
            match sources.iter_mut().find(|m| m.description == s.description) {
                Some(m) => merge_source(m, s),
                None => sources.push(s.clone()),
            }
        }
    }

    let mut sink_metrics: Vec<&BTreeMap<String, String>> =
        progresses.iter().map(|p| &p.sink.metrics).collect();
    let batch_ids: BTreeMap<String, String> = latest
        .iter()
        .map(|(pod, p)| {
            (
                format!("{BATCH_ID_METRIC_PREFIX}{pod}"),
                p.batch_id.to_string(),
            )
        })
        .collect();
    sink_metrics.push(&batch_ids);

    Some(StreamingQueryProgress {
        id: progresses
            .iter()
            .map(|p| p.id.as_str())
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_string(),
        run_id: newest.run_id.clone(),
        name: progresses.iter().find_map(|p| p.name.clone()),
        batch_id: progresses.iter().map(|p| p.batch_id).max().unwrap_or(0),
        timestamp: newest.timestamp.clone(),
        num_input_rows: progresses.iter().map(|p| p.num_input_rows).sum(),
        input_rows_per_second: progresses.iter().map(|p| p.input_rows_per_second).sum(),
        processed_rows_per_second: progresses.iter().map(|p| p.processed_rows_per_second).sum(),
        duration_ms,
        event_time: merge_event_time(&progresses),
        num_rows_dropped_by_watermark: progresses
            .iter()
            .map(|p| p.num_rows_dropped_by_watermark)
            .sum(),
        sources,
        sink: SinkProgress {
            description: progresses
                .iter()
                .map(|p| p.sink.description.as_str())
                .find(|s| !s.is_empty())
                .unwrap_or_default()
                .to_string(),
            num_output_rows: progresses.iter().map(|p| p.sink.num_output_rows).sum(),
            table_version: progresses.iter().filter_map(|p| p.sink.table_version).max(),
            metrics: merge_metrics(&sink_metrics),
        },
    })
}

fn merge_source(into: &mut SourceProgress, s: &SourceProgress) {
    union_offsets(&mut into.start_offset, &s.start_offset);
    union_offsets(&mut into.end_offset, &s.end_offset);
    union_offsets(&mut into.latest_offset, &s.latest_offset);
    into.num_input_rows += s.num_input_rows;
    into.input_rows_per_second += s.input_rows_per_second;
    into.processed_rows_per_second += s.processed_rows_per_second;
    into.metrics = merge_metrics(&[&into.metrics, &s.metrics]);
}

/// Union of per-partition offsets; the greater offset wins when both hold a partition.
fn union_offsets(into: &mut TopicOffsets, other: &TopicOffsets) {
    for (topic, parts) in other {
        let t = into.entry(topic.clone()).or_default();
        for (p, o) in parts {
            let e = t.entry(p.clone()).or_insert(*o);
            *e = (*e).max(*o);
        }
    }
}

/// Merges string metrics: numbers named `max*` take the maximum, `min*` the minimum, `avg*` the
/// mean, and other numbers add up; a non-numeric value keeps the first one seen.
fn merge_metrics(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let mut values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in maps {
        for (k, v) in *m {
            values.entry(k.as_str()).or_default().push(v.as_str());
        }
    }
    values
        .into_iter()
        .map(|(k, vs)| (k.to_string(), merge_metric(k, &vs)))
        .collect()
}

fn merge_metric(key: &str, vs: &[&str]) -> String {
    let first = vs.first().copied().unwrap_or_default();
    let nums: Option<Vec<f64>> = vs.iter().map(|v| v.parse::<f64>().ok()).collect();
    let Some(nums) = nums else {
        return first.to_string();
    };
    if vs.len() == 1 {
        return first.to_string();
    }
    let v = if key.starts_with("max") {
        nums.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    } else if key.starts_with("min") {
        nums.iter().copied().fold(f64::INFINITY, f64::min)
    } else if key.starts_with("avg") {
        nums.iter().sum::<f64>() / nums.len() as f64
    } else {
        nums.iter().sum()
    };
    if vs.iter().all(|v| v.parse::<i64>().is_ok()) && v.fract() == 0.0 {
        format!("{}", v as i64)
    } else {
        v.to_string()
    }
}

fn parse_ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// Whether timestamp `a` is later than `b` (RFC 3339; unparsable ones compare as text).
fn later(a: &str, b: &str) -> bool {
    match (parse_ts(a), parse_ts(b)) {
        (Some(a), Some(b)) => a > b,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => a > b,
    }
}

fn extreme<'a>(values: impl Iterator<Item = &'a str>, latest: bool) -> Option<String> {
    values
        .reduce(|a, b| if later(b, a) == latest { b } else { a })
        .map(str::to_string)
}

fn merge_event_time(ps: &[&StreamingQueryProgress]) -> Option<EventTimeStats> {
    let stats: Vec<(&EventTimeStats, i64)> = ps
        .iter()
        .filter_map(|p| p.event_time.as_ref().map(|e| (e, p.num_input_rows)))
        .collect();
    if stats.is_empty() {
        return None;
    }
    // The average event time, weighted by each worker's rows.
    let mut weighted = 0i128;
    let mut rows = 0i128;
    for (e, n) in &stats {
        if let Some(avg) = e.avg.as_deref().and_then(parse_ts) {
            let n = i128::from((*n).max(1));
            weighted += i128::from(avg.as_millisecond()) * n;
            rows += n;
        }
    }
    let avg = (rows > 0)
        .then(|| i64::try_from(weighted / rows).ok())
        .flatten()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string());
    Some(EventTimeStats {
        min: extreme(stats.iter().filter_map(|(e, _)| e.min.as_deref()), false),
        max: extreme(stats.iter().filter_map(|(e, _)| e.max.as_deref()), true),
        avg,
        watermark: extreme(
            stats.iter().filter_map(|(e, _)| e.watermark.as_deref()),
            false,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spillway_api::report::WorkerCondition;

    fn offsets(entries: &[(&str, &str, i64)]) -> TopicOffsets {
        let mut t = TopicOffsets::new();
        for (topic, p, o) in entries {
            t.entry(topic.to_string())
                .or_default()
                .insert(p.to_string(), *o);
        }
        t
    }

    fn progress(batch: i64, ts: &str, rows: i64, rate: f64) -> StreamingQueryProgress {
        StreamingQueryProgress {
            id: "query".into(),
            run_id: format!("run-{ts}"),
            name: Some("p".into()),
            batch_id: batch,
            timestamp: ts.into(),
            num_input_rows: rows,
            input_rows_per_second: rate,
            processed_rows_per_second: rate * 2.0,
            sink: SinkProgress {
                description: "DeltaSink[s3://lake/t]".into(),
                num_output_rows: rows,
                table_version: Some(batch),
                metrics: BTreeMap::new(),
            },
            ..Default::default()
        }
    }

    fn with_source(
        mut p: StreamingQueryProgress,
        end: &[(&str, &str, i64)],
    ) -> StreamingQueryProgress {
        p.sources = vec![SourceProgress {
            description: "KafkaV2[Subscribe[t]]".into(),
            start_offset: offsets(&[]),
            end_offset: offsets(end),
            latest_offset: offsets(end),
            num_input_rows: p.num_input_rows,
            input_rows_per_second: p.input_rows_per_second,
            processed_rows_per_second: p.processed_rows_per_second,
            metrics: BTreeMap::new(),
        }];
        p
    }

    fn with_event_time(
        mut p: StreamingQueryProgress,
        min: &str,
        max: &str,
        avg: &str,
        wm: &str,
    ) -> StreamingQueryProgress {
        p.event_time = Some(EventTimeStats {
            min: Some(min.into()),
            max: Some(max.into()),
            avg: Some(avg.into()),
            watermark: Some(wm.into()),
        });
        p
    }

    fn report(latest: Option<StreamingQueryProgress>, lag: Option<i64>) -> WorkerProgress {
        WorkerProgress {
            latest,
            lag,
            ..Default::default()
        }
    }

    #[test]
    fn no_reports_merge_to_nothing() {
        assert_eq!(merge(&[]), Merged::default());
        let idle = report(None, None);
        assert_eq!(merge(&[("a", &idle)]), Merged::default());
    }

    #[test]
    fn sums_rows_rates_and_lag() {
        type Workers<'a> = &'a [(i64, f64, Option<i64>)];
        let cases: &[(Workers, i64, f64, Option<i64>)] = &[
            (&[(10, 1.5, Some(3))], 10, 1.5, Some(3)),
            (&[(10, 1.5, Some(3)), (20, 2.5, Some(4))], 30, 4.0, Some(7)),
            (&[(10, 1.5, None), (20, 2.5, Some(4))], 30, 4.0, Some(4)),
            (&[(0, 0.0, None), (5, 0.5, None)], 5, 0.5, None),
        ];
        for (workers, rows, rate, lag) in cases {
            let reports: Vec<(String, WorkerProgress)> = workers
                .iter()
                .enumerate()
                .map(|(i, (n, r, l))| {
                    (
                        format!("pod-{i}"),
                        report(Some(progress(i as i64, "2025-01-01T00:00:00Z", *n, *r)), *l),
                    )
                })
                .collect();
            let refs: Vec<(&str, &WorkerProgress)> =
                reports.iter().map(|(p, r)| (p.as_str(), r)).collect();
            let m = merge(&refs);
            let p = m.progress.unwrap();
            assert_eq!(p.num_input_rows, *rows, "{workers:?}");
            assert_eq!(p.input_rows_per_second, *rate, "{workers:?}");
            assert_eq!(p.processed_rows_per_second, rate * 2.0, "{workers:?}");
            assert_eq!(p.sink.num_output_rows, *rows, "{workers:?}");
            assert_eq!(m.lag, *lag, "{workers:?}");
        }
    }

    #[test]
    fn unions_partition_offsets_taking_the_greater() {
        type Offsets<'a> = &'a [(&'a str, &'a str, i64)];
        let cases: &[(Offsets, Offsets, Offsets)] = &[
            // disjoint partitions
            (
                &[("t", "0", 10), ("t", "1", 20)],
                &[("t", "2", 30)],
                &[("t", "0", 10), ("t", "1", 20), ("t", "2", 30)],
            ),
            // a partition both report (rebalance): the greater offset
            (
                &[("t", "0", 10)],
                &[("t", "0", 15), ("u", "0", 1)],
                &[("t", "0", 15), ("u", "0", 1)],
            ),
            (&[("t", "0", 15)], &[("t", "0", 10)], &[("t", "0", 15)]),
        ];
        for (a, b, want) in cases {
            let ra = report(
                Some(with_source(progress(1, "2025-01-01T00:00:00Z", 1, 1.0), a)),
                None,
            );
            let rb = report(
                Some(with_source(progress(2, "2025-01-01T00:00:01Z", 2, 1.0), b)),
                None,
            );
            let m = merge(&[("b", &rb), ("a", &ra)]);
            let p = m.progress.unwrap();
            assert_eq!(p.sources.len(), 1);
            assert_eq!(p.sources[0].end_offset, offsets(want), "{a:?} + {b:?}");
            assert_eq!(p.sources[0].latest_offset, offsets(want));
            assert_eq!(p.sources[0].num_input_rows, 3);
        }
    }

    #[test]
    fn batch_ids_timestamps_and_run_id() {
        let a = report(Some(progress(7, "2025-01-01T00:00:05Z", 1, 1.0)), None);
        let b = report(Some(progress(3, "2025-01-01T00:00:09Z", 1, 1.0)), None);
        let idle = report(None, Some(0));
        let p = merge(&[("w-b", &b), ("w-a", &a), ("w-c", &idle)])
            .progress
            .unwrap();
        assert_eq!(p.batch_id, 7);
        assert_eq!(p.timestamp, "2025-01-01T00:00:09Z");
        assert_eq!(p.run_id, "run-2025-01-01T00:00:09Z");
        assert_eq!(p.id, "query");
        assert_eq!(p.sink.table_version, Some(7));
        let ids: Vec<(&str, &str)> = p
            .sink
            .metrics
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(ids, [("batchId.w-a", "7"), ("batchId.w-b", "3")]);
    }

    #[test]
    fn event_time_takes_minimum_watermark() {
        let cases = [
            (
                (
                    "2025-01-01T00:00:00Z",
                    "2025-01-01T01:00:00Z",
                    "2025-01-01T00:30:00Z",
                    "2025-01-01T00:50:00Z",
                ),
                (
                    "2025-01-01T00:10:00Z",
                    "2025-01-01T02:00:00Z",
                    "2025-01-01T00:30:00Z",
                    "2025-01-01T00:40:00Z",
                ),
                (
                    "2025-01-01T00:00:00Z",
                    "2025-01-01T02:00:00Z",
                    "2025-01-01T00:30:00Z",
                    "2025-01-01T00:40:00Z",
                ),
            ),
            (
                (
                    "2025-01-02T00:00:00Z",
                    "2025-01-02T00:00:00Z",
                    "2025-01-02T00:00:00Z",
                    "2025-01-01T00:00:00Z",
                ),
                (
                    "2025-01-01T00:00:00Z",
                    "2025-01-01T00:00:00Z",
                    "2025-01-01T00:00:00Z",
                    "2025-01-03T00:00:00Z",
                ),
                (
                    "2025-01-01T00:00:00Z",
                    "2025-01-02T00:00:00Z",
                    "2025-01-01T12:00:00Z",
                    "2025-01-01T00:00:00Z",
                ),
            ),
        ];
        for (a, b, want) in cases {
            let ra = report(
                Some(with_event_time(
                    progress(1, "2025-01-01T00:00:00Z", 10, 1.0),
                    a.0,
                    a.1,
                    a.2,
                    a.3,
                )),
                None,
            );
            let rb = report(
                Some(with_event_time(
                    progress(1, "2025-01-01T00:00:00Z", 10, 1.0),
                    b.0,
                    b.1,
                    b.2,
                    b.3,
                )),
                None,
            );
            let e = merge(&[("a", &ra), ("b", &rb)])
                .progress
                .unwrap()
                .event_time
                .unwrap();
            assert_eq!(e.min.as_deref(), Some(want.0));
            assert_eq!(e.max.as_deref(), Some(want.1));
            assert_eq!(e.avg.as_deref(), Some(want.2));
            assert_eq!(e.watermark.as_deref(), Some(want.3));
        }
    }

    #[test]
    fn durations_take_the_slowest_worker() {
        let mut a = progress(1, "2025-01-01T00:00:00Z", 1, 1.0);
        a.duration_ms = BTreeMap::from([("write".into(), 50), ("decode".into(), 10)]);
        let mut b = progress(1, "2025-01-01T00:00:00Z", 1, 1.0);
        b.duration_ms = BTreeMap::from([("write".into(), 20), ("commit".into(), 5)]);
        let (ra, rb) = (report(Some(a), None), report(Some(b), None));
        let p = merge(&[("a", &ra), ("b", &rb)]).progress.unwrap();
        assert_eq!(
            p.duration_ms,
            BTreeMap::from([
                ("commit".into(), 5),
                ("decode".into(), 10),
                ("write".into(), 50)
            ])
        );
    }

    #[test]
    fn metrics_merge_by_name() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("numDeadLetters", &["2", "3"], "5"),
            ("maxOffsetsBehindLatest", &["2", "30"], "30"),
            ("minOffsetsBehindLatest", &["2", "30"], "2"),
            ("avgOffsetsBehindLatest", &["2", "3"], "2.5"),
            ("bytes", &["1.5", "1"], "2.5"),
            ("mode", &["append", "merge"], "append"),
            ("single", &["x"], "x"),
        ];
        for (key, vs, want) in cases {
            assert_eq!(merge_metric(key, vs), *want, "{key} {vs:?}");
        }
    }

    #[test]
    fn collects_known_conditions_per_pod() {
        let cond = |t: &str| WorkerCondition {
            type_: t.into(),
            reason: format!("{t}Reason"),
            message: "m".into(),
        };
        let a = WorkerProgress {
            conditions: vec![cond("SchemaError"), cond("Unknown")],
            ..Default::default()
        };
        let b = WorkerProgress {
            conditions: vec![cond("DataLoss")],
            ..Default::default()
        };
        let m = merge(&[("b", &b), ("a", &a)]);
        let got: Vec<(&str, WorkerConditionType)> = m
            .conditions
            .iter()
            .map(|c| (c.pod.as_str(), c.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("b", WorkerConditionType::DataLoss),
                ("a", WorkerConditionType::SchemaError)
            ]
        );
        assert_eq!(m.of(WorkerConditionType::DataLoss).count(), 1);
    }
}
