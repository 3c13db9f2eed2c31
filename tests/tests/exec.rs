//! `kubectl exec -i` and `-it` end to end (issues 3 and 6): stdin reaches the command and its
//! end is the command's end of file, a terminal (`-t`) is a real pty in the container with
//! the client's size, and the exit code comes back, with the oldest kubectl (SPDY/3.1), the
//! newest (WebSocket v5) and the newest made to use SPDY; on the process runtime
//! (`navarch up --runtime process`, no root needed) and on real runc containers.

use std::io::Write;
use std::process::{Command, Stdio};

use navarch_e2e::Navarch;
use navarch_e2e::images::{Registry, push_busybox};
use navarch_e2e::kubectl::{KUBECTL_NEWEST, KUBECTL_OLDEST, Kubectl, RUN_TIMEOUT, wait_output};
use navarch_e2e::runc::RuncNode;
use navarch_e2e::{has, is_root};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: shell
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

/// What one kubectl run did: (exit code, stdout, stderr).
type Outcome = (Option<i32>, String, String);

/// `kubectl exec` with `stdin` written to it and then closed.
fn exec(k: &Kubectl, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Outcome {
    let mut full = vec!["exec"];
    full.extend_from_slice(args);
    let mut cmd = k.command(&full);
    cmd.envs(env.iter().copied()).stdin(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl starts");
    let mut pipe = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // Written from a thread: the command's output may fill its pipe before stdin is read.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&data);
    });
    let out = wait_output(child, RUN_TIMEOUT).expect("kubectl exec finishes");
    writer.join().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kubectl exec -it` under a pseudo-terminal of 100x30 (`script`), with an open stdin.
fn exec_tty(k: &Kubectl, pod: &str, script: &str, env: &[(&str, &str)]) -> Outcome {
    let line = format!(
        "stty cols 100 rows 30; {} exec -it {pod} -- sh -c '{script}'",
        k.bin.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("KUBECONFIG", &k.kubeconfig)
        .env("HOME", k.dir())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    // Kept open while it runs: `script` ends the session when its input ends.
    let stdin = child.stdin.take();
    let out = wait_output(child, RUN_TIMEOUT).expect("kubectl exec -it finishes");
    drop(stdin);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The checks every kubectl and runtime pass.
fn interactive_exec(k: &Kubectl, pod: &str, env: &[(&str, &str)], what: &str) {
    let (code, out, err) = exec(k, &["-i", pod, "--", "cat"], b"hello\n", env);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "hello\n"),
        "{what}: echo hello | kubectl exec -i -- cat: {err}"
    );

    let (code, _, err) = exec(
        k,
        &["-i", pod, "--", "sh", "-c", "read x; exit 3"],
        b"",
        env,
    );
    assert_eq!(code, Some(3), "{what}: read x; exit 3: {err}");
    assert!(err.contains("exit code 3"), "{what}: {err}");

    // stdout and stderr apart, stdin read line by line.
    let (code, out, err) = exec(
        k,
        &[
            "-i",
            pod,
            "--",
            "sh",
            "-c",
            "read a; read b; echo \"$b $a\"; echo oops >&2",
        ],
        b"one\ntwo\n",
        env,
    );
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "two one\n"),
        "{what}: {err}"
    );
    assert!(err.contains("oops"), "{what}: {err}");

    // More than the flow-control window and the pipes hold, both ways at once.
    let big: Vec<u8> = (0..2_000_000u32)
        .map(|i| b'a' + (i % 26) as u8)
        .collect::<Vec<u8>>();
    let (code, out, err) = exec(k, &["-i", pod, "--", "cat"], &big, env);
    assert_eq!(code, Some(0), "{what}: {err}");
    assert!(
        out.len() == big.len() && out.as_bytes() == big,
        "{what}: {} bytes back",
        out.len()
    );

    // A terminal: a pty in the container with the client's size; stderr on it too.
    let (code, out, err) = exec_tty(k, pod, "tty; stty size; echo on-stderr >&2; exit 4", env);
    assert_eq!(code, Some(4), "{what}: -it exit code: {out} {err}");
    assert!(out.contains("/dev/pts/"), "{what}: tty: {out:?}");
    assert!(out.contains("30 100"), "{what}: stty size: {out:?}");
    assert!(out.contains("on-stderr"), "{what}: {out:?}");
}

/// One kubectl the exec is checked with: what it is, its binary, its environment.
struct Client {
    what: &'static str,
    bin: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const CLIENTS: [Client; 3] = [
    Client {
        what: "kubectl 1.27 (SPDY)",
        bin: KUBECTL_OLDEST,
        env: &[],
    },
    Client {
        what: "kubectl 1.33 (WebSocket)",
        bin: KUBECTL_NEWEST,
        env: &[],
    },
    Client {
        what: "kubectl 1.33 (SPDY)",
        bin: KUBECTL_NEWEST,
        env: &[("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")],
    },
];

#[test]
fn exec_with_stdin_and_a_terminal_on_the_process_runtime() {
    let navarch = Navarch::up_with_args(&["--runtime", "process"]).unwrap();
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let pod = k.file("pod.yaml", &POD.replace("IMAGE", "busybox"));
    k.ok(&["apply", "-f", pod.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/shell",
        "--timeout=60s",
    ]);
    for c in &CLIENTS {
        let k = Kubectl::new(c.bin, &navarch.kubeconfig).unwrap();
        interactive_exec(&k, "shell", c.env, &format!("process runtime, {}", c.what));
    }
    // Errors before the command runs answer the upgrade, on both protocols.
    for c in &CLIENTS {
        let k = Kubectl::new(c.bin, &navarch.kubeconfig).unwrap();
        let (code, _, err) = exec(&k, &["-i", "shell", "-c", "nope", "--", "cat"], b"", c.env);
        assert_ne!(code, Some(0), "{}", c.what);
        assert!(
            err.contains("container nope is not valid for pod shell"),
            "{}: {err}",
            c.what
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_stdin_and_a_terminal_in_runc_containers() {
    if !is_root() || !has("runc") {
        eprintln!("SKIPPED exec e2e on runc: needs root and runc (see .ci/test.sh)");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(work.path()).unwrap();
    let image = registry.image("test/busybox:1");
    push_busybox(&image).await.unwrap();
    // Pod range 10.80-89.0.0/16, Services 10.90-99.0.0/16: no other test's.
    let octet = 80 + std::process::id() % 10;
    let node = RuncNode::up("exec", octet, octet + 10, &[]).unwrap();
    let navarch = &node.navarch;
    let k = Kubectl::new(KUBECTL_NEWEST, &navarch.kubeconfig).unwrap();
    let pod = k.file("pod.yaml", &POD.replace("IMAGE", &image));
    k.ok(&["apply", "-f", pod.to_str().unwrap()]);
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/shell",
        "--timeout=90s",
    ]);
    for c in &CLIENTS {
        let k = Kubectl::new(c.bin, &navarch.kubeconfig).unwrap();
        interactive_exec(&k, "shell", c.env, &format!("runc, {}", c.what));
    }
    // The command runs inside the container, in its root.
    let (code, out, err) = exec(&k, &["shell", "--", "ls", "/"], b"", &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !out.contains("usr"),
        "the container's root, not the host's: {out}"
    );
}
