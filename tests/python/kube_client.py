"""The official Kubernetes Python client against Navarch's REST facade (issue 3).

Loads the kubeconfig `navarch up` wrote, creates a Deployment, watches it while patching it
(the watch must see the change), reads it back, deletes it and sees the deletion. Prints
{"ok": true, ...} on success; any failure raises.

Usage: kube_client.py KUBECONFIG
"""

import json
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"
NAME = "py-web"


def deployment():
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=NAME, labels={"app": NAME}),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": NAME}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": NAME}),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="web", image="nginx:1.27")]
                ),
            ),
        ),
    )


def main():
    config.load_kube_config(config_file=sys.argv[1])
    apps = client.AppsV1Api()
    core = client.CoreV1Api()

    namespaces = [n.metadata.name for n in core.list_namespace().items]
    assert "default" in namespaces, namespaces

    created = apps.create_namespaced_deployment(NS, deployment())
    assert created.metadata.uid, created
    rv = created.metadata.resource_version

    events = []
    done = threading.Event()

    def watcher():
        w = watch.Watch()
        for ev in w.stream(
            apps.list_namespaced_deployment,
            NS,
            field_selector=f"metadata.name={NAME}",
            resource_version=rv,
            timeout_seconds=20,
        ):
            events.append((ev["type"], ev["object"].spec.replicas))
            if ev["type"] == "DELETED":
                break
        done.set()

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    time.sleep(0.5)

    patched = apps.patch_namespaced_deployment(
        NAME, NS, {"spec": {"replicas": 3}, "metadata": {"labels": {"patched": "yes"}}}
    )
    assert patched.spec.replicas == 3, patched.spec
    assert patched.metadata.labels["patched"] == "yes"

    scale = apps.read_namespaced_deployment_scale(NAME, NS)
    assert scale.spec.replicas == 3, scale

    got = apps.read_namespaced_deployment(NAME, NS)
    assert got.spec.template.spec.containers[0].image == "nginx:1.27"

    listed = apps.list_namespaced_deployment(NS, label_selector="patched=yes")
    assert [d.metadata.name for d in listed.items] == [NAME], listed

    status = apps.delete_namespaced_deployment(NAME, NS, propagation_policy="Background")
    assert status is not None

    assert done.wait(20), f"watch did not see the deletion: {events}"
    types = [e[0] for e in events]
    assert ("MODIFIED", 3) in events, events
    assert types[-1] == "DELETED", events

    try:
        apps.read_namespaced_deployment(NAME, NS)
        raise AssertionError("the deployment still exists")
    except ApiException as e:
        assert e.status == 404, e
        body = json.loads(e.body)
        assert body["kind"] == "Status" and body["reason"] == "NotFound", body

    print(json.dumps({"ok": True, "events": types}))


if __name__ == "__main__":
    main()
