"""Builds the image for the tests: the root Dockerfile's runtime stage, unchanged, on a locally assembled base.

Base images cannot be pulled on the project's machines, and the builder stage needs the Rust image. So:
- the base is assembled from the host (the binary's shared libraries, /etc/passwd and /etc/group in the
  distroless layout, an empty /tmp; no shell, no CA certificates) and imported with `podman import`;
- the builder stage's own build command (its RUN instruction, cache mounts left out) runs on the host with
  `/out` moved into a temporary directory, which is then given as `--build-context builder=DIR`: every
  `COPY --from=builder` of the runtime stage reads what that command produced.
The host is Debian 12 like the default builder (rust:1.95-bookworm) and base (distroless cc-debian12), so the
host-built binary and the libraries match what production runs.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import tomllib
import uuid
from pathlib import Path

import pytest

from image_support import BASE, IMAGE, MEASUREMENTS, ROOT, podman


@pytest.fixture(scope="session")
def release_binary() -> Path:
    binary = Path(os.environ.get("REFERENCE_SERVICE_RELEASE_BIN", ROOT / "target/release/reference-service"))
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run scripts/test-image.sh, which builds it")
    return binary


def shared_libraries(binary: Path) -> list[Path]:
    """The libraries the dynamic loader maps for `binary`, the loader itself included."""
    output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    paths = []
    for line in output.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) > parts.index("=>") + 1 and parts[parts.index("=>") + 1].startswith("/"):
            paths.append(Path(parts[parts.index("=>") + 1]))
        elif parts and parts[0].startswith("/"):
            paths.append(Path(parts[0]))
    return paths


def base_tarball(binary: Path) -> bytes:
    """A root filesystem in the shape of distroless cc:nonroot, minus its CA bundle."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        libraries = shared_libraries(binary)
        directories = {"etc", "tmp", "home", "home/nonroot"}
        for library in libraries:
            parts = library.parent.parts[1:]
            directories.update("/".join(parts[: depth + 1]) for depth in range(len(parts)))
        for directory in sorted(directories):
            add_dir(directory, 0o1777 if directory == "tmp" else 0o755)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\n"
                               b"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                               b"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
        add_file("etc/group", b"root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")
        for library in libraries:
            add_file(str(library).lstrip("/"), library.resolve().read_bytes(), 0o755)
    return buffer.getvalue()


def run_builder_step(context: Path, release_dir: Path) -> None:
    """Runs the builder stage's RUN instruction on the host, writing its `/out` under `context` (and reading
    cargo's output from `release_dir`, which differs from `target/release` when CARGO_TARGET_DIR is set)."""
    text = (ROOT / "Dockerfile").read_text()
    stage = text[text.index("AS builder"):text.index("AS runtime")]
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", stage, flags=re.MULTILINE))
    (instruction,) = re.findall(r"^RUN ((?:.*\\\n)*.*)$", stage, flags=re.MULTILINE)
    command = " ".join(word for word in instruction.replace("\\\n", " ").split(" ") if not word.startswith("--mount="))
    command = command.replace("/out", f"{context}/out").replace("target/release/", f"{release_dir}/")
    env = {**os.environ, "BIN": defaults["BIN"], "PACKAGE": defaults["BIN"]}
    result = subprocess.run(["sh", "-ec", command], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"builder step failed: {command}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="session")
def workspace_version() -> str:
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]


@pytest.fixture(scope="session")
def revision() -> str:
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


@pytest.fixture(scope="session")
def image(release_binary, tmp_path_factory, workspace_version, revision):
    """Builds BASE, then IMAGE from the root Dockerfile's runtime stage; removes both after the session."""
    work = tmp_path_factory.mktemp("image")
    tarball = work / "base.tar"
    tarball.write_bytes(base_tarball(release_binary))
    podman("import", "--change", "USER=65532:65532", str(tarball), BASE)

    builder = work / "builder"
    run_builder_step(builder, release_binary.parent)

    # --layers=false: no intermediate images to leave behind, and no layer cache (buildah 1.28 reuses a cached
    # LABEL step even when the build args in it changed).
    podman("build", "--pull=never", "--layers=false", "--target", "runtime",
           "--build-context", f"builder={builder}",
           "--build-arg", f"BASE_IMAGE={BASE}",
           "--build-arg", f"VERSION={workspace_version}",
           "--build-arg", f"REVISION={revision}",
           "-f", str(ROOT / "Dockerfile"), "-t", IMAGE, str(ROOT), timeout=300)
    base_size = int(podman("image", "inspect", "--format", "{{.Size}}", BASE).stdout)
    image_size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    MEASUREMENTS.append(
        f"image size: {image_size / 1e6:.1f} MB = test base {base_size / 1e6:.1f} MB (glibc, libgcc) + runtime "
        f"stage {(image_size - base_size) / 1e6:.1f} MB (binary {release_binary.stat().st_size / 1e6:.1f} MB, "
        f"CA bundle)")
    yield IMAGE
    podman("rmi", "--force", IMAGE, BASE, check=False)


@pytest.fixture
def container_name():
    """A unique container name, removed after the test."""
    name = f"telemed-kit-test-{uuid.uuid4().hex[:8]}"
    yield name
    podman("rm", "--force", "--time", "0", name, check=False)


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("image measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
