"""Writes to Plantline's InfluxDB-compatible API with InfluxDB's own Python clients, unchanged.

Usage: influx_clients.py <base-url> <database> <access-token> <machine-id>

Prints one JSON document of what each client saw; the Rust test checks it against InfluxDB.
"""

import json
import sys
import time

from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
from influxdb_client import InfluxDBClient as InfluxDB2Client
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException


def v1(base, database, token, machine, now_s):
    """The 1.x client: ping, write_points at precision s, then a point it must refuse."""
    host, port = base.removeprefix("http://").split(":")
    client = InfluxDBClient(
        host=host,
        port=int(port),
        database=database,
        headers={"Authorization": f"Bearer {token}"},
    )
    seen = {"ping": client.ping()}
    point = {
        "measurement": "sensor_readings",
        "tags": {"machine_id": machine, "location": "somewhere else"},
        "time": now_s - 30,
        "fields": {"temperature": 70.5, "speed": 1200},
    }
    seen["written"] = client.write_points([point], time_precision="s")
    bad = dict(point, time=now_s - 29, fields={"temperature": 9999.0})
    try:
        client.write_points([bad], time_precision="s")
        seen["bad"] = "accepted"
    except InfluxDBClientError as err:
        seen["bad"] = {"code": err.code, "content": str(err.content)}
    other = InfluxDBClient(
        host=host,
        port=int(port),
        database="another",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        other.write_points([point], time_precision="s")
        seen["other_database"] = "accepted"
    except InfluxDBClientError as err:
        seen["other_database"] = {"code": err.code}
    return seen


def v2(base, database, token, machine, now_s):
    """The 2.x client: a token, a bucket, the synchronous write API, one good and one bad line."""
    with InfluxDB2Client(url=base, token=token, org="plant") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        good = f"sensor_readings,machine_id={machine} pressure=101.25 {(now_s - 20) * 10**9}"
        write.write(bucket=database, record=good)
        seen = {"written": True}
        mixed = "\n".join(
            [
                f"sensor_readings,machine_id={machine} pressure=102.5 {(now_s - 19) * 10**9}",
                f"sensor_readings,machine_id={machine} humidity=3 {(now_s - 18) * 10**9}",
            ]
        )
        try:
            write.write(bucket=database, record=mixed)
            seen["mixed"] = "accepted"
        except ApiException as err:
            seen["mixed"] = {"code": err.status, "body": err.body}
    with InfluxDB2Client(url=base, token="not-a-token", org="plant") as client:
        try:
            client.write_api(write_options=SYNCHRONOUS).write(bucket=database, record=good)
            seen["bad_token"] = "accepted"
        except ApiException as err:
            seen["bad_token"] = {"code": err.status}
    return seen


def main():
    base, database, token, machine = sys.argv[1:5]
    now_s = int(time.time())
    print(json.dumps({"v1": v1(base, database, token, machine, now_s),
                      "v2": v2(base, database, token, machine, now_s)}))


if __name__ == "__main__":
    main()
