"""A Sparkplug B edge node built on `pysparkplug` (its client, topics and payload encoding,
unchanged), acting out a scenario against Plantline's bridge.

Usage: sparkplug_edge.py <host> <port> <group> <host_id> <named_device> <uuid_device> <t0_ms>
       sparkplug_edge.py births <host> <port> <group> <device> <t0_ms>
       sparkplug_edge.py data <host> <port> <group> <device> <t0_ms> <first_seq> <count>

The second form publishes E1's births and one aliased reading at t0; the third, `count`
alias-only readings of the device at t0 + 1 s + i ms (temperature 20 + i / 100), continuing
the sequence at `first_seq`, each acknowledged by the broker (QoS 1) before the next.

Edge node E1 carries the two registered devices; E2 carries an unknown device and sends an
alias no birth defined. Values Plantline must store are at t0 + 0..5 s; values it must not
store are 11.25. Prints one JSON document of what the edge nodes saw (STATE, rebirth
requests); the Rust test checks InfluxDB and the bridge against it.
"""

import json
import sys
import threading
import time

import pysparkplug as psp

DT = psp.DataType


def metric(name, value, datatype, *, alias=None, ts=None):
    return psp.Metric(timestamp=ts, name=name, datatype=datatype, value=value, alias=alias)


def by_alias(alias, value, datatype, ts):
    """A DATA metric as the specification prefers it: the alias, no name."""
    return psp.Metric(timestamp=ts, name=None, datatype=datatype, value=value, alias=alias)


class Edge:
    """One edge node: its sequence counter and the rebirth requests it received."""

    def __init__(self, client, group, edge):
        self.client, self.group, self.edge = client, group, edge
        self.seq = 0
        self.rebirths = threading.Event()
        client.subscribe(
            psp.Topic(message_type=psp.MessageType.NCMD, group_id=group, edge_node_id=edge),
            psp.QoS.AT_LEAST_ONCE,
            self.on_command,
        )

    def on_command(self, _client, message):
        for m in message.payload.metrics:
            if m.name == "Node Control/Rebirth" and m.value:
                self.rebirths.set()

    def send(self, kind, payload_type, metrics, device=None, *, seq=None):
        if seq is None:
            seq = self.seq
        self.seq = (seq + 1) % 256
        topic = psp.Topic(message_type=kind, group_id=self.group,
                          edge_node_id=self.edge, device_id=device)
        now = psp.get_current_timestamp()
        payload = (payload_type(timestamp=now, seq=seq) if payload_type is psp.DDeath
                   else payload_type(timestamp=now, seq=seq, metrics=tuple(metrics)))
        self.client.publish(psp.Message(topic=topic, payload=payload,
                                        qos=psp.QoS.AT_LEAST_ONCE, retain=False),
                            include_dtypes=True)

    def node_birth(self, extra=()):
        self.send(psp.MessageType.NBIRTH, psp.NBirth, [
            metric("bdSeq", 0, DT.INT64),
            metric("Node Control/Rebirth", False, DT.BOOLEAN),
            *extra,
        ], seq=0)


def phase(mode, host, port, group, device, t0, *rest):
    """The births, or a run of aliased data, of a kill test (see the module's usage)."""
    t0 = int(t0)
    client = psp.Client(client_id=f"edge-{group}-{mode}")
    client.connect(host, port=int(port), blocking=False)
    time.sleep(0.5)
    edge = Edge(client, group, "E1")
    if mode == "births":
        edge.node_birth()
        edge.send(psp.MessageType.DBIRTH, psp.DBirth,
                  [metric("Temperature", 19.5, DT.DOUBLE, alias=1, ts=t0)], device)
        print(json.dumps({"next_seq": edge.seq}))
    else:
        first_seq, count = int(rest[0]), int(rest[1])
        edge.seq = first_seq
        for i in range(count):
            edge.send(psp.MessageType.DDATA, psp.DData,
                      [by_alias(1, 20 + i / 100, DT.DOUBLE, t0 + 1000 + i)], device)
        print(json.dumps({"sent": count}))
    time.sleep(0.5)
    client.disconnect()


def main():
    if sys.argv[1] in ("births", "data"):
        phase(*sys.argv[1:])
        return
    host, port, group, host_id, named, by_id, t0 = sys.argv[1:8]
    t0 = int(t0)
    seen = {}

    client = psp.Client(client_id=f"edge-{group}")
    state = threading.Event()

    def on_state(_client, message):
        seen["state"] = {"online": message.payload.online}
        state.set()

    client.connect(host, port=int(port), blocking=False)
    time.sleep(0.5)
    client.subscribe(psp.Topic(message_type=psp.MessageType.STATE, sparkplug_host_id=host_id),
                     psp.QoS.AT_LEAST_ONCE, on_state)
    seen["state_seen"] = state.wait(15)
    # A client that arrives later gets it too: STATE is retained.
    late = psp.Client(client_id=f"late-{group}")
    retained = threading.Event()

    def on_retained(_client, message):
        seen["state_later"] = {"online": message.payload.online, "retain": bool(message.retain)}
        retained.set()

    late.connect(host, port=int(port), blocking=False)
    time.sleep(0.5)
    late.subscribe(psp.Topic(message_type=psp.MessageType.STATE, sparkplug_host_id=host_id),
                   psp.QoS.AT_LEAST_ONCE, on_retained)
    retained.wait(10)
    late.disconnect()

    e1 = Edge(client, group, "E1")
    e2 = Edge(client, group, "E2")
    time.sleep(0.5)
    e1.node_birth()
    e1.send(psp.MessageType.DBIRTH, psp.DBirth, [
        metric("Sensors/Temperature", 61.5, DT.DOUBLE, alias=1, ts=t0),
        metric("Speed", 1200, DT.INT32, alias=2, ts=t0),
        metric("Door open", False, DT.BOOLEAN, alias=3, ts=t0),
    ], named)
    e1.send(psp.MessageType.DBIRTH, psp.DBirth, [
        metric("pressure", 101.5, DT.FLOAT, alias=4, ts=t0),
    ], by_id)
    # By name, then by alias only.
    e1.send(psp.MessageType.DDATA, psp.DData,
            [metric("Sensors/Temperature", 62.25, DT.DOUBLE, ts=t0 + 1000)], named)
    e1.send(psp.MessageType.DDATA, psp.DData, [
        by_alias(1, 63.5, DT.DOUBLE, t0 + 2000),
        by_alias(2, 1250, DT.INT32, t0 + 2000),
    ], named)
    e1.send(psp.MessageType.DDATA, psp.DData, [by_alias(4, 102.75, DT.FLOAT, t0 + 2000)], by_id)
    # A gap in the sequence: the values can still be named, and a rebirth is asked for.
    e1.send(psp.MessageType.DDATA, psp.DData, [by_alias(1, 64.0, DT.DOUBLE, t0 + 3000)],
            named, seq=e1.seq + 3)
    seen["rebirth_after_gap"] = e1.rebirths.wait(15)

    # E2: an unknown device, then an alias no birth defined (a rebirth, nothing stored).
    e2.node_birth()
    e2.send(psp.MessageType.DBIRTH, psp.DBirth,
            [metric("Temperature", 11.25, DT.DOUBLE, alias=1, ts=t0 + 4000)], "ghost")
    e2.send(psp.MessageType.DDATA, psp.DData, [by_alias(99, 11.25, DT.DOUBLE, t0 + 4000)], "ghost")
    seen["rebirth_after_unknown_alias"] = e2.rebirths.wait(15)

    # The bridge goes on: E1's device reports again, then dies.
    e1.send(psp.MessageType.DDATA, psp.DData, [by_alias(1, 65.0, DT.DOUBLE, t0 + 5000)], named)
    e1.send(psp.MessageType.DDEATH, psp.DDeath, [], by_id)
    time.sleep(0.5)
    client.disconnect()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
