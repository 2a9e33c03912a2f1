//! `predictor`: turns sensor frames into predictions of the outlet
//! conditions, airflow and thermal power.
//!
//! Model kinds: `physics` (the effectiveness-NTU unit-cooler model of
//! `model::physics`). A frame the model cannot take — NaN, infinities,
//! physically impossible values — is counted by reason and routed to the
//! dead-letter path with the reason; it never panics and never silently
//! extrapolates.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use prometheus::{Gauge, IntCounter};
use serde::Deserialize;

use crate::model::physics::{self, CoilInputs, PhysicsError, PhysicsParams};
use crate::pipeline::component::{
    parse_config, BuildContext, Component, ComponentConfig, ComponentDescriptor, ComponentError,
    Emitter, Processor, Role,
};
use crate::pipeline::message::{
    Inputs, KindSet, Measured, Message, MessageKind, Prediction, SensorFrame,
};

pub const DESCRIPTOR: ComponentDescriptor = ComponentDescriptor {
    type_name: "predictor",
    role: Role::Transform,
    accepts: KindSet::of(&[MessageKind::Frame]),
    emits: KindSet::of(&[MessageKind::Prediction]),
    summary: "Predicts UCAOT, UCWOT, UCAF and Q_thermal from each sensor frame.",
    parse: parse_config::<PredictorConfig>,
};

/// Reasons a frame is refused: the label of
/// `twinflow_predictor_rejected_inputs_total` and the dead letter's `reason`.
const NON_FINITE: &str = "non_finite_input";
const OUT_OF_RANGE: &str = "input_out_of_range";

/// Which model to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelConfig {
    /// The physics model (effectiveness-NTU coil, P-controlled fan).
    Physics {
        /// Coil and fan parameters; defaults are the reference unit cooler.
        #[serde(default)]
        params: PhysicsParams,
    },
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig::Physics {
            params: PhysicsParams::default(),
        }
    }
}

/// Settings of a `predictor` node.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictorConfig {
    /// The model; default `{kind: physics}` with the reference parameters.
    #[serde(default)]
    pub model: ModelConfig,
}

impl ComponentConfig for PredictorConfig {
    fn validate(&self, problems: &mut Vec<String>) {
        match &self.model {
            ModelConfig::Physics { params } => {
                if let Err(e) = params.validate() {
                    problems.push(format!("model.params: {e}"));
                }
            }
        }
    }

    fn build(&self, ctx: &BuildContext) -> Result<Component, ComponentError> {
        let ModelConfig::Physics { params } = self.model.clone();
        let rejected = |reason: &str| {
            ctx.metrics
                .input_rejected
                .with_label_values(&[&ctx.id, reason])
        };
        Ok(Component::Processor(Box::new(Predictor {
            params,
            model_name: Arc::from("physics@1"),
            gauges: HashMap::new(),
            prediction_gauge: ctx.metrics.prediction.clone(),
            rejected_nan: rejected(NON_FINITE),
            rejected_range: rejected(OUT_OF_RANGE),
        })))
    }
}

/// A running predictor.
pub struct Predictor {
    params: PhysicsParams,
    model_name: Arc<str>,
    /// Last-prediction gauges per unit (UCAOT, UCWOT, UCAF, Q_thermal),
    /// resolved once per unit rather than per message.
    gauges: HashMap<Arc<str>, [Gauge; 4]>,
    prediction_gauge: prometheus::GaugeVec,
    rejected_nan: IntCounter,
    rejected_range: IntCounter,
}

impl Predictor {
    fn predict(&self, f: &SensorFrame) -> Result<Prediction, ComponentError> {
        let x = CoilInputs::from_features(f.inputs());
        let s = physics::predict(&self.params, &x).map_err(|e| {
            let reason = match e {
                PhysicsError::NonFinite { .. } => {
                    self.rejected_nan.inc();
                    NON_FINITE
                }
                _ => {
                    self.rejected_range.inc();
                    OUT_OF_RANGE
                }
            };
            ComponentError::new(reason, format!("unit {}: {e}", f.unit))
        })?;
        Ok(Prediction {
            unit: f.unit.clone(),
            ts: f.ts,
            ucaot: s.ucaot,
            ucwot: s.ucwot,
            ucaf: s.ucaf,
            q_thermal: s.q_total,
            model: self.model_name.clone(),
            inputs: Inputs::from(f),
            measured: Measured {
                ucaot: f.ucaot,
                ucwot: f.ucwot,
                ucaf: f.ucaf,
            },
            flags: Vec::new(),
            residual: Default::default(),
            physics_residual: Default::default(),
        })
    }
}

#[async_trait]
impl Processor for Predictor {
    async fn process(
        &mut self,
        msg: &Arc<Message>,
        out: &mut Emitter,
    ) -> Result<(), ComponentError> {
        let Message::Frame(f) = &**msg else {
            return Ok(());
        };
        let p = self.predict(f)?;
        let g = self.gauges.entry(p.unit.clone()).or_insert_with(|| {
            ["UCAOT", "UCWOT", "UCAF", "Q_thermal"].map(|o| {
                self.prediction_gauge
                    .with_label_values(&[&p.unit, o, &self.model_name])
            })
        });
        g[0].set(p.ucaot);
        g[1].set(p.ucwot);
        g[2].set(p.ucaf);
        g[3].set(p.q_thermal);
        out.emit(Message::Prediction(p));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn predictor() -> Box<dyn Processor> {
        let metrics = Metrics::new();
        let ctx = BuildContext {
            id: "p".into(),
            component_metrics: metrics.component("p", "transform", "predictor"),
            metrics,
            base_dir: ".".into(),
        };
        match PredictorConfig::default().build(&ctx).unwrap() {
            Component::Processor(p) => p,
            Component::Source(_) => unreachable!(),
        }
    }

    fn frame(ucwit: f64) -> Arc<Message> {
        Arc::new(Message::Frame(SensorFrame {
            unit: "uc-01".into(),
            ts: chrono::Utc::now(),
            ucwit,
            ucait: 25.0,
            ucwf: 15.0,
            ucaih: 50.0,
            ambt: 22.0,
            uctsp: 21.0,
            ucaot: Some(16.0),
            ucwot: None,
            ucaf: None,
        }))
    }

    #[tokio::test]
    async fn predicts_with_the_reference_physics() {
        let mut p = predictor();
        let mut em = Emitter::default();
        p.process(&frame(7.5), &mut em).await.unwrap();
        assert_eq!(em.out.len(), 1);
        let Message::Prediction(pred) = &*em.out[0].msg else {
            panic!("not a prediction")
        };
        let x = CoilInputs::EXAMPLE;
        let s = physics::predict(&PhysicsParams::default(), &x).unwrap();
        assert_eq!(pred.ucaot, s.ucaot);
        assert_eq!(pred.q_thermal, s.q_total);
        assert!(pred.q_thermal > 0.0, "cooling is positive");
        assert_eq!(pred.measured.ucaot, Some(16.0));
        assert_eq!(&*pred.model, "physics@1");
    }

    #[tokio::test]
    async fn nan_is_an_error_with_a_reason_not_a_panic() {
        let mut p = predictor();
        let mut em = Emitter::default();
        let e = p.process(&frame(f64::NAN), &mut em).await.unwrap_err();
        assert_eq!(e.reason, "non_finite_input");
        assert!(e.message.contains("UCWIT"), "{}", e.message);
        assert!(em.out.is_empty());
    }
}
