"""Foreign BACnet/IP client for twinflow's tests (bacpypes3).

Each call does one thing against one device over loopback unicast and prints
one JSON document on stdout (except `cov`, which streams JSON lines):

    bacnet_client.py [common options] whois   --target ADDR [--device-id N]
    bacnet_client.py [common options] read    --target ADDR OBJ PROP [--index N]
    bacnet_client.py [common options] rpm     --target ADDR OBJ:PROP[,PROP...] ...
    bacnet_client.py [common options] write   --target ADDR OBJ PROP VALUE [--priority P]
    bacnet_client.py [common options] objects --target ADDR --device-id N
    bacnet_client.py [common options] cov     --target ADDR OBJ [--count N]
                                              [--lifetime S] [--confirmed]

    common options (before or after the subcommand):
      --local 127.0.0.1/32:PORT   our own address (default 127.0.0.1/32:0, a free port)
      --timeout SECONDS           for the whole call (default 5)
      --client-device-id N        our own device instance (default 4194302)

ADDR is `127.0.0.1:47808` or `127.0.0.1/32:47808`; only loopback hosts are
accepted and every request is unicast (Who-Is included). OBJ is
`analogInput:0` (or `analog-input,0`, `device:1234`), PROP is
`presentValue` / `present-value`, optionally with an index `priorityArray[16]`.

Output values: reals and integers as numbers, enumerations by name
(`degreesCelsius`, `noFaultDetected`), bit strings as lists of 0/1
(status-flags [inAlarm, fault, overridden, outOfService]), object identifiers
as "analogInput:0", the priority-array as a list of 16 entries, each null or a
number. Reals are printed as the shortest decimal of the IEEE single sent
(8.1, not 8.100000381469727). An rpm result is {"analogInput:0":
{"presentValue": 7.5, "relinquishDefault": {"error": "property:
unknownProperty"}}} (per property errors are values; an unknown property
name is a usage error before anything is sent).

VALUE of `write` is JSON (8.5, "degreesFahrenheit", true) or `null`, which
writes Null: relinquish the slot at --priority (16 when not given).

`cov` subscribes (SubscribeCOV, lifetime --lifetime s, default 60, renewed
by bacpypes3 before it lapses), prints {"subscribed": "analogInput:0", ...} once
the device acknowledged, then one line per notification
{"notification": N, "presentValue": ..., "statusFlags": [...]} and exits 0
after --count notifications (default 1; the first is the one the device sends
on subscribing), cancelling the subscription. --timeout covers the whole run.

Exit status: 0 success, 1 an error/reject/abort from the device or any other
failure, 2 bad usage, 3 timeout; the message goes to stderr.
"""
import argparse
import asyncio
import json
import math
import struct
import sys

from bacnet_loopback import UsageError, application_on, bind_udp_socket, parse_loopback
from bacpypes3.apdu import AbortPDU, ErrorPDU, ErrorRejectAbortNack, RejectPDU
from bacpypes3.basetypes import ErrorType, Segmentation
from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.constructeddata import Array, Choice, List, Sequence
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import (
    Atomic,
    BitString,
    Boolean,
    CharacterString,
    Date,
    Double,
    Enumerated,
    Integer,
    Null,
    ObjectIdentifier,
    OctetString,
    Real,
    Time,
    Unsigned,
)

EXIT_FAILURE, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3


class Failure(Exception):
    """An error answer from the device or another failure (exit 1)."""


# ---------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------


def target_address(args):
    host, port = args.target
    # bacpypes3 spelling of a unicast IPv4 station
    return Address(f"{host}:{port}")


# ---------------------------------------------------------------------------
# Values -> JSON
# ---------------------------------------------------------------------------


def number(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def real32(value):
    """A BACnet Real (IEEE single) as the shortest decimal that maps back to
    the same single: 8.1 rather than 8.100000381469727."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    single = struct.unpack("<f", struct.pack("<f", value))[0]
    for digits in range(6, 10):
        text = f"{single:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == single:
            return float(text)
    return single


def object_id_json(objid):
    return f"{objid[0].attr}:{objid[1]}"


def to_json(value):
    """A decoded bacpypes3 value as plain JSON."""
    if value is None or isinstance(value, Null):
        return None
    if isinstance(value, ErrorRejectAbortNack):
        return {"error": describe_failure(value)}
    if isinstance(value, ErrorType):
        return {"error": f"{value.errorClass.attr}: {value.errorCode.attr}"}
    if isinstance(value, Choice):
        # PriorityValue, OptionalUnsigned, ...: the chosen member, null -> None
        choice = getattr(value, "_choice", None)
        if choice is None or choice == "null":
            return None
        return to_json(getattr(value, choice))
    if isinstance(value, ObjectIdentifier):
        return object_id_json(value)
    if isinstance(value, Boolean):
        return bool(value)
    if isinstance(value, Enumerated):
        return value.attr if value.attr is not None else int(value)
    if isinstance(value, BitString):
        return [1 if bit else 0 for bit in value]
    if isinstance(value, Real):
        return real32(value)
    if isinstance(value, Double):
        return number(value)
    if isinstance(value, (Unsigned, Integer)):
        return int(value)
    if isinstance(value, CharacterString):
        return str(value)
    if isinstance(value, OctetString):
        return bytes(value).hex()
    if isinstance(value, (Date, Time)):
        return str(value)
    if isinstance(value, (Array, List, list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, Sequence):
        out = {}
        for name in getattr(value, "_order", ()):
            item = getattr(value, name, None)
            if item is not None:
                out[name] = to_json(item)
        # a Choice has one member set
        return out
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return number(value)
    if isinstance(value, Atomic):
        return str(value)
    return str(value)


def describe_failure(err):
    """An Error/Reject/Abort PDU as 'error services: serviceRequestDenied' etc."""
    if isinstance(err, ErrorPDU):
        return f"error {getattr(err.errorClass, 'attr', err.errorClass)}: {getattr(err.errorCode, 'attr', err.errorCode)}"
    if isinstance(err, RejectPDU):
        reason = err.apduAbortRejectReason
        return f"reject {getattr(reason, 'attr', reason)}"
    if isinstance(err, AbortPDU):
        reason = err.apduAbortRejectReason
        return f"abort {getattr(reason, 'attr', reason)}"
    return f"{type(err).__name__}: {err}"


def parse_value(text):
    """The VALUE of write: JSON when it parses, else the bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# ---------------------------------------------------------------------------
# The client application
# ---------------------------------------------------------------------------


def make_application(args):
    """A minimal BACnet device (bacpypes3 needs one to talk) on our socket."""
    host, port = args.local
    sock = bind_udp_socket(host, port)
    port = sock.getsockname()[1]
    device = DeviceObject(
        objectIdentifier=("device", args.client_device_id),
        objectName=f"twinflow-test-client-{args.client_device_id}",
        vendorIdentifier=999,
        maxApduLengthAccepted=1476,
        segmentationSupported=Segmentation.noSegmentation,
    )
    network_port = NetworkPortObject(
        f"{host}/32:{port}",
        objectIdentifier=("network-port", 1),
        objectName="NetworkPort-1",
        networkNumber=0,
        networkNumberQuality="unknown",
    )

    return application_on(sock, [device, network_port])


async def request(coro):
    """Await a bacpypes3 request; Error/Reject/Abort come back raised or
    returned depending on the call: make both a Failure."""
    try:
        result = await coro
    except ErrorRejectAbortNack as err:
        raise Failure(describe_failure(err)) from None
    if isinstance(result, ErrorRejectAbortNack):
        raise Failure(describe_failure(result))
    return result


def check_object(text):
    """Fail early (usage) on an object that bacpypes3 cannot parse."""
    for sep in (":", ","):
        if sep in text:
            obj_type, _, instance = text.rpartition(sep)
            try:
                ObjectIdentifier((obj_type, int(instance)))
                return text
            except (ValueError, KeyError, TypeError):
                break
    raise UsageError(f"bad object {text!r}: expected TYPE:INSTANCE like analogInput:0")


def check_property(text):
    """Fail early (usage) on an unknown property name ('name' or 'name[3]')."""
    name = text.split("[", 1)[0]
    try:
        PropertyIdentifier(int(name) if name.isdigit() else name)
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"unknown property {name!r} (e.g. presentValue, statusFlags, units)") from None
    return text


def split_obj_props(spec):
    """'analogInput:0:presentValue,units' -> ('analogInput:0', ['presentValue', 'units'])"""
    obj, sep, props = spec.rpartition(":")
    if not sep or not obj or not props:
        raise UsageError(f"rpm {spec!r}: expected OBJ:PROP[,PROP...] like analogInput:0:presentValue,units")
    props = [check_property(p.strip()) for p in props.split(",") if p.strip()]
    if not props:
        raise UsageError(f"rpm {spec!r}: no property")
    return check_object(obj), props


def prop_key(prop_id, index):
    name = prop_id.attr if hasattr(prop_id, "attr") else str(prop_id)
    return name if index is None else f"{name}[{index}]"


# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------


async def cmd_whois(app, args):
    low = high = args.device_id
    # answer within the call's timeout, leaving a margin to report "no I-Am"
    i_ams = await app.who_is(low, high, address=target_address(args), timeout=args.timeout * 0.9)
    if not i_ams:
        raise TimeoutError("no I-Am")
    i_am = i_ams[0]
    return {
        "device_id": int(i_am.iAmDeviceIdentifier[1]),
        "max_apdu": int(i_am.maxAPDULengthAccepted),
        "segmentation": i_am.segmentationSupported.attr,
        "vendor_id": int(i_am.vendorID),
        "source": str(i_am.pduSource),
    }


async def cmd_read(app, args):
    value = await request(app.read_property(target_address(args), args.object, args.property, args.index))
    if isinstance(value, str) and value.startswith("-no "):
        raise Failure(f"cannot decode {args.object} {args.property}: {value}")
    return to_json(value)


async def cmd_rpm(app, args):
    specs = [split_obj_props(spec) for spec in args.specs]
    parameter_list = []
    for obj, props in specs:
        parameter_list.extend([obj, props])
    results = await request(app.read_property_multiple(target_address(args), parameter_list))
    if results is None:
        raise Failure("no ReadPropertyMultiple-ACK")
    out = {}
    for objid, prop_id, index, value in results:
        out.setdefault(object_id_json(objid), {})[prop_key(prop_id, index)] = to_json(value)
    return out


async def cmd_write(app, args):
    value = parse_value(args.value)
    priority = args.priority
    if value is None:
        # Null relinquishes a command slot: a priority is required on the wire
        value = Null(())
        if priority is None:
            priority = 16
    await request(app.write_property(target_address(args), args.object, args.property, value,
                                     args.index, priority))
    return {"ok": True, "object": args.object, "property": args.property,
            "value": None if isinstance(value, Null) else value, "priority": priority}


async def cmd_objects(app, args):
    address = target_address(args)
    device = f"device:{args.device_id}"
    try:
        object_list = await request(app.read_property(address, device, "objectList"))
    except Failure as err:
        # a device that cannot send the whole array in one APDU (segmentation
        # not supported): read it element by element
        if "abort" not in str(err) and "reject" not in str(err):
            raise
        count = int(await request(app.read_property(address, device, "objectList", 0)))
        object_list = [await request(app.read_property(address, device, "objectList", i))
                       for i in range(1, count + 1)]
    out = []
    for objid in object_list:
        entry = {"object": object_id_json(objid)}
        entry["name"] = to_json(await request(app.read_property(address, objid, "objectName")))
        try:
            units = await request(app.read_property(address, objid, "units"))
            entry["units"] = to_json(units)
        except Failure:
            entry["units"] = None  # a device or network-port has no units
        out.append(entry)
    return out


def emit_line(doc):
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


async def cmd_cov(app, args):
    address = target_address(args)
    objid = await app.parse_object_identifier(args.object)
    received = 0
    try:
        async with app.change_of_value(
            address, objid, args.process_id, args.confirmed, args.lifetime
        ) as scm:
            emit_line({"subscribed": object_id_json(objid), "process_id": scm.subscriber_process_identifier,
                       "lifetime": args.lifetime, "confirmed": args.confirmed})
            note = {}
            while received < args.count:
                prop_id, value = await scm.get_value()
                note[prop_key(prop_id, None)] = to_json(value)
                # a notification carries presentValue then statusFlags: one
                # line per notification, once both are in
                if "presentValue" in note and "statusFlags" in note:
                    received += 1
                    emit_line({"notification": received, **note})
                    note = {}
    except ErrorRejectAbortNack as err:
        raise Failure(describe_failure(err)) from None
    return None


COMMANDS = {
    "whois": cmd_whois,
    "read": cmd_read,
    "rpm": cmd_rpm,
    "write": cmd_write,
    "objects": cmd_objects,
    "cov": cmd_cov,
}


async def run(args):
    app = make_application(args)
    try:
        # wait for our endpoint, then the whole call is bounded by --timeout
        for link_layer in app.link_layers.values():
            await asyncio.wait_for(link_layer.server._local_transport_ready.wait(), args.timeout)
        return await asyncio.wait_for(COMMANDS[args.command](app, args), args.timeout)
    finally:
        app.close()


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--local", default=argparse.SUPPRESS,
                        help="our address, 127.0.0.1/32:PORT (default 127.0.0.1/32:0)")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help="seconds (default 5)")
    common.add_argument("--client-device-id", type=int, default=argparse.SUPPRESS,
                        help="our device instance (default 4194302)")

    parser = argparse.ArgumentParser(description="BACnet/IP test client (loopback unicast only)",
                                     parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, help_text):
        p = sub.add_parser(name, help=help_text, parents=[common])
        p.add_argument("--target", required=True, help="device address 127.0.0.1:PORT")
        return p

    p = add("whois", "unicast Who-Is, print the I-Am")
    p.add_argument("--device-id", type=int, help="limit the Who-Is to this instance")

    p = add("read", "ReadProperty")
    p.add_argument("object")
    p.add_argument("property")
    p.add_argument("--index", type=int)

    p = add("rpm", "ReadPropertyMultiple")
    p.add_argument("specs", nargs="+", metavar="OBJ:PROP[,PROP...]")

    p = add("write", "WriteProperty")
    p.add_argument("object")
    p.add_argument("property")
    p.add_argument("value", help="JSON value, or null to relinquish")
    p.add_argument("--priority", type=int, help="1..16")
    p.add_argument("--index", type=int)

    p = add("objects", "object-list with names and units")
    p.add_argument("--device-id", type=int, required=True)

    p = add("cov", "SubscribeCOV and print notifications")
    p.add_argument("object")
    p.add_argument("--count", type=int, default=1, help="notifications to wait for (default 1)")
    p.add_argument("--lifetime", type=int, default=60, help="subscription lifetime in s (default 60)")
    p.add_argument("--confirmed", action="store_true", help="ask for confirmed notifications")
    p.add_argument("--process-id", type=int, default=None, help="subscriber process identifier")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # defaults of the options accepted before or after the subcommand
    for name, default in (("local", "127.0.0.1/32:0"), ("timeout", 5.0), ("client_device_id", 4194302)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        args.target = parse_loopback(args.target, "--target", port0=False)
        args.local = parse_loopback(args.local, "--local")
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        if not 0 <= args.client_device_id <= 4194302:
            raise UsageError("--client-device-id: 0..4194302 expected")
        if getattr(args, "priority", None) is not None and not 1 <= args.priority <= 16:
            raise UsageError("--priority: 1..16 expected")
        if getattr(args, "object", None) is not None:
            check_object(args.object)
        if getattr(args, "property", None) is not None:
            check_property(args.property)
        result = asyncio.run(run(args))
    except UsageError as err:
        print(f"bacnet_client: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (asyncio.TimeoutError, TimeoutError) as err:
        detail = f" ({err})" if str(err) else ""
        print(f"bacnet_client: {args.command}: timeout after {args.timeout:g} s{detail}", file=sys.stderr)
        return EXIT_TIMEOUT
    except Failure as err:
        print(f"bacnet_client: {args.command}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as err:  # decoding problems, bad object names, ...
        print(f"bacnet_client: {args.command}: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    if args.command != "cov":
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
