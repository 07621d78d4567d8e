"""Builds a board's flashable image from the cross-built `cairn` binary, the pinned Debian packages and rootfs/.

    python3 scripts/image/mkimage.py BOARD BINARY OUTDIR

Writes OUTDIR/cairn-BOARD-VERSION.img (GPT: boot (FAT: U-Boot's boot.scr, the two boot-state copies, slot-a/ with
the kernel and initrd, slot-b/ empty), root-a and root-b (squashfs), config (blank, formatted on first boot)),
OUTDIR/u-boot-env.bin (U-Boot's own environment for the board's flash: no boot delay, load and run boot.scr),
the boot files beside them and manifest.json with sizes.
The root slot (OUTDIR/root.slot) is the squashfs followed by its dm-verity hash tree; its parameters go into
manifest.json, from which `cairn-bundle seal` (run next by the Makefile) writes slot A's signed trailer and
`cairn-bundle bundle` an update bundle (docs/updates.md). The image trusts the public keys in CAIRN_TRUSTED_KEYS
(colon-separated `<name>.pub` files; default keys/development.pub), copied to /etc/cairn/keys/ in the root slot
and in the initramfs (whose `cairn initramfs` checks slot trailers against them).
Runs without root: filesystems are made from directories (mksquashfs, mkfs.vfat + mtools) and placed into the
disk image at their partition offsets. Every tool gets an argument vector, never a shell string.
"""
import gzip
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import packages  # noqa: E402

ROOT = packages.ROOT
MIB = 1024 * 1024
TRIPLETS = {"arm64": "aarch64-linux-gnu", "armhf": "arm-linux-gnueabihf"}
# GPT type GUIDs: FAT boot data, Linux filesystem.
TYPE_FAT = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
TYPE_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
# The root slot's layout (docs/updates.md): verity blocks, and the signed trailer at the partition's end.
VERITY_BLOCK = 4096
TRAILER_SIZE = 64 * 1024
DEFAULT_TRUSTED_KEYS = ROOT / "keys" / "development.pub"
# zstd: decompresses several times faster than xz on a small ARM core (and under TCG), for a few % more size.
# Shared with scripts/image/variant.py, which repacks a built slot the same way.
SQUASHFS_OPTIONS = ["-noappend", "-all-root", "-comp", "zstd", "-Xcompression-level", "19", "-quiet", "-no-progress"]


def run(*argv, **kw):
    subprocess.run([str(a) for a in argv], check=True, **kw)


def version():
    with open(ROOT / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def extract(debs, into):
    into.mkdir(parents=True)
    for name, deb in debs.items():
        run("dpkg-deb", "-x", deb, into / name)


def applets():
    lines = (ROOT / "rootfs" / "busybox-applets").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.startswith("#")]


def install_busybox(pkgs, tree):
    (tree / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(pkgs / "busybox-static" / "bin" / "busybox", tree / "bin" / "busybox")
    for a in applets():
        link = tree / "bin" / a
        if not link.exists():
            link.symlink_to("busybox")
    (tree / "sbin").mkdir(exist_ok=True)


def module_closure(moddir, wanted):
    """Relative paths of `wanted` modules and their dependencies, from the package's own modules.dep."""
    deps = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        name = Path(mod).name.split(".ko")[0].replace("-", "_")
        deps[name] = [mod] + rest.split()
    builtin = {Path(l).name.split(".ko")[0].replace("-", "_") for l in (moddir / "modules.builtin").read_text().split()}
    files, missing = [], []
    for w in wanted:
        key = w.replace("-", "_")
        if key in deps:
            for f in deps[key]:
                if f not in files:
                    files.append(f)
        elif key not in builtin:
            missing.append(w)
    if missing:
        sys.exit(f"mkimage: modules {missing} are neither built into the kernel nor in its package")
    return files


def install_modules(moddir, release, files, tree):
    """Copies modules (decompressed: busybox modprobe and finit_module both take plain .ko) and runs depmod."""
    dest = tree / "lib" / "modules" / release
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        src = moddir / f
        out = dest / (f[:-3] if f.endswith(".xz") else f)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        out.write_bytes(lzma.decompress(data) if f.endswith(".xz") else data)
    for meta in ["modules.builtin", "modules.builtin.modinfo", "modules.order"]:
        if (moddir / meta).exists():
            shutil.copy2(moddir / meta, dest / meta)
    run("depmod", "-b", tree, release)


def needed(elf, arch):
    out = subprocess.run([f"{TRIPLETS[arch]}-readelf", "-d", elf], capture_output=True, text=True, check=True).stdout
    return [l.split("[")[1].split("]")[0] for l in out.splitlines() if "(NEEDED)" in l]


def install_dynamic(pkgs, arch, tree, programs):
    """Copies dynamically linked programs and, recursively, the libraries they need (found in the packages)."""
    index = {}
    for p in pkgs.rglob("*"):
        if ".so" in p.name and (p.is_file() or p.is_symlink()):
            index.setdefault(p.name, p)
    todo = []
    for pkg, rel in programs:
        src = pkgs / pkg / rel
        dst = tree / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        todo.append(src)
    done = set()
    while todo:
        for lib in needed(todo.pop(), arch):
            if lib in done:
                continue
            done.add(lib)
            src = index.get(lib)
            if src is None:
                sys.exit(f"mkimage: no package in the lock provides {lib}; add it to rootfs/packages.toml")
            real = src.resolve() if src.is_symlink() else src
            dst = tree / "lib" / TRIPLETS[arch] / lib
            if lib.startswith("ld-linux"):
                dst = tree / "lib" / lib
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(real, dst)
            todo.append(real)


def check_static(binary, arch):
    """The cairn binary runs as the initramfs's /init, before any library could be found: it must be static."""
    out = subprocess.run([f"{TRIPLETS[arch]}-readelf", "-l", "-d", binary], capture_output=True, text=True, check=True).stdout
    if "(NEEDED)" in out or "Requesting program interpreter" in out:
        sys.exit(f"mkimage: {binary} is dynamically linked; the initramfs needs a static binary (musl, or +crt-static)")


def check_ramdisk_room(board, initrd, kernel):
    """U-Boot loads the initrd at ramdisk_addr, above the kernel at kernel_addr: the kernel (with the room its
    header asks for, arm64's image_size) must end below it, and the initrd must leave the top of the board's RAM
    (U-Boot relocated there, its device tree and scratch) alone."""
    kernel_addr = int(board["boot"]["kernel_addr"], 16)
    ramdisk_addr = int(board["boot"]["ramdisk_addr"], 16)
    data = kernel.read_bytes()
    kernel_room = len(data)
    if data[56:60] == b"ARM\x64":
        kernel_room = max(kernel_room, int.from_bytes(data[16:24], "little"))
    if kernel_addr + kernel_room > ramdisk_addr:
        sys.exit(f"mkimage: the kernel needs {kernel_room} bytes at {board['boot']['kernel_addr']}, past ramdisk_addr {board['boot']['ramdisk_addr']}")
    memory = board.get("qemu", {}).get("memory_mib")
    if memory:
        # RAM starts at 0x40000000 on QEMU's virt machines; U-Boot and its device tree take the top 32 MiB at most.
        ram_end = 0x40000000 + memory * MIB
        if ramdisk_addr + initrd.stat().st_size > ram_end - 32 * MIB:
            sys.exit(f"mkimage: the initrd ({initrd.stat().st_size} bytes) at {board['boot']['ramdisk_addr']} reaches U-Boot's area at the top of {memory} MiB of RAM")


def copy_tree(src, dst):
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        target = dst / rel
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)


def cpio_newc(tree, out_path, extra_nodes):
    """A gzip'd newc cpio of `tree`, with device nodes added without needing root to create them."""
    ino = [1000]

    def header(name, mode, size, rdev=(0, 0), nlink=1):
        ino[0] += 1
        fields = [ino[0], mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        h = b"070701" + b"".join(b"%08X" % v for v in fields) + name.encode() + b"\0"
        return h + b"\0" * ((4 - len(h) % 4) % 4)

    def pad(data):
        return data + b"\0" * ((4 - len(data) % 4) % 4)

    buf = bytearray()
    for p in sorted(tree.rglob("*")):
        name = str(p.relative_to(tree))
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(p).encode()
            buf += header(name, stat.S_IFLNK | 0o777, len(target)) + pad(target)
        elif stat.S_ISDIR(st.st_mode):
            buf += header(name, stat.S_IFDIR | 0o755, 0, nlink=2)
        else:
            data = p.read_bytes()
            buf += header(name, stat.S_IFREG | (st.st_mode & 0o777), len(data)) + pad(data)
    for name, mode, rdev in extra_nodes:
        buf += header(name, mode, 0, rdev)
    buf += header("TRAILER!!!", 0, 0)
    with gzip.open(out_path, "wb", compresslevel=9) as f:
        f.write(bytes(buf))


def trusted_keys():
    """The public key files the image trusts: CAIRN_TRUSTED_KEYS (colon-separated) or the development key."""
    listed = os.environ.get("CAIRN_TRUSTED_KEYS", "")
    paths = [Path(p) for p in listed.split(":") if p] or [DEFAULT_TRUSTED_KEYS]
    for p in paths:
        if p.suffix != ".pub" or not p.is_file():
            sys.exit(f"mkimage: trusted key {p} is not a <name>.pub file (CAIRN_TRUSTED_KEYS)")
        text = p.read_text().strip().lower()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            sys.exit(f"mkimage: trusted key {p} is not an Ed25519 public key (64 hex characters)")
    if len({p.name for p in paths}) != len(paths):
        sys.exit(f"mkimage: two trusted keys share a file name: {[str(p) for p in paths]}")
    return paths


def install_keys(paths, *dirs):
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        for p in paths:
            (d / p.name).write_text(p.read_text().strip().lower() + "\n")


def verity_slot(squashfs, slot):
    """Writes `slot`: the squashfs, zero-padded to whole verity blocks, then its dm-verity hash tree (no
    superblock: the parameters travel in the signed manifest). Returns those parameters."""
    data = squashfs.read_bytes()
    data += b"\0" * (-len(data) % VERITY_BLOCK)
    slot.write_bytes(data)
    offset = len(data)
    common = ["--no-superblock", "--data-block-size", VERITY_BLOCK, "--hash-block-size", VERITY_BLOCK, "--hash", "sha256",
              "--data-blocks", offset // VERITY_BLOCK, f"--hash-offset={offset}"]
    out = subprocess.run(["veritysetup", "format", *map(str, common), str(slot), str(slot)], capture_output=True, text=True, check=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    params = {
        "algorithm": "sha256",
        "block_size": VERITY_BLOCK,
        "data_blocks": offset // VERITY_BLOCK,
        "hash_offset": offset,
        "root_hash": fields["Root hash"].strip(),
        "salt": fields["Salt"].strip(),
    }
    if int(fields["Data blocks"]) != params["data_blocks"]:
        sys.exit(f"mkimage: veritysetup hashed {fields['Data blocks'].strip()} data blocks, not {params['data_blocks']}")
    run("veritysetup", "verify", *common, "--salt", params["salt"], slot, slot, params["root_hash"], stdout=subprocess.DEVNULL)
    return params


# U-Boot's own environment in the board's flash (QEMU virt: pflash unit 1, 256 KiB at its start).
UBOOT_ENV_SIZE = 0x40000
# Scratch RAM for the boot script and the boot-state copies, this far above the initrd's load address.
SCRATCH_ABOVE_RAMDISK = 0x08000000


def mkenvimage(entries, size, out):
    """An environment image in U-Boot's format (CRC32 + name=value entries), made by U-Boot's own tool."""
    text = out.with_suffix(".txt")
    text.write_text("".join(f"{k}={v}\n" for k, v in entries.items()))
    run("mkenvimage", "-s", hex(size), "-o", out, text)
    text.unlink()


def boot_files(board, cmdline, work, outdir):
    """boot.scr (rootfs/boot/boot.cmd with the board's values), the two boot-state copies (slot A with all its
    tries; copy 2 valid but older, so either alone boots) and U-Boot's flash environment (OUTDIR/u-boot-env.bin)."""
    boot = board["boot"]
    scratch = int(boot["ramdisk_addr"], 16) + SCRATCH_ABOVE_RAMDISK
    script_addr, env1_addr, env2_addr, export_addr = (hex(scratch + n * 0x100000) for n in range(4))
    values = {
        "MEDIUM": boot["medium"],
        "STATE_1": boot["state_files"][0],
        "STATE_2": boot["state_files"][1],
        "STATE_SIZE": hex(boot["state_size"]),
        "TRIES": format(boot["tries"], "x"),
        "KERNEL": board["kernel"]["boot_file"],
        "KERNEL_ADDR": boot["kernel_addr"],
        "RAMDISK_ADDR": boot["ramdisk_addr"],
        "COMMAND": boot["command"],
        "CMDLINE": cmdline,
        "ENV1_ADDR": env1_addr,
        "ENV2_ADDR": env2_addr,
        "EXPORT_ADDR": export_addr,
    }
    text = (ROOT / "rootfs" / "boot" / "boot.cmd").read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z0-9_]+@", text)
    if left:
        sys.exit(f"mkimage: rootfs/boot/boot.cmd names values the board file does not give: {left}")
    cmd = work / "boot.cmd"
    cmd.write_text(text)
    arch = {"arm64": "arm64", "armhf": "arm"}[board["debian_arch"]]
    script = work / "boot.scr"
    run("mkimage", "-A", arch, "-O", "linux", "-T", "script", "-C", "none", "-n", "cairn boot", "-d", cmd, script,
        stdout=subprocess.DEVNULL)
    states = []
    for n, seq in [(1, 1), (2, 0)]:
        state = work / f"cairn-env-{n}.bin"
        mkenvimage({"BOOT_ORDER": "A", "BOOT_A_LEFT": format(boot["tries"], "x"), "BOOT_B_LEFT": "0",
                    "BOOT_SEQ": format(seq, "x")}, boot["state_size"], state)
        states.append(state)
    medium = boot["medium"]
    bootcmd = f"{boot['medium_scan']}; load {medium}:1 {script_addr} boot.scr && source {script_addr}"
    # A valid environment replaces U-Boot's built-in one whole, so it carries what the boot needs: no delay (the
    # default 2 s would count in every boot), the boot script, the device tree and initrd left where they are.
    mkenvimage({"bootdelay": "0", "baudrate": "115200", "fdt_high": "0xffffffff", "initrd_high": "0xffffffff",
                "bootcmd": bootcmd}, UBOOT_ENV_SIZE, outdir / "u-boot-env.bin")
    return script, states


def build(board_name, binary, outdir):
    with open(ROOT / "board" / board_name / "board.toml", "rb") as f:
        board = tomllib.load(f)
    arch = board["debian_arch"]
    check_static(binary, arch)
    outdir.mkdir(parents=True, exist_ok=True)
    work = outdir / "work"
    shutil.rmtree(work, ignore_errors=True)
    debs = packages.fetch_all(arch)
    kernels = [n for n in debs if n.startswith("linux-image-") and n.endswith("-" + board["kernel"]["flavour"])]
    if len(kernels) != 1:
        sys.exit(f"mkimage: expected one pinned kernel for flavour {board['kernel']['flavour']}, found {kernels}")
    debs = {n: p for n, p in debs.items() if not n.startswith("linux-image-") or n in kernels}
    pkgs = work / "pkgs"
    extract(debs, pkgs)
    kpkg = pkgs / kernels[0]
    vmlinuz = next((kpkg / "boot").glob("vmlinuz-*"))
    release = vmlinuz.name[len("vmlinuz-"):]
    moddir = kpkg / "lib" / "modules" / release
    run("depmod", "-b", kpkg, release)

    # Root slot: the system proper.
    root = work / "root"
    for d in ["proc", "sys", "dev", "run", "tmp", "config", "boot", "data", "root", "etc", "usr/bin", "usr/sbin", "var"]:
        (root / d).mkdir(parents=True, exist_ok=True)
    install_busybox(pkgs, root)
    shutil.copy2(binary, root / "usr" / "bin" / "cairn")
    (root / "sbin" / "init").symlink_to("../usr/bin/cairn")
    copy_tree(ROOT / "rootfs" / "files", root)
    (root / "etc" / "cairn").mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "board" / board_name / "board.toml", root / "etc" / "cairn" / "board.toml")
    keys = trusted_keys()
    install_keys(keys, root / "etc" / "cairn" / "keys", outdir / "trusted-keys")
    (root / "etc" / "resolv.conf").symlink_to("/run/resolv.conf")
    # Rendered at run time from the settings (cairn-smb); the root slot itself is read-only.
    (root / "etc" / "passwd").symlink_to("/run/cairn/passwd")
    (root / "etc" / "group").symlink_to("/run/cairn/group")
    (root / "etc" / "ksmbd").symlink_to("/run/ksmbd")
    for name, target in [("run", "/run"), ("tmp", "/tmp"), ("log", "/run/log")]:
        (root / "var" / name).symlink_to(target)
    install_dynamic(pkgs, arch, root, [("e2fsprogs", "sbin/mke2fs"), ("e2fsprogs", "sbin/e2fsck"), ("ksmbd-tools", "usr/libexec/ksmbd.tools"), ("mdadm", "sbin/mdadm"), ("dosfstools", "sbin/fsck.fat")])
    for tool in ["ksmbd.mountd", "ksmbd.control", "ksmbd.adduser", "ksmbd.addshare"]:
        (root / "usr" / "sbin" / tool).symlink_to("../libexec/ksmbd.tools")
    root_no_modules = work / "root-no-modules.squashfs"
    squash = SQUASHFS_OPTIONS
    run("mksquashfs", root, root_no_modules, *squash)
    install_modules(moddir, release, module_closure(moddir, board["modules"]["boot"] + board["modules"].get("late", []) + board["modules"].get("on_demand", [])), root)
    root_img = work / "root-a.squashfs"
    run("mksquashfs", root, root_img, *squash)
    slot = outdir / "root.slot"
    verity = verity_slot(root_img, slot)

    # Initramfs: Cairn's own code as /init (`cairn initramfs`: finds the slot, checks its signed trailer, maps it
    # through dm-verity, switches root), busybox for switch_root and the rescue shell, the modules to reach the
    # slot, the board file and the keys the slot's signature is checked against.
    initramfs = work / "initramfs"
    for d in ["dev", "proc", "sys", "newroot", "etc/cairn", "usr/bin"]:
        (initramfs / d).mkdir(parents=True, exist_ok=True)
    install_busybox(pkgs, initramfs)
    shutil.copy2(binary, initramfs / "usr" / "bin" / "cairn")
    (initramfs / "init").symlink_to("usr/bin/cairn")
    shutil.copy2(ROOT / "board" / board_name / "board.toml", initramfs / "etc" / "cairn" / "board.toml")
    install_keys(keys, initramfs / "etc" / "cairn" / "keys")
    install_modules(moddir, release, module_closure(moddir, board["modules"]["initramfs"]), initramfs)
    initrd = outdir / "initrd.img"
    cpio_newc(initramfs, initrd, [("dev/console", stat.S_IFCHR | 0o600, (5, 1))])
    check_ramdisk_room(board, initrd, vmlinuz)

    # Benchmark floor: same kernel, busybox-only init with httpd (not part of the image).
    floor = work / "floor"
    for d in ["dev", "proc", "sys", "etc"]:
        (floor / d).mkdir(parents=True, exist_ok=True)
    install_busybox(pkgs, floor)
    (floor / "bin" / "httpd").symlink_to("busybox")
    shutil.copy2(ROOT / "rootfs" / "floor" / "init", floor / "init")
    shutil.copy2(ROOT / "rootfs" / "files" / "usr" / "share" / "udhcpc" / "default.script", floor / "default.script")
    net_modules = [m for m in board["modules"]["boot"] if m in ("failover", "net_failover", "virtio_net")]
    (floor / "etc" / "modules").write_text("\n".join(board["modules"]["initramfs"] + net_modules) + "\n")
    install_modules(moddir, release, module_closure(moddir, board["modules"]["initramfs"] + net_modules), floor)
    cpio_newc(floor, outdir / "floor-initrd.img", [("dev/console", stat.S_IFCHR | 0o600, (5, 1))])

    kernel = outdir / board["kernel"]["boot_file"]
    shutil.copy2(vmlinuz, kernel)
    # For direct kernel boots outside the product (the boot floor bench): what U-Boot passes for slot A.
    cmdline = board["kernel"]["cmdline"] + " cairn.slot=a"

    # Partitions.
    parts = board["partitions"]
    sizes = {p["name"]: p["size_mib"] * MIB for p in parts}
    boot_img = work / "boot.vfat"
    run("mkfs.vfat", "-n", "CAIRN-BOOT", "-C", boot_img, sizes["boot"] // 1024, stdout=subprocess.DEVNULL)
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    boot_script, states = boot_files(board, board["kernel"]["cmdline"], work, outdir)
    state_dirs = [f"::{Path(f).parent}" for f in board["boot"]["state_files"]]
    run("mmd", "-i", boot_img, "::slot-a", "::slot-b", *state_dirs, env=env)
    run("mcopy", "-i", boot_img, boot_script, "::boot.scr", env=env)
    # Both copies at full size from the start: U-Boot's fatwrite then rewrites them in place.
    for state, name in zip(states, board["boot"]["state_files"]):
        run("mcopy", "-i", boot_img, state, f"::{name}", env=env)
    # The slot's boot files: in slot-a/ here, and the boot payloads of a bundle (cairn-bundle reads this list).
    slot_boot_files = [kernel, initrd]
    for src in slot_boot_files:
        run("mcopy", "-i", boot_img, src, f"::slot-a/{src.name}", env=env)
    # Two slots' boot files, and as much again for what an update cut by a power failure leaves until the FAT is
    # checked at the next start.
    per_slot = sum(src.stat().st_size for src in slot_boot_files)
    if 3 * per_slot + 4 * MIB > sizes["boot"]:
        sys.exit(f"mkimage: the boot partition ({sizes['boot'] // MIB} MiB) must hold three slots' boot files "
                 f"({per_slot // MIB} MiB each): raise its size_mib in board/{board_name}/board.toml")
    contents = {"boot": boot_img, "root-a": slot}
    for name, path in contents.items():
        if path.stat().st_size > sizes[name]:
            sys.exit(f"mkimage: {name} needs {path.stat().st_size} bytes but the partition has {sizes[name]}")
    if slot.stat().st_size + TRAILER_SIZE > sizes["root-a"]:
        sys.exit(f"mkimage: the root slot ({slot.stat().st_size} bytes with its hash tree) and its {TRAILER_SIZE}-byte trailer "
                 f"do not fit the {sizes['root-a']}-byte root-a partition: raise its size_mib in board/{board_name}/board.toml")

    image = outdir / f"cairn-{board_name}-{version()}.img"
    total = MIB + sum(sizes.values()) + MIB
    with open(image, "wb") as f:
        f.truncate(total)
    script = ["label: gpt", "first-lba: 2048"]
    for p in parts:
        kind = TYPE_FAT if p["fs"] == "vfat" else TYPE_LINUX
        attrs = ', attrs="LegacyBIOSBootable"' if p["name"] == "boot" else ""
        script.append(f'size={p["size_mib"]}MiB, type={kind}, name="{p["name"]}"{attrs}')
    run("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", image, input="\n".join(script) + "\n", text=True)
    offset = MIB
    offsets = {}
    with open(image, "r+b") as f:
        for p in parts:
            offsets[p["name"]] = offset
            src = contents.get(p["name"])
            if src is not None:
                f.seek(offset)
                with open(src, "rb") as s:
                    shutil.copyfileobj(s, f, 4 * MIB)
            offset += sizes[p["name"]]

    manifest = {
        "board": board_name,
        "version": version(),
        "image": image.name,
        "kernel": kernel.name,
        "kernel_release": release,
        "initrd": initrd.name,
        "floor_initrd": "floor-initrd.img",
        "cmdline": cmdline,
        # Read by cairn-bundle: the root slot file and where slot A is in the image, the slot's boot files, and
        # the slot's verity parameters (the same fields as a firmware manifest's `verity`).
        "slot": {"file": slot.name, "partition": "root-a", "offset": offsets["root-a"], "size": sizes["root-a"]},
        "boot_files": [f.name for f in slot_boot_files],
        "verity": verity,
        "u_boot_env": "u-boot-env.bin",
        "sizes": {
            "cairn_binary": Path(binary).stat().st_size,
            "root_squashfs": root_img.stat().st_size,
            "root_slot": slot.stat().st_size,
            "root_squashfs_without_modules": root_no_modules.stat().st_size,
            "initrd": initrd.stat().st_size,
            "kernel": kernel.stat().st_size,
            "image": total,
            "image_allocated": image.stat().st_blocks * 512,
        },
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(work)
    print(f"mkimage: {image} ({total // MIB} MiB; root slot {manifest['sizes']['root_squashfs'] // 1024} KiB)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    try:
        build(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
    except packages.PackageError as e:
        sys.exit(f"mkimage: {e}")
    except subprocess.CalledProcessError as e:
        sys.exit(f"mkimage: {e}")
