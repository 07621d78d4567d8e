"""Makes a variant of a built root slot, for tests that need a system which boots but is broken on purpose.

    python3 scripts/image/variant.py BUILD_DIR VARIANT OUT_DIR

BUILD_DIR is an image build (`out/<board>/`: root.slot, manifest.json, the boot files, trusted-keys/). The squashfs
part of its root slot is unpacked (unsquashfs), VARIANT is applied to the tree, and the tree is packed again with
mkimage's own mksquashfs options and a new dm-verity tree (mkimage.verity_slot), so the slot is built exactly as
an image's is, without a second cross build. OUT_DIR gets the new root.slot, a manifest.json with the new verity
parameters and sizes, and the same boot files and trusted keys; then
`cairn-bundle bundle --build OUT_DIR --key keys/development.pk8 --version V --floor F --out FILE.cfw` signs it.

Variants:
  no-daemon   the daemon's entry is removed from /etc/cairn/services.toml: the system boots, but the dashboard
              never answers, so init's health check never passes (the failed-update test).
Every tool gets an argument vector, never a shell string.
"""
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mkimage  # noqa: E402


def without_service(text, name):
    """`text` (a services.toml) without the `[[service]]` block whose name is `name`; refuses if there is none,
    and checks the result still parses, so a variant is never silently the original system."""
    head, *blocks = text.split("[[service]]")
    kept = [b for b in blocks if tomllib.loads("[[service]]" + b)["service"][0].get("name") != name]
    if len(kept) == len(blocks):
        sys.exit(f"variant: services.toml has no service named {name!r}")
    out = head + "".join("[[service]]" + b for b in kept)
    names = [s["name"] for s in tomllib.loads(out).get("service", [])]
    assert name not in names, names
    return out


def no_daemon(tree):
    services = tree / "etc" / "cairn" / "services.toml"
    services.write_text(without_service(services.read_text(), "daemon"))


VARIANTS = {"no-daemon": no_daemon}


def make_variant(build, variant, out):
    manifest = json.loads((build / "manifest.json").read_text())
    slot_file = build / manifest["slot"]["file"]
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cairn-variant-") as tmp:
        work = Path(tmp)
        squashfs = work / "root.squashfs"
        with open(slot_file, "rb") as src, open(squashfs, "wb") as dst:
            dst.write(src.read(manifest["verity"]["hash_offset"]))
        tree = work / "root"
        mkimage.run("unsquashfs", "-quiet", "-no-progress", "-d", tree, squashfs, stdout=subprocess.DEVNULL)
        VARIANTS[variant](tree)
        repacked = work / "root-variant.squashfs"
        mkimage.run("mksquashfs", tree, repacked, *mkimage.SQUASHFS_OPTIONS)
        slot = out / manifest["slot"]["file"]
        manifest["verity"] = mkimage.verity_slot(repacked, slot)
        manifest["sizes"]["root_squashfs"] = repacked.stat().st_size
        manifest["sizes"]["root_slot"] = slot.stat().st_size
    if slot.stat().st_size + mkimage.TRAILER_SIZE > manifest["slot"]["size"]:
        sys.exit(f"variant: the {variant} slot does not fit its partition with the trailer")
    for name in manifest["boot_files"]:
        shutil.copy2(build / name, out / name)
    shutil.rmtree(out / "trusted-keys", ignore_errors=True)
    shutil.copytree(build / "trusted-keys", out / "trusted-keys")
    manifest["variant"] = variant
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"variant: {out} ({variant}, root hash {manifest['verity']['root_hash']})")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] not in VARIANTS:
        sys.exit(__doc__)
    try:
        make_variant(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
    except subprocess.CalledProcessError as e:
        sys.exit(f"variant: {e}")
