"""A Python gRPC client of the Navarch gateway, built only from the .proto files in proto/.

Usage: grpc_contract.py PROTO_DIR HOST:PORT CA_FILE TOKEN

Generates stubs with grpcio-tools, then creates a ConfigMap (protobuf body built from our
navarch.api.core.v1 messages), watches it, reads it back as JSON, deletes it, and checks the
watch saw ADDED then DELETED, and that errors carry the Kubernetes reason.
"""
import glob
import importlib
import json
import os
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc


def generate(proto_dir, out):
    files = sorted(glob.glob(os.path.join(proto_dir, "navarch", "**", "*.proto"), recursive=True))
    rel = [os.path.relpath(f, proto_dir) for f in files]
    args = ["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}"] + rel
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # Make the generated folders importable packages.
    for root, _, _ in os.walk(out):
        open(os.path.join(root, "__init__.py"), "a").close()
    sys.path.insert(0, out)


def main():
    proto_dir, target, ca_file, token = sys.argv[1:5]
    out = tempfile.mkdtemp(prefix="navarch-py-")
    generate(proto_dir, out)
    gw = importlib.import_module("navarch.gateway.v1.gateway_pb2")
    gw_grpc = importlib.import_module("navarch.gateway.v1.gateway_pb2_grpc")
    core = importlib.import_module("navarch.api.v1.core_v1_pb2")
    meta = importlib.import_module("navarch.api.v1.meta_v1_pb2")

    with open(ca_file, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    host, port = target.rsplit(":", 1)
    channel = grpc.secure_channel(f"localhost:{port}", creds)
    stub = gw_grpc.GatewayStub(channel)
    auth = [("authorization", f"Bearer {token}")]
    configmaps = gw.Resource(group="", version="v1", resource="configmaps")

    # Watch in the background from the current revision.
    listed = stub.List(gw.ListRequest(resource=configmaps, namespace="default"), metadata=auth, timeout=10)
    events = []
    seen_both = threading.Event()

    def watch():
        req = gw.WatchRequest(resource=configmaps, namespace="default", resource_version=listed.resource_version,
                              accept="application/json", timeout_seconds=20)
        for ev in stub.Watch(req, metadata=auth, timeout=25):
            obj = json.loads(ev.object.raw)
            if obj.get("metadata", {}).get("name") == "from-python":
                events.append(ev.type)
            if "DELETED" in events:
                seen_both.set()
                return

    t = threading.Thread(target=watch, daemon=True)
    t.start()

    cm = core.ConfigMap(metadata=meta.ObjectMeta(name="from-python", labels={"made-by": "python"}), data={"greeting": "hello"})
    created = stub.Create(gw.CreateRequest(
        resource=configmaps, namespace="default",
        object=gw.RawObject(api_version="v1", kind="ConfigMap", raw=cm.SerializeToString()),
    ), metadata=auth, timeout=10)
    decoded = core.ConfigMap()
    decoded.ParseFromString(created.object.raw)
    assert decoded.metadata.uid, "server sets the uid"
    assert decoded.data["greeting"] == "hello"

    got = stub.Get(gw.GetRequest(resource=configmaps, namespace="default", name="from-python", accept="application/json"),
                   metadata=auth, timeout=10)
    as_json = json.loads(got.object.raw)
    assert as_json["apiVersion"] == "v1" and as_json["kind"] == "ConfigMap", as_json
    assert as_json["data"] == {"greeting": "hello"}, as_json

    # Errors carry the Kubernetes reason in a meta.v1.Status detail.
    try:
        stub.Create(gw.CreateRequest(resource=configmaps, namespace="default",
                                     object=gw.RawObject(api_version="v1", kind="ConfigMap", raw=cm.SerializeToString())),
                    metadata=auth, timeout=10)
        raise SystemExit("duplicate create succeeded")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.ALREADY_EXISTS, e.code()
        status = meta.Status()
        for key, value in e.trailing_metadata() or []:
            if key == "grpc-status-details-bin":
                status.ParseFromString(value)
        assert status.reason == "AlreadyExists", status

    stub.Delete(gw.DeleteRequest(resource=configmaps, namespace="default", name="from-python"), metadata=auth, timeout=10)
    if not seen_both.wait(15):
        raise SystemExit(f"watch saw {events}, expected ADDED then DELETED")
    assert events[0] == "ADDED" and events[-1] == "DELETED", events
    print(json.dumps({"ok": True, "events": events}))


if __name__ == "__main__":
    main()
