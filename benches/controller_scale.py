#!/usr/bin/env python3
"""The controller at scale, on the local API server: N MigrationSchedules in one namespace,
each with its own SQLite source and target, a daily cron and the Job runner (the default; an
in-process schedule is not scheduled where the operator does not allow it), and 10 finished
runs kept per schedule. One `cloudmigrate controller --namespace bench` starts on them. For each N it
reports:
  - the time from the controller's start until every schedule shows status.nextRunTime, with
    the CPU seconds the controller, the API server and etcd spent meanwhile (on stderr);
  - the controller's peak RSS;
  - its CPU over the 30 s after that (idle CPU);
  - the API requests per minute over those 30 s (from the API server's own counter).

With --worker-pods, each schedule also has one finished worker pod (a full pod as the Job
executor writes it, labelled as a run's worker) and one FailedCreate event of a Job, which the
controller watches and caches (slimmed) to say why a run's workers do not start.

Usage: benches/controller_scale.py [--worker-pods] [N ...]        (default: 100 300 1000 3000)
The API server is started afresh for each N (tests/apiserver/start.sh, built and cached by
tests/apiserver/build.sh); the controller is the release build.
"""
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("CLOUDMIGRATE_CACHE", os.path.expanduser("~/.cache/cloudmigrate"))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(CACHE, "target"))
BIN = os.path.join(TARGET, "release", "cloudmigrate")
NS = "bench"
RUNS_PER_SCHEDULE = 10
IDLE_SECONDS = 30
GROUP = "/apis/cloudmigrate.io/v1alpha1"


class Api:
    """A keep-alive HTTPS client per thread, authenticated by the test kubeconfig's cert."""

    def __init__(self, state):
        pki = os.path.join(state, "pki")
        with open(os.path.join(state, "kubeconfig")) as f:
            self.port = int(re.search(r"server: https://127\.0\.0\.1:(\d+)", f.read()).group(1))
        self.ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
        self.ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        self.local = threading.local()

    def call(self, method, path, body=None, content_type="application/json"):
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=120)
            self.local.conn = conn
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": content_type})
        resp = conn.getresponse()
        text = resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status} {text[:300]!r}")
        return text

    def stream(self, path):
        """A GET on a connection of its own, whose response is read line by line (a watch)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=1800)
        conn.request("GET", path)
        resp = conn.getresponse()
        if resp.status >= 300:
            raise RuntimeError(f"GET {path}: {resp.status} {resp.read()[:300]!r}")
        return resp

    def json(self, method, path, body=None, content_type="application/json"):
        return json.loads(self.call(method, path, body, content_type))


def requests_total(api):
    """The API server's count of requests served so far, but for its own /metrics and health
    checks. A watch is counted when it ends (the controller's watches are renewed every few
    minutes)."""
    text = api.call("GET", "/metrics").decode()
    lines = [l for l in text.splitlines() if l.startswith("apiserver_request_total{")]
    if not lines:
        raise RuntimeError("the API server reports no apiserver_request_total")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if 'subresource="/metrics"' not in line and 'subresource="/readyz"' not in line
        and 'subresource="/healthz"' not in line and 'subresource="/livez"' not in line
    )


def requests_by_kind(api):
    """The API server's request counts by verb, resource and subresource."""
    out = {}
    for line in api.call("GET", "/metrics").decode().splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if not labels.get("resource"):
            continue
        key = (labels.get("verb"), labels.get("resource"), labels.get("subresource", ""))
        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def worker_pod(name, run):
    """A finished worker pod of `run`, with the spec and status a Job's pod has."""
    job = f"{run}-1"
    env = [{"name": "CLOUDMIGRATE_WORKER_INDEX", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "CLOUDMIGRATE_PASSWORDS_FROM_ENV", "value": "true"}] + [
        {"name": f"CLOUDMIGRATE_{side}_PASSWORD", "valueFrom": {"secretKeyRef": {
            "name": f"{name}-{side.lower()}", "key": "password", "optional": True}}}
        for side in ("SOURCE", "TARGET")]
    condition = lambda t, s, r="": {"type": t, "status": s, "reason": r,
                                    "lastTransitionTime": "2026-01-01T02:00:00Z"}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{job}-0-abcde", "namespace": NS,
            "labels": {"app.kubernetes.io/name": "cloudmigrate",
                       "app.kubernetes.io/component": "worker", "cloudmigrate.io/run": run,
                       "batch.kubernetes.io/job-name": job, "job-name": job,
                       "batch.kubernetes.io/controller-uid": "0" * 36,
                       "controller-uid": "0" * 36, "batch.kubernetes.io/job-completion-index": "0"},
            "annotations": {"batch.kubernetes.io/job-completion-index": "0"},
        },
        "spec": {
            "restartPolicy": "Never", "serviceAccountName": "cloudmigrate-worker",
            "terminationGracePeriodSeconds": 300, "nodeName": "localhost",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "worker", "image": "ghcr.io/cloudmigrate/cloudmigrate:0.1.0",
                "args": ["replicate", "--run", f"{NS}/{run}", "--workers", "1", "--attempt", "1"],
                "env": env,
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"},
                              "limits": {"memory": "1Gi"}},
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
        "status_": {
            "phase": "Succeeded", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "startTime": "2026-01-01T02:00:00Z",
            "conditions": [condition("PodReadyToStartContainers", "False", "PodCompleted"),
                           condition("Initialized", "True"),
                           condition("Ready", "False", "PodCompleted"),
                           condition("ContainersReady", "False", "PodCompleted"),
                           condition("PodScheduled", "True")],
            "containerStatuses": [{
                "name": "worker", "image": "ghcr.io/cloudmigrate/cloudmigrate:0.1.0",
                "imageID": "ghcr.io/cloudmigrate/cloudmigrate@sha256:" + "0" * 64,
                "containerID": "containerd://" + "0" * 64, "ready": False, "started": False,
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                         "startedAt": "2026-01-01T02:00:01Z",
                                         "finishedAt": "2026-01-01T02:05:00Z"}},
            }],
        },
    }


def failed_create(name, run):
    """A FailedCreate event of the Job of `run`."""
    job = f"{run}-1"
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{job}.1880000000000000", "namespace": NS},
        "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "namespace": NS,
                           "name": job, "uid": "0" * 36},
        "reason": "FailedCreate", "type": "Warning", "count": 1,
        "message": f'Error creating: pods "{job}-0-" is forbidden: error looking up service '
                   f'account {NS}/cloudmigrate-worker: serviceaccount "cloudmigrate-worker" not found',
        "firstTimestamp": "2026-01-01T02:00:00Z", "lastTimestamp": "2026-01-01T02:00:00Z",
        "source": {"component": "job-controller"},
    }


def populate(api, state, n, worker_pods=False):
    """N schedules, each with 10 finished, owned runs (and with `worker_pods`, one finished
    worker pod and one FailedCreate event)."""
    files = os.path.join(state, "sqlite")
    os.makedirs(files, exist_ok=True)

    def schedule(i):
        name = f"s{i:05d}"
        obj = {
            "apiVersion": "cloudmigrate.io/v1alpha1",
            "kind": "MigrationSchedule",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "source": {"url": f"sqlite://{files}/{name}-source.db"},
                "target": {"url": f"sqlite://{files}/{name}-target.db"},
                "schedule": "0 2 * * *",
                "runtime": {"runner": "Job"},
            },
        }
        for side in ("source", "target"):
            open(os.path.join(files, f"{name}-{side}.db"), "wb").close()
        created = api.json("POST", f"{GROUP}/namespaces/{NS}/migrationschedules", obj)
        uid = created["metadata"]["uid"]
        for r in range(RUNS_PER_SCHEDULE):
            run_name = f"{name}-202601{r + 1:02d}0200"
            run = {
                "apiVersion": "cloudmigrate.io/v1alpha1",
                "kind": "MigrationRun",
                "metadata": {
                    "name": run_name,
                    "namespace": NS,
                    "labels": {"cloudmigrate.io/schedule": name},
                    "ownerReferences": [{
                        "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
                        "name": name, "uid": uid, "controller": True,
                    }],
                },
                "spec": {"scheduleRef": {"name": name}, "type": "Auto"},
            }
            api.call("POST", f"{GROUP}/namespaces/{NS}/migrationruns", run)
            day = f"2026-01-{r + 1:02d}"
            end = f"{day}T02:05:00Z"
            status = {"status": {
                "result": "Succeeded", "startTime": f"{day}T02:00:00Z",
                "completionTime": end, "attempts": 1, "trigger": "Scheduled",
                "progress": {"tables": "12/12", "tablesTotal": 12, "tablesDone": 12,
                             "tablesMigrated": 10, "tablesExcluded": 2, "rowsCopied": 5000},
            }}
            api.call("PATCH", f"{GROUP}/namespaces/{NS}/migrationruns/{run_name}/status",
                     status, "application/merge-patch+json")
        if worker_pods:
            run_name = f"{name}-20260101" + "0200"
            pod = worker_pod(name, run_name)
            pod_status = pod.pop("status_")
            api.call("POST", f"/api/v1/namespaces/{NS}/pods", pod)
            api.call("PATCH", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status",
                     {"status": pod_status}, "application/merge-patch+json")
            api.call("POST", f"/api/v1/namespaces/{NS}/events", failed_create(name, run_name))

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        list(pool.map(schedule, range(n)))


def watch_scheduled(api, n, since, out):
    """Watches the schedules from resourceVersion `since` until all n show status.nextRunTime,
    then records the time in out["at"]. A watch sends each change once, so the measurement
    costs the API server little (listing every schedule a few times a second, as the script
    did before session 8, cost it most of a core once the statuses had grown)."""
    resp = api.stream(f"{GROUP}/namespaces/{NS}/migrationschedules?watch=1&resourceVersion={since}")
    scheduled = set()
    while len(scheduled) < n:
        line = resp.readline()
        if not line:
            out["error"] = f"the watch ended with {len(scheduled)}/{n} scheduled"
            return
        obj = json.loads(line)["object"]
        if (obj.get("status") or {}).get("nextRunTime"):
            scheduled.add(obj["metadata"]["name"])
    out["at"] = time.time()


def proc_field(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def measure(n, worker_pods=False):
    state = tempfile.mkdtemp(prefix="cloudmigrate-scale-")
    os.chmod(state, 0o755)
    api_state = os.path.join(state, "api")
    controller = None
    try:
        # No Job executor or garbage collector: only the controller's requests are counted.
        subprocess.run([os.path.join(REPO, "tests/apiserver/start.sh"), api_state], check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, CLOUDMIGRATE_HELPERS="off"))
        env = dict(os.environ, KUBECONFIG=os.path.join(api_state, "kubeconfig"))
        crds = subprocess.run([BIN, "crds"], check=True, capture_output=True).stdout
        subprocess.run(["kubectl", "apply", "--server-side", "-f", "-"], input=crds, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["kubectl", "wait", "--for=condition=Established", "--timeout=60s",
                        "crd", "--all"], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        api = Api(api_state)
        t0 = time.time()
        populate(api, state, n, worker_pods)
        print(f"  {n} schedules and {n * RUNS_PER_SCHEDULE} runs created in "
              f"{time.time() - t0:.0f} s", file=sys.stderr)

        listed = api.json("GET", f"{GROUP}/namespaces/{NS}/migrationschedules?limit=1")
        watched = {}
        watcher = threading.Thread(
            target=watch_scheduled,
            args=(api, n, listed["metadata"]["resourceVersion"], watched), daemon=True)
        watcher.start()
        log = open(os.path.join(state, "controller.log"), "w")
        # etcd, then the API server (start.sh records them in this order).
        servers = [int(p) for p in open(os.path.join(api_state, "pids")).read().split()]
        servers_before = [cpu_ticks(p) for p in servers]
        requests_before = requests_total(api)
        kinds_before = requests_by_kind(api)
        started = time.time()
        controller = subprocess.Popen(
            [BIN, "controller", "--namespace", NS, "--listen", "127.0.0.1:0"],
            env=dict(env, RUST_LOG="warn"), stdout=log, stderr=log)
        while watcher.is_alive():
            if controller.poll() is not None:
                raise RuntimeError(f"the controller stopped; see {state}/controller.log")
            if time.time() - started > 1800:
                raise RuntimeError("not all scheduled after 30 minutes")
            watcher.join(0.2)
        if "error" in watched:
            raise RuntimeError(watched["error"])
        until_scheduled = watched["at"] - started
        # Where the start's time went: CPU seconds of the controller, the API server and etcd,
        # and the requests the start made.
        hz = os.sysconf("SC_CLK_TCK")
        start_cpu = {
            "controller": cpu_ticks(controller.pid) / hz,
            "apiserver": (cpu_ticks(servers[1]) - servers_before[1]) / hz,
            "etcd": (cpu_ticks(servers[0]) - servers_before[0]) / hz,
        }
        start_requests = requests_total(api) - requests_before
        print(f"  start: {until_scheduled:.1f} s; CPU seconds: " + ", ".join(
            f"{k} {v:.1f}" for k, v in start_cpu.items()) +
            f"; {start_requests:.0f} requests (watches count when they end)", file=sys.stderr)
        kinds_after = requests_by_kind(api)
        for key in sorted(kinds_after):
            made = kinds_after[key] - kinds_before.get(key, 0)
            if made:
                print(f"    {made:6.0f} {' '.join(k for k in key if k)}", file=sys.stderr)

        # Idle: nothing is due (the cron fires at 02:00 UTC; the bench avoids that hour).
        time.sleep(2)
        before_requests = requests_total(api)
        before_ticks = cpu_ticks(controller.pid)
        time.sleep(IDLE_SECONDS)
        after_ticks = cpu_ticks(controller.pid)
        requests = requests_total(api) - before_requests
        idle_cpu = (after_ticks - before_ticks) / os.sysconf("SC_CLK_TCK") / IDLE_SECONDS * 100
        peak = proc_field(controller.pid, "VmHWM") / 1024
        return until_scheduled, peak, idle_cpu, requests * 60 / IDLE_SECONDS
    finally:
        if controller is not None:
            controller.kill()
            controller.wait()
        pids = os.path.join(api_state, "pids")
        if os.path.exists(pids):
            for pid in open(pids).read().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
        time.sleep(0.5)
        shutil.rmtree(state, ignore_errors=True)


def main():
    args = sys.argv[1:]
    worker_pods = "--worker-pods" in args
    sizes = [int(a) for a in args if a != "--worker-pods"] or [100, 300, 1000, 3000]
    if time.gmtime().tm_hour in (1, 2):
        sys.exit("the schedules fire at 02:00 UTC: run this bench outside 01:00-03:00 UTC")
    subprocess.run(["cargo", "build", "--release", "--locked", "-q"], cwd=REPO, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=TARGET))
    rows = []
    for n in sizes:
        print(f"{n} schedules", file=sys.stderr)
        rows.append((n, *measure(n, worker_pods)))
    print()
    print("| schedules | until all scheduled | controller peak RSS | idle CPU afterwards "
          "| API requests per minute, idle |")
    print("|---|---|---|---|---|")
    for n, t, peak, cpu, rpm in rows:
        print(f"| {n:,} | {t:.1f} s | {peak:.0f} MiB | {cpu:.2f}% of a core | {rpm:.0f} |")


if __name__ == "__main__":
    main()
