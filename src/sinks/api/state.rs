//! What the API knows about the plant: the latest frame and prediction per
//! unit, a bounded history per unit, active and recent alerts, the latest
//! drift report per unit, and the broadcast of live events.
//!
//! One `ApiState` is shared by the HTTP handlers (readers) and the running
//! `api` node (the only writer). The node takes the write lock once per
//! batch and serialises live events after releasing it. Handlers hold the
//! read lock only to build an answer in memory (history rows are copied
//! out first); sending it to a slow client happens without the lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::pipeline::message::{
    Alert, AlertState, DriftReport, DriftStatus, Message, Prediction, SensorFrame,
};

/// How far back a frame and the prediction made from it are matched into
/// one history row. Frames and predictions reach the API on different
/// edges, so either may come first, but never many rows apart.
const MERGE_WINDOW: usize = 16;

/// One moment of one unit: the inputs, what was measured, what was
/// predicted. Columns are named as in the contract; measured and predicted
/// outputs get a suffix so both fit in one flat row (JSON and CSV alike).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub ts: DateTime<Utc>,
    /// UCWIT, UCAIT, UCWF, UCAIH, AMBT, UCTSP.
    pub inputs: [f64; 6],
    /// UCAOT, UCWOT, UCAF as measured, when the unit measures them.
    pub measured: [Option<f64>; 3],
    /// UCAOT, UCWOT, UCAF, Q_thermal as predicted, once the prediction came.
    pub predicted: Option<[f64; 4]>,
    pub model: Option<Arc<str>>,
}

/// Column names of a history row, in CSV order (after `ts` and `unit`).
pub const ROW_COLUMNS: [&str; 14] = [
    "UCWIT",
    "UCAIT",
    "UCWF",
    "UCAIH",
    "AMBT",
    "UCTSP",
    "UCAOT_measured",
    "UCWOT_measured",
    "UCAF_measured",
    "UCAOT_predicted",
    "UCWOT_predicted",
    "UCAF_predicted",
    "Q_thermal_predicted",
    "model",
];

impl Row {
    fn from_frame(f: &SensorFrame) -> Row {
        Row {
            ts: f.ts,
            inputs: f.inputs(),
            measured: f.measured(),
            predicted: None,
            model: None,
        }
    }

    fn from_prediction(p: &Prediction) -> Row {
        let i = &p.inputs;
        Row {
            ts: p.ts,
            inputs: [i.ucwit, i.ucait, i.ucwf, i.ucaih, i.ambt, i.uctsp],
            measured: [p.measured.ucaot, p.measured.ucwot, p.measured.ucaf],
            predicted: Some([p.ucaot, p.ucwot, p.ucaf, p.q_thermal]),
            model: Some(p.model.clone()),
        }
    }

    /// The numeric columns of [`ROW_COLUMNS`] (all but `model`).
    pub fn values(&self) -> [Option<f64>; 13] {
        let p = self.predicted;
        let i = self.inputs;
        [
            Some(i[0]),
            Some(i[1]),
            Some(i[2]),
            Some(i[3]),
            Some(i[4]),
            Some(i[5]),
            self.measured[0],
            self.measured[1],
            self.measured[2],
            p.map(|p| p[0]),
            p.map(|p| p[1]),
            p.map(|p| p[2]),
            p.map(|p| p[3]),
        ]
    }
}

/// The unit a history row belongs to, with the row (for JSON answers).
pub struct UnitRow<'a>(pub &'a str, pub &'a Row);

impl Serialize for UnitRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(ROW_COLUMNS.len() + 2))?;
        m.serialize_entry("ts", &self.1.ts)?;
        m.serialize_entry("unit", self.0)?;
        for (name, v) in ROW_COLUMNS.iter().zip(self.1.values()) {
            // Non-finite values cannot be JSON numbers: they become null.
            m.serialize_entry(name, &v.filter(|x| x.is_finite()))?;
        }
        m.serialize_entry("model", &self.1.model)?;
        m.end()
    }
}

/// The latest of one unit.
#[derive(Debug, Default)]
pub struct UnitState {
    pub frame: Option<SensorFrame>,
    pub prediction: Option<Prediction>,
    pub history: VecDeque<Row>,
    pub first_seen: Option<DateTime<Utc>>,
    /// Wall-clock time of the last message about the unit.
    pub last_seen: Option<DateTime<Utc>>,
    pub frames: u64,
    pub predictions: u64,
}

/// What identifies an alert: one code, unit and key can be active once.
pub type AlertKey = (String, Option<Arc<str>>, Option<String>);

/// Everything behind the lock.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub units: BTreeMap<Arc<str>, UnitState>,
    pub active_alerts: BTreeMap<AlertKey, Alert>,
    /// Newest first.
    pub recent_alerts: VecDeque<Alert>,
    pub drift: BTreeMap<Arc<str>, DriftReport>,
}

impl Snapshot {
    /// The drift status of a unit, from its latest report.
    pub fn drift_status(&self, unit: &str) -> Option<DriftStatus> {
        self.drift.get(unit).map(|r| r.summary.overall_status)
    }
}

/// A server-sent event, formatted once for every client.
#[derive(Debug)]
pub struct Event {
    pub kind: &'static str,
    pub unit: Option<Arc<str>>,
    /// `event: ...\ndata: ...\n\n`, ready to write.
    pub wire: Bytes,
}

impl Event {
    pub fn new(kind: &'static str, unit: Option<Arc<str>>, json: &[u8]) -> Event {
        let mut b = Vec::with_capacity(json.len() + kind.len() + 16);
        b.extend_from_slice(b"event: ");
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(b"\ndata: ");
        // serde_json never writes a raw newline, so one `data:` line holds it.
        b.extend_from_slice(json);
        b.extend_from_slice(b"\n\n");
        Event {
            kind,
            unit,
            wire: b.into(),
        }
    }
}

/// Counters for one node at one instant, to turn into rates.
type CountSample = (Instant, HashMap<Arc<str>, (u64, u64)>);

/// Shared state of an `api` node.
pub struct ApiState {
    inner: RwLock<Snapshot>,
    history_per_unit: usize,
    recent_alerts: usize,
    events: broadcast::Sender<Arc<Event>>,
    /// Cancelled when the pipeline drains, so event streams end and the
    /// server's graceful stop is not held up by them.
    pub closing: CancellationToken,
    /// Event-stream clients connected now.
    pub sse_clients: AtomicUsize,
    /// Events skipped by clients that fell behind.
    pub sse_skipped: AtomicU64,
    /// The pipeline's dead-letter node, set when the routes are mounted.
    pub dead_letter: OnceLock<Option<String>>,
    rate_samples: Mutex<VecDeque<CountSample>>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("history_per_unit", &self.history_per_unit)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    pub fn new(history_per_unit: usize, recent_alerts: usize, event_buffer: usize) -> ApiState {
        let (events, _) = broadcast::channel(event_buffer.max(1));
        ApiState {
            inner: RwLock::new(Snapshot::default()),
            history_per_unit: history_per_unit.max(1),
            recent_alerts,
            events,
            closing: CancellationToken::new(),
            sse_clients: AtomicUsize::new(0),
            sse_skipped: AtomicU64::new(0),
            dead_letter: OnceLock::new(),
            rate_samples: Mutex::new(VecDeque::new()),
        }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Snapshot> {
        // A panic in the node while it held the lock leaves consistent
        // enough data (each update is a few field writes): keep serving.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Snapshot> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }

    /// Takes in a batch of messages under one lock, then publishes the
    /// events for live clients (serialised once, only if anyone listens).
    pub fn ingest<'a>(&self, msgs: impl IntoIterator<Item = &'a Message>) {
        let now = Utc::now();
        let live = self.events.receiver_count() > 0;
        let mut publish: Vec<&Message> = Vec::new();
        {
            let mut s = self.write();
            for m in msgs {
                if self.apply(&mut s, m, now) && live {
                    publish.push(m);
                }
            }
        }
        for m in publish {
            let kind = match m {
                Message::Prediction(_) => "prediction",
                Message::Alert(_) => "alert",
                Message::Drift(_) => "drift",
                _ => continue,
            };
            let Ok(json) = serde_json::to_vec(m) else {
                continue;
            };
            // An error only means every client has gone meanwhile.
            let _ = self
                .events
                .send(Arc::new(Event::new(kind, m.unit().map(Arc::from), &json)));
        }
    }

    /// Applies one message; true when it is a live event for clients.
    fn apply(&self, s: &mut Snapshot, m: &Message, now: DateTime<Utc>) -> bool {
        match m {
            Message::Frame(f) => {
                let u = self.unit(s, &f.unit, now);
                u.frames += 1;
                let recent = u.history.iter_mut().rev().take(MERGE_WINDOW);
                match recent.into_iter().find(|r| r.ts == f.ts) {
                    Some(r) => r.measured = f.measured(),
                    None => push_row(&mut u.history, Row::from_frame(f), self.history_per_unit),
                }
                u.frame = Some(f.clone());
                false
            }
            Message::Prediction(p) => {
                let u = self.unit(s, &p.unit, now);
                u.predictions += 1;
                let recent = u.history.iter_mut().rev().take(MERGE_WINDOW);
                match recent
                    .into_iter()
                    .find(|r| r.ts == p.ts && r.predicted.is_none())
                {
                    Some(r) => {
                        r.predicted = Some([p.ucaot, p.ucwot, p.ucaf, p.q_thermal]);
                        r.model = Some(p.model.clone());
                    }
                    None => push_row(
                        &mut u.history,
                        Row::from_prediction(p),
                        self.history_per_unit,
                    ),
                }
                u.prediction = Some(p.clone());
                true
            }
            Message::Drift(d) => {
                self.unit(s, &d.unit, now);
                s.drift.insert(d.unit.clone(), d.clone());
                true
            }
            Message::Alert(a) => {
                let key = (a.code.clone(), a.unit.clone(), a.key.clone());
                match a.state {
                    AlertState::Firing => {
                        s.active_alerts.insert(key, a.clone());
                    }
                    AlertState::Resolved => {
                        s.active_alerts.remove(&key);
                    }
                }
                s.recent_alerts.push_front(a.clone());
                s.recent_alerts.truncate(self.recent_alerts);
                true
            }
            Message::DeadLetter(_) => false,
        }
    }

    fn unit<'s>(
        &self,
        s: &'s mut Snapshot,
        unit: &Arc<str>,
        now: DateTime<Utc>,
    ) -> &'s mut UnitState {
        let u = s.units.entry(unit.clone()).or_default();
        u.first_seen.get_or_insert(now);
        u.last_seen = Some(now);
        u
    }

    /// Rows of `unit` (every unit when `None`) with `from <= ts <= to`,
    /// ordered by time, thinned evenly to at most `max_points` rows (the
    /// newest row is always kept).
    pub fn history(
        &self,
        unit: Option<&str>,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        max_points: Option<usize>,
    ) -> (Vec<(Arc<str>, Row)>, usize) {
        let s = self.read();
        let mut rows: Vec<(Arc<str>, Row)> = Vec::new();
        for (name, u) in &s.units {
            if unit.is_some_and(|w| w != &**name) {
                continue;
            }
            rows.extend(
                u.history
                    .iter()
                    .filter(|r| from.is_none_or(|f| r.ts >= f) && to.is_none_or(|t| r.ts <= t))
                    .map(|r| (name.clone(), r.clone())),
            );
        }
        drop(s);
        // Nearly always already in order per unit: the sort is a merge.
        rows.sort_by(|a, b| a.1.ts.cmp(&b.1.ts).then_with(|| a.0.cmp(&b.0)));
        let matched = rows.len();
        if let Some(max) = max_points.filter(|&m| m > 0 && m < rows.len()) {
            rows = thin(rows, max);
        }
        (rows, matched)
    }

    /// Node counters now, kept as a sample; returns per node the rates
    /// (received/s, sent/s) over the last few seconds, once there is a
    /// sample old enough to measure against.
    pub fn rates(
        &self,
        now_counts: HashMap<Arc<str>, (u64, u64)>,
    ) -> HashMap<Arc<str>, (f64, f64)> {
        const MIN_SPAN: Duration = Duration::from_millis(500);
        const WINDOW: Duration = Duration::from_secs(10);
        let now = Instant::now();
        let mut q = self.rate_samples.lock().unwrap_or_else(|e| e.into_inner());
        while q.len() > 1 && now.duration_since(q[1].0) >= WINDOW {
            q.pop_front();
        }
        let mut out = HashMap::new();
        if let Some((t0, base)) = q.front() {
            let dt = now.duration_since(*t0);
            if dt >= MIN_SPAN {
                let secs = dt.as_secs_f64();
                for (id, (r, s)) in &now_counts {
                    if let Some((r0, s0)) = base.get(id) {
                        out.insert(
                            id.clone(),
                            (
                                r.saturating_sub(*r0) as f64 / secs,
                                s.saturating_sub(*s0) as f64 / secs,
                            ),
                        );
                    }
                }
            }
        }
        if q.back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= MIN_SPAN)
        {
            q.push_back((now, now_counts));
        }
        out
    }
}

fn push_row(h: &mut VecDeque<Row>, row: Row, cap: usize) {
    if h.len() >= cap {
        h.pop_front();
    }
    h.push_back(row);
}

/// Every k-th row so that at most `max` remain, ending on the newest.
fn thin<T>(rows: Vec<T>, max: usize) -> Vec<T> {
    let n = rows.len();
    let step = n.div_ceil(max);
    let offset = (n - 1) % step;
    rows.into_iter()
        .enumerate()
        .filter(|(i, _)| i % step == offset)
        .map(|(_, r)| r)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::message::{Inputs, Measured, Severity};

    fn ts(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn frame(unit: &str, s: i64) -> Message {
        Message::Frame(SensorFrame {
            unit: unit.into(),
            ts: ts(s),
            ucwit: 7.5,
            ucait: 25.0,
            ucwf: 15.0,
            ucaih: 50.0,
            ambt: 22.0,
            uctsp: 21.0,
            ucaot: Some(16.0),
            ucwot: None,
            ucaf: None,
            quality: None,
        })
    }

    fn prediction(unit: &str, s: i64) -> Message {
        Message::Prediction(Prediction {
            unit: unit.into(),
            ts: ts(s),
            ucaot: 15.0,
            ucwot: 11.0,
            ucaf: 4000.0,
            q_thermal: 4.0,
            model: "physics@1".into(),
            inputs: Inputs {
                ucwit: 7.5,
                ucait: 25.0,
                ucwf: 15.0,
                ucaih: 50.0,
                ambt: 22.0,
                uctsp: 21.0,
            },
            measured: Measured {
                ucaot: Some(16.0),
                ..Default::default()
            },
            flags: vec![],
            residual: Default::default(),
            physics_residual: Default::default(),
        })
    }

    fn alert(code: &str, state: AlertState) -> Message {
        let mut a = Alert::event(code, Severity::Warning, Some("uc-01".into()), "x", ts(0));
        a.state = state;
        Message::Alert(a)
    }

    #[test]
    fn frame_and_prediction_share_a_row_in_either_order() {
        let st = ApiState::new(100, 10, 8);
        st.ingest([&frame("uc-01", 0), &prediction("uc-01", 0)]);
        st.ingest([&prediction("uc-01", 1), &frame("uc-01", 1)]);
        let (rows, n) = st.history(Some("uc-01"), None, None, None);
        assert_eq!(n, 2);
        assert!(rows
            .iter()
            .all(|(_, r)| r.predicted.is_some() && r.measured[0] == Some(16.0)));
        let s = st.read();
        assert_eq!(s.units["uc-01"].frames, 2);
        assert_eq!(s.units["uc-01"].predictions, 2);
    }

    #[test]
    fn history_is_bounded_and_filtered_by_time_and_unit() {
        let st = ApiState::new(50, 10, 8);
        for i in 0..120 {
            st.ingest([&prediction("uc-01", i), &prediction("uc-02", i)]);
        }
        let (all, _) = st.history(Some("uc-01"), None, None, None);
        assert_eq!(all.len(), 50, "only the newest rows are kept");
        assert_eq!(all[0].1.ts, ts(70));
        let (some, n) = st.history(None, Some(ts(100)), Some(ts(109)), None);
        assert_eq!(n, 20);
        assert!(some.windows(2).all(|w| w[0].1.ts <= w[1].1.ts));
        let (thinned, n) = st.history(Some("uc-02"), None, None, Some(7));
        assert_eq!(n, 50);
        assert!(thinned.len() <= 7);
        assert_eq!(
            thinned.last().unwrap().1.ts,
            ts(119),
            "the newest row stays"
        );
    }

    #[test]
    fn resolved_alerts_leave_the_active_set() {
        let st = ApiState::new(10, 3, 8);
        st.ingest([
            &alert("A", AlertState::Firing),
            &alert("B", AlertState::Firing),
        ]);
        assert_eq!(st.read().active_alerts.len(), 2);
        st.ingest([&alert("A", AlertState::Resolved)]);
        let s = st.read();
        assert_eq!(s.active_alerts.len(), 1);
        assert_eq!(s.active_alerts.keys().next().unwrap().0, "B");
        assert_eq!(s.recent_alerts.len(), 3);
        assert_eq!(s.recent_alerts[0].state, AlertState::Resolved);
    }

    #[test]
    fn events_reach_subscribers_and_a_slow_one_skips() {
        let st = ApiState::new(10, 3, 4);
        let mut rx = st.subscribe();
        for i in 0..10 {
            st.ingest([&prediction("uc-01", i)]);
        }
        match rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 6),
            other => panic!("expected a lag, got {other:?}"),
        }
        let e = rx.try_recv().unwrap();
        assert_eq!(e.kind, "prediction");
        let text = std::str::from_utf8(&e.wire).unwrap();
        assert!(text.starts_with("event: prediction\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"));
    }

    #[test]
    fn rows_serialise_flat_with_nulls_for_missing_values() {
        let st = ApiState::new(10, 3, 4);
        st.ingest([&frame("uc-01", 0)]);
        let (rows, _) = st.history(None, None, None, None);
        let v = serde_json::to_value(UnitRow(&rows[0].0, &rows[0].1)).unwrap();
        assert_eq!(v["unit"], "uc-01");
        assert_eq!(v["UCAOT_measured"], 16.0);
        assert!(v["UCAOT_predicted"].is_null());
        assert!(v["model"].is_null());
    }

    #[test]
    fn thinning_keeps_the_newest() {
        let v: Vec<usize> = (0..10).collect();
        assert_eq!(thin(v.clone(), 5), vec![1, 3, 5, 7, 9]);
        assert_eq!(thin(v, 3), vec![1, 5, 9]);
    }
}
