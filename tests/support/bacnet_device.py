"""Simulated BACnet/IP field device for twinflow's tests (bacpypes3).

One process is one BACnet device on one loopback UDP port. It serves the
cooling-unit points the engine reads (analogInput 0..8) and the commandable
analogValue 0..3 the engine writes its predictions to.

    bacnet_device.py --address 127.0.0.1/32:PORT --device-id N
                     [--name NAME] [--vendor-id 999] [--max-apdu 1476]
                     [--no-rpm [reject|error|abort]]
                     [--units-override OBJ=UNIT ...] [--value OBJ=V ...]
                     [--cov-increment 0.01] [--no-stdin] [--log-requests]

OBJ is `analogInput:1` (also `analog-input,1` or an object name like `UCAIT`).
UNIT is an EngineeringUnits name (`degreesFahrenheit`, `degrees-fahrenheit`)
or its number. An overridden unit converts the default value into that unit
(25.0 degreesCelsius -> 77.0 degreesFahrenheit) when the conversion is known;
`--value` is always in the object's final unit (for an analogValue it sets the
relinquish-default, leaving the priority array empty).

Loopback unicast only: the address must be a 127.x.y.z host with a /32 mask
(`127.0.0.1:PORT` is accepted and means /32). The UDP socket is bound here,
without SO_BROADCAST or SO_REUSEPORT, and handed to bacpypes3, so (a) there is
no broadcast socket and no broadcast can be sent (bacpypes3 raises "no
broadcast" for a local broadcast on a /32 port, and the kernel would refuse
one without SO_BROADCAST), and (b) a port already in use fails at once instead
of being silently shared. I-Am only ever goes back to the requester of a
Who-Is; the device never announces itself.

Control channel (unless --no-stdin): one JSON object per line on stdin, one
JSON line answered on stdout for each (an "id" member is echoed back):

    {"set": "analogInput:0", "value": 8.1}
    {"set": "analogInput:2", "status_flags": {"fault": true},
     "reliability": "communicationFailure"}
    {"set": "analogInput:3", "out_of_service": true}
    {"set": "analogInput:1", "units": "degreesFahrenheit", "value": 77.0}
    {"set": "analogValue:0", "value": 3.5, "priority": 8}   (null relinquishes)
    {"set": "analogValue:0", "relinquish_default": 1.0}
    {"set": "analogInput:0", "cov_increment": 0.5}
    {"get": "analogValue:0"}   -> {"ok": true, "object": ..., "present_value": ...,
                                   "priority_array": [null, ..., 3.5, ...], ...}
    {"subscriptions": true}    -> {"ok": true, "subscriptions": [...]}
    {"stats": true}            -> {"ok": true, "stats": {"ReadPropertyRequest": 3, ...}}
    {"exit": true}             -> {"ok": true}, then the device exits

Answers are {"ok": true, ...} or {"ok": false, "error": "..."}. Once serving,
the device prints {"ready": true, "address": "127.0.0.1:PORT",
"bacpypes_address": "127.0.0.1/32:PORT", "device_id": N}. It exits 0 on
SIGTERM, SIGINT, {"exit": true} or EOF on stdin; with --no-stdin it runs until
a signal.

Status flags follow the other properties unless given explicitly: setting a
reliability other than noFaultDetected sets `fault` (and back), setting
out_of_service sets `outOfService`; the same holds for a BACnet WriteProperty
of reliability or out-of-service. Changes of present-value (by at least the
COV increment) and of status-flags send COV notifications to subscribers
(SubscribeCOV, confirmed or not; SubscribeCOVProperty is not supported), by
the control channel or by BACnet writes alike.

BACnet behaviour: ReadProperty, ReadPropertyMultiple (unless --no-rpm),
WriteProperty, SubscribeCOV, Who-Is (answered by a unicast I-Am to the
requester), Who-Has. The analogInput present-value is writable over BACnet
only while out-of-service (else property/writeAccessDenied). An analogValue
present-value write goes to its priority slot (16 when none is given), Null
relinquishes the slot, and priority 6 is refused with
property/writeAccessDenied. Segmentation is not supported.
"""
import argparse
import asyncio
import collections
import json
import math
import signal
import sys
import threading

from bacnet_loopback import UsageError, application_on, bind_udp_socket, parse_loopback
from bacpypes3.app import Application
from bacpypes3.basetypes import (
    EngineeringUnits,
    EventState,
    PriorityValue,
    PropertyIdentifier,
    Reliability,
    Segmentation,
    ServicesSupported,
    StatusFlags,
)
from bacpypes3.apdu import AbortPDU
from bacpypes3.errors import (
    PropertyError,
    ServicesError,
    UnrecognizedService,
)
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObjectCmd
from bacpypes3.local.cmd import Commandable
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.local.oos import OutOfService
from bacpypes3.pdu import IPv4Address, LocalStation
from bacpypes3.primitivedata import ObjectIdentifier

# ---------------------------------------------------------------------------
# The point list: (instance, name, units, default value)
# ---------------------------------------------------------------------------

ANALOG_INPUTS = [
    (0, "UCWIT", "degreesCelsius", 7.5),  # water inlet temperature
    (1, "UCAIT", "degreesCelsius", 25.0),  # air inlet temperature
    (2, "UCWF", "litersPerMinute", 15.0),  # water flow
    (3, "UCAIH", "percentRelativeHumidity", 50.0),  # air inlet humidity
    (4, "AMBT", "degreesCelsius", 22.0),  # ambient temperature
    (5, "UCTSP", "degreesCelsius", 21.0),  # temperature set point
    (6, "UCAOT", "degreesCelsius", 14.0),  # air outlet temperature
    (7, "UCWOT", "degreesCelsius", 11.5),  # water outlet temperature
    (8, "UCAF", "cubicMetersPerHour", 1200.0),  # air flow
]

# commandable outputs of the engine's predictions; relinquish-default 0
ANALOG_VALUES = [
    (0, "UCAOT_pred", "degreesCelsius", 0.0),
    (1, "UCWOT_pred", "degreesCelsius", 0.0),
    (2, "UCAF_pred", "cubicMetersPerHour", 0.0),
    (3, "Q_thermal_pred", "kilowatts", 0.0),
]

# the valid values of max-apdu-length-accepted (clause 20.1.2.5)
MAX_APDU_CHOICES = (50, 128, 206, 480, 1024, 1476)

# BACnet reserves priority 6 for the minimum on/off algorithm: a write at 6 is
# refused with property/writeAccessDenied
RESERVED_PRIORITY = 6

# Linear unit conversions: unit -> (quantity, scale, offset) such that
# base = value * scale + offset. Only used to convert a default value into an
# overridden unit; anything else needs an explicit --value.
UNIT_CONVERSIONS = {
    # temperature, base kelvin
    "degreesCelsius": ("temperature", 1.0, 273.15),
    "degreesKelvin": ("temperature", 1.0, 0.0),
    "degreesFahrenheit": ("temperature", 5.0 / 9.0, 273.15 - 32.0 * 5.0 / 9.0),
    # volume flow, base m3/s
    "cubicMetersPerSecond": ("flow", 1.0, 0.0),
    "cubicMetersPerMinute": ("flow", 1.0 / 60.0, 0.0),
    "cubicMetersPerHour": ("flow", 1.0 / 3600.0, 0.0),
    "litersPerSecond": ("flow", 1e-3, 0.0),
    "litersPerMinute": ("flow", 1e-3 / 60.0, 0.0),
    "litersPerHour": ("flow", 1e-3 / 3600.0, 0.0),
    "cubicFeetPerMinute": ("flow", 0.028316846592 / 60.0, 0.0),
    "usGallonsPerMinute": ("flow", 0.003785411784 / 60.0, 0.0),
    # power, base watt
    "watts": ("power", 1.0, 0.0),
    "kilowatts": ("power", 1e3, 0.0),
    "megawatts": ("power", 1e6, 0.0),
    "btusPerHour": ("power", 0.29307107, 0.0),
    "kiloBtusPerHour": ("power", 293.07107, 0.0),
    "tonsRefrigeration": ("power", 3516.8528420667, 0.0),
    # humidity
    "percentRelativeHumidity": ("humidity", 1.0, 0.0),
}

STATUS_FLAG_BITS = {"inAlarm": 0, "fault": 1, "overridden": 2, "outOfService": 3}
STATUS_FLAG_ALIASES = {
    "in_alarm": "inAlarm",
    "in-alarm": "inAlarm",
    "out_of_service": "outOfService",
    "out-of-service": "outOfService",
}


# ---------------------------------------------------------------------------
# Argument helpers
# ---------------------------------------------------------------------------


def parse_units(text):
    """An EngineeringUnits name (either spelling) or number -> camelCase name."""
    try:
        units = EngineeringUnits(int(text)) if text.strip().isdigit() else EngineeringUnits(text.strip())
        return units.attr
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"unknown engineering units {text!r}") from None


def parse_pairs(values, what):
    """['analogInput:1=x', ...] -> [('analogInput:1', 'x'), ...]"""
    pairs = []
    for item in values or []:
        obj, sep, value = item.partition("=")
        if not sep or not obj or not value:
            raise UsageError(f"{what} {item!r}: expected OBJ=VALUE")
        pairs.append((obj.strip(), value.strip()))
    return pairs


def convert_units(value, from_units, to_units):
    """Convert a value between two linear units, None when not convertible."""
    if from_units == to_units:
        return value
    src = UNIT_CONVERSIONS.get(from_units)
    dst = UNIT_CONVERSIONS.get(to_units)
    if not src or not dst or src[0] != dst[0]:
        return None
    base = value * src[1] + src[2]
    return round((base - dst[2]) / dst[1], 6)


def json_number(value):
    """A float for JSON (NaN/inf are not JSON: they become strings)."""
    value = float(value)
    if math.isfinite(value):
        return value
    return str(value)


def priority_value_json(pv):
    """A PriorityValue slot -> None or a number (or a string for odd types)."""
    if pv is None or pv.null is not None:
        return None
    choice = pv._choice
    value = getattr(pv, choice)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json_number(value) if choice in ("real", "double") else int(value)
    return str(value)


# ---------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------


def property_name(attr):
    """'present-value', 85 or PropertyIdentifier -> 'presentValue'."""
    try:
        return PropertyIdentifier(attr).attr
    except (ValueError, KeyError, TypeError):
        return str(attr)


class StoredStatusFlags:
    """bacpypes3's local objects compute status-flags from event-state,
    reliability and out-of-service and ignore writes to it, so a change of
    reliability alone never reaches the COV detection (which watches
    assignments to statusFlags). Here the flags are stored, and every change
    goes through an assignment, which is what sends the COV notification:
    the control channel assigns them (deriving fault / outOfService unless
    told otherwise), and a BACnet write of out-of-service or reliability
    updates the matching bit."""

    @property
    def statusFlags(self):
        return StatusFlags(list(getattr(self, "_stored_status_flags", [0, 0, 0, 0])))

    @statusFlags.setter
    def statusFlags(self, value):
        if value is None:  # object initialisation without a value
            return
        self._stored_status_flags = [1 if bit else 0 for bit in StatusFlags.cast(value)]

    def sync_status_flags(self, fault=True, out_of_service=True):
        """Derive the fault bit from reliability and the outOfService bit
        from out-of-service; assign (and so notify) when that changes."""
        flags = [int(bit) for bit in self.statusFlags]
        new = list(flags)
        if fault and self.reliability is not None:
            new[STATUS_FLAG_BITS["fault"]] = int(self.reliability.attr != "noFaultDetected")
        if out_of_service:
            new[STATUS_FLAG_BITS["outOfService"]] = int(bool(self.outOfService))
        if new != flags:
            self.statusFlags = StatusFlags(new)

    async def write_property(self, attr, value, index=None, priority=None):
        name = property_name(attr)
        old = getattr(self, name, None)
        await super().write_property(attr, value, index, priority)
        # bacpypes3 0.0.110 stores a BACnet write with the plain setter,
        # bypassing the property monitors that local objects run on
        # assignment, so COV detection would miss it (and go on reporting the
        # old value). Run them here. Not for a commandable present-value:
        # that write goes through the priority array, which assigns the
        # present-value and so already ran them.
        commanded = name == "presentValue" and isinstance(self, Commandable)
        new = getattr(self, name, None)
        if not commanded and new != old:
            for monitor in list(self._property_monitors[name]):
                monitor(old, new)
        if name in ("reliability", "outOfService"):
            self.sync_status_flags(fault=name == "reliability", out_of_service=name == "outOfService")


class SimAnalogInput(StoredStatusFlags, OutOfService, AnalogInputObject):
    """An analog input whose present-value is writable over BACnet only while
    out-of-service (as a real sensor point); the control channel can always
    change it."""


class SimAnalogValue(StoredStatusFlags, AnalogValueObjectCmd):
    """A commandable analog value (16-slot priority array + relinquish
    default) that refuses the reserved priority 6 like a conforming device."""

    async def write_property(self, attr, value, index=None, priority=None):
        if _is_present_value(attr) and priority == RESERVED_PRIORITY:
            raise PropertyError("writeAccessDenied")
        if _is_present_value(attr) and priority is not None and not 1 <= priority <= 16:
            raise PropertyError("valueOutOfRange")
        await super().write_property(attr, value, index, priority)


def _is_present_value(attr):
    return property_name(attr) == "presentValue"


# ---------------------------------------------------------------------------
# Application
# ---------------------------------------------------------------------------


class DeviceApplication(Application):
    """The device's application: counts requests, never broadcasts I-Am."""

    # set per instance by build_application()
    log_requests = False

    def _init_sim(self):
        self.stats = collections.Counter()

    async def indication(self, apdu):
        name = type(apdu).__name__
        self.stats[name] += 1
        if self.log_requests:
            detail = {"request": name, "source": str(apdu.pduSource)}
            for attr in ("objectIdentifier", "propertyIdentifier", "propertyArrayIndex", "priority"):
                value = getattr(apdu, attr, None)
                if value is not None:
                    detail[attr] = str(value)
            print(json.dumps(detail), file=sys.stderr, flush=True)
        await super().indication(apdu)

    def i_am(self, address=None):
        # bacpypes3 answers a Who-Is with i_am(address=<requester>), which is
        # unicast. A call without an address (or with a broadcast one) would
        # be a broadcast announcement: refuse it, tests never broadcast.
        if address is None or not isinstance(address, (LocalStation, IPv4Address)):
            print(f"bacnet_device: refusing to send a broadcast I-Am ({address})", file=sys.stderr, flush=True)
            return
        super().i_am(address=address)

    def i_have(self, object_identifier, object_name, address=None):
        if address is None or not isinstance(address, (LocalStation, IPv4Address)):
            print(f"bacnet_device: refusing to send a broadcast I-Have ({address})", file=sys.stderr, flush=True)
            return
        super().i_have(object_identifier, object_name, address=address)


class NoRPMApplication(DeviceApplication):
    """A device without ReadPropertyMultiple: the request is refused (how is
    set by `no_rpm_mode`) and the protocol-services-supported bit is clear, so
    a client must fall back to ReadProperty."""

    no_rpm_mode = "reject"

    async def do_ReadPropertyMultipleRequest(self, apdu):
        if self.no_rpm_mode == "error":
            # Error(services, serviceRequestDenied)
            raise ServicesError(errorCode="serviceRequestDenied")
        if self.no_rpm_mode == "abort":
            # Abort(other). Not by raising AbortOther: bacpypes3 0.0.110 then
            # builds the Abort-PDU without the "sent by server" bit and the
            # client's stack drops it as an abort of one of its own server
            # transactions.
            abort = AbortPDU(reason="other", context=apdu)
            abort.apduSrv = True
            await self.response(abort)
            return
        # Reject(unrecognizedService), what a device without the service sends
        raise UnrecognizedService("readPropertyMultiple not supported")

    async def do_WritePropertyMultipleRequest(self, apdu):
        raise UnrecognizedService("writePropertyMultiple not supported")

    def get_services_supported(self):
        services = super().get_services_supported()
        for name in ("readPropertyMultiple", "writePropertyMultiple"):
            services[getattr(ServicesSupported, name)] = 0
        return services


def resolve_object_id(text, objects_by_name):
    """'analogInput:1', 'analog-input,1' or an object name -> ObjectIdentifier."""
    text = text.strip()
    if text in objects_by_name:
        return objects_by_name[text].objectIdentifier
    for sep in (":", ","):
        if sep in text:
            obj_type, _, instance = text.rpartition(sep)
            try:
                return ObjectIdentifier((obj_type, int(instance)))
            except (ValueError, KeyError, TypeError):
                break
    raise UsageError(f"unknown object {text!r}")


def build_objects(args):
    """The device's objects (device and network-port first)."""
    host, port = args.address
    device = DeviceObject(
        objectIdentifier=("device", args.device_id),
        objectName=args.name or f"twinflow-sim-{args.device_id}",
        vendorIdentifier=args.vendor_id,
        vendorName="twinflow tests",
        modelName="bacnet_device.py",
        description="Simulated cooling unit for twinflow interop tests",
        maxApduLengthAccepted=args.max_apdu,
        segmentationSupported=Segmentation.noSegmentation,
    )
    network_port = NetworkPortObject(
        f"{host}/32:{port}",
        objectIdentifier=("network-port", 1),
        objectName="NetworkPort-1",
        networkNumber=0,
        networkNumberQuality="unknown",
    )
    points = []
    for instance, name, units, value in ANALOG_INPUTS:
        points.append(
            SimAnalogInput(
                objectIdentifier=("analog-input", instance),
                objectName=name,
                description=f"{name} (simulated)",
                presentValue=value,
                units=units,
                statusFlags=[0, 0, 0, 0],
                eventState=EventState.normal,
                reliability=Reliability.noFaultDetected,
                outOfService=False,
                covIncrement=args.cov_increment,
            )
        )
    for instance, name, units, value in ANALOG_VALUES:
        points.append(
            SimAnalogValue(
                objectIdentifier=("analog-value", instance),
                objectName=name,
                description=f"{name} (written by twinflow)",
                presentValue=value,
                relinquishDefault=value,
                units=units,
                statusFlags=[0, 0, 0, 0],
                eventState=EventState.normal,
                reliability=Reliability.noFaultDetected,
                outOfService=False,
                covIncrement=args.cov_increment,
            )
        )
    return device, network_port, points


def apply_overrides(args, points):
    """--units-override then --value (the value is in the final unit)."""
    by_name = {str(p.objectName): p for p in points}
    by_id = {p.objectIdentifier: p for p in points}

    def lookup(text):
        obj = by_id.get(resolve_object_id(text, by_name))
        if obj is None:
            raise UsageError(f"no such object {text!r}")
        return obj

    explicit_values = {}
    for obj_text, value_text in parse_pairs(args.value, "--value"):
        try:
            explicit_values[lookup(obj_text).objectIdentifier] = float(value_text)
        except ValueError:
            raise UsageError(f"--value {obj_text}={value_text}: not a number") from None

    for obj_text, units_text in parse_pairs(args.units_override, "--units-override"):
        obj = lookup(obj_text)
        old_units, new_units = obj.units.attr, parse_units(units_text)
        obj.units = new_units
        if obj.objectIdentifier in explicit_values:
            continue
        current = float(obj.relinquishDefault if isinstance(obj, SimAnalogValue) else obj.presentValue)
        converted = convert_units(current, old_units, new_units)
        if converted is None:
            raise UsageError(
                f"--units-override {obj_text}={units_text}: no conversion from {old_units}; "
                f"give the value with --value {obj_text}=V"
            )
        set_value(obj, converted)

    for objid, value in explicit_values.items():
        set_value(by_id[objid], value)


def set_value(obj, value):
    if isinstance(obj, SimAnalogValue):
        # the value with an empty priority array
        obj.relinquishDefault = float(value)
        obj.recalculating()
    else:
        obj.presentValue = float(value)


# ---------------------------------------------------------------------------
# Control channel
# ---------------------------------------------------------------------------


def describe(obj):
    """The state of one point as JSON."""
    out = {
        "ok": True,
        "object": f"{obj.objectIdentifier[0].attr}:{obj.objectIdentifier[1]}",
        "name": str(obj.objectName),
        "present_value": json_number(obj.presentValue),
        "units": obj.units.attr,
        "status_flags": {name: int(obj.statusFlags[bit]) for name, bit in STATUS_FLAG_BITS.items()},
        "reliability": obj.reliability.attr if obj.reliability is not None else None,
        "out_of_service": bool(obj.outOfService),
        "cov_increment": json_number(obj.covIncrement) if obj.covIncrement is not None else None,
    }
    if isinstance(obj, SimAnalogValue):
        out["priority_array"] = [priority_value_json(pv) for pv in obj.priorityArray]
        out["relinquish_default"] = json_number(obj.relinquishDefault)
        cur = obj.currentCommandPriority
        out["current_command_priority"] = None if cur is None or cur.null is not None else int(cur.unsigned)
    return out


class Controller:
    def __init__(self, app, points, stop):
        self.app = app
        self.by_name = {str(p.objectName): p for p in points}
        self.by_id = {p.objectIdentifier: p for p in points}
        self.stop = stop

    def lookup(self, text):
        if not isinstance(text, str):
            raise UsageError("object must be a string like 'analogInput:0'")
        obj = self.by_id.get(resolve_object_id(text, self.by_name))
        if obj is None:
            raise UsageError(f"no such object {text!r}")
        return obj

    def handle(self, cmd):
        if not isinstance(cmd, dict):
            raise UsageError("a JSON object expected")
        if "set" in cmd:
            return self.do_set(self.lookup(cmd["set"]), cmd)
        if "get" in cmd:
            return describe(self.lookup(cmd["get"]))
        if "subscriptions" in cmd:
            return {"ok": True, "subscriptions": self.subscriptions()}
        if "stats" in cmd:
            return {"ok": True, "stats": dict(self.app.stats)}
        if "exit" in cmd:
            self.stop.set()
            return {"ok": True}
        raise UsageError("unknown command: expected set, get, subscriptions, stats or exit")

    def do_set(self, obj, cmd):
        known = {"set", "id", "value", "priority", "relinquish_default", "status_flags",
                 "reliability", "out_of_service", "units", "cov_increment"}
        unknown = set(cmd) - known
        if unknown:
            raise UsageError(f"unknown keys {sorted(unknown)}")

        # validate everything before changing anything
        flags = [int(b) for b in obj.statusFlags]
        explicit = set()
        if "status_flags" in cmd:
            given = cmd["status_flags"]
            if isinstance(given, list):
                if len(given) != 4:
                    raise UsageError("status_flags: 4 bits expected")
                flags = [1 if b else 0 for b in given]
                explicit = set(STATUS_FLAG_BITS)
            elif isinstance(given, dict):
                for key, bit_on in given.items():
                    key = STATUS_FLAG_ALIASES.get(key, key)
                    if key not in STATUS_FLAG_BITS:
                        raise UsageError(f"status_flags: unknown flag {key!r}")
                    flags[STATUS_FLAG_BITS[key]] = 1 if bit_on else 0
                    explicit.add(key)
            else:
                raise UsageError("status_flags: a dict of flags or a list of 4 bits expected")
        reliability = None
        if "reliability" in cmd:
            try:
                reliability = Reliability(cmd["reliability"])
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"unknown reliability {cmd['reliability']!r}") from None
            if "fault" not in explicit:
                flags[1] = 0 if reliability.attr == "noFaultDetected" else 1
        if "out_of_service" in cmd:
            if not isinstance(cmd["out_of_service"], bool):
                raise UsageError("out_of_service: true or false expected")
            if "outOfService" not in explicit:
                flags[3] = 1 if cmd["out_of_service"] else 0
        units = parse_units(str(cmd["units"])) if "units" in cmd else None
        priority = cmd.get("priority")
        if priority is not None:
            if not isinstance(obj, SimAnalogValue):
                raise UsageError("priority: only commandable analogValue objects have a priority array")
            if not isinstance(priority, int) or not 1 <= priority <= 16:
                raise UsageError("priority: 1..16 expected")
        value = cmd.get("value", ...)
        if value is not ...:
            if value is None and priority is None:
                raise UsageError("value null needs a priority (relinquish a slot)")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UsageError("value: a number expected")
        for key in ("relinquish_default", "cov_increment"):
            if key in cmd and (isinstance(cmd[key], bool) or not isinstance(cmd[key], (int, float))):
                raise UsageError(f"{key}: a number expected")
        if "relinquish_default" in cmd and not isinstance(obj, SimAnalogValue):
            raise UsageError("relinquish_default: only for analogValue objects")

        # apply; setting an attribute runs bacpypes3's property monitors, which
        # is what triggers COV notifications
        if units is not None:
            obj.units = units
        if "cov_increment" in cmd:
            obj.covIncrement = float(cmd["cov_increment"])
        if reliability is not None:
            obj.reliability = reliability
        if "out_of_service" in cmd:
            obj.outOfService = cmd["out_of_service"]
        if "relinquish_default" in cmd:
            obj.relinquishDefault = float(cmd["relinquish_default"])
            obj.recalculating()
        if value is not ...:
            if priority is not None:
                slot = PriorityValue(null=()) if value is None else PriorityValue(real=float(value))
                obj.priorityArray[priority - 1] = slot  # recalculates present-value
            else:
                # an analogValue takes this at priority 16 (bacpypes3 default)
                obj.presentValue = float(value)
        if flags != [int(b) for b in obj.statusFlags]:
            obj.statusFlags = StatusFlags(flags)
        return {"ok": True}

    def subscriptions(self):
        loop = asyncio.get_running_loop()
        out = []
        for objid, detection in self.app._cov_detections.items():
            for cov in detection.cov_subscriptions:
                remaining = None
                if cov.cancel_handle is not None:
                    remaining = max(0, int(cov.cancel_handle.when() - loop.time()))
                out.append({
                    "object": f"{objid[0].attr}:{objid[1]}",
                    "subscriber": str(cov.client_addr),
                    "process_id": int(cov.proc_id),
                    "confirmed": bool(cov.confirmed),
                    "lifetime": int(cov.lifetime) if cov.lifetime is not None else 0,
                    "time_remaining": remaining,
                })
        return out


def emit(doc):
    """One JSON line on stdout (the test reads these)."""
    try:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass


def start_stdin_reader(loop, queue):
    """Read stdin lines in a thread (works for pipes, files and ttys alike);
    None marks EOF."""

    def reader():
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()


async def control_loop(controller, queue, stop):
    while not stop.is_set():
        line = await queue.get()
        if line is None:  # EOF: the test is gone
            stop.set()
            return
        line = line.strip()
        if not line:
            continue
        cmd_id = None
        try:
            cmd = json.loads(line)
            if isinstance(cmd, dict):
                cmd_id = cmd.get("id")
            reply = controller.handle(cmd)
        except json.JSONDecodeError as err:
            reply = {"ok": False, "error": f"bad JSON: {err}"}
        except UsageError as err:
            reply = {"ok": False, "error": str(err)}
        except Exception as err:  # a fixture must keep serving
            reply = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        if cmd_id is not None:
            reply["id"] = cmd_id
        emit(reply)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


async def run(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    host, port = args.address
    sock = bind_udp_socket(host, port)
    port = sock.getsockname()[1]  # resolves port 0
    args.address = (host, port)

    device, network_port, points = build_objects(args)
    apply_overrides(args, points)

    app_class = NoRPMApplication if args.no_rpm else DeviceApplication
    app = application_on(sock, [device, network_port, *points], app_class)
    app._init_sim()
    app.log_requests = args.log_requests
    if args.no_rpm:
        app.no_rpm_mode = args.no_rpm

    # serving once the datagram endpoint on our socket exists
    for link_layer in app.link_layers.values():
        await asyncio.wait_for(link_layer.server._local_transport_ready.wait(), 10)

    emit({
        "ready": True,
        "address": f"{host}:{port}",
        "bacpypes_address": f"{host}/32:{port}",
        "device_id": args.device_id,
        "rpm": not args.no_rpm,
    })

    tasks = []
    if not args.no_stdin:
        queue = asyncio.Queue()
        start_stdin_reader(loop, queue)
        tasks.append(asyncio.create_task(control_loop(Controller(app, points, stop), queue, stop)))

    await stop.wait()
    for task in tasks:
        task.cancel()
    app.close()
    # let the transport close before the loop goes away
    await asyncio.sleep(0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="127.0.0.1/32:PORT (PORT 0 picks a free one)")
    parser.add_argument("--device-id", type=int, required=True, help="device instance 0..4194302")
    parser.add_argument("--name", help="device object-name (default twinflow-sim-N)")
    parser.add_argument("--vendor-id", type=int, default=999, help="vendor-identifier (default 999)")
    parser.add_argument("--max-apdu", type=int, default=1476, choices=MAX_APDU_CHOICES,
                        help="max-apdu-length-accepted (default 1476)")
    parser.add_argument("--no-rpm", nargs="?", const="reject", choices=("reject", "error", "abort"),
                        help="refuse ReadPropertyMultiple: Reject unrecognizedService (default), "
                             "Error services/serviceRequestDenied, or Abort other")
    parser.add_argument("--units-override", action="append", metavar="OBJ=UNIT",
                        help="e.g. analogInput:1=degreesFahrenheit (value converted); repeatable")
    parser.add_argument("--value", action="append", metavar="OBJ=V",
                        help="initial value in the object's final unit; repeatable")
    parser.add_argument("--cov-increment", type=float, default=0.01, help="COV increment of every point")
    parser.add_argument("--no-stdin", action="store_true", help="no control channel; run until SIGTERM")
    parser.add_argument("--log-requests", action="store_true", help="log each request to stderr as JSON")
    args = parser.parse_args(argv)

    try:
        args.address = parse_loopback(args.address)
        if not 0 <= args.device_id <= 4194302:
            raise UsageError("--device-id: 0..4194302 expected")
        asyncio.run(run(args))
    except UsageError as err:
        print(f"bacnet_device: {err}", file=sys.stderr)
        return 2
    except asyncio.TimeoutError:
        print("bacnet_device: the UDP endpoint did not come up", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
