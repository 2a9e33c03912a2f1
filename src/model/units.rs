//! Engineering units at the edge of the engine.
//!
//! Inside the engine every quantity is in its canonical unit (°C, water flow
//! L/min, %RH, air flow m³/h, kW). Sources convert on the way in, from units
//! that a configuration or a payload names explicitly: twinflow never guesses
//! a unit (the public data set these variables come from only balances its
//! heat if UCWF is read as litres per hour, not per minute).

use std::fmt;

/// What kind of quantity a feature is, which fixes its canonical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Canonical °C.
    Temperature,
    /// Canonical L/min.
    WaterFlow,
    /// Canonical %RH.
    Humidity,
    /// Canonical m³/h.
    AirFlow,
    /// Canonical kW.
    Power,
}

impl Quantity {
    /// The quantity of a known feature name (`UCWIT`, `UCWF`, ...).
    pub fn of_feature(name: &str) -> Option<Quantity> {
        Some(match name {
            "UCWIT" | "UCAIT" | "AMBT" | "UCTSP" | "UCAOT" | "UCWOT" => Quantity::Temperature,
            "UCWF" => Quantity::WaterFlow,
            "UCAIH" => Quantity::Humidity,
            "UCAF" => Quantity::AirFlow,
            "Q_thermal" => Quantity::Power,
            _ => return None,
        })
    }

    pub fn canonical(self) -> &'static str {
        match self {
            Quantity::Temperature => "degC",
            Quantity::WaterFlow => "L/min",
            Quantity::Humidity => "%RH",
            Quantity::AirFlow => "m3/h",
            Quantity::Power => "kW",
        }
    }

    /// Every unit name accepted for this quantity.
    pub fn accepted(self) -> &'static [&'static str] {
        match self {
            Quantity::Temperature => &["degC", "°C", "C", "degF", "°F", "F", "K"],
            Quantity::WaterFlow => &["L/min", "L/h", "L/s", "m3/h", "gpm"],
            Quantity::Humidity => &["%RH", "%", "fraction"],
            Quantity::AirFlow => &["m3/h", "m3/s", "L/s", "cfm"],
            Quantity::Power => &["kW", "W", "MW"],
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Quantity::Temperature => "temperature",
            Quantity::WaterFlow => "water flow",
            Quantity::Humidity => "relative humidity",
            Quantity::AirFlow => "air flow",
            Quantity::Power => "power",
        })
    }
}

/// A unit the quantity does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {quantity} unit \"{unit}\" (accepted: {accepted})")]
pub struct UnknownUnit {
    pub quantity: String,
    pub unit: String,
    pub accepted: String,
}

/// A conversion to the canonical unit: `canonical = value · scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub scale: f64,
    pub offset: f64,
}

impl Conversion {
    pub const IDENTITY: Conversion = Conversion {
        scale: 1.0,
        offset: 0.0,
    };

    pub fn apply(self, v: f64) -> f64 {
        v * self.scale + self.offset
    }
}

/// The conversion from `unit` to the canonical unit of `q`.
pub fn conversion(q: Quantity, unit: &str) -> Result<Conversion, UnknownUnit> {
    let c = |scale: f64, offset: f64| Some(Conversion { scale, offset });
    let found = match (q, unit) {
        (Quantity::Temperature, "degC" | "°C" | "C") => c(1.0, 0.0),
        (Quantity::Temperature, "degF" | "°F" | "F") => c(5.0 / 9.0, -32.0 * 5.0 / 9.0),
        (Quantity::Temperature, "K") => c(1.0, -273.15),
        (Quantity::WaterFlow, "L/min") => c(1.0, 0.0),
        (Quantity::WaterFlow, "L/h") => c(1.0 / 60.0, 0.0),
        (Quantity::WaterFlow, "L/s") => c(60.0, 0.0),
        (Quantity::WaterFlow, "m3/h") => c(1000.0 / 60.0, 0.0),
        (Quantity::WaterFlow, "gpm") => c(3.785_411_784, 0.0),
        (Quantity::Humidity, "%RH" | "%") => c(1.0, 0.0),
        (Quantity::Humidity, "fraction") => c(100.0, 0.0),
        (Quantity::AirFlow, "m3/h") => c(1.0, 0.0),
        (Quantity::AirFlow, "m3/s") => c(3600.0, 0.0),
        (Quantity::AirFlow, "L/s") => c(3.6, 0.0),
        (Quantity::AirFlow, "cfm") => c(1.699_010_8, 0.0),
        (Quantity::Power, "kW") => c(1.0, 0.0),
        (Quantity::Power, "W") => c(1e-3, 0.0),
        (Quantity::Power, "MW") => c(1e3, 0.0),
        _ => None,
    };
    found.ok_or_else(|| UnknownUnit {
        quantity: q.to_string(),
        unit: unit.to_string(),
        accepted: q.accepted().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_to_canonical() {
        let t = conversion(Quantity::Temperature, "degF").unwrap();
        assert!((t.apply(212.0) - 100.0).abs() < 1e-12);
        assert!(
            (conversion(Quantity::Temperature, "K")
                .unwrap()
                .apply(273.15))
            .abs()
                < 1e-12
        );
        assert!(
            (conversion(Quantity::WaterFlow, "L/h").unwrap().apply(900.0) - 15.0).abs() < 1e-12
        );
        assert!(
            (conversion(Quantity::Humidity, "fraction")
                .unwrap()
                .apply(0.5)
                - 50.0)
                .abs()
                < 1e-12
        );
        assert_eq!(
            conversion(Quantity::AirFlow, "m3/h").unwrap(),
            Conversion::IDENTITY
        );
    }

    #[test]
    fn every_accepted_unit_converts_and_others_do_not() {
        for q in [
            Quantity::Temperature,
            Quantity::WaterFlow,
            Quantity::Humidity,
            Quantity::AirFlow,
            Quantity::Power,
        ] {
            for u in q.accepted() {
                assert!(conversion(q, u).is_ok(), "{q} {u}");
            }
            assert!(conversion(q, q.canonical()).unwrap() == Conversion::IDENTITY);
        }
        let e = conversion(Quantity::WaterFlow, "gal/fortnight").unwrap_err();
        assert!(e.to_string().contains("L/h"), "{e}");
    }
}
