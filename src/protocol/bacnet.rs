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

use std::time::Duration;

use bacnet_client::client::BACnetClient;
use bacnet_transport::bip::BipTransport;
use bacnet_types::enums::{EngineeringUnits, ObjectType, PropertyIdentifier};
use bacnet_types::primitives::{ObjectIdentifier, PropertyValue};
use serde::{Deserialize, Deserializer};

use crate::model::units::Quantity;

/// The standard BACnet/IP UDP port (0xBAC0).
pub const DEFAULT_PORT: u16 = 47808;

/// The default object map (DESIGN.md): the six inputs are analogInput
/// 0..5, the measured outputs analogInput 6..8, and the predictions
/// commandable analogValue 0..3. Every point is configurable per device.
pub const INPUT_POINTS: [(&str, u32); 6] = [
    ("UCWIT", 0),
    ("UCAIT", 1),
    ("UCWF", 2),
    ("UCAIH", 3),
    ("AMBT", 4),
    ("UCTSP", 5),
];
/// Measured outputs, analogInput instances.
pub const MEASURED_POINTS: [(&str, u32); 3] = [("UCAOT", 6), ("UCWOT", 7), ("UCAF", 8)];
/// Predictions, commandable analogValue instances.
pub const PREDICTION_POINTS: [(&str, u32); 4] =
    [("UCAOT", 0), ("UCWOT", 1), ("UCAF", 2), ("Q_thermal", 3)];

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

/// The conversion from a BACnet unit to a quantity's canonical unit, when
/// the unit is one of that quantity's.
pub fn conversion(q: Quantity, u: Units) -> Option<crate::model::units::Conversion> {
    unit_name(u.0).and_then(|n| crate::model::units::conversion(q, n).ok())
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

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// A device as the client addresses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub id: u32,
    pub addr: DeviceAddress,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "device {} at {}", self.id, self.addr)
    }
}

/// One property to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PropRead {
    pub object: ObjectRef,
    pub property: PropertyIdentifier,
}

impl PropRead {
    pub fn new(object: ObjectRef, property: PropertyIdentifier) -> PropRead {
        PropRead { object, property }
    }
}

/// How one property read went: the value, or the device's error for it
/// (`unknown-property`, ...). A device that does not answer at all is a
/// [`BacnetError`] for the whole read instead.
pub type PropResult = Result<PropertyValue, String>;

/// Whether to read with ReadPropertyMultiple.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpmMode {
    /// ReadPropertyMultiple, falling back to ReadProperty for good when the
    /// device rejects it.
    #[default]
    Auto,
    /// ReadPropertyMultiple only; a rejection is an error.
    Always,
    /// ReadProperty, one property per request.
    Never,
}

/// What the client has learned about one device: whether it takes
/// ReadPropertyMultiple and how large an answer it may send.
#[derive(Debug, Clone)]
pub struct DeviceLink {
    pub device: Device,
    pub rpm: RpmMode,
    /// Whether ReadPropertyMultiple is (still) used.
    use_rpm: bool,
    /// The device's Max_APDU_Length_Accepted, once read (or configured).
    pub max_apdu: Option<u16>,
    /// Properties per ReadPropertyMultiple request; lowered when the device
    /// aborts an answer as too long.
    props_per_request: usize,
}

/// Response bytes budgeted per object and per property when a
/// ReadPropertyMultiple is split to fit the device's max APDU: object
/// identifier and list tags; property identifier, value tags and a value of
/// up to 5 octets (REAL, BIT STRING, ENUMERATED), with margin.
const RPM_OBJECT_BYTES: usize = 8;
const RPM_PROPERTY_BYTES: usize = 12;
const RPM_HEADER_BYTES: usize = 4;

impl DeviceLink {
    pub fn new(device: Device, rpm: RpmMode, max_apdu: Option<u16>) -> DeviceLink {
        DeviceLink {
            device,
            rpm,
            use_rpm: rpm != RpmMode::Never,
            max_apdu,
            props_per_request: usize::MAX,
        }
    }

    /// Whether reads currently go out as ReadPropertyMultiple.
    pub fn uses_rpm(&self) -> bool {
        self.use_rpm
    }

    /// Splits `reads` into ReadPropertyMultiple requests whose answers fit
    /// the device's max APDU (480 octets, the smallest B/IP devices take,
    /// until it is known).
    fn chunks(&self, reads: &[PropRead]) -> Vec<std::ops::Range<usize>> {
        let budget = usize::from(self.max_apdu.unwrap_or(480)).saturating_sub(RPM_HEADER_BYTES);
        let mut out = Vec::new();
        let mut start = 0;
        let mut used = 0;
        for (i, r) in reads.iter().enumerate() {
            let new_object = i == start || reads[i - 1].object != r.object;
            let cost = RPM_PROPERTY_BYTES + if new_object { RPM_OBJECT_BYTES } else { 0 };
            if i > start && (used + cost > budget || i - start >= self.props_per_request) {
                out.push(start..i);
                start = i;
                used = RPM_OBJECT_BYTES + RPM_PROPERTY_BYTES;
            } else {
                used += cost;
            }
        }
        if start < reads.len() {
            out.push(start..reads.len());
        }
        out
    }
}

/// A BACnet/IP client: one UDP port, any number of devices.
pub struct Client {
    inner: BACnetClient<BipTransport>,
    /// Outer bound on one request, retries included.
    deadline: Duration,
}

/// How a request failed, for deciding what to do next.
enum Failure {
    /// No answer within the deadline.
    Timeout,
    /// The device refused the service itself (Reject, or an Error of
    /// class `services`): worth falling back.
    Refused(String),
    /// The device aborted because the answer would be too long.
    TooLong(String),
    /// Anything else.
    Other(String),
}

fn classify(e: bacnet_types::error::Error) -> Failure {
    use bacnet_types::enums::{AbortReason, ErrorClass};
    use bacnet_types::error::{Error as E, RemoteError as R};
    match &e {
        E::Timeout(_) => Failure::Timeout,
        // The client's own transaction timer gave up (Abort tsm-timeout).
        E::Remote(R::Abort { reason }) if *reason == AbortReason::TSM_TIMEOUT => Failure::Timeout,
        E::Remote(R::Reject { .. }) => Failure::Refused(e.to_string()),
        E::Remote(R::Error { class, .. }) if *class == ErrorClass::SERVICES => {
            Failure::Refused(e.to_string())
        }
        E::Remote(R::Abort { reason })
            if *reason == AbortReason::SEGMENTATION_NOT_SUPPORTED
                || *reason == AbortReason::BUFFER_OVERFLOW
                || *reason == AbortReason::APDU_TOO_LONG =>
        {
            Failure::TooLong(e.to_string())
        }
        _ => Failure::Other(e.to_string()),
    }
}

impl Client {
    /// Opens the client's UDP port (`0.0.0.0:0` for any interface and an
    /// ephemeral port). `apdu_timeout` and `retries` apply to each request.
    pub async fn bind(
        local: SocketAddrV4,
        apdu_timeout: Duration,
        retries: u8,
    ) -> Result<Client, BacnetError> {
        let inner = BACnetClient::bip_builder()
            .interface(*local.ip())
            .port(local.port())
            .apdu_timeout_ms(apdu_timeout.as_millis().max(1) as u64)
            .apdu_retries(retries)
            .build()
            .await
            .map_err(|e| BacnetError::Bind {
                addr: local.to_string(),
                why: e.to_string(),
            })?;
        Ok(Client {
            inner,
            deadline: apdu_timeout * (u32::from(retries) + 1) + Duration::from_millis(250),
        })
    }

    /// The local UDP address, once bound.
    pub fn local_addr(&self) -> Option<DeviceAddress> {
        DeviceAddress::from_mac(self.inner.local_mac())
    }

    /// Closes the port.
    pub async fn stop(&mut self) {
        let _ = self.inner.stop().await;
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, bacnet_types::error::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.deadline, fut).await {
            Err(_) => Err(Failure::Timeout),
            Ok(r) => r.map_err(classify),
        }
    }

    fn error(dev: &Device, what: &str, f: Failure) -> BacnetError {
        match f {
            Failure::Timeout => BacnetError::Timeout {
                device: dev.id,
                addr: dev.addr,
                what: what.to_string(),
            },
            Failure::Refused(why) | Failure::TooLong(why) | Failure::Other(why) => {
                BacnetError::Request {
                    device: dev.id,
                    addr: dev.addr,
                    what: what.to_string(),
                    why,
                }
            }
        }
    }

    /// Reads one property with ReadProperty.
    pub async fn read_property(
        &self,
        dev: &Device,
        read: PropRead,
    ) -> Result<PropResult, BacnetError> {
        match self.read_one(dev, read).await {
            Ok(v) => Ok(Ok(v)),
            Err(Failure::Timeout) => Err(Self::error(dev, "ReadProperty", Failure::Timeout)),
            Err(Failure::Refused(w) | Failure::TooLong(w) | Failure::Other(w)) => Ok(Err(w)),
        }
    }

    async fn read_one(&self, dev: &Device, read: PropRead) -> Result<PropertyValue, Failure> {
        let ack = self
            .timed(
                self.inner
                    .read_property(&dev.addr.mac(), read.object.0, read.property, None),
            )
            .await?;
        decode_value(&ack.property_value).map_err(Failure::Other)
    }

    /// Reads the device's Max_APDU_Length_Accepted into the link, when not
    /// known yet. A device that does not answer is an error.
    pub async fn learn_max_apdu(&self, link: &mut DeviceLink) -> Result<u16, BacnetError> {
        if let Some(m) = link.max_apdu {
            return Ok(m);
        }
        let dev = link.device;
        let read = PropRead::new(
            ObjectRef::new(ObjectType::DEVICE, dev.id),
            PropertyIdentifier::MAX_APDU_LENGTH_ACCEPTED,
        );
        let m = match self.read_property(&dev, read).await? {
            Ok(v) => as_f64(&v).map_or(480, |m| m.clamp(50.0, 1476.0) as u16),
            // An answer without it: assume the smallest B/IP size.
            Err(why) => {
                tracing::warn!(%dev, %why, "could not read max-apdu-length-accepted; assuming 480");
                480
            }
        };
        link.max_apdu = Some(m);
        Ok(m)
    }

    /// Reads `reads` from the link's device: ReadPropertyMultiple split to
    /// fit its max APDU, or ReadProperty one by one when the device does
    /// not take RPM (learned once, then remembered). Results come back in
    /// `reads` order. A device that does not answer is an error for the
    /// whole read.
    pub async fn read(
        &self,
        link: &mut DeviceLink,
        reads: &[PropRead],
    ) -> Result<Vec<PropResult>, BacnetError> {
        let dev = link.device;
        if link.use_rpm {
            let mut out = Vec::with_capacity(reads.len());
            let mut i = 0;
            'chunks: while i < reads.len() {
                let chunk = link.chunks(&reads[i..]);
                let r = chunk[0].clone();
                let part = &reads[i + r.start..i + r.end];
                match self.rpm(&dev, part).await {
                    Ok(v) => {
                        out.extend(v);
                        i += r.end;
                    }
                    Err(Failure::TooLong(why)) if part.len() > 1 => {
                        link.props_per_request = (part.len() / 2).max(1);
                        tracing::info!(%dev, %why, per_request = link.props_per_request,
                            "answer too long; splitting ReadPropertyMultiple further");
                        continue 'chunks;
                    }
                    Err(Failure::Refused(why) | Failure::TooLong(why))
                        if link.rpm == RpmMode::Auto =>
                    {
                        tracing::warn!(%dev, %why,
                            "device refused ReadPropertyMultiple; using ReadProperty from now on");
                        link.use_rpm = false;
                        break 'chunks;
                    }
                    Err(f) => return Err(Self::error(&dev, "ReadPropertyMultiple", f)),
                }
            }
            if link.use_rpm {
                return Ok(out);
            }
        }
        let mut out = Vec::with_capacity(reads.len());
        for r in reads {
            out.push(self.read_property(&dev, *r).await?);
        }
        Ok(out)
    }

    async fn rpm(&self, dev: &Device, reads: &[PropRead]) -> Result<Vec<PropResult>, Failure> {
        use bacnet_types::constructed::{PropertyReference, ReadAccessSpecification};
        let mut specs: Vec<ReadAccessSpecification> = Vec::new();
        for r in reads {
            let pref = PropertyReference {
                property_identifier: r.property,
                property_array_index: None,
            };
            match specs.last_mut() {
                Some(s) if s.object_identifier == r.object.0 => {
                    s.list_of_property_references.push(pref)
                }
                _ => specs.push(ReadAccessSpecification {
                    object_identifier: r.object.0,
                    list_of_property_references: vec![pref],
                }),
            }
        }
        let ack = self
            .timed(self.inner.read_property_multiple(&dev.addr.mac(), specs))
            .await?;
        let mut found: std::collections::HashMap<PropRead, PropResult> = Default::default();
        for obj in ack.list_of_read_access_results {
            for e in obj.list_of_results {
                let key = PropRead::new(ObjectRef(obj.object_identifier), e.property_identifier);
                let v = match (e.property_value, e.error) {
                    (Some(bytes), _) => decode_value(&bytes),
                    (None, Some((class, code))) => Err(format!("{class}: {code}")),
                    (None, None) => Err("empty result".to_string()),
                };
                found.insert(key, v);
            }
        }
        Ok(reads
            .iter()
            .map(|r| {
                found
                    .remove(r)
                    .unwrap_or_else(|| Err("missing from the answer".to_string()))
            })
            .collect())
    }

    /// Writes Present_Value at `priority`: a REAL, or Null (`None`) to
    /// relinquish the slot.
    pub async fn write_present_value(
        &self,
        dev: &Device,
        object: ObjectRef,
        value: Option<f32>,
        priority: u8,
    ) -> Result<(), BacnetError> {
        let v = value.map_or(PropertyValue::Null, PropertyValue::Real);
        let mut buf = bytes::BytesMut::new();
        bacnet_encoding::primitives::encode_property_value(&mut buf, &v).map_err(|e| {
            BacnetError::Request {
                device: dev.id,
                addr: dev.addr,
                what: format!("WriteProperty {object}"),
                why: e.to_string(),
            }
        })?;
        self.timed(self.inner.write_property(
            &dev.addr.mac(),
            object.0,
            PropertyIdentifier::PRESENT_VALUE,
            None,
            buf.to_vec(),
            Some(priority),
        ))
        .await
        .map_err(|f| Self::error(dev, &format!("WriteProperty {object}"), f))
    }

    /// Reads an object's Priority_Array: 16 slots, each empty or a number.
    pub async fn read_priority_array(
        &self,
        dev: &Device,
        object: ObjectRef,
    ) -> Result<Vec<Option<f64>>, BacnetError> {
        let what = format!("ReadProperty {object} priority-array");
        let ack = self
            .timed(self.inner.read_property(
                &dev.addr.mac(),
                object.0,
                PropertyIdentifier::PRIORITY_ARRAY,
                None,
            ))
            .await
            .map_err(|f| Self::error(dev, &what, f))?;
        let mut slots = Vec::with_capacity(16);
        let mut at = 0;
        let data = &ack.property_value;
        while at < data.len() {
            let (v, next) = bacnet_encoding::primitives::decode_application_value(data, at)
                .map_err(|e| BacnetError::Request {
                    device: dev.id,
                    addr: dev.addr,
                    what: what.clone(),
                    why: e.to_string(),
                })?;
            slots.push(as_f64(&v));
            at = next;
        }
        Ok(slots)
    }

    /// Subscribes, unconfirmed, to COV notifications of `object` for
    /// `lifetime` (which must be renewed before it ends).
    pub async fn subscribe_cov(
        &self,
        dev: &Device,
        object: ObjectRef,
        process_id: u32,
        lifetime: Duration,
    ) -> Result<(), BacnetError> {
        let secs = lifetime.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
        self.timed(self.inner.subscribe_cov(
            &dev.addr.mac(),
            process_id,
            object.0,
            false,
            Some(secs),
        ))
        .await
        .map_err(|f| Self::error(dev, &format!("SubscribeCOV {object}"), f))
    }

    /// Every COV notification the client receives.
    pub fn cov_notifications(
        &self,
    ) -> tokio::sync::broadcast::Receiver<bacnet_client::client::ReceivedCOVNotification> {
        self.inner.cov_notifications()
    }
}

/// Decodes one application-tagged value.
pub fn decode_value(bytes: &[u8]) -> Result<PropertyValue, String> {
    bacnet_encoding::primitives::decode_application_value(bytes, 0)
        .map(|(v, _)| v)
        .map_err(|e| format!("undecodable value: {e}"))
}

/// A numeric value as f64 (REAL, DOUBLE, Unsigned, Signed, ENUMERATED).
pub fn as_f64(v: &PropertyValue) -> Option<f64> {
    match v {
        PropertyValue::Real(x) => Some(f64::from(*x)),
        PropertyValue::Double(x) => Some(*x),
        PropertyValue::Unsigned(x) => Some(*x as f64),
        PropertyValue::Signed(x) => Some(f64::from(*x)),
        PropertyValue::Enumerated(x) => Some(f64::from(*x)),
        _ => None,
    }
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
