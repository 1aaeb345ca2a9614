"""The image built from the root Dockerfile's runtime stage, run the way the platform runs it.

The container joins the tests' own network namespace (`--network host` inside `unshare --net`, see
scripts/test-image.sh), so the tests reach the service on 127.0.0.1:8080.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import tarfile
import time

import hpack
import hyperframe.frame

import kit_helpers
import image_support
from image_support import BASE, MEASUREMENTS, podman, podman_run_args

PORT = 8080
GRACE_SECONDS = 10


def inspect(name: str, template: str) -> str:
    return podman("inspect", "--format", template, name).stdout.strip()


def previous_release_objects() -> list[dict]:
    """The objects the chart renders with the previous release's values (R12: the new image must start with
    them), and one value more: the platform's token issuer, whose keys the service needs before it is ready, is
    out of reach here, so AUTH_JWKS_URL points at a key set served by this session."""
    chart = kit_helpers.load_render_chart()
    values = chart.load_values([kit_helpers.ROOT / "tests/chart/previous-release-values.yaml"])
    values["config"]["AUTH_JWKS_URL"] = image_support.jwks().url
    return chart.objects(chart.render(values))


def chart_run_args(objects: list[dict]) -> list[str]:
    """The `podman run` flags that the rendered Deployment's pod and container securityContext and its /tmp
    volume amount to. The container runs with what the chart gives, so the checks on a running container prove
    the chart's settings; a setting this does not know how to apply fails rather than being left out."""
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_context, context = pod["securityContext"], container["securityContext"]
    # fsGroup changes volume ownership only (the emptyDir); seccomp RuntimeDefault is podman's default profile.
    assert set(pod_context) <= {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}, pod_context
    assert pod_context.get("seccompProfile", {"type": "RuntimeDefault"}) == {"type": "RuntimeDefault"}
    assert set(context) <= {"runAsNonRoot", "allowPrivilegeEscalation", "privileged", "readOnlyRootFilesystem",
                            "capabilities"}, context
    assert context.get("privileged") is not True
    args = ["--user", f"{pod_context['runAsUser']}:{pod_context['runAsGroup']}"]
    if context.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    capabilities = context.get("capabilities", {})
    assert set(capabilities) <= {"drop", "add"}, capabilities
    args += [arg for cap in capabilities.get("drop", []) for arg in ("--cap-drop", cap)]
    args += [arg for cap in capabilities.get("add", []) for arg in ("--cap-add", cap)]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        size = volumes[mount["name"]]["emptyDir"]["sizeLimit"]
        assert size.endswith("Mi"), size
        args += ["--tmpfs", f"{mount['mountPath']}:rw,size={size.removesuffix('Mi')}m,mode=1777"]
    return args


def start(image: str, name: str, objects: list[dict]) -> int:
    """Runs `image` as the platform would with the chart's rendered `objects`; returns the service's host PID
    once the container is up."""
    env_args = [arg for key, value in sorted(kit_helpers.env_from_render(objects).items())
                for arg in ("--env", f"{key}={value}")]
    podman("run", "--detach", "--name", name, "--network", "host", *chart_run_args(objects),
           *podman_run_args(), *env_args, image)
    kit_helpers.wait_until(lambda: kit_helpers.probe_status(PORT, "/healthz") == 200, 20, "readiness")
    return int(inspect(name, "{{.State.Pid}}"))


def proc_status(pid: int) -> dict[str, str]:
    lines = open(f"/proc/{pid}/status").read().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_image_configuration(image, workspace_version, revision):
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config["User"] == "10001:10001"
    assert list(config["ExposedPorts"]) == ["8080/tcp"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["Entrypoint"] == ["/usr/local/bin/service"]
    assert not config.get("Cmd")
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == workspace_version
    assert labels["org.opencontainers.image.revision"] == revision
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"].startswith("https://")


def exported_files(image: str, name: str) -> tuple[dict[str, tarfile.TarInfo], bytes | None]:
    """The filesystem of a container created (never started) from `image`: its members by path, and the CA
    bundle if any. The command is only there because the test base image has none."""
    podman("create", "--name", name, image, "/usr/local/bin/service")
    try:
        export = subprocess.run(["podman", "export", name], capture_output=True, check=True).stdout
    finally:
        podman("rm", "--force", name, check=False)
    with tarfile.open(fileobj=io.BytesIO(export)) as tar:
        members = {member.name.lstrip("./"): member for member in tar.getmembers()}
        bundle_member = members.get("etc/ssl/certs/ca-certificates.crt")
        bundle = tar.extractfile(bundle_member).read() if bundle_member else None
    return members, bundle


def test_image_files(image, container_name):
    members, bundle = exported_files(image, container_name)
    base, _ = exported_files(BASE, container_name + "-base")
    added = sorted(name for name, member in members.items() if not member.isdir() and name not in base)
    assert added == ["etc/ssl/certs/ca-certificates.crt", "usr/local/bin/service"], \
        "the runtime stage adds the binary and the CA bundle, nothing else"
    binary = members["usr/local/bin/service"]
    assert (binary.uid, binary.gid, binary.mode & 0o7777) == (0, 0, 0o555), "root-owned, not writable"
    assert bundle is not None and bundle.count(b"BEGIN CERTIFICATE") > 50
    assert not any(name in members for name in ("bin/sh", "usr/bin/sh", "bin/bash")), "no shell"
    writable = [name for name, member in members.items()
                if name not in ("tmp", "") and not member.issym()
                and (member.uid == 10001 or member.mode & 0o022)]
    assert writable == [], "nothing but /tmp is owned by the service user or group- or world-writable"


def test_the_image_alone_gives_the_service_no_privilege(image, container_name):
    """Without the chart's securityContext (no --user, --cap-drop, --read-only; only the chart's environment, which
    the service needs to start): podman's default capability set, as a runtime without the chart's settings
    would give. The image's own USER must still leave the service with no capability at all."""
    env_args = [arg for key, value in sorted(kit_helpers.env_from_render(previous_release_objects()).items())
                for arg in ("--env", f"{key}={value}")]
    podman("run", "--detach", "--name", container_name, "--network", "host", *podman_run_args(), *env_args, image)
    kit_helpers.wait_until(lambda: kit_helpers.probe_status(PORT, "/healthz") == 200, 20, "readiness")
    status = proc_status(int(inspect(container_name, "{{.State.Pid}}")))
    assert status["Uid"].split()[:2] == ["10001", "10001"] and status["Gid"].split()[:2] == ["10001", "10001"]
    assert (status["CapEff"], status["CapPrm"], status["CapAmb"]) == ("0" * 16,) * 3, status
    assert int(status["CapBnd"], 16) != 0, "the runtime's default bounding set: the image alone, no --cap-drop"
    podman("stop", "--time", str(GRACE_SECONDS), container_name, timeout=GRACE_SECONDS + 10)


def test_runs_as_the_platform_runs_it(image, container_name, workspace_version):
    pid = start(image, container_name, previous_release_objects())
    status = proc_status(pid)
    assert status["NSpid"].split()[-1] == "1", "the binary is PID 1: SIGTERM reaches it directly"
    assert open(f"/proc/{pid}/cmdline").read().split("\0")[0] == "/usr/local/bin/service"
    assert status["Uid"].split()[:2] == ["10001", "10001"] and status["Gid"].split()[:2] == ["10001", "10001"]
    assert status["CapEff"] == "0000000000000000"
    assert inspect(container_name, "{{.HostConfig.ReadonlyRootfs}}") == "true"

    for path in ("/healthz", "/readyz", "/livez"):
        assert kit_helpers.http_get(PORT, path)[0] == 200, path
    status_code, _, body = kit_helpers.http_get(PORT, "/")
    assert status_code == 200 and json.loads(body)["version"] == workspace_version
    assert kit_helpers.http_get(PORT, "/livez", host="::1")[0] == 200, "IPv6 too"

    podman("stop", "--time", str(GRACE_SECONDS), container_name, timeout=GRACE_SECONDS + 10)
    assert inspect(container_name, "{{.State.ExitCode}}") == "0"


class SlowReader:
    """An HTTP/2 client that holds a response in flight: its flow-control window is 0, so the server can send
    the response headers but none of the body until `release` opens the window.

    Written on frames (hyperframe, hpack) rather than on the h2 library, because h2 treats a GOAWAY as the end
    of the connection, while a graceful GOAWAY, the very thing under test, lets the streams already taken finish.
    """

    PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    STREAM = 1

    def __init__(self, port: int):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""
        self.status: int | None = None
        self.goaway = False
        self.ended = False
        self.body = b""
        self.decoder = hpack.Decoder()
        settings = hyperframe.frame.SettingsFrame(0, settings={hyperframe.frame.SettingsFrame.INITIAL_WINDOW_SIZE: 0})
        headers = hyperframe.frame.HeadersFrame(self.STREAM, flags=["END_HEADERS", "END_STREAM"])
        headers.data = hpack.Encoder().encode([(":method", "GET"), (":path", "/"), (":scheme", "http"),
                                               (":authority", f"127.0.0.1:{port}")])
        self.socket.sendall(self.PREFACE + settings.serialize() + headers.serialize())

    def read_until(self, condition, what: str, timeout: float = 15) -> None:
        """Handles frames (acknowledging SETTINGS and PING) until `condition()` holds."""
        deadline = time.monotonic() + timeout
        while not condition():
            while len(self.buffer) >= 9:
                frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(self.buffer[9:9 + length]))
                self.buffer = self.buffer[9 + length:]
                self.handle(frame)
                if condition():
                    return
            self.socket.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                raise AssertionError(f"timed out waiting for {what}") from None
            if not data:
                raise AssertionError(f"connection closed before {what}")
            self.buffer += data

    def handle(self, frame) -> None:
        if isinstance(frame, hyperframe.frame.SettingsFrame) and "ACK" not in frame.flags:
            self.socket.sendall(hyperframe.frame.SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(frame, hyperframe.frame.PingFrame) and "ACK" not in frame.flags:
            self.socket.sendall(hyperframe.frame.PingFrame(0, flags=["ACK"], opaque_data=frame.opaque_data).serialize())
        elif isinstance(frame, hyperframe.frame.HeadersFrame) and frame.stream_id == self.STREAM:
            self.status = int(dict(self.decoder.decode(frame.data))[":status"])
            self.ended |= "END_STREAM" in frame.flags
        elif isinstance(frame, hyperframe.frame.DataFrame) and frame.stream_id == self.STREAM:
            self.body += frame.data
            self.ended |= "END_STREAM" in frame.flags
        elif isinstance(frame, hyperframe.frame.GoAwayFrame):
            assert frame.last_stream_id >= self.STREAM, "the GOAWAY must keep our stream"
            self.goaway = True
        elif isinstance(frame, hyperframe.frame.RstStreamFrame):
            raise AssertionError(f"stream reset with error code {frame.error_code}")

    def release(self) -> None:
        self.socket.sendall(hyperframe.frame.WindowUpdateFrame(self.STREAM, window_increment=65535).serialize())


def test_stop_finishes_a_request_in_flight(image, container_name):
    pid = start(image, container_name, previous_release_objects())
    reader = SlowReader(PORT)
    reader.read_until(lambda: reader.status is not None, "response headers")
    assert reader.status == 200 and not reader.ended, "headers sent, body held back by our window"

    started = time.monotonic()
    stop = subprocess.Popen(["podman", "stop", "--time", str(GRACE_SECONDS), container_name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Phase 1, SHUTDOWN_DELAY: readiness is 503 at once, but new requests are still served.
        kit_helpers.wait_until(lambda: kit_helpers.probe_status(PORT, "/healthz") == 503, 5, "readiness 503")
        status, headers, _ = kit_helpers.http_get(PORT, "/")
        assert status == 200 and headers.get("connection") == "close"

        # Phase 2, drain: the server says GOAWAY on our connection but keeps the stream it already took.
        reader.read_until(lambda: reader.goaway, "GOAWAY", timeout=GRACE_SECONDS)
        # (podman's own State.Running is already false while it stops the container: ask the kernel.)
        assert os.path.exists(f"/proc/{pid}"), "the service is still waiting for our response"
        assert not reader.ended
        released = time.monotonic()
        reader.release()
        reader.read_until(lambda: reader.ended, "the end of the response")
        assert json.loads(reader.body)["name"] == "reference-service"

        stop.wait(timeout=GRACE_SECONDS + 10)
        stopped = time.monotonic()
    finally:
        if stop.poll() is None:
            stop.kill()
    assert stop.returncode == 0, stop.stderr
    assert inspect(container_name, "{{.State.ExitCode}}") == "0", "exit 0: nothing cut off, no SIGKILL"
    assert stopped - started < GRACE_SECONDS, "exited before podman's SIGKILL"
    assert stopped > released
    lines = [kit_helpers.log_fields(line) or {} for line in podman("logs", container_name).stdout.splitlines()]
    hooks = [fields for fields in lines if fields.get("phase") == "hooks"]
    assert hooks and str(hooks[0].get("drained")).lower() == "true", "every connection finished before the deadline"
    assert any(fields.get("body") == "shutdown complete" for fields in lines)


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ("50m", "1", "0.5") in cores."""
    return int(quantity.removesuffix("m")) / 1000 if quantity.endswith("m") else float(quantity)


def test_resource_usage(image, container_name):
    """Measures memory and CPU at idle and under a light load (recorded in docs/operations.md) and checks them
    against the chart's default requests and limits."""
    pid = start(image, container_name, previous_release_objects())
    chart_resources = kit_helpers.load_render_chart().load_values([kit_helpers.CHART / "values.yaml"])["resources"]

    idle_cpu, idle_wall = cpu_seconds(pid), time.monotonic()
    time.sleep(5)  # a measurement window, not synchronisation
    idle = (cpu_seconds(pid) - idle_cpu) / (time.monotonic() - idle_wall)
    idle_rss = int(proc_status(pid)["VmRSS"].split()[0])

    requests, rate = 2000, 200
    connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
    load_cpu, load_wall = cpu_seconds(pid), time.monotonic()
    for index in range(requests):
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200
        response.read()
        pause = load_wall + (index + 1) / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    load = (cpu_seconds(pid) - load_cpu) / (time.monotonic() - load_wall)
    connection.close()
    status = proc_status(pid)
    load_rss, peak_rss = int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0])

    MEASUREMENTS.append(f"idle (5 s): RSS {idle_rss / 1024:.1f} MiB, CPU {idle * 100:.2f} % of a core")
    MEASUREMENTS.append(f"light load ({requests} GET / at {rate}/s on one keep-alive connection): "
                        f"RSS {load_rss / 1024:.1f} MiB (peak {peak_rss / 1024:.1f} MiB), CPU {load * 100:.1f} % "
                        f"of a core")
    request_cpu, limit_cpu = (cpu_cores(chart_resources[kind]["cpu"]) for kind in ("requests", "limits"))
    assert idle < request_cpu, f"idle CPU {idle:.3f} cores within the chart's request {request_cpu}"
    assert load < limit_cpu, f"light-load CPU {load:.3f} cores within the chart's limit {limit_cpu}"
    limit_mib = int(chart_resources["limits"]["memory"].removesuffix("Mi"))
    request_mib = int(chart_resources["requests"]["memory"].removesuffix("Mi"))
    assert peak_rss / 1024 < request_mib <= limit_mib, "the chart's memory request covers the measured peak"
