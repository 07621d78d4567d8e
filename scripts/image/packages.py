"""Pinned Debian packages for the image: read the lock, fetch into a verified cache, refresh the pins.

The lock (rootfs/packages.lock) names each package with architecture, exact version and sha256. Fetching uses
`apt-get download` (the host's apt, with the target architectures enabled by scripts/bootstrap) into a cache
outside the checkout, and every file is checked against the lock before use.
"""
import hashlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "rootfs" / "packages.lock"
WANTED = ROOT / "rootfs" / "packages.toml"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cairn" / "debs"


class PackageError(Exception):
    """A package cannot be had as pinned; the message says what to do."""


def load_lock():
    with open(LOCK, "rb") as f:
        return tomllib.load(f)["package"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def deb_file_name(pkg):
    version = pkg["version"].replace(":", "%3a")
    return f"{pkg['name']}_{version}_{pkg['arch']}.deb"


def fetch(pkg):
    """The verified .deb for one lock entry, downloading it into the cache if needed."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / deb_file_name(pkg)
    if path.exists() and sha256(path) == pkg["sha256"]:
        return path
    if path.exists():
        path.unlink()
    spec = f"{pkg['name']}:{pkg['arch']}={pkg['version']}"
    result = subprocess.run(["apt-get", "download", spec], cwd=CACHE, capture_output=True, text=True)
    if result.returncode != 0:
        raise PackageError(
            f"cannot download {spec}: {result.stderr.strip()}\n"
            f"The pinned version may be gone from the Debian mirror: run `make lock-refresh` to pin the current "
            f"versions (and commit rootfs/packages.lock), or `scripts/bootstrap` if apt lacks the {pkg['arch']} index."
        )
    if not path.exists():
        raise PackageError(f"apt-get download {spec} succeeded but {path.name} is not in {CACHE}")
    got = sha256(path)
    if got != pkg["sha256"]:
        path.unlink()
        raise PackageError(f"{path.name} has sha256 {got}, the lock says {pkg['sha256']}; refusing to use it")
    return path


def fetch_all(arch):
    """Every pinned package for one architecture: {name: path}."""
    return {p["name"]: fetch(p) for p in load_lock() if p["arch"] == arch}


def apt_show(name, arch, backports=False):
    """(version, sha256) of apt's candidate for name:arch, or of the bookworm-backports version."""
    if backports:
        madison = subprocess.run(["apt-cache", "madison", f"{name}:{arch}"], capture_output=True, text=True).stdout
        versions = [l.split("|")[1].strip() for l in madison.splitlines() if "bookworm-backports" in l]
        if not versions:
            raise PackageError(f"{name}:{arch} is not in bookworm-backports: run scripts/bootstrap")
        version = versions[0]
    else:
        policy = subprocess.run(["apt-cache", "policy", f"{name}:{arch}"], capture_output=True, text=True).stdout
        cand = re.search(r"Candidate: (\S+)", policy)
        if not cand or cand.group(1) == "(none)":
            raise PackageError(f"apt-cache knows no {name}:{arch}: run scripts/bootstrap")
        version = cand.group(1)
    out = subprocess.run(["apt-cache", "show", f"{name}:{arch}={version}"], capture_output=True, text=True).stdout
    fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", out.split("\n\n")[0], re.M))
    return fields["Version"], fields["SHA256"]


def newest_kernel(series, flavour, arch):
    out = subprocess.run(["apt-cache", "search", "--names-only", f"^linux-image-{re.escape(series)}\\..*-{re.escape(flavour)}$"],
                         capture_output=True, text=True).stdout
    names = [line.split(" ")[0] for line in out.splitlines()]
    names = [n for n in names if re.fullmatch(rf"linux-image-{re.escape(series)}\.(\d+)\+deb\d+(\.\d+)?-{re.escape(flavour)}", n)]
    if not names:
        raise PackageError(f"no linux-image-{series}.*-{flavour} in apt's index: run scripts/bootstrap (it adds bookworm-backports)")
    return max(names, key=lambda n: int(re.search(rf"{re.escape(series)}\.(\d+)", n).group(1)))


def refresh():
    with open(WANTED, "rb") as f:
        wanted = tomllib.load(f)
    flavours = {}
    for board in (ROOT / "board").glob("*/board.toml"):
        with open(board, "rb") as f:
            b = tomllib.load(f)
        flavours.setdefault(b["debian_arch"], set()).add(b["kernel"]["flavour"])
    entries = []
    for arch in wanted["architectures"]:
        names = [newest_kernel(wanted["kernel_series"], fl, arch) for fl in sorted(flavours.get(arch, []))]
        for name in names + wanted["packages"]:
            version, digest = apt_show(name, arch, backports=name in wanted.get("backports", []))
            entries.append((name, arch, version, digest))
    lines = ["# Pinned by `make lock-refresh` from rootfs/packages.toml: edit that file, not this one.", ""]
    for name, arch, version, digest in entries:
        lines += ["[[package]]", f'name = "{name}"', f'arch = "{arch}"', f'version = "{version}"', f'sha256 = "{digest}"', ""]
    LOCK.write_text("\n".join(lines))
    print(f"wrote {LOCK} with {len(entries)} packages")


if __name__ == "__main__":
    try:
        if sys.argv[1:] == ["refresh"]:
            refresh()
        elif len(sys.argv) == 3 and sys.argv[1] == "fetch":
            for name, path in fetch_all(sys.argv[2]).items():
                print(f"{name}: {path}")
        else:
            sys.exit("usage: packages.py refresh | fetch ARCH")
    except PackageError as e:
        sys.exit(f"packages: {e}")
