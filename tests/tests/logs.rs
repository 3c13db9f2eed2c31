//! `kubectl logs` end to end: `navarch up --runtime process` (containers as host
//! processes, no root needed), pods that write to stdout, and the real kubectl (oldest and
//! newest) reading them through the facade, the gateway and the node's tunnel: whole logs,
//! `--tail`, `--limit-bytes`, `-c` with the apiserver's errors when it is missing or wrong,
//! `--previous` after a restart, and `-f` that streams new lines and ends with the container.

use std::time::{Duration, Instant};

use navarch_e2e::Navarch;
use navarch_e2e::kubectl::{KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl, wait_output};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: counter
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 2; echo late; sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  containers:
  - name: a
    image: busybox
    command: ["sh", "-c", "echo from a; sleep 3600"]
  - name: b
    image: busybox
    command: ["sh", "-c", "echo from b; sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  restartPolicy: Always
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo attempt; exit 3"]
"#;

const SHORT: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: short
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo one; sleep 2; echo two; sleep 2; echo three"]
"#;

fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kubectl_logs_reads_containers_through_the_node_tunnel() {
    let navarch = Navarch::up_with_args(&["--runtime", "process"]).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let pods = k.file("pods.yaml", PODS);
    k.ok(&["apply", "-f", pods.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/counter",
        "pod/two",
        "--timeout=60s",
    ]);

    eventually("the first lines", Duration::from_secs(10), || {
        k.run(&["logs", "counter"])
            .stdout
            .starts_with("line 1\nline 2\nline 3\n")
    });
    assert_eq!(k.ok(&["logs", "counter", "--tail=1"]).trim(), "line 3");
    assert_eq!(k.ok(&["logs", "counter", "--limit-bytes=6"]), "line 1");
    eventually("the late line", Duration::from_secs(10), || {
        k.run(&["logs", "counter", "--tail=1"]).stdout.trim() == "late"
    });

    // More than one container: the apiserver's message, then -c.
    let err = k.fails(&["logs", "two", "--all-containers=false", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod two"),
        "{err}"
    );
    assert_eq!(k.ok(&["logs", "two", "-c", "b"]).trim(), "from b");
    let all = k.ok(&["logs", "two", "--all-containers"]);
    assert!(all.contains("from a") && all.contains("from b"), "{all}");

    // A restarted container: --previous reads the attempt before; a container that never
    // restarted has none.
    eventually("a restart", Duration::from_secs(30), || {
        k.run(&[
            "get",
            "pod",
            "crasher",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ])
        .stdout
        .trim()
        .parse::<i32>()
        .is_ok_and(|n| n >= 1)
    });
    assert_eq!(k.ok(&["logs", "crasher", "--previous"]).trim(), "attempt");
    let err = k.fails(&["logs", "counter", "--previous"]);
    assert!(
        err.contains("previous terminated container \"main\" in pod \"counter\" not found"),
        "{err}"
    );
    let err = k.fails(&["logs", "missing"]);
    assert!(err.contains("pods \"missing\" not found"), "{err}");

    // -f streams lines as they come and ends when the container exits.
    let short = k.file("short.yaml", SHORT);
    k.ok(&["apply", "-f", short.to_str().unwrap()]);
    eventually(
        "the short pod's first line",
        Duration::from_secs(30),
        || k.run(&["logs", "short"]).stdout.starts_with("one"),
    );
    let started = Instant::now();
    let follow = k.spawn(&["logs", "-f", "short"]);
    let out = wait_output(follow, Duration::from_secs(30)).expect("kubectl logs -f ended");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text, "one\ntwo\nthree\n", "after {:?}", started.elapsed());
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "-f followed the running container rather than reading a finished log ({:?})",
        started.elapsed()
    );

    // The oldest kubectl we support reads logs the same way.
    let old = Kubectl::new(KUBECTL_OLDEST, &navarch.kubeconfig).unwrap();
    assert_eq!(old.ok(&["logs", "counter", "--tail=2"]), "line 3\nlate\n");

    // kubectl exec over WebSocket: output on stdout and stderr, the exit code passed on.
    assert_eq!(
        k.ok(&["exec", "two", "-c", "b", "--", "echo", "hi"]),
        "hi\n"
    );
    let r = k.run(&[
        "exec",
        "counter",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert!(!r.ok);
    assert_eq!(r.stdout, "out\n");
    assert!(r.stderr.contains("err"), "{}", r.stderr);
    assert!(r.stderr.contains("exit code 3"), "{}", r.stderr);
    let code = k
        .command(&["exec", "counter", "--", "sh", "-c", "exit 7"])
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(7), "kubectl exits with the command's code");
    let err = k.fails(&["exec", "two", "-c", "nope", "--", "true"]);
    assert!(
        err.contains("container nope is not valid for pod two"),
        "{err}"
    );
    // kubectl 1.29 speaks WebSocket when asked; older ones (and 1.29 by default) SPDY.
    let v129 = Kubectl::new(
        "/usr/lib/google-cloud-sdk/bin/kubectl.1.29",
        &navarch.kubeconfig,
    )
    .unwrap();
    let r = v129.run_with(
        &["exec", "counter", "--", "echo", "ws"],
        None,
        &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true")],
    );
    assert!(r.ok && r.stdout == "ws\n", "{r:?}");
    assert_eq!(
        v129.ok(&["exec", "counter", "--", "echo", "spdy"]),
        "spdy\n"
    );
    assert_eq!(old.ok(&["exec", "counter", "--", "echo", "spdy"]), "spdy\n");
    let code = old
        .command(&["exec", "counter", "--", "sh", "-c", "exit 7"])
        .status()
        .unwrap()
        .code();
    assert_eq!(code, Some(7), "the exit code over SPDY");
}
