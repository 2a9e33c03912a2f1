//! The metrics registry and the standard component metrics.
//!
//! One [`Metrics`] per running pipeline (not the process-global registry), so
//! several pipelines in one process — as in the tests — never collide. The
//! builder resolves label values once per component ([`ComponentMetrics`]);
//! components never make labels themselves. Every counter a component has is
//! created (at 0) when it is built, so a dashboard sees the series before the
//! first event.

use std::sync::Arc;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

const COMPONENT_LABELS: [&str; 3] = ["component_id", "component_kind", "component_type"];
const EDGE_LABELS: [&str; 2] = ["from", "to"];

/// Buckets for per-message processing time: 1 µs to ~1 s.
const PROCESSING_BUCKETS: [f64; 14] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 0.025, 0.1, 0.5, 1.0,
];

/// Every metric the engine exports. See the README's "Metrics" section.
pub struct Metrics {
    registry: Registry,
    pub received: IntCounterVec,
    pub sent: IntCounterVec,
    pub errors: IntCounterVec,
    pub discarded: IntCounterVec,
    pub restarts: IntCounterVec,
    pub up: IntGaugeVec,
    pub processing: HistogramVec,
    pub dead_letters: IntCounterVec,
    pub channel_depth: IntGaugeVec,
    pub channel_capacity: IntGaugeVec,
    pub channel_discarded: IntCounterVec,
    pub ready: IntGauge,
    pub prediction: prometheus::GaugeVec,
    pub input_rejected: IntCounterVec,
    pub mqtt_connected: IntGaugeVec,
    pub mqtt_reconnects: IntCounterVec,
    pub mqtt_publish_latency: HistogramVec,
    pub prediction_latency: HistogramVec,
    pub alerts_active: IntGaugeVec,
    pub alerts_total: IntCounterVec,
    pub alerts_suppressed: IntCounterVec,
    pub webhook_deliveries: IntCounterVec,
    pub drift_psi: prometheus::GaugeVec,
    pub drift_ks_statistic: prometheus::GaugeVec,
    pub drift_ks_pvalue: prometheus::GaugeVec,
    pub drift_wasserstein: prometheus::GaugeVec,
    pub drift_feature_status: prometheus::GaugeVec,
    pub drift_status: prometheus::GaugeVec,
    pub model_error: prometheus::GaugeVec,
    pub bacnet_device_online: IntGaugeVec,
    pub bacnet_request_duration: HistogramVec,
    pub bacnet_request_failures: IntCounterVec,
    pub bacnet_point_faults: IntCounterVec,
    pub bacnet_writes: IntCounterVec,
}

fn counter_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn float_gauge_vec(
    reg: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::GaugeVec {
    let g = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge_vec(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let reg = Registry::new();
        let c = COMPONENT_LABELS.as_slice();
        let processing = HistogramVec::new(
            HistogramOpts::new(
                "twinflow_component_processing_seconds",
                "Time a component spent on one message (mean over its batch).",
            )
            .buckets(PROCESSING_BUCKETS.to_vec()),
            c,
        )
        .expect("valid metric");
        reg.register(Box::new(processing.clone()))
            .expect("unique metric");
        let prediction = prometheus::GaugeVec::new(
            Opts::new(
                "twinflow_prediction",
                "Last predicted value per unit and output (°C, m³/h, kW).",
            ),
            &["unit", "output", "model"],
        )
        .expect("valid metric");
        reg.register(Box::new(prediction.clone()))
            .expect("unique metric");
        let ready = IntGauge::new(
            "twinflow_pipeline_ready",
            "1 once every component of the pipeline has started, else 0.",
        )
        .expect("valid metric");
        reg.register(Box::new(ready.clone()))
            .expect("unique metric");
        let build_info = IntGaugeVec::new(
            Opts::new("twinflow_build_info", "Always 1; labels carry the version."),
            &["version"],
        )
        .expect("valid metric");
        reg.register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let mqtt_publish_latency = HistogramVec::new(
            HistogramOpts::new(
                "twinflow_mqtt_publish_latency_seconds",
                "Time from a QoS ≥ 1 publish to the broker's acknowledgement.",
            )
            .buckets(vec![
                1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
            ]),
            &["component_id"],
        )
        .expect("valid metric");
        reg.register(Box::new(mqtt_publish_latency.clone()))
            .expect("unique metric");

        // Per prediction, not per message: a batched model call is shared
        // out over its rows, so batching shows up here as lower latency.
        let prediction_latency = HistogramVec::new(
            HistogramOpts::new(
                "twinflow_prediction_latency_seconds",
                "Time to check the inputs of one prediction and compute it (batch mean).",
            )
            .buckets(PROCESSING_BUCKETS.to_vec()),
            &["component_id", "model"],
        )
        .expect("valid metric");
        reg.register(Box::new(prediction_latency.clone()))
            .expect("unique metric");

        // BACnet round trips on a LAN take milliseconds; a dead device
        // takes the whole timeout.
        let bacnet_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "twinflow_bacnet_request_duration_seconds",
                "BACnet confirmed request round trips, by device and service (rpm, rp, write).",
            )
            .buckets(vec![
                1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["component_id", "device", "service"],
        )
        .expect("valid metric");
        reg.register(Box::new(bacnet_request_duration.clone()))
            .expect("unique metric");

        let uf = ["unit", "feature"];
        Arc::new(Metrics {
            drift_psi: float_gauge_vec(&reg, "twinflow_drift_psi", "Population stability index of the last window, per unit and feature.", &uf),
            drift_ks_statistic: float_gauge_vec(&reg, "twinflow_drift_ks_statistic", "Two-sample KS statistic D of the last window.", &uf),
            drift_ks_pvalue: float_gauge_vec(&reg, "twinflow_drift_ks_pvalue", "Two-sample KS p-value of the last window.", &uf),
            drift_wasserstein: float_gauge_vec(&reg, "twinflow_drift_wasserstein", "Wasserstein-1 distance of the last window, in reference standard deviations.", &uf),
            drift_feature_status: float_gauge_vec(&reg, "twinflow_drift_feature_status", "Drift status per unit and feature: 0 stable, 1 warning, 2 critical.", &uf),
            drift_status: float_gauge_vec(&reg, "twinflow_drift_status", "Overall drift status per unit: 0 stable, 1 warning, 2 critical.", &["unit"]),
            model_error: float_gauge_vec(&reg, "twinflow_model_error", "Model error over the last window per unit and output (metric: mae, rmse, r2).", &["unit", "output", "metric"]),
            mqtt_publish_latency,
            prediction_latency,
            bacnet_request_duration,
            bacnet_device_online: gauge_vec(
                &reg,
                "twinflow_bacnet_device_online",
                "1 while the BACnet device answers, 0 once it is offline (DEVICE_OFFLINE).",
                &["component_id", "device", "unit"],
            ),
            bacnet_request_failures: counter_vec(
                &reg,
                "twinflow_bacnet_request_failures_total",
                "BACnet requests that failed, by device and reason (timeout, error).",
                &["component_id", "device", "reason"],
            ),
            bacnet_point_faults: counter_vec(
                &reg,
                "twinflow_bacnet_point_faults_total",
                "Point readings not used as read: fault, out_of_service, unreadable, units.",
                &["component_id", "device", "reason"],
            ),
            bacnet_writes: counter_vec(
                &reg,
                "twinflow_bacnet_writes_total",
                "BACnet writes by outcome (written, skipped_deadband, relinquished, failed, verify_failed).",
                &["component_id", "device", "outcome"],
            ),
            alerts_active: gauge_vec(
                &reg,
                "twinflow_alerts_active",
                "Alerts currently active, by severity and code.",
                &["severity", "code"],
            ),
            alerts_total: counter_vec(
                &reg,
                "twinflow_alerts_total",
                "Alert announcements (firing, resolved, re-notifications).",
                &["severity", "code", "state"],
            ),
            alerts_suppressed: counter_vec(
                &reg,
                "twinflow_alerts_suppressed_total",
                "Alerts not announced, by code and reason (rate_limit).",
                &["code", "reason"],
            ),
            webhook_deliveries: counter_vec(
                &reg,
                "twinflow_webhook_deliveries_total",
                "Webhook deliveries by outcome (delivered, failed, dropped).",
                &["component_id", "outcome"],
            ),
            mqtt_connected: gauge_vec(
                &reg,
                "twinflow_mqtt_connected",
                "1 while the component's MQTT connection is up.",
                &["component_id"],
            ),
            mqtt_reconnects: counter_vec(
                &reg,
                "twinflow_mqtt_reconnects_total",
                "Times the component's MQTT connection was lost and re-established.",
                &["component_id"],
            ),
            received: counter_vec(
                &reg,
                "twinflow_component_received_events_total",
                "Messages a component took in (for sources: read from outside).",
                c,
            ),
            sent: counter_vec(
                &reg,
                "twinflow_component_sent_events_total",
                "Messages a component emitted downstream.",
                c,
            ),
            errors: counter_vec(
                &reg,
                "twinflow_component_errors_total",
                "Messages or operations a component failed on.",
                c,
            ),
            discarded: counter_vec(
                &reg,
                "twinflow_component_discarded_events_total",
                "Messages a component dropped (no live receiver, or a poison message after a panic).",
                c,
            ),
            restarts: counter_vec(
                &reg,
                "twinflow_component_restarts_total",
                "Times the supervisor rebuilt a component after a panic or fatal error.",
                c,
            ),
            up: gauge_vec(
                &reg,
                "twinflow_component_up",
                "1 while the component runs, 0 while it restarts or after it stopped.",
                c,
            ),
            processing,
            dead_letters: counter_vec(
                &reg,
                "twinflow_dead_letters_total",
                "Messages routed to the dead-letter path, by component and reason.",
                &["component_id", "reason"],
            ),
            channel_depth: gauge_vec(
                &reg,
                "twinflow_channel_depth",
                "Messages queued on a pipeline edge.",
                &EDGE_LABELS,
            ),
            channel_capacity: gauge_vec(
                &reg,
                "twinflow_channel_capacity",
                "Capacity of a pipeline edge.",
                &EDGE_LABELS,
            ),
            channel_discarded: counter_vec(
                &reg,
                "twinflow_channel_discarded_events_total",
                "Messages an edge with a drop_newest or drop_oldest policy discarded.",
                &EDGE_LABELS,
            ),
            input_rejected: counter_vec(
                &reg,
                "twinflow_predictor_rejected_inputs_total",
                "Frames a predictor refused, by reason (nan, out_of_range, ...).",
                &["component_id", "reason"],
            ),
            ready,
            prediction,
            registry: reg,
        })
    }

    /// Label-resolved handles for one component, every counter created at 0.
    pub fn component(&self, id: &str, kind: &str, type_name: &str) -> ComponentMetrics {
        let l = [id, kind, type_name];
        ComponentMetrics {
            received: self.received.with_label_values(&l),
            sent: self.sent.with_label_values(&l),
            errors: self.errors.with_label_values(&l),
            discarded: self.discarded.with_label_values(&l),
            restarts: self.restarts.with_label_values(&l),
            up: self.up.with_label_values(&l),
            processing: self.processing.with_label_values(&l),
        }
    }

    /// Counter of what the edge `from -> to` discarded, created at 0.
    pub fn edge_discarded(&self, from: &str, to: &str) -> IntCounter {
        self.channel_discarded.with_label_values(&[from, to])
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        // Encoding our own registry's families cannot fail.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The standard metrics of one component.
#[derive(Clone)]
pub struct ComponentMetrics {
    pub received: IntCounter,
    pub sent: IntCounter,
    pub errors: IntCounter,
    pub discarded: IntCounter,
    pub restarts: IntCounter,
    pub up: IntGauge,
    pub processing: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_counters_exist_at_zero() {
        let m = Metrics::new();
        let _c = m.component("sim", "source", "simulator");
        let text = m.render();
        assert!(text.contains(
            "twinflow_component_received_events_total{component_id=\"sim\",component_kind=\"source\",component_type=\"simulator\"} 0"
        ), "{text}");
        assert!(text.contains("twinflow_component_restarts_total{"));
        assert!(text.contains("twinflow_build_info{version="));
    }
}
