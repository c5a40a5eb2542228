"""Writes to Plantline's InfluxDB-compatible API with InfluxDB's own Python clients, unchanged.

Usage: influx_clients.py <base-url> <database> <client-id> <client-secret> <access-token> <machine-id>

The 1.x client authenticates as InfluxDB 1.x users do, with a username and password: the
gateway's client id and secret. The 2.x client uses a token: `<client id>:<secret>`, and also
an access token. Prints one JSON document of what each client saw; the Rust test checks it
against InfluxDB. Readings that must not be stored carry temperature 11.25 or pressure 11.25.
"""

import json
import sys
import time

from influxdb import InfluxDBClient
from influxdb.exceptions import InfluxDBClientError
from influxdb_client import InfluxDBClient as InfluxDB2Client
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

REFUSED = 11.25


def v1(base, database, client_id, secret, machine, now_s):
    """The 1.x client: ping, write_points at precision s, a point it must refuse, another
    database, and a wrong password."""
    host, port = base.removeprefix("http://").split(":")

    def client(password, db=database):
        return InfluxDBClient(host=host, port=int(port), username=client_id,
                              password=password, database=db)

    seen = {"ping": client(secret).ping()}
    point = {
        "measurement": "sensor_readings",
        "tags": {"machine_id": machine, "location": "somewhere else"},
        "time": now_s - 30,
        "fields": {"temperature": 70.5, "speed": 1200},
    }
    seen["written"] = client(secret).write_points([point], time_precision="s")
    bad = dict(point, time=now_s - 29, fields={"temperature": 9999.0})
    try:
        client(secret).write_points([bad], time_precision="s")
        seen["bad"] = "accepted"
    except InfluxDBClientError as err:
        seen["bad"] = {"code": err.code, "content": str(err.content)}
    try:
        client(secret, db="another").write_points([point], time_precision="s")
        seen["other_database"] = "accepted"
    except InfluxDBClientError as err:
        seen["other_database"] = {"code": err.code}
    wrong = dict(point, time=now_s - 28, fields={"temperature": REFUSED})
    try:
        client(secret + "x").write_points([wrong], time_precision="s")
        seen["wrong_password"] = "accepted"
    except InfluxDBClientError as err:
        seen["wrong_password"] = {"code": err.code, "content": str(err.content)}
    return seen


def v2_write(base, token, database, record):
    """One synchronous write with `token`: True, or the refusal's status and body."""
    with InfluxDB2Client(url=base, token=token, org="plant") as client:
        try:
            client.write_api(write_options=SYNCHRONOUS).write(bucket=database, record=record)
            return True
        except ApiException as err:
            return {"code": err.status, "body": err.body}


def v2(base, database, client_id, secret, access_token, machine, now_s):
    """The 2.x client: the gateway's id:secret as its token, one good and one mixed write;
    an access token; a wrong secret and a token that is neither."""
    line = "sensor_readings,machine_id={m} pressure={p} {t}"
    at = lambda back: (now_s - back) * 10**9  # noqa: E731
    seen = {
        "written": v2_write(base, f"{client_id}:{secret}", database,
                            line.format(m=machine, p=101.25, t=at(20))),
        "mixed": v2_write(base, f"{client_id}:{secret}", database, "\n".join([
            line.format(m=machine, p=102.5, t=at(19)),
            f"sensor_readings,machine_id={machine} humidity=3 {at(18)}",
        ])),
        "access_token": v2_write(base, access_token, database,
                                 line.format(m=machine, p=103.75, t=at(17))),
        "wrong_secret": v2_write(base, f"{client_id}:{secret}x", database,
                                 line.format(m=machine, p=REFUSED, t=at(16))),
        "bad_token": v2_write(base, "not-a-token", database,
                              line.format(m=machine, p=REFUSED, t=at(15))),
    }
    return seen


def main():
    base, database, client_id, secret, access_token, machine = sys.argv[1:7]
    now_s = int(time.time())
    print(json.dumps({
        "v1": v1(base, database, client_id, secret, machine, now_s),
        "v2": v2(base, database, client_id, secret, access_token, machine, now_s),
    }))


if __name__ == "__main__":
    main()
