"""Foreign MQTT subscriber for twinflow's tests (paho-mqtt).

    mqtt_sub.py --port P --out FILE TOPIC [TOPIC ...]

Subscribes at QoS 1 and appends each message to FILE as one JSON line
{"topic", "retain", "payload"} (payload parsed as JSON when it is JSON),
flushing every line, until killed. Prints "subscribed" once the broker has
acknowledged the subscriptions.
"""
import argparse
import json
import sys

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("topics", nargs="+")
    a = ap.parse_args()
    out = open(a.out, "a", buffering=1)

    def on_connect(client, userdata, flags, reason, props):
        client.subscribe([(t, 1) for t in a.topics])

    announced = []

    def on_subscribe(client, userdata, mid, reasons, props):
        # Once only: the test stops reading stdout after this line, and a
        # resubscription after a broker restart must not write to a closed pipe.
        if not announced:
            announced.append(True)
            print("subscribed", flush=True)

    def on_message(client, userdata, msg):
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = msg.payload.decode("utf-8", "replace")
        out.write(json.dumps({"topic": msg.topic, "retain": bool(msg.retain), "payload": payload}) + "\n")

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="twinflow-test-subscriber", clean_session=False)
    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = on_message
    c.reconnect_delay_set(min_delay=0.1, max_delay=1)
    c.connect("127.0.0.1", a.port, keepalive=10)
    c.loop_forever(retry_first_connection=True)


if __name__ == "__main__":
    sys.exit(main())
