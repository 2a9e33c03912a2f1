//! BACnet/IP, shared by `bacnet_poller`, `bacnet_writer` and the simulated
//! unit-cooler device: device addresses, object references, engineering
//! units and their mapping to twinflow's canonical units, status flags, and
//! the client that reads and writes points.
//!
//! The stack is `bacnet-client`/`bacnet-server` 0.15 (async, tokio). twinflow
//! never broadcasts: devices are addressed by IP and port, and discovery is
//! a unicast Who-Is at most.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;

use bacnet_types::enums::{EngineeringUnits, ObjectType};
use bacnet_types::primitives::ObjectIdentifier;
use serde::{Deserialize, Deserializer};

use crate::model::units::Quantity;

/// The standard BACnet/IP UDP port (0xBAC0).
pub const DEFAULT_PORT: u16 = 47808;

/// Errors of the BACnet layer; each names the device it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BacnetError {
    #[error("\"{0}\" is not a BACnet/IP address (expected IPv4[:port], e.g. 127.0.0.1:47808)")]
    BadAddress(String),
    #[error("\"{0}\" is not a BACnet object (expected type:instance, e.g. analogInput:0)")]
    BadObject(String),
    #[error("\"{0}\" is not a BACnet engineering unit name (e.g. degreesCelsius)")]
    BadUnits(String),
    #[error("could not open the BACnet/IP port {addr}: {why}")]
    Bind { addr: String, why: String },
    #[error("device {device} at {addr}: {what}: timed out")]
    Timeout {
        device: u32,
        addr: DeviceAddress,
        what: String,
    },
    #[error("device {device} at {addr}: {what}: {why}")]
    Request {
        device: u32,
        addr: DeviceAddress,
        what: String,
        why: String,
    },
}

/// A BACnet/IP device's address: IPv4 and UDP port (47808 when omitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceAddress(pub SocketAddrV4);

impl DeviceAddress {
    /// The 6-octet B/IP MAC: the IPv4 address then the port, big-endian.
    pub fn mac(&self) -> [u8; 6] {
        let o = self.0.ip().octets();
        let p = self.0.port().to_be_bytes();
        [o[0], o[1], o[2], o[3], p[0], p[1]]
    }

    pub fn from_mac(mac: &[u8]) -> Option<DeviceAddress> {
        let m: [u8; 6] = mac.try_into().ok()?;
        Some(DeviceAddress(SocketAddrV4::new(
            Ipv4Addr::new(m[0], m[1], m[2], m[3]),
            u16::from_be_bytes([m[4], m[5]]),
        )))
    }
}

impl FromStr for DeviceAddress {
    type Err = BacnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(a) = t.parse::<SocketAddrV4>() {
            return Ok(DeviceAddress(a));
        }
        t.parse::<Ipv4Addr>()
            .map(|ip| DeviceAddress(SocketAddrV4::new(ip, DEFAULT_PORT)))
            .map_err(|_| BacnetError::BadAddress(s.to_string()))
    }
}

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for DeviceAddress {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An object on a device, written `type:instance` in pipelines
/// (`analogInput:0`, `analog-value:3`; the type name as BACnet spells it,
/// case, `-` and `_` ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectRef(pub ObjectIdentifier);

impl ObjectRef {
    pub fn new(kind: ObjectType, instance: u32) -> ObjectRef {
        ObjectRef(ObjectIdentifier::new(kind, instance).expect("instance below 2^22"))
    }
    pub fn kind(&self) -> ObjectType {
        self.0.object_type()
    }
    pub fn instance(&self) -> u32 {
        self.0.instance_number()
    }
}

impl FromStr for ObjectRef {
    type Err = BacnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BacnetError::BadObject(s.to_string());
        let (k, i) = s.trim().split_once([':', ',']).ok_or_else(bad)?;
        let kind: ObjectType = k.trim().parse().map_err(|_| bad())?;
        let instance: u32 = i.trim().parse().map_err(|_| bad())?;
        ObjectIdentifier::new(kind, instance)
            .map(ObjectRef)
            .map_err(|_| bad())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", camel(&self.kind().to_string()), self.instance())
    }
}

impl<'de> Deserialize<'de> for ObjectRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `ANALOG_INPUT` → `analogInput`, the spelling BACnet tools show.
fn camel(upper: &str) -> String {
    let mut out = String::with_capacity(upper.len());
    let mut up = false;
    for c in upper.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.push(c.to_ascii_uppercase());
            up = false;
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// An engineering unit as configured (`degreesCelsius`, `litersPerMinute`;
/// the BACnet name, case, `-` and `_` ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Units(pub EngineeringUnits);

impl FromStr for Units {
    type Err = BacnetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse()
            .map(Units)
            .map_err(|_| BacnetError::BadUnits(s.to_string()))
    }
}

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.name() {
            Some(n) => f.write_str(&camel(n)),
            None => write!(f, "units({})", self.0.to_raw()),
        }
    }
}

impl<'de> Deserialize<'de> for Units {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// BACnet engineering units that twinflow converts, with the unit name
/// `model::units` knows them by.
const UNIT_NAMES: &[(EngineeringUnits, &str)] = &[
    (EngineeringUnits::DEGREES_CELSIUS, "degC"),
    (EngineeringUnits::DEGREES_FAHRENHEIT, "degF"),
    (EngineeringUnits::DEGREES_KELVIN, "K"),
    (EngineeringUnits::PERCENT_RELATIVE_HUMIDITY, "%RH"),
    (EngineeringUnits::PERCENT, "%"),
    (EngineeringUnits::LITERS_PER_MINUTE, "L/min"),
    (EngineeringUnits::LITERS_PER_HOUR, "L/h"),
    (EngineeringUnits::LITERS_PER_SECOND, "L/s"),
    (EngineeringUnits::US_GALLONS_PER_MINUTE, "gpm"),
    (EngineeringUnits::CUBIC_METERS_PER_HOUR, "m3/h"),
    (EngineeringUnits::CUBIC_METERS_PER_SECOND, "m3/s"),
    (EngineeringUnits::CUBIC_FEET_PER_MINUTE, "cfm"),
    (EngineeringUnits::WATTS, "W"),
    (EngineeringUnits::KILOWATTS, "kW"),
    (EngineeringUnits::MEGAWATTS, "MW"),
];

/// The `model::units` name of a BACnet engineering unit, when twinflow knows it.
pub fn unit_name(u: EngineeringUnits) -> Option<&'static str> {
    UNIT_NAMES.iter().find(|(e, _)| *e == u).map(|(_, n)| *n)
}

/// The BACnet engineering unit of a quantity's canonical twinflow unit
/// (°C, L/min, %RH, m³/h, kW): what the simulated device and a default
/// point map use.
pub fn canonical_units(q: Quantity) -> EngineeringUnits {
    let name = q.canonical();
    UNIT_NAMES
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(e, _)| *e)
        .expect("every canonical unit has a BACnet unit")
}

/// Status_Flags (bit 0 inAlarm, 1 fault, 2 overridden, 3 outOfService).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatusFlags {
    pub in_alarm: bool,
    pub fault: bool,
    pub overridden: bool,
    pub out_of_service: bool,
}

impl StatusFlags {
    /// From a BACnet BIT STRING's data octets (bit 0 is the first octet's
    /// most significant bit).
    pub fn from_bits(data: &[u8]) -> StatusFlags {
        let bit = |i: usize| data.first().is_some_and(|b| b & (0x80 >> i) != 0);
        StatusFlags {
            in_alarm: bit(0),
            fault: bit(1),
            overridden: bit(2),
            out_of_service: bit(3),
        }
    }
}

/// Reliability: 0 noFaultDetected; anything else is a fault the device
/// reports (2 overRange, 3 underRange, 12 communicationFailure, ...).
pub fn reliability_name(code: u32) -> String {
    bacnet_types::enums::Reliability::from_raw(code)
        .name()
        .map(camel)
        .unwrap_or_else(|| format!("reliability({code})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_and_without_port() {
        let a: DeviceAddress = "127.0.0.1:47809".parse().unwrap();
        assert_eq!(a.mac(), [127, 0, 0, 1, 0xBA, 0xC1]);
        assert_eq!(DeviceAddress::from_mac(&a.mac()), Some(a));
        let b: DeviceAddress = "10.0.0.5".parse().unwrap();
        assert_eq!(b.0.port(), DEFAULT_PORT);
        assert!("127.0.0.1/32:47809".parse::<DeviceAddress>().is_err());
        assert!("plant-7".parse::<DeviceAddress>().is_err());
    }

    #[test]
    fn objects_parse_in_the_spellings_tools_use() {
        for s in ["analogInput:3", "analog-input:3", "ANALOG_INPUT,3"] {
            let o: ObjectRef = s.parse().unwrap();
            assert_eq!(o.kind(), ObjectType::ANALOG_INPUT);
            assert_eq!(o.instance(), 3);
            assert_eq!(o.to_string(), "analogInput:3");
        }
        assert!("analogInput".parse::<ObjectRef>().is_err());
        assert!("bogusObject:1".parse::<ObjectRef>().is_err());
        assert!("analogInput:x".parse::<ObjectRef>().is_err());
    }

    #[test]
    fn units_map_to_twinflow_units_and_back() {
        let u: Units = "degreesFahrenheit".parse().unwrap();
        assert_eq!(unit_name(u.0), Some("degF"));
        assert_eq!(u.to_string(), "degreesFahrenheit");
        assert_eq!(canonical_units(Quantity::Temperature).to_raw(), 62);
        assert_eq!(canonical_units(Quantity::Humidity).to_raw(), 29);
        assert_eq!(canonical_units(Quantity::WaterFlow).to_raw(), 88);
        assert_eq!(canonical_units(Quantity::AirFlow).to_raw(), 135);
        assert_eq!(canonical_units(Quantity::Power).to_raw(), 48);
        // Every BACnet unit twinflow maps is one model::units converts.
        for (e, name) in UNIT_NAMES {
            let converts = [
                Quantity::Temperature,
                Quantity::WaterFlow,
                Quantity::Humidity,
                Quantity::AirFlow,
                Quantity::Power,
            ]
            .iter()
            .any(|q| crate::model::units::conversion(*q, name).is_ok());
            assert!(converts, "{e} maps to {name}, which nothing converts");
        }
        assert!("furlongs".parse::<Units>().is_err());
    }

    #[test]
    fn status_flags_read_msb_first() {
        let f = StatusFlags::from_bits(&[0b0101_0000]);
        assert!(f.fault && f.out_of_service && !f.in_alarm && !f.overridden);
        assert_eq!(StatusFlags::from_bits(&[]), StatusFlags::default());
        assert_eq!(reliability_name(12), "communicationFailure");
    }
}
