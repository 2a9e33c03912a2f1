//! The simulated unit cooler as a BACnet/IP device: what `twinflow simulate
//! --bacnet` and the `simulator` source's `bacnet:` option serve, so the
//! poller, the writer and any SCADA have a controller to talk to without
//! hardware.
//!
//! Objects (the default object map every BACnet component shares, from
//! [`INPUT_OBJECTS`], [`MEASURED_OBJECTS`] and [`PREDICTION_OBJECTS`]):
//! - analogInput 0..5: the six inputs UCWIT, UCAIT, UCWF, UCAIH, AMBT, UCTSP;
//! - analogInput 6..8: the measured outputs UCAOT, UCWOT, UCAF;
//! - analogValue 0..3: commandable prediction points UCAOT, UCWOT, UCAF,
//!   Q_thermal (named `UCAOT_pred`, ...), 16-slot priority array,
//!   relinquish default 0, for a writer to command;
//! - the device object (vendor twinflow, model [`MODEL_NAME`], max APDU
//!   1476, segmentation both ways).
//!
//! Every point's units are the feature's canonical twinflow unit, and each
//! has a COV increment near its sensor's noise, so a COV subscriber hears
//! real changes rather than every frame.
//!
//! A reading the simulated sensor could not give (NaN from a `sensor_fault`
//! scenario, or a measured output the plant could not produce) is not
//! published as a number: the point keeps its last good Present_Value and
//! goes to Reliability unreliableOther, so Status_Flags shows fault; the
//! next good reading clears both. Until its first frame every analogInput
//! is in fault that way (it has no reading yet). Values are written through
//! the server's local-write API, so COV subscribers are notified of value
//! and status changes alike.
//!
//! The device never broadcasts: it sends no I-Am at startup and answers
//! Who-Is with a directed I-Am (the server's default).

use std::net::{Ipv4Addr, SocketAddrV4};

use bacnet_objects::analog::{AnalogInputObject, AnalogValueObject};
use bacnet_objects::device::{DeviceConfig, DeviceObject, EXECUTED_SERVICES};
use bacnet_objects::device_identity::DeviceIdentity;
use bacnet_objects::traits::BACnetObject;
use bacnet_server::server::BACnetServer;
use bacnet_transport::bip::BipTransport;
use bacnet_types::enums::{
    EngineeringUnits, ObjectType, PropertyIdentifier, Reliability, Segmentation,
};
use bacnet_types::primitives::{ObjectIdentifier, PropertyValue};

use super::bacnet::{canonical_units, DeviceAddress, ObjectRef, StatusFlags};
use crate::model::units::Quantity;
use crate::pipeline::message::SensorFrame;

/// The default object map lives in [`super::bacnet`] (the poller and the
/// writer use it too); the device serves exactly that map.
pub use super::bacnet::{
    INPUT_POINTS as INPUT_OBJECTS, MEASURED_POINTS as MEASURED_OBJECTS,
    PREDICTION_POINTS as PREDICTION_OBJECTS,
};

/// A prediction point's object name is the field's name with this suffix
/// (`UCAOT_pred`), so it never reads as the measurement of the same name.
pub const PREDICTION_SUFFIX: &str = "_pred";

/// The device object's Model_Name.
pub const MODEL_NAME: &str = "twinflow simulated unit cooler";

/// The device object's Vendor_Name.
pub const VENDOR_NAME: &str = "twinflow";

/// Vendor_Identifier. twinflow has no ASHRAE vendor id; 999 is the value
/// BACnet test tools (bacpypes3 among them) conventionally use.
pub const VENDOR_ID: u16 = 999;

/// Max_APDU_Length_Accepted: the B/IP maximum.
pub const MAX_APDU: u16 = 1476;

/// What a point in fault reports as its Reliability: the sensor gave no
/// usable value, for no reason BACnet has a better name for.
pub const FAULT_RELIABILITY: Reliability = Reliability::UNRELIABLE_OTHER;

/// The analogInput of input feature `name`, in the default object map.
pub fn input_object(name: &str) -> Option<ObjectRef> {
    find(&INPUT_OBJECTS, name).map(|i| ObjectRef::new(ObjectType::ANALOG_INPUT, i))
}

/// The analogInput of measured output `name`, in the default object map.
pub fn measured_object(name: &str) -> Option<ObjectRef> {
    find(&MEASURED_OBJECTS, name).map(|i| ObjectRef::new(ObjectType::ANALOG_INPUT, i))
}

/// The analogValue of prediction field `name`, in the default object map.
pub fn prediction_object(name: &str) -> Option<ObjectRef> {
    find(&PREDICTION_OBJECTS, name).map(|i| ObjectRef::new(ObjectType::ANALOG_VALUE, i))
}

fn find(map: &[(&str, u32)], name: &str) -> Option<u32> {
    map.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
}

/// Errors of a simulated device; each names the device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("simulated BACnet device {device}: cannot build its objects: {why}")]
    Objects { device: u32, why: String },
    #[error("simulated BACnet device {device}: cannot serve on {addr}: {why}")]
    Bind {
        device: u32,
        addr: SocketAddrV4,
        why: String,
    },
    #[error("simulated BACnet device {device} on {addr}: {what}: {why}")]
    Local {
        device: u32,
        addr: DeviceAddress,
        what: String,
        why: String,
    },
    #[error("simulated BACnet device {device}: no point {object}")]
    UnknownPoint { device: u32, object: ObjectRef },
}

/// One point as the device serves it now.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PointState {
    /// `analogInput:1`.
    pub object: String,
    /// Its Object_Name (`UCAIT`).
    pub name: String,
    pub present_value: f32,
    pub status_flags: StatusFlags,
    /// Raw BACnet Reliability (0 = noFaultDetected).
    pub reliability: u32,
}

/// A prediction analogValue as the device serves it now: what a SCADA sees
/// after the writer's commands.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PredictionPoint {
    /// The prediction field (`UCAOT`, ..., `Q_thermal`).
    pub field: &'static str,
    /// `analogValue:0`.
    pub object: String,
    pub present_value: f32,
    /// Slots 1..=16 (index 0 is priority 1); `None` = relinquished.
    pub priority_array: [Option<f32>; 16],
}

/// The nine analogInputs in the order [`SimulatedDevice::update`] fills them.
fn ai_points() -> impl Iterator<Item = (&'static str, u32)> {
    INPUT_OBJECTS.into_iter().chain(MEASURED_OBJECTS)
}

/// COV_Increment per quantity: about one standard deviation of the
/// simulator's default sensor noise, so noise alone notifies now and then
/// while a real change always does.
fn cov_increment(q: Quantity) -> f32 {
    match q {
        Quantity::Temperature => 0.05,
        Quantity::WaterFlow => 0.1,
        Quantity::Humidity => 0.5,
        Quantity::AirFlow => 10.0,
        Quantity::Power => 0.05,
    }
}

fn description(feature: &str) -> &'static str {
    match feature {
        "UCWIT" => "water inlet temperature",
        "UCAIT" => "air inlet (return air) temperature",
        "UCWF" => "water flow",
        "UCAIH" => "air inlet relative humidity",
        "AMBT" => "ambient (outdoor) temperature",
        "UCTSP" => "room temperature setpoint",
        "UCAOT" => "air outlet (supply air) temperature",
        "UCWOT" => "water outlet temperature",
        "UCAF" => "air flow",
        "Q_thermal" => "thermal power",
        _ => "",
    }
}

fn units_of(feature: &str) -> EngineeringUnits {
    canonical_units(Quantity::of_feature(feature).expect("a known feature"))
}

fn build_objects(
    identity: &DeviceIdentity,
) -> Result<bacnet_objects::database::ObjectDatabase, bacnet_types::error::Error> {
    let cov = |f: &str| {
        PropertyValue::Real(cov_increment(
            Quantity::of_feature(f).expect("a known feature"),
        ))
    };
    let mut extra: Vec<Box<dyn BACnetObject>> = Vec::new();
    for (feature, instance) in ai_points() {
        let mut ai = AnalogInputObject::new(instance, feature, units_of(feature))?;
        ai.set_description(description(feature));
        ai.write_property(PropertyIdentifier::COV_INCREMENT, None, cov(feature), None)?;
        // No reading yet: a client that reads before the first frame sees a
        // fault, not a plausible-looking 0.
        ai.set_reliability_internal(FAULT_RELIABILITY)?;
        extra.push(Box::new(ai));
    }
    for (field, instance) in PREDICTION_OBJECTS {
        let mut av = AnalogValueObject::new(
            instance,
            format!("{field}{PREDICTION_SUFFIX}"),
            units_of(field),
        )?;
        av.set_description(format!("predicted {}", description(field)));
        av.set_relinquish_default(0.0)?;
        av.write_property(PropertyIdentifier::COV_INCREMENT, None, cov(field), None)?;
        extra.push(Box::new(av));
    }

    let mut device = DeviceObject::new(DeviceConfig {
        identity: identity.clone(),
        vendor_name: VENDOR_NAME.into(),
        model_name: MODEL_NAME.into(),
        firmware_revision: env!("CARGO_PKG_VERSION").into(),
        application_software_version: env!("CARGO_PKG_VERSION").into(),
        ..DeviceConfig::default()
    })?;
    device.set_services_supported(identity.services());
    device.set_description("twinflow's physics unit cooler, served as a BACnet/IP controller");
    let mut oids = vec![device.object_identifier()];
    oids.extend(extra.iter().map(|o| o.object_identifier()));
    device.set_object_list(oids);

    let mut db = bacnet_objects::database::ObjectDatabase::new();
    db.add(Box::new(device))?;
    for o in extra {
        db.add(o)?;
    }
    Ok(db)
}

/// A running simulated unit-cooler device. Stop it with [`stop`](Self::stop);
/// dropping it aborts the server's tasks, which also frees the port.
pub struct SimulatedDevice {
    server: BACnetServer<BipTransport>,
    device_id: u32,
    addr: DeviceAddress,
    /// Per analogInput ([`ai_points`] order): whether it is in fault now
    /// (every one is until the first frame).
    faulted: [bool; 9],
    /// Per analogInput: the Present_Value it serves (the last good reading).
    shown: [f32; 9],
}

impl SimulatedDevice {
    /// Starts device `device_id` named `name`, serving BACnet/IP on `listen`.
    ///
    /// With an explicit address and port the socket binds exactly that
    /// address (so `127.0.0.1` is reachable from this host only). Port 0
    /// asks the OS for a free port ([`address`](Self::address) tells which);
    /// the socket then binds the wildcard address but, as with `0.0.0.0`,
    /// the device answers only unicast sent to `listen`'s address.
    pub async fn start(
        listen: SocketAddrV4,
        device_id: u32,
        name: &str,
    ) -> Result<SimulatedDevice, DeviceError> {
        let objects = |e: bacnet_types::error::Error| DeviceError::Objects {
            device: device_id,
            why: e.to_string(),
        };
        let identity = DeviceIdentity::new(device_id, VENDOR_ID)
            .and_then(|i| i.with_max_apdu(MAX_APDU))
            .map_err(objects)?
            .with_name(name)
            .with_segmentation(Segmentation::BOTH)
            .with_services(EXECUTED_SERVICES);
        let db = build_objects(&identity).map_err(objects)?;

        let ip = *listen.ip();
        let explicit = !ip.is_unspecified() && listen.port() != 0;
        // Nothing here ever broadcasts; the broadcast address only tells the
        // transport which arriving datagrams are broadcasts (a Who-Is from a
        // SCADA's discovery). A loopback interface names itself.
        let broadcast = if ip.is_loopback() {
            ip
        } else {
            Ipv4Addr::BROADCAST
        };
        let server = BACnetServer::bip_builder()
            .interface(ip)
            .port(listen.port())
            .broadcast_address(broadcast)
            .share_port_by_address(explicit)
            .device(identity)
            .database(db)
            .build()
            .await
            .map_err(|e| DeviceError::Bind {
                device: device_id,
                addr: listen,
                why: e.to_string(),
            })?;
        let addr = DeviceAddress::from_mac(server.local_mac())
            .map(|a| {
                // The wildcard socket's MAC names the interface it answers for.
                DeviceAddress(SocketAddrV4::new(
                    if ip.is_unspecified() { *a.0.ip() } else { ip },
                    a.0.port(),
                ))
            })
            .unwrap_or(DeviceAddress(listen));
        Ok(SimulatedDevice {
            server,
            device_id,
            addr,
            faulted: [true; 9],
            shown: [0.0; 9],
        })
    }

    /// The device instance.
    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// Where the device answers (the bound port when started on port 0).
    pub fn address(&self) -> DeviceAddress {
        self.addr
    }

    fn local_err(&self, what: impl Into<String>, e: impl ToString) -> DeviceError {
        DeviceError::Local {
            device: self.device_id,
            addr: self.addr,
            what: what.into(),
            why: e.to_string(),
        }
    }

    /// Shows a frame's readings on the analogInputs. A NaN or missing
    /// reading puts its point in fault (its Present_Value stays the last
    /// good one); a good reading clears the fault. A point a client has
    /// put out of service is left alone, as a controller leaves a point an
    /// operator overrides.
    pub async fn update(&mut self, frame: &SensorFrame) -> Result<(), DeviceError> {
        let x = frame.inputs();
        let readings: [Option<f64>; 9] = [
            Some(x[0]),
            Some(x[1]),
            Some(x[2]),
            Some(x[3]),
            Some(x[4]),
            Some(x[5]),
            frame.ucaot,
            frame.ucwot,
            frame.ucaf,
        ];
        let good: Vec<Option<f32>> = readings
            .iter()
            .map(|r| r.map(|v| v as f32).filter(|v| v.is_finite()))
            .collect();

        // Ordering, so that a client never sees a value the sensor did not
        // give without a fault beside it:
        // - a point going into fault gets its Reliability first, then its
        //   (held) value is written, whose COV pass carries the new flags;
        // - a point recovering gets its good value first, still flagged,
        //   then its fault is cleared and the value written again, so COV
        //   subscribers hear of the flags' change too.
        // Reliability is set under the database lock; the value writes take
        // that lock themselves, so it is released before them.
        let mut writable = [true; 9];
        let mut recovering = [false; 9];
        {
            let mut db = self.server.database().write().await;
            for (i, (feature, instance)) in ai_points().enumerate() {
                let obj = point_mut(&mut db, self.device_id, instance)?;
                let oos = matches!(
                    obj.read_property(PropertyIdentifier::OUT_OF_SERVICE, None),
                    Ok(PropertyValue::Boolean(true))
                );
                if oos {
                    writable[i] = false;
                    continue;
                }
                let fault = good[i].is_none();
                if fault && !self.faulted[i] {
                    obj.set_reliability_internal(FAULT_RELIABILITY)
                        .map_err(|e| {
                            self.local_err(format!("set the reliability of {feature}"), e)
                        })?;
                    self.faulted[i] = true;
                }
                recovering[i] = !fault && self.faulted[i];
            }
        }
        self.write_values(&good, &writable).await?;
        if recovering.contains(&true) {
            {
                let mut db = self.server.database().write().await;
                for (i, (feature, instance)) in ai_points().enumerate() {
                    if !recovering[i] {
                        continue;
                    }
                    point_mut(&mut db, self.device_id, instance)?
                        .set_reliability_internal(Reliability::NO_FAULT_DETECTED)
                        .map_err(|e| {
                            self.local_err(format!("set the reliability of {feature}"), e)
                        })?;
                    self.faulted[i] = false;
                }
            }
            self.write_values(&good, &recovering).await?;
        }
        Ok(())
    }

    /// Writes the analogInputs marked in `which`: the good reading, else
    /// the value shown so far.
    async fn write_values(
        &mut self,
        good: &[Option<f32>],
        which: &[bool; 9],
    ) -> Result<(), DeviceError> {
        for (i, (feature, instance)) in ai_points().enumerate() {
            if !which[i] {
                continue;
            }
            let v = good[i].unwrap_or(self.shown[i]);
            self.server
                .set_present_value_local(&ai_oid(instance), PropertyValue::Real(v))
                .await
                .map_err(|e| self.local_err(format!("update {feature}"), e))?;
            self.shown[i] = v;
        }
        Ok(())
    }

    async fn read(
        &self,
        oid: &ObjectIdentifier,
        prop: PropertyIdentifier,
    ) -> Result<PropertyValue, DeviceError> {
        self.server
            .read_local(oid, prop, None)
            .await
            .map_err(|e| self.local_err(format!("read {} {prop:?}", ObjectRef(*oid)), e))
    }

    /// One point (analogInput or analogValue) as the device serves it.
    pub async fn point(&self, object: ObjectRef) -> Result<PointState, DeviceError> {
        let oid = object.0;
        if self.server.database().read().await.get(&oid).is_none() {
            return Err(DeviceError::UnknownPoint {
                device: self.device_id,
                object,
            });
        }
        let present_value = match self.read(&oid, PropertyIdentifier::PRESENT_VALUE).await? {
            PropertyValue::Real(v) => v,
            other => return Err(self.local_err("read present-value", format!("{other:?}"))),
        };
        let status_flags = match self.read(&oid, PropertyIdentifier::STATUS_FLAGS).await? {
            PropertyValue::BitString { data, .. } => StatusFlags::from_bits(&data),
            other => return Err(self.local_err("read status-flags", format!("{other:?}"))),
        };
        let reliability = match self.read(&oid, PropertyIdentifier::RELIABILITY).await? {
            PropertyValue::Enumerated(r) => r,
            other => return Err(self.local_err("read reliability", format!("{other:?}"))),
        };
        let name = match self.read(&oid, PropertyIdentifier::OBJECT_NAME).await? {
            PropertyValue::CharacterString(s) => s,
            other => format!("{other:?}"),
        };
        Ok(PointState {
            object: object.to_string(),
            name,
            present_value,
            status_flags,
            reliability,
        })
    }

    /// The prediction analogValues: present values and priority arrays, in
    /// [`PREDICTION_OBJECTS`] order.
    pub async fn predictions(&self) -> Result<Vec<PredictionPoint>, DeviceError> {
        let mut out = Vec::with_capacity(PREDICTION_OBJECTS.len());
        for (field, instance) in PREDICTION_OBJECTS {
            let object = ObjectRef::new(ObjectType::ANALOG_VALUE, instance);
            let oid = object.0;
            let present_value = match self.read(&oid, PropertyIdentifier::PRESENT_VALUE).await? {
                PropertyValue::Real(v) => v,
                other => return Err(self.local_err("read present-value", format!("{other:?}"))),
            };
            let slots = match self.read(&oid, PropertyIdentifier::PRIORITY_ARRAY).await? {
                PropertyValue::List(items) => items,
                other => return Err(self.local_err("read priority-array", format!("{other:?}"))),
            };
            let mut priority_array = [None; 16];
            for (slot, v) in priority_array.iter_mut().zip(&slots) {
                *slot = match v {
                    PropertyValue::Real(x) => Some(*x),
                    _ => None,
                };
            }
            out.push(PredictionPoint {
                field,
                object: object.to_string(),
                present_value,
                priority_array,
            });
        }
        Ok(out)
    }

    /// Stops serving and frees the port.
    pub async fn stop(mut self) -> Result<(), DeviceError> {
        self.server
            .stop()
            .await
            .map_err(|e| self.local_err("stop", e))
    }
}

fn point_mut<'a>(
    db: &'a mut bacnet_objects::database::ObjectDatabase,
    device: u32,
    instance: u32,
) -> Result<&'a mut (dyn BACnetObject + 'a), DeviceError> {
    let oid = ai_oid(instance);
    db.get_mut(&oid).ok_or(DeviceError::UnknownPoint {
        device,
        object: ObjectRef(oid),
    })
}

fn ai_oid(instance: u32) -> ObjectIdentifier {
    ObjectIdentifier::new(ObjectType::ANALOG_INPUT, instance).expect("a small instance")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bacnet_client::client::BACnetClient;
    use bacnet_encoding::primitives::{decode_application_value, encode_property_value};
    use bacnet_types::constructed::{PropertyReference, ReadAccessSpecification};
    use bytes::BytesMut;
    use std::time::Duration;

    use crate::sources::simulator::{self, NoiseConfig, SimulatorConfig};

    const DEVICE: u32 = 4711;

    fn frames(n: usize) -> Vec<SensorFrame> {
        simulator::generate(
            &SimulatorConfig {
                start: Some("2026-06-01T12:00:00Z".parse().unwrap()),
                realtime: false,
                noise: NoiseConfig::default(),
                ..SimulatorConfig::default()
            },
            n,
        )
    }

    async fn start() -> SimulatedDevice {
        SimulatedDevice::start(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), DEVICE, "uc-test")
            .await
            .unwrap()
    }

    async fn client() -> BACnetClient<BipTransport> {
        BACnetClient::bip_builder()
            .interface(Ipv4Addr::LOCALHOST)
            .port(0)
            .apdu_timeout_ms(5000)
            .build()
            .await
            .unwrap()
    }

    fn values(bytes: &[u8]) -> Vec<PropertyValue> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (v, next) = decode_application_value(bytes, at).unwrap();
            out.push(v);
            at = next;
        }
        out
    }

    async fn read(
        c: &BACnetClient<BipTransport>,
        d: &SimulatedDevice,
        oid: ObjectIdentifier,
        prop: PropertyIdentifier,
    ) -> Vec<PropertyValue> {
        let ack = tokio::time::timeout(
            Duration::from_secs(20),
            c.read_property(&d.address().mac(), oid, prop, None),
        )
        .await
        .expect("the device answers")
        .unwrap();
        values(&ack.property_value)
    }

    fn ai(i: u32) -> ObjectIdentifier {
        ai_oid(i)
    }

    fn av(i: u32) -> ObjectIdentifier {
        ObjectIdentifier::new(ObjectType::ANALOG_VALUE, i).unwrap()
    }

    #[test]
    fn object_map_is_the_documented_one() {
        assert_eq!(input_object("UCWIT").unwrap().to_string(), "analogInput:0");
        assert_eq!(input_object("UCTSP").unwrap().to_string(), "analogInput:5");
        assert_eq!(
            measured_object("UCAF").unwrap().to_string(),
            "analogInput:8"
        );
        assert_eq!(
            prediction_object("Q_thermal").unwrap().to_string(),
            "analogValue:3"
        );
        assert!(input_object("UCAOT").is_none());
        let names: Vec<&str> = INPUT_OBJECTS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::pipeline::message::INPUT_FEATURES);
        let names: Vec<&str> = MEASURED_OBJECTS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::pipeline::message::OUTPUT_FEATURES);
    }

    #[tokio::test]
    async fn serves_values_units_flags_and_object_list() {
        let mut d = start().await;
        assert_eq!(*d.address().0.ip(), Ipv4Addr::LOCALHOST);
        assert_ne!(d.address().0.port(), 0);
        let f = frames(1).remove(0);
        d.update(&f).await.unwrap();
        let c = client().await;

        // Present values, as REALs, of every input and measurement.
        let pv = read(&c, &d, ai(0), PropertyIdentifier::PRESENT_VALUE).await;
        assert_eq!(pv, [PropertyValue::Real(f.ucwit as f32)]);
        let pv = read(&c, &d, ai(6), PropertyIdentifier::PRESENT_VALUE).await;
        assert_eq!(pv, [PropertyValue::Real(f.ucaot.unwrap() as f32)]);

        // Units: °C 62, L/min 88, %RH 29, m³/h 135, kW 48.
        for (oid, units) in [
            (ai(0), 62),
            (ai(1), 62),
            (ai(2), 88),
            (ai(3), 29),
            (ai(4), 62),
            (ai(5), 62),
            (ai(6), 62),
            (ai(7), 62),
            (ai(8), 135),
            (av(0), 62),
            (av(1), 62),
            (av(2), 135),
            (av(3), 48),
        ] {
            let u = read(&c, &d, oid, PropertyIdentifier::UNITS).await;
            assert_eq!(u, [PropertyValue::Enumerated(units)], "{oid:?}");
        }
        let name = read(&c, &d, ai(2), PropertyIdentifier::OBJECT_NAME).await;
        assert_eq!(name, [PropertyValue::CharacterString("UCWF".into())]);
        let name = read(&c, &d, av(3), PropertyIdentifier::OBJECT_NAME).await;
        assert_eq!(
            name,
            [PropertyValue::CharacterString("Q_thermal_pred".into())]
        );
        let cov = read(&c, &d, ai(1), PropertyIdentifier::COV_INCREMENT).await;
        assert_eq!(cov, [PropertyValue::Real(0.05)]);

        let flags = read(&c, &d, ai(1), PropertyIdentifier::STATUS_FLAGS).await;
        let PropertyValue::BitString { data, .. } = &flags[0] else {
            panic!("{flags:?}")
        };
        assert_eq!(StatusFlags::from_bits(data), StatusFlags::default());

        // ReadPropertyMultiple of the six inputs.
        let specs = INPUT_OBJECTS
            .iter()
            .map(|(_, i)| ReadAccessSpecification {
                object_identifier: ai(*i),
                list_of_property_references: vec![PropertyReference {
                    property_identifier: PropertyIdentifier::PRESENT_VALUE,
                    property_array_index: None,
                }],
            })
            .collect();
        let ack = c
            .read_property_multiple(&d.address().mac(), specs)
            .await
            .unwrap();
        let got: Vec<f32> = ack
            .list_of_read_access_results
            .iter()
            .map(
                |r| match values(r.list_of_results[0].property_value.as_ref().unwrap())[0] {
                    PropertyValue::Real(v) => v,
                    ref other => panic!("{other:?}"),
                },
            )
            .collect();
        let want: Vec<f32> = f.inputs().iter().map(|v| *v as f32).collect();
        assert_eq!(got, want);

        // The device object.
        let dev = ObjectIdentifier::new(ObjectType::DEVICE, DEVICE).unwrap();
        let list = read(&c, &d, dev, PropertyIdentifier::OBJECT_LIST).await;
        assert_eq!(list.len(), 14, "{list:?}");
        assert!(list.contains(&PropertyValue::ObjectIdentifier(dev)));
        for i in 0..9 {
            assert!(list.contains(&PropertyValue::ObjectIdentifier(ai(i))));
        }
        for i in 0..4 {
            assert!(list.contains(&PropertyValue::ObjectIdentifier(av(i))));
        }
        let model = read(&c, &d, dev, PropertyIdentifier::MODEL_NAME).await;
        assert_eq!(model, [PropertyValue::CharacterString(MODEL_NAME.into())]);
        let name = read(&c, &d, dev, PropertyIdentifier::OBJECT_NAME).await;
        assert_eq!(name, [PropertyValue::CharacterString("uc-test".into())]);
        let apdu = read(&c, &d, dev, PropertyIdentifier::MAX_APDU_LENGTH_ACCEPTED).await;
        assert_eq!(apdu, [PropertyValue::Unsigned(1476)]);
        let seg = read(&c, &d, dev, PropertyIdentifier::SEGMENTATION_SUPPORTED).await;
        assert_eq!(seg, [PropertyValue::Enumerated(0)]);

        let mut c = c;
        c.stop().await.unwrap();
        d.stop().await.unwrap();
    }

    fn real(v: f32) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_property_value(&mut b, &PropertyValue::Real(v)).unwrap();
        b.to_vec()
    }

    fn null() -> Vec<u8> {
        let mut b = BytesMut::new();
        encode_property_value(&mut b, &PropertyValue::Null).unwrap();
        b.to_vec()
    }

    #[tokio::test]
    async fn prediction_values_take_priorities() {
        let d = start().await;
        let mut c = client().await;
        let mac = d.address().mac();
        let pv = PropertyIdentifier::PRESENT_VALUE;
        c.write_property(&mac, av(0), pv, None, real(18.5), Some(16))
            .await
            .unwrap();
        let p = d.predictions().await.unwrap();
        assert_eq!(p[0].field, "UCAOT");
        assert_eq!(p[0].present_value, 18.5);
        assert_eq!(p[0].priority_array[15], Some(18.5));
        assert!(p[0].priority_array[..15].iter().all(Option::is_none));
        assert_eq!(p[3].present_value, 0.0, "relinquish default");

        // A higher priority wins; the client sees the same array.
        c.write_property(&mac, av(0), pv, None, real(12.0), Some(8))
            .await
            .unwrap();
        let arr = read(&c, &d, av(0), PropertyIdentifier::PRIORITY_ARRAY).await;
        assert_eq!(arr.len(), 16);
        assert_eq!(arr[7], PropertyValue::Real(12.0));
        assert_eq!(arr[15], PropertyValue::Real(18.5));
        assert_eq!(arr[0], PropertyValue::Null);
        assert_eq!(read(&c, &d, av(0), pv).await, [PropertyValue::Real(12.0)]);

        // Relinquishing both returns to the default.
        for prio in [8, 16] {
            c.write_property(&mac, av(0), pv, None, null(), Some(prio))
                .await
                .unwrap();
        }
        let p = d.predictions().await.unwrap();
        assert_eq!(p[0].present_value, 0.0);
        assert!(p[0].priority_array.iter().all(Option::is_none));
        // Inputs are not commandable.
        assert!(c
            .write_property(&mac, ai(0), pv, None, real(1.0), Some(16))
            .await
            .is_err());
        c.stop().await.unwrap();
        d.stop().await.unwrap();
    }

    #[tokio::test]
    async fn a_nan_reading_is_a_fault_not_a_number() {
        let mut d = start().await;
        let fs = frames(3);
        // Before its first frame, no point pretends to have a reading.
        for (name, _) in INPUT_OBJECTS {
            let s = d.point(input_object(name).unwrap()).await.unwrap();
            assert!(s.status_flags.fault, "{name}: {s:?}");
        }
        d.update(&fs[0]).await.unwrap();
        let mut bad = fs[1].clone();
        bad.ucait = f64::NAN;
        bad.ucaot = None;
        d.update(&bad).await.unwrap();

        let c = client().await;
        for (oid, held) in [(ai(1), fs[0].ucait), (ai(6), fs[0].ucaot.unwrap())] {
            let flags = read(&c, &d, oid, PropertyIdentifier::STATUS_FLAGS).await;
            let PropertyValue::BitString { data, .. } = &flags[0] else {
                panic!("{flags:?}")
            };
            assert!(StatusFlags::from_bits(data).fault, "{oid:?}");
            let rel = read(&c, &d, oid, PropertyIdentifier::RELIABILITY).await;
            assert_eq!(rel, [PropertyValue::Enumerated(FAULT_RELIABILITY.to_raw())]);
            // The last good value stays, never NaN.
            let pv = read(&c, &d, oid, PropertyIdentifier::PRESENT_VALUE).await;
            assert_eq!(pv, [PropertyValue::Real(held as f32)]);
        }
        // Other points are unaffected.
        let s = d.point(input_object("UCWIT").unwrap()).await.unwrap();
        assert_eq!(s.status_flags, StatusFlags::default());
        assert_eq!(s.present_value, fs[1].ucwit as f32);

        // Recovery clears the fault.
        d.update(&fs[2]).await.unwrap();
        for name in ["UCAIT", "UCAOT"] {
            let obj = input_object(name)
                .or_else(|| measured_object(name))
                .unwrap();
            let s = d.point(obj).await.unwrap();
            assert_eq!(s.status_flags, StatusFlags::default(), "{name}");
            assert_eq!(s.reliability, 0);
        }
        assert_eq!(
            d.point(input_object("UCAIT").unwrap())
                .await
                .unwrap()
                .present_value,
            fs[2].ucait as f32
        );
        let mut c = c;
        c.stop().await.unwrap();
        d.stop().await.unwrap();
    }

    #[tokio::test]
    async fn cov_subscribers_hear_changes_and_faults() {
        let mut d = start().await;
        let fs = frames(2);
        d.update(&fs[0]).await.unwrap();
        let mut c = client().await;
        let mut rx = c.cov_notifications();
        c.subscribe_cov(&d.address().mac(), 7, ai(1), false, Some(300))
            .await
            .unwrap();
        // A change larger than the increment notifies, with the new value.
        let mut moved = fs[1].clone();
        moved.ucait = fs[0].ucait + 1.0;
        d.update(&moved).await.unwrap();
        let want = PropertyValue::Real(moved.ucait as f32);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut heard = false;
        while !heard {
            let n = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("a COV notification for the change")
                .unwrap();
            heard = n.notification.monitored_object_identifier == ai(1)
                && n.notification.list_of_values.iter().any(|v| {
                    v.property_identifier == PropertyIdentifier::PRESENT_VALUE
                        && values(&v.value) == [want.clone()]
                });
        }
        // A fault notifies too (Status_Flags changed), even with no new value.
        let mut bad = moved.clone();
        bad.ucait = f64::NAN;
        d.update(&bad).await.unwrap();
        let mut heard = false;
        while !heard {
            let n = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .expect("a COV notification for the fault")
                .unwrap();
            heard = n.notification.list_of_values.iter().any(|v| {
                v.property_identifier == PropertyIdentifier::STATUS_FLAGS
                    && matches!(&values(&v.value)[0], PropertyValue::BitString { data, .. }
                        if StatusFlags::from_bits(data).fault)
            });
        }
        c.stop().await.unwrap();
        d.stop().await.unwrap();
    }

    #[tokio::test]
    async fn answers_a_unicast_who_is_with_a_directed_i_am() {
        let d = start().await;
        let mut c = client().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Who-Is is unconfirmed: ask again until the I-Am has come back.
        let found = loop {
            c.who_is_directed(&d.address().mac(), None).await.unwrap();
            if let Some(found) = c.get_device(DEVICE).await {
                break found;
            }
            assert!(tokio::time::Instant::now() < deadline, "no I-Am");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(&found.mac_address[..], &d.address().mac()[..]);
        assert_eq!(found.max_apdu_length, 1476);
        assert_eq!(found.vendor_id, VENDOR_ID);
        let counters = d.server.discovery_counters();
        // Every I-Am it sent went to the asker alone.
        assert!(counters.i_am_sent >= 1, "{counters:?}");
        assert_eq!(counters.directed_responses_sent, counters.i_am_sent);
        c.stop().await.unwrap();
        d.stop().await.unwrap();
    }

    #[tokio::test]
    async fn an_explicit_address_binds_that_address_and_frees_it_on_stop() {
        // A free port for this test: bind, note, release.
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let at = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let d = SimulatedDevice::start(at, DEVICE, "uc-a").await.unwrap();
        assert_eq!(d.address(), DeviceAddress(at));
        // The port is taken while the device runs...
        let again = SimulatedDevice::start(at, DEVICE + 1, "uc-b").await;
        assert!(
            matches!(again, Err(DeviceError::Bind { .. })),
            "{:?}",
            again.as_ref().err()
        );
        let c = client().await;
        let pv = read(&c, &d, ai(5), PropertyIdentifier::PRESENT_VALUE).await;
        assert_eq!(pv, [PropertyValue::Real(0.0)]);
        d.stop().await.unwrap();
        // ...and free once it has stopped.
        let d = SimulatedDevice::start(at, DEVICE, "uc-a").await.unwrap();
        d.stop().await.unwrap();
        let mut c = c;
        c.stop().await.unwrap();
    }
}
