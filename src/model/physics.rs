//! Steady-state physics of a chilled-water unit cooler (fan coil).
//!
//! A faithful port of `reference/coil_model.py` (see `domain.md`, "Physics model"). Three
//! parts:
//!
//! * **Fan**: a proportional controller on the return-air error,
//!   `u = clip(u_min + kp·(UCAIT − UCTSP), u_min, 1)`, `UCAF = u·v_max`.
//! * **Dry coil**: ε-NTU with counterflow (default) or crossflow-unmixed effectiveness. The
//!   air- and water-side conductances scale with flow as in Modelica Buildings' `HADryCoil`:
//!   `UA_a = UA_nom(1+r)(UCAF/V_nom)^n_air`, `UA_w = UA_nom(1+r)/r·(UCWF/WF_nom)^n_wat`.
//! * **Wet coil**: when the coldest fin surface (air-outlet end) is below the inlet dew point,
//!   Braun's (1988) enthalpy ε-NTU for a fully wet coil is solved by the reference's damped
//!   fixed-point iteration on the water outlet temperature; the coil then delivers
//!   `max(Q_dry, Q_wet)`, a cheap stand-in for a partly wet coil.
//!
//! Psychrometrics use the Magnus (Alduchov–Eskridge) saturation pressure over water at a fixed
//! 101.325 kPa.
//!
//! Units (the engine's canonical units): temperatures °C, water flow `UCWF` **L/min**, relative
//! humidity %, air flow `UCAF` m³/h, conductances kW/K, heat rates kW. `q_total` is the water-side
//! `Q_thermal = ṁw·cp_w·(UCWOT − UCWIT)`, positive when the coil cools the air.
//!
//! Parity: the arithmetic follows the reference operation by operation (same evaluation order,
//! same iteration cap, tolerance and damping, Python's `min`/`max` semantics), so the fan, the
//! dry coil and the wet-coil iteration give the Python's bits. That matters beyond cosmetics: a
//! last-bit difference could move the wet loop's `1e-6` exit by one iteration and shift `Q` by
//! ~1e-6 kW. The one deliberate change is the inversion of `h_sat` after the loop: the reference
//! bisects 60 times; here a table-seeded, bracket-safeguarded Newton iteration reaches the same
//! root (to ~1e-13 K) with three or four `exp` calls. `tests/physics_parity.rs` checks all this
//! against the Python itself.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// Specific heat of liquid water, kJ/(kg·K).
pub const CP_W: f64 = 4.186;
/// Specific heat of dry air, kJ/(kg·K).
pub const CP_A: f64 = 1.006;
/// Specific heat of water vapour, kJ/(kg·K).
pub const CP_V: f64 = 1.86;
/// Latent heat of vaporisation at 0 °C, kJ/kg.
pub const H_FG: f64 = 2501.0;
/// Air density used to turn volumetric into mass flow, kg/m³.
pub const RHO_A: f64 = 1.2;
/// Water density, kg/L.
pub const RHO_W: f64 = 1.0;
/// Atmospheric pressure, kPa.
pub const P_ATM: f64 = 101.325;

/// Ratio of the molar masses of water vapour and dry air.
const EPS_MW: f64 = 0.621945;
/// Magnus coefficients (Alduchov–Eskridge, over water).
const MAGNUS_A: f64 = 0.61094;
const MAGNUS_B: f64 = 17.625;
const MAGNUS_C: f64 = 243.04;

/// Wet-coil iteration limits, as in the reference.
const WET_MAX_ITER: usize = 50;
const WET_TOL: f64 = 1e-6;

/// Range over which the reference inverts `h_sat`; results are clamped to it.
const TSAT_LO: f64 = -20.0;
const TSAT_HI: f64 = 60.0;

/// Accepted range for every temperature input, °C.
pub const T_MIN: f64 = -40.0;
/// Accepted range for every temperature input, °C.
pub const T_MAX: f64 = 80.0;

/// Heat-exchanger flow arrangement used for the effectiveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowArrangement {
    /// Pure counterflow (the reference's default).
    #[default]
    Counterflow,
    /// Crossflow with both fluids unmixed (Incropera's approximation).
    CrossflowUnmixed,
}

/// Parameters of the fan controller and the coil. `Default` equals the reference's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhysicsParams {
    /// Fan air flow at full speed, m³/h.
    pub v_max: f64,
    /// Minimum fan fraction (the fan never stops), dimensionless in (0, 1].
    pub u_min: f64,
    /// Proportional gain of the fan controller, fan fraction per K of `UCAIT − UCTSP`.
    pub kp: f64,
    /// Overall coil conductance at nominal flows, kW/K.
    pub ua_nom: f64,
    /// Nominal air flow at which `ua_nom` holds, m³/h.
    pub v_nom: f64,
    /// Nominal water flow at which `ua_nom` holds, L/min.
    pub wf_nom: f64,
    /// Ratio of air-side to water-side conductance at nominal flows, dimensionless.
    pub r_nom: f64,
    /// Flow exponent of the air-side conductance, dimensionless.
    pub n_air: f64,
    /// Flow exponent of the water-side conductance, dimensionless.
    pub n_wat: f64,
    /// Whether the wet-coil (condensing) model is enabled; `false` forces a dry coil.
    pub wet: bool,
    /// Flow arrangement used for the ε-NTU effectiveness.
    pub flow: FlowArrangement,
}

impl Default for PhysicsParams {
    fn default() -> Self {
        Self {
            v_max: 6000.0,
            u_min: 0.25,
            kp: 0.15,
            ua_nom: 2.0,
            v_nom: 5000.0,
            wf_nom: 15.0,
            r_nom: 2.0 / 3.0,
            n_air: 0.8,
            n_wat: 0.85,
            wet: true,
            flow: FlowArrangement::Counterflow,
        }
    }
}

impl PhysicsParams {
    /// Checks that the parameters define a usable model (finite, positive flows and
    /// conductances, `u_min` in (0, 1], non-negative gain and exponents).
    pub fn validate(&self) -> Result<(), PhysicsError> {
        let checks: [(&'static str, f64, bool, &'static str); 9] = [
            ("v_max", self.v_max, self.v_max > 0.0, "must be > 0 m³/h"),
            (
                "u_min",
                self.u_min,
                self.u_min > 0.0 && self.u_min <= 1.0,
                "must be in (0, 1]: a stopped fan leaves the coil model undefined",
            ),
            ("kp", self.kp, self.kp >= 0.0, "must be >= 0 per K"),
            ("ua_nom", self.ua_nom, self.ua_nom > 0.0, "must be > 0 kW/K"),
            ("v_nom", self.v_nom, self.v_nom > 0.0, "must be > 0 m³/h"),
            (
                "wf_nom",
                self.wf_nom,
                self.wf_nom > 0.0,
                "must be > 0 L/min",
            ),
            ("r_nom", self.r_nom, self.r_nom > 0.0, "must be > 0"),
            ("n_air", self.n_air, self.n_air >= 0.0, "must be >= 0"),
            ("n_wat", self.n_wat, self.n_wat >= 0.0, "must be >= 0"),
        ];
        for (field, value, ok, reason) in checks {
            if !value.is_finite() {
                return Err(PhysicsError::InvalidParam {
                    field,
                    value,
                    reason: "must be a finite number",
                });
            }
            if !ok {
                return Err(PhysicsError::InvalidParam {
                    field,
                    value,
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// The six model inputs, in canonical units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoilInputs {
    /// Water inlet temperature, °C.
    pub ucwit: f64,
    /// Air inlet (return air) temperature, °C.
    pub ucait: f64,
    /// Water flow, L/min.
    pub ucwf: f64,
    /// Air inlet relative humidity, %.
    pub ucaih: f64,
    /// Ambient temperature, °C (validated but not used by the steady-state physics).
    pub ambt: f64,
    /// Room set point, °C.
    pub uctsp: f64,
}

impl CoilInputs {
    /// From the six inputs in the engine's feature order
    /// (UCWIT, UCAIT, UCWF, UCAIH, AMBT, UCTSP).
    pub fn from_features(x: [f64; 6]) -> Self {
        CoilInputs {
            ucwit: x[0],
            ucait: x[1],
            ucwf: x[2],
            ucaih: x[3],
            ambt: x[4],
            uctsp: x[5],
        }
    }

    /// A valid operating point drawn uniformly from the ranges a unit cooler
    /// sees (UCWIT 5–14 °C, UCAIT 16–32 °C, UCWF 3–40 L/min, UCAIH 20–90 %,
    /// AMBT 10–35 °C, UCTSP 18–26 °C): dry and wet coil points both occur.
    /// Used by the parity test and the benchmarks.
    pub fn random_valid(rng: &mut impl rand::Rng) -> Self {
        CoilInputs {
            ucwit: rng.random_range(5.0..14.0),
            ucait: rng.random_range(16.0..32.0),
            ucwf: rng.random_range(3.0..40.0),
            ucaih: rng.random_range(20.0..90.0),
            ambt: rng.random_range(10.0..35.0),
            uctsp: rng.random_range(18.0..26.0),
        }
    }

    /// The reference script's example operating point.
    pub const EXAMPLE: CoilInputs = CoilInputs {
        ucwit: 7.5,
        ucait: 25.0,
        ucwf: 15.0,
        ucaih: 50.0,
        ambt: 22.0,
        uctsp: 21.0,
    };
}

/// Which branch of the coil model produced the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Coil surface above the inlet dew point (or wet model disabled).
    Dry,
    /// Surface below the dew point, but the wet-coil heat rate did not exceed the dry one, so
    /// the dry result is kept (the reference's `"dry(max)"`).
    DryMax,
    /// Fully wet coil (Braun): sensible and latent cooling.
    Wet,
}

impl Regime {
    /// The reference's label: `"dry"`, `"dry(max)"` or `"wet"`.
    pub fn reference_label(self) -> &'static str {
        match self {
            Regime::Dry => "dry",
            Regime::DryMax => "dry(max)",
            Regime::Wet => "wet",
        }
    }
}

/// Steady-state outputs of the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CoilState {
    /// Air flow, m³/h.
    pub ucaf: f64,
    /// Fan fraction `UCAF / v_max`, dimensionless.
    pub fan_fraction: f64,
    /// Air outlet temperature, °C.
    pub ucaot: f64,
    /// Water outlet temperature, °C.
    pub ucwot: f64,
    /// Total heat rate `Q_thermal`, kW, positive when cooling.
    pub q_total: f64,
    /// Sensible part of `q_total`, kW.
    pub q_sensible: f64,
    /// Latent part of `q_total` (condensation), kW; 0 unless wet.
    pub q_latent: f64,
    /// Overall conductance at the operating flows, kW/K.
    pub ua: f64,
    /// Dry-coil effectiveness, dimensionless.
    pub eps: f64,
    /// Branch that produced the result.
    pub regime: Regime,
    /// Air outlet relative humidity, % (clamped to 100); `None` unless wet, as in the reference.
    pub rh_out: Option<f64>,
    /// Air inlet dew point, °C.
    pub t_dew_in: f64,
    /// Fin surface temperature at the air-outlet end of the dry coil, °C (the wet test).
    pub t_surf_out: f64,
    /// Condensate rate, kg/h; 0 unless wet.
    pub condensate_kg_h: f64,
}

/// Why a prediction was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PhysicsError {
    /// An input is NaN or infinite.
    #[error("physics input {field} must be a finite number, got {value}")]
    NonFinite {
        /// Input name (`UCWIT`, `UCAIT`, `UCWF`, `UCAIH`, `AMBT`, `UCTSP`).
        field: &'static str,
        /// The offending value.
        value: f64,
    },
    /// An input is finite but outside the model's domain.
    #[error("physics input {field} = {value} is out of range: {reason}")]
    OutOfRange {
        /// Input name.
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What the range is and why.
        reason: &'static str,
    },
    /// A model parameter is unusable.
    #[error("physics parameter {field} = {value} is invalid: {reason}")]
    InvalidParam {
        /// Parameter name as in [`PhysicsParams`].
        field: &'static str,
        /// The offending value.
        value: f64,
        /// What is required.
        reason: &'static str,
    },
    /// Valid inputs led to a non-finite output (e.g. a water flow so small it underflows).
    #[error("physics model produced a non-finite {field} ({value}) for these inputs")]
    NonFiniteResult {
        /// Output name.
        field: &'static str,
        /// The offending value.
        value: f64,
    },
}

/// What kind of quantity an input is, which decides its valid range.
#[derive(Clone, Copy)]
enum InputKind {
    Temperature,
    WaterFlow,
    Humidity,
}

fn check_input(field: &'static str, value: f64, kind: InputKind) -> Option<PhysicsError> {
    if !value.is_finite() {
        return Some(PhysicsError::NonFinite { field, value });
    }
    let reason = match kind {
        InputKind::Temperature if !(T_MIN..=T_MAX).contains(&value) => {
            "temperatures must be within -40..=80 °C"
        }
        InputKind::WaterFlow if value <= 0.0 => {
            "water flow must be > 0 L/min: with no water flow the coil model is undefined"
        }
        InputKind::Humidity if !(value > 0.0 && value <= 100.0) => {
            "relative humidity must be in (0, 100] %"
        }
        _ => return None,
    };
    Some(PhysicsError::OutOfRange {
        field,
        value,
        reason,
    })
}

fn named_inputs(x: &CoilInputs) -> [(&'static str, f64, InputKind); 6] {
    use InputKind::*;
    [
        ("UCWIT", x.ucwit, Temperature),
        ("UCAIT", x.ucait, Temperature),
        ("UCWF", x.ucwf, WaterFlow),
        ("UCAIH", x.ucaih, Humidity),
        ("AMBT", x.ambt, Temperature),
        ("UCTSP", x.uctsp, Temperature),
    ]
}

/// Rejects inputs the model is not defined for: non-finite values, `UCWF <= 0`, `UCAIH`
/// outside (0, 100] and temperatures outside −40..=80 °C. Returns the first problem found;
/// see [`input_errors`] for all of them. `UCWIT >= UCAIT` is accepted (it yields heating or
/// zero load): whether that is plausible is the caller's call.
pub fn validate_inputs(x: &CoilInputs) -> Result<(), PhysicsError> {
    for (field, value, kind) in named_inputs(x) {
        if let Some(e) = check_input(field, value, kind) {
            return Err(e);
        }
    }
    Ok(())
}

/// Every input problem at once (empty when valid), for answers that list all field errors.
pub fn input_errors(x: &CoilInputs) -> Vec<PhysicsError> {
    named_inputs(x)
        .into_iter()
        .filter_map(|(field, value, kind)| check_input(field, value, kind))
        .collect()
}

// Python's two-argument `min`/`max` keep the first argument unless the second compares
// strictly smaller/larger; mirroring that keeps NaN propagation identical to the reference
// (Rust's f64::min/max would silently drop a NaN instead).
#[inline(always)]
fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

#[inline(always)]
fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// Saturation vapour pressure over water, kPa (Magnus, Alduchov–Eskridge).
#[inline]
pub fn p_ws(t: f64) -> f64 {
    MAGNUS_A * (MAGNUS_B * t / (t + MAGNUS_C)).exp()
}

/// Dew point of air at `t` °C and `rh` %, °C.
#[inline]
pub fn t_dew(t: f64, rh: f64) -> f64 {
    let g = (rh / 100.0).ln() + MAGNUS_B * t / (t + MAGNUS_C);
    MAGNUS_C * g / (MAGNUS_B - g)
}

/// Humidity ratio of air at `t` °C and `rh` %, kg water per kg dry air.
#[inline]
pub fn w_from_rh(t: f64, rh: f64) -> f64 {
    w_from_pw(rh / 100.0 * p_ws(t))
}

#[inline(always)]
fn w_from_pw(pw: f64) -> f64 {
    EPS_MW * pw / (P_ATM - pw)
}

/// Moist-air enthalpy at `t` °C and humidity ratio `w`, kJ per kg dry air.
#[inline]
pub fn h_air(t: f64, w: f64) -> f64 {
    CP_A * t + w * (H_FG + CP_V * t)
}

/// Enthalpy of saturated air at `t` °C, kJ per kg dry air.
#[inline]
pub fn h_sat(t: f64) -> f64 {
    // w_from_rh(t, 100) multiplies p_ws by exactly 1.0, so skipping it changes no bit.
    h_air(t, w_from_pw(p_ws(t)))
}

/// `h_sat(t)` and its derivative with respect to `t`, from one `exp`.
#[inline(always)]
fn h_sat_with_slope(t: f64) -> (f64, f64) {
    let tc = t + MAGNUS_C;
    let p = MAGNUS_A * (MAGNUS_B * t / tc).exp();
    let dp = p * (MAGNUS_B * MAGNUS_C) / (tc * tc);
    let d = P_ATM - p;
    let w = EPS_MW * p / d;
    let dw = EPS_MW * P_ATM / (d * d) * dp;
    let h = CP_A * t + w * (H_FG + CP_V * t);
    let dh = CP_A + CP_V * w + (H_FG + CP_V * t) * dw;
    (h, dh)
}

const TABLE_STEP: f64 = 2.5;
const TABLE_LEN: usize = 33; // -20, -17.5, ..., 60

/// `h_sat` at evenly spaced knots on [-20, 60], used to seed and bracket the Newton solve.
static HSAT_TABLE: LazyLock<[f64; TABLE_LEN]> = LazyLock::new(|| {
    let mut t = [0.0; TABLE_LEN];
    for (i, h) in t.iter_mut().enumerate() {
        *h = h_sat(TSAT_LO + TABLE_STEP * i as f64);
    }
    t
});

/// Temperature of saturated air with enthalpy `h` kJ/kg, °C, clamped to [-20, 60] like the
/// reference's bisection (which also returns −20 for NaN).
pub fn t_from_hsat(h: f64) -> f64 {
    let table = &*HSAT_TABLE;
    if h.is_nan() || h <= table[0] {
        return TSAT_LO;
    }
    if h >= table[TABLE_LEN - 1] {
        return TSAT_HI;
    }
    // h_sat is increasing, so the knot segment containing h brackets the root.
    let i = table.partition_point(|&v| v <= h).clamp(1, TABLE_LEN - 1);
    let (h0, h1) = (table[i - 1], table[i]);
    let mut lo = TSAT_LO + TABLE_STEP * (i - 1) as f64;
    let mut hi = lo + TABLE_STEP;
    // Chord seed: h_sat is convex, so this lands just left of the root.
    let mut t = lo + TABLE_STEP * (h - h0) / (h1 - h0);
    for _ in 0..64 {
        let (f, df) = h_sat_with_slope(t);
        let r = f - h;
        if r < 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let step = r / df;
        let next = t - step;
        // Quadratic convergence: after a step below 1e-7 K the error is ~1e-15 K.
        if step.abs() < 1e-7 {
            return next;
        }
        // Newton leaving the bracket means a poor seed: bisect instead.
        t = if next > lo && next < hi {
            next
        } else {
            0.5 * (lo + hi)
        };
    }
    t
}

#[inline(always)]
fn eps_counterflow(ntu: f64, cr: f64) -> f64 {
    if (1.0 - cr).abs() < 1e-9 {
        return ntu / (1.0 + ntu);
    }
    let e = (-ntu * (1.0 - cr)).exp();
    (1.0 - e) / (1.0 - cr * e)
}

#[inline(always)]
fn eps_crossflow_unmixed(ntu: f64, cr: f64) -> f64 {
    1.0 - ((ntu.powf(0.22) / cr) * ((-cr * ntu.powf(0.78)).exp() - 1.0)).exp()
}

#[inline(always)]
fn effectiveness(flow: FlowArrangement, ntu: f64, cr: f64) -> f64 {
    match flow {
        FlowArrangement::Counterflow => eps_counterflow(ntu, cr),
        FlowArrangement::CrossflowUnmixed => eps_crossflow_unmixed(ntu, cr),
    }
}

/// Fan P-controller: returns (`UCAF` m³/h, fan fraction). The fraction is clipped to
/// [`u_min`, 1]; below the set point the fan idles at `u_min`.
#[inline]
pub fn fan_airflow(p: &PhysicsParams, ucait: f64, uctsp: f64) -> (f64, f64) {
    // Not f64::clamp: it panics when u_min > 1, and the reference just returns 1 then.
    let u = py_min(1.0, py_max(p.u_min, p.u_min + p.kp * (ucait - uctsp)));
    (u * p.v_max, u)
}

/// Coil heat transfer at a given air flow (no validation: garbage in gives NaN out, never a
/// panic). `ucwf_lpm` is the water flow in L/min, `ucaih` in %, `ucaf_m3h` in m³/h.
/// `fan_fraction` in the result is `ucaf_m3h / v_max`.
pub fn coil(
    p: &PhysicsParams,
    ucwit: f64,
    ucait: f64,
    ucwf_lpm: f64,
    ucaih: f64,
    ucaf_m3h: f64,
) -> CoilState {
    let m_a = RHO_A * ucaf_m3h / 3600.0; // kg/s
    let m_w = RHO_W * ucwf_lpm / 60.0; // kg/s
    let ua_scale = p.ua_nom * (1.0 + p.r_nom);
    let ua_a = ua_scale * (ucaf_m3h / p.v_nom).powf(p.n_air);
    let ua_w = ua_scale / p.r_nom * (ucwf_lpm / p.wf_nom).powf(p.n_wat);
    let ua = 1.0 / (1.0 / ua_a + 1.0 / ua_w);
    // w_from_rh and t_dew at the inlet share the Magnus exponent and rh/100: computed once,
    // with the same operations, so the bits equal the separate calls.
    let gamma_in = MAGNUS_B * ucait / (ucait + MAGNUS_C);
    let phi_in = ucaih / 100.0;
    let w_in = w_from_pw(phi_in * (MAGNUS_A * gamma_in.exp()));
    let cp_ma = CP_A + CP_V * w_in;
    let c_a = m_a * cp_ma;
    let c_w = m_w * CP_W;
    let cmin = py_min(c_a, c_w);
    let cmax = py_max(c_a, c_w);
    let eps = effectiveness(p.flow, ua / cmin, cmin / cmax);
    let q_dry = eps * cmin * (ucait - ucwit);
    let ta_dry = ucait - q_dry / c_a;
    let tw_dry = ucwit + q_dry / c_w;
    // Coldest surface is at the air-outlet end, where counterflow meets the inlet water.
    let t_surf_out = (ua_a * ta_dry + ua_w * ucwit) / (ua_a + ua_w);
    let g = phi_in.ln() + gamma_in;
    let tdp = MAGNUS_C * g / (MAGNUS_B - g);
    let mut res = CoilState {
        ucaf: ucaf_m3h,
        fan_fraction: ucaf_m3h / p.v_max,
        ucaot: ta_dry,
        ucwot: tw_dry,
        q_total: q_dry,
        q_sensible: q_dry,
        q_latent: 0.0,
        ua,
        eps,
        regime: Regime::Dry,
        rh_out: None,
        t_dew_in: tdp,
        t_surf_out,
        condensate_kg_h: 0.0,
    };
    if !p.wet || t_surf_out >= tdp {
        return res;
    }

    // Braun's fully wet coil: enthalpy is the driving potential and c_s (the secant slope of
    // h_sat between water inlet and outlet) plays the role of a specific heat, so the water
    // outlet temperature is found by a damped fixed point.
    let h_in = h_air(ucait, w_in);
    let hs_win = h_sat(ucwit);
    let dh_in = h_in - hs_win;
    let r_air = cp_ma / ua_a;
    let mut tw_out = tw_dry;
    let mut q_wet = f64::NAN;
    for _ in 0..WET_MAX_ITER {
        let c_s = (h_sat(tw_out) - hs_win) / py_max(tw_out - ucwit, 1e-3);
        let ua_star = 1.0 / (r_air + c_s / ua_w); // kg/s
        let ca_s = m_a;
        let cw_s = c_w / c_s;
        let cmin_s = py_min(ca_s, cw_s);
        let cmax_s = py_max(ca_s, cw_s);
        let eps_s = effectiveness(p.flow, ua_star / cmin_s, cmin_s / cmax_s);
        q_wet = eps_s * cmin_s * dh_in;
        let new = ucwit + q_wet / c_w;
        if (new - tw_out).abs() < WET_TOL {
            break;
        }
        tw_out = 0.5 * (tw_out + new);
    }
    if q_wet <= q_dry {
        // max(dry, wet): a partly wet coil transfers at least the dry-coil heat.
        res.regime = Regime::DryMax;
        return res;
    }
    let h_out = h_in - q_wet / m_a;
    let ntu_ao = ua_a / (m_a * cp_ma);
    let e_ao = (-ntu_ao).exp();
    // Effective surface state: the saturated-air enthalpy that, with air-side NTU alone,
    // takes the air from h_in to h_out; the air temperature relaxes towards it.
    let hs_eff = h_in + (h_out - h_in) / (1.0 - e_ao);
    let ts_eff = t_from_hsat(hs_eff);
    let ta_out = ts_eff + (ucait - ts_eff) * e_ao;
    let w_out = (h_out - CP_A * ta_out) / (H_FG + CP_V * ta_out);
    let q_sens = m_a * cp_ma * (ucait - ta_out);
    let rh_ratio = (w_out * P_ATM / (EPS_MW + w_out)) / p_ws(ta_out);
    res.regime = Regime::Wet;
    res.q_total = q_wet;
    res.q_sensible = q_sens;
    res.q_latent = q_wet - q_sens;
    res.ucaot = ta_out;
    res.ucwot = ucwit + q_wet / c_w;
    // The Braun outlet state can land slightly above saturation; the reference clamps it.
    res.rh_out = Some(100.0 * py_min(1.0, rh_ratio));
    res.condensate_kg_h = 3600.0 * m_a * (w_in - w_out);
    res
}

/// Validates parameters and inputs, runs the fan controller and the coil model. Never
/// panics; `Ok` guarantees finite temperatures and heat rates. Parameters are re-checked on
/// every call (a few comparisons) so a bad config cannot produce silent NaNs.
pub fn predict(p: &PhysicsParams, x: &CoilInputs) -> Result<CoilState, PhysicsError> {
    p.validate()?;
    validate_inputs(x)?;
    let (ucaf, u) = fan_airflow(p, x.ucait, x.uctsp);
    let mut s = coil(p, x.ucwit, x.ucait, x.ucwf, x.ucaih, ucaf);
    s.fan_fraction = u;
    for (field, value) in [
        ("UCAF", s.ucaf),
        ("UCAOT", s.ucaot),
        ("UCWOT", s.ucwot),
        ("Q_thermal", s.q_total),
        ("Q_sensible", s.q_sensible),
        ("Q_latent", s.q_latent),
    ] {
        if !value.is_finite() {
            return Err(PhysicsError::NonFiniteResult { field, value });
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The reference's 60-step bisection, kept to check the Newton replacement.
    fn t_from_hsat_bisect(h: f64) -> f64 {
        let (mut lo, mut hi) = (TSAT_LO, TSAT_HI);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if h_sat(mid) < h {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    fn random_inputs(rng: &mut ChaCha8Rng) -> CoilInputs {
        CoilInputs::random_valid(rng)
    }

    #[test]
    fn defaults_match_reference() {
        let p = PhysicsParams::default();
        assert_eq!((p.v_max, p.u_min, p.kp), (6000.0, 0.25, 0.15));
        assert_eq!((p.ua_nom, p.v_nom, p.wf_nom), (2.0, 5000.0, 15.0));
        assert_eq!((p.r_nom, p.n_air, p.n_wat), (2.0 / 3.0, 0.8, 0.85));
        assert!(p.wet);
        assert_eq!(p.flow, FlowArrangement::Counterflow);
        assert!(p.validate().is_ok());
    }

    #[test]
    fn params_deserialize_with_defaults_and_reject_unknown() {
        let p: PhysicsParams =
            serde_json::from_str(r#"{"ua_nom": 1.5, "flow": "crossflow_unmixed"}"#).unwrap();
        assert_eq!(p.ua_nom, 1.5);
        assert_eq!(p.flow, FlowArrangement::CrossflowUnmixed);
        assert_eq!(p.v_max, 6000.0);
        assert!(serde_json::from_str::<PhysicsParams>(r#"{"ua": 1.5}"#).is_err());
    }

    #[test]
    fn reference_example_values() {
        // Printed by `python3 coil_model.py` (2-decimal rounding).
        let p = PhysicsParams::default();
        let s = predict(&p, &CoilInputs::EXAMPLE).unwrap();
        assert_eq!(s.ucaf, 5100.0);
        assert!((s.fan_fraction - 0.85).abs() < 1e-12);
        assert_eq!(s.regime, Regime::DryMax);
        assert!((s.ucaot - 17.18).abs() < 0.005, "{s:?}");
        assert!((s.ucwot - 20.52).abs() < 0.005, "{s:?}");
        assert!((s.q_total - 13.62).abs() < 0.005, "{s:?}");
        assert!((t_dew(25.0, 50.0) - 13.86).abs() < 0.005);
        assert!((1000.0 * w_from_rh(25.0, 50.0) - 9.86).abs() < 0.005);
        let w = coil(&p, 7.5, 25.0, 40.0, 50.0, 5100.0);
        assert_eq!(w.regime, Regime::Wet);
        assert!((w.ucaot - 14.44).abs() < 0.005, "{w:?}");
        assert!((w.ucwot - 15.06).abs() < 0.005, "{w:?}");
        assert!((w.q_total - 21.11).abs() < 0.005, "{w:?}");
        assert!((w.q_sensible - 18.39).abs() < 0.005, "{w:?}");
        assert!((w.rh_out.unwrap() - 90.0).abs() < 0.5, "{w:?}");
        let dry = PhysicsParams { wet: false, ..p };
        assert_eq!(
            coil(&dry, 7.5, 25.0, 15.0, 50.0, 5100.0).regime,
            Regime::Dry
        );
        let cross = PhysicsParams {
            flow: FlowArrangement::CrossflowUnmixed,
            ..p
        };
        let c = coil(&cross, 7.5, 25.0, 15.0, 50.0, 5100.0);
        assert!((c.eps - 0.704).abs() < 0.0005, "{c:?}");
        assert!((c.ucaot - 17.59).abs() < 0.005, "{c:?}");
    }

    #[test]
    fn newton_inversion_matches_bisection() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut worst = 0.0f64;
        let mut hs: Vec<f64> = (0..20_000)
            .map(|_| rng.random_range(-30.0..480.0))
            .collect();
        // Knots, clamps and their neighbourhoods.
        for i in 0..TABLE_LEN {
            let h = h_sat(TSAT_LO + TABLE_STEP * i as f64);
            hs.extend([h, h.next_up(), h.next_down(), h + 1e-9, h - 1e-9]);
        }
        hs.extend([
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1e300,
            1e300,
            0.0,
        ]);
        for h in hs {
            let (a, b) = (t_from_hsat(h), t_from_hsat_bisect(h));
            if a.is_nan() || b.is_nan() {
                panic!("NaN for h = {h}: newton {a}, bisection {b}");
            }
            worst = worst.max((a - b).abs());
        }
        assert!(worst <= 1e-12, "max |newton - bisection| = {worst:e}");
    }

    #[test]
    fn psychrometric_helpers_are_consistent() {
        for t in [-20.0, 0.0, 12.5, 25.0, 60.0] {
            // Air at its own dew point is saturated.
            assert!((t_dew(t, 100.0) - t).abs() < 1e-9);
            assert_eq!(h_sat(t), h_air(t, w_from_rh(t, 100.0)));
            let (h, dh) = h_sat_with_slope(t);
            assert!((h - h_sat(t)).abs() < 1e-12 * h.abs().max(1.0));
            let fd = (h_sat(t + 1e-5) - h_sat(t - 1e-5)) / 2e-5;
            assert!((dh - fd).abs() < 1e-5 * dh, "slope at {t}: {dh} vs {fd}");
        }
        assert!((p_ws(0.0) - 0.61094).abs() < 1e-15);
        // coil() inlines w_from_rh and t_dew at the inlet; the results must be bit-equal.
        let p = PhysicsParams::default();
        for (t, rh) in [(25.0, 50.0), (16.3, 89.9), (31.7, 20.1), (-12.0, 3.0)] {
            let s = coil(&p, 7.0, t, 10.0, rh, 3000.0);
            assert_eq!(s.t_dew_in, t_dew(t, rh));
            let m_a = RHO_A * 3000.0 / 3600.0;
            let c_a = s.q_sensible / (t - s.ucaot);
            let cp = CP_A + CP_V * w_from_rh(t, rh);
            assert!((c_a - m_a * cp).abs() < 1e-9, "{t} {rh}");
        }
    }

    #[test]
    fn fan_controller_clips() {
        let p = PhysicsParams::default();
        assert_eq!(fan_airflow(&p, 15.0, 21.0), (1500.0, 0.25));
        assert_eq!(fan_airflow(&p, 21.0, 21.0), (1500.0, 0.25));
        assert_eq!(fan_airflow(&p, 40.0, 18.0), (6000.0, 1.0));
        let (f, u) = fan_airflow(&p, 23.0, 21.0);
        assert!((u - 0.55).abs() < 1e-12 && (f - 3300.0).abs() < 1e-9);
        // At exactly u = 1 and just above.
        assert!((fan_airflow(&p, 26.0, 21.0).1 - 1.0).abs() < 1e-12);
        assert_eq!(fan_airflow(&p, 26.1, 21.0).1, 1.0);
        // Reference semantics when u_min > 1 (rejected by validate, but no panic).
        let odd = PhysicsParams { u_min: 2.0, ..p };
        assert_eq!(fan_airflow(&odd, 20.0, 21.0).1, 1.0);
        assert!(odd.validate().is_err());
    }

    #[test]
    fn invariants_on_random_inputs() {
        let p = PhysicsParams::default();
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            let x = random_inputs(&mut rng);
            let s = predict(&p, &x).unwrap();
            counts[s.regime as usize] += 1;
            let ctx = format!("{x:?} -> {s:?}");
            // Cooling in every sample (UCWIT < 14 < 16 < UCAIT).
            assert!(x.ucwit < s.ucaot && s.ucaot <= x.ucait, "UCAOT: {ctx}");
            assert!(x.ucwit <= s.ucwot && s.ucwot < x.ucait, "UCWOT: {ctx}");
            assert!(s.q_total > 0.0, "{ctx}");
            assert!(s.fan_fraction >= p.u_min && s.fan_fraction <= 1.0);
            // Water side closes by construction: Q = mw·cp·(UCWOT − UCWIT).
            let m_w = RHO_W * x.ucwf / 60.0;
            let q_water = m_w * CP_W * (s.ucwot - x.ucwit);
            assert!((q_water - s.q_total).abs() <= 1e-9 * s.q_total, "{ctx}");
            let m_a = RHO_A * s.ucaf / 3600.0;
            let w_in = w_from_rh(x.ucait, x.ucaih);
            match s.regime {
                Regime::Dry | Regime::DryMax => {
                    // Air-side sensible heat equals the water-side heat.
                    let q_air = m_a * (CP_A + CP_V * w_in) * (x.ucait - s.ucaot);
                    assert!((q_air - q_water).abs() <= 1e-9 * q_water, "{ctx}");
                    assert_eq!(s.q_latent, 0.0);
                    assert!(s.rh_out.is_none());
                }
                Regime::Wet => {
                    let rh = s.rh_out.unwrap();
                    assert!(rh > 0.0 && rh <= 100.0, "{ctx}");
                    assert!(s.q_latent > 0.0 && s.condensate_kg_h > 0.0, "{ctx}");
                    assert!(s.t_surf_out < s.t_dew_in, "{ctx}");
                    // Air-side total (enthalpy drop, latent included) equals the water side.
                    let w_out = w_in - s.condensate_kg_h / (3600.0 * m_a);
                    let q_air = m_a * (h_air(x.ucait, w_in) - h_air(s.ucaot, w_out));
                    assert!((q_air - q_water).abs() <= 1e-9 * q_water, "{ctx}");
                    let q_air_sens = m_a * (CP_A + CP_V * w_in) * (x.ucait - s.ucaot);
                    assert!((q_air_sens - s.q_sensible).abs() <= 1e-9 * s.q_total);
                }
            }
        }
        assert!(counts.iter().all(|&c| c > 1000), "regime counts {counts:?}");
    }

    #[test]
    fn heating_and_zero_load_are_not_errors() {
        let p = PhysicsParams::default();
        let mut x = CoilInputs::EXAMPLE;
        x.ucwit = 45.0;
        let s = predict(&p, &x).unwrap();
        assert!(s.q_total < 0.0 && s.ucaot > x.ucait && s.ucwot < x.ucwit);
        assert_eq!(s.regime, Regime::Dry);
        x.ucwit = x.ucait;
        let s = predict(&p, &x).unwrap();
        assert_eq!(s.q_total, 0.0);
    }

    #[test]
    fn validation_names_the_field() {
        let ok = CoilInputs::EXAMPLE;
        assert!(validate_inputs(&ok).is_ok());
        assert!(input_errors(&ok).is_empty());
        let cases: [(CoilInputs, &str); 9] = [
            (CoilInputs { ucwf: 0.0, ..ok }, "UCWF"),
            (CoilInputs { ucwf: -1.0, ..ok }, "UCWF"),
            (CoilInputs { ucaih: 0.0, ..ok }, "UCAIH"),
            (CoilInputs { ucaih: 100.5, ..ok }, "UCAIH"),
            (
                CoilInputs {
                    ucwit: f64::NAN,
                    ..ok
                },
                "UCWIT",
            ),
            (CoilInputs { ucait: 80.5, ..ok }, "UCAIT"),
            (CoilInputs { ambt: -41.0, ..ok }, "AMBT"),
            (
                CoilInputs {
                    uctsp: f64::INFINITY,
                    ..ok
                },
                "UCTSP",
            ),
            (
                CoilInputs {
                    ucwf: f64::NAN,
                    ..ok
                },
                "UCWF",
            ),
        ];
        for (x, field) in cases {
            let e = validate_inputs(&x).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains(field), "{msg}");
            // NaN != NaN, so compare the messages.
            assert_eq!(
                predict(&PhysicsParams::default(), &x)
                    .unwrap_err()
                    .to_string(),
                msg
            );
        }
        let msg = validate_inputs(&CoilInputs { ucwf: 0.0, ..ok })
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("no water flow") && msg.contains("L/min"),
            "{msg}"
        );
        // Boundaries that are valid.
        for x in [
            CoilInputs { ucaih: 100.0, ..ok },
            CoilInputs { ucwit: -40.0, ..ok },
            CoilInputs { ucait: 80.0, ..ok },
        ] {
            assert!(validate_inputs(&x).is_ok(), "{x:?}");
        }
        let all = input_errors(&CoilInputs {
            ucwit: f64::NAN,
            ucwf: 0.0,
            ucaih: 120.0,
            ..ok
        });
        assert_eq!(all.len(), 3);
    }

    fn wild(rng: &mut ChaCha8Rng) -> f64 {
        const SPECIAL: [f64; 16] = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN,
            f64::MIN_POSITIVE,
            5e-324,
            -243.04,
            1.0,
            -1.0,
            100.0,
            1e-300,
        ];
        match rng.random_range(0..4) {
            0 => SPECIAL[rng.random_range(0..SPECIAL.len())],
            1 => f64::from_bits(rng.random::<u64>()),
            2 => rng.random_range(-100.0..150.0),
            _ => rng.random_range(-1e6..1e6),
        }
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut rng = ChaCha8Rng::seed_from_u64(0xF022);
        let dflt = PhysicsParams::default();
        for i in 0..200_000 {
            let x = CoilInputs {
                ucwit: wild(&mut rng),
                ucait: wild(&mut rng),
                ucwf: wild(&mut rng),
                ucaih: wild(&mut rng),
                ambt: wild(&mut rng),
                uctsp: wild(&mut rng),
            };
            let p = if i % 4 == 0 {
                PhysicsParams {
                    v_max: wild(&mut rng),
                    u_min: wild(&mut rng),
                    kp: wild(&mut rng),
                    ua_nom: wild(&mut rng),
                    v_nom: wild(&mut rng),
                    wf_nom: wild(&mut rng),
                    r_nom: wild(&mut rng),
                    n_air: wild(&mut rng),
                    n_wat: wild(&mut rng),
                    wet: rng.random(),
                    flow: if rng.random() {
                        FlowArrangement::Counterflow
                    } else {
                        FlowArrangement::CrossflowUnmixed
                    },
                }
            } else {
                dflt
            };
            if let Ok(s) = predict(&p, &x) {
                assert!(s.ucaot.is_finite() && s.q_total.is_finite(), "{x:?} {s:?}");
            }
            let _ = fan_airflow(&p, x.ucait, x.uctsp);
            let _ = coil(&p, x.ucwit, x.ucait, x.ucwf, x.ucaih, wild(&mut rng));
            let _ = t_from_hsat(x.ucwit);
        }
        // Valid but extreme inputs: the output check turns underflow into an error, not NaN.
        let ok = CoilInputs::EXAMPLE;
        for ucwf in [5e-324, f64::MIN_POSITIVE, 1e-300, 1e300, f64::MAX] {
            match predict(&dflt, &CoilInputs { ucwf, ..ok }) {
                Ok(s) => assert!(s.ucwot.is_finite()),
                Err(e) => assert!(matches!(e, PhysicsError::NonFiniteResult { .. }), "{e}"),
            }
        }
    }

    #[test]
    fn crossflow_invariants() {
        let p = PhysicsParams {
            flow: FlowArrangement::CrossflowUnmixed,
            ..PhysicsParams::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..5_000 {
            let x = random_inputs(&mut rng);
            let s = predict(&p, &x).unwrap();
            assert!(s.eps > 0.0 && s.eps < 1.0);
            assert!(x.ucwit < s.ucaot && s.ucaot <= x.ucait, "{x:?} {s:?}");
            assert!(x.ucwit <= s.ucwot && s.ucwot < x.ucait, "{x:?} {s:?}");
        }
    }
}
