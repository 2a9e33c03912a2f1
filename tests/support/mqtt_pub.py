"""Foreign MQTT publisher for twinflow's tests (paho-mqtt).

Publishes sensor readings as a field device would, with a persistent session
at QoS 1 so that nothing is lost across a broker restart.

    mqtt_pub.py --port P --count N [--start K] [--units 4] [--rate 0] [--qos 1]
    mqtt_pub.py --port P --raw TOPIC PAYLOAD     # one message, as given

Readings are numbered: reading k has ts = 2026-01-01T00:00:00Z + k seconds and
unit uc-{k % units}; half go to hvac/sensors/data (unit in the payload), half
to hvac/<unit>/sensors/data (unit only in the topic). Prints "published N".
"""
import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def reading(k, units):
    unit = f"uc-{k % units:02d}"
    body = {
        "ts": (T0 + timedelta(seconds=k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "UCWIT": 7.0 + (k % 7) * 0.3,
        "UCAIT": 22.0 + (k % 11) * 0.5,
        "UCWF": 12.0 + (k % 5),
        "UCAIH": 40.0 + (k % 9) * 2,
        "AMBT": 25.0,
        "UCTSP": 21.0,
    }
    if k % 2 == 0:
        body["unit"] = unit
        return "hvac/sensors/data", body
    return f"hvac/{unit}/sensors/data", body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--units", type=int, default=4)
    ap.add_argument("--rate", type=float, default=0.0, help="messages/s, 0 = as fast as possible")
    ap.add_argument("--qos", type=int, default=1)
    ap.add_argument("--client-id", default="twinflow-test-publisher")
    ap.add_argument("--raw", nargs=2, metavar=("TOPIC", "PAYLOAD"))
    a = ap.parse_args()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=a.client_id, clean_session=False)
    acked = set()
    # Counted from the broker's acknowledgements rather than
    # MessageInfo.is_published(), which raises for a message published while
    # the connection was down, although paho keeps it and sends it on
    # reconnect.
    c.on_publish = lambda client, userdata, mid, reason, props: acked.add(mid)
    c.max_queued_messages_set(0)  # unlimited local queue: keep everything across a broker restart
    c.max_inflight_messages_set(100)
    c.reconnect_delay_set(min_delay=0.1, max_delay=1)
    c.connect("127.0.0.1", a.port, keepalive=10)
    c.loop_start()

    mids = []
    if a.raw:
        mids.append(c.publish(a.raw[0], a.raw[1].encode(), qos=a.qos).mid)
    for k in range(a.start, a.start + a.count):
        topic, body = reading(k, a.units)
        mids.append(c.publish(topic, json.dumps(body), qos=a.qos).mid)
        if a.rate > 0:
            time.sleep(1.0 / a.rate)
    deadline = time.time() + 120
    # mids wrap at 65535; the last len(mids) distinct ones are what matter.
    want = set(mids)
    while time.time() < deadline and not want <= acked:
        time.sleep(0.02)
    done = len(want & acked)
    c.disconnect()
    c.loop_stop()
    print(f"published {done} of {len(want)}")
    sys.exit(0 if done == len(want) else 1)


if __name__ == "__main__":
    main()
