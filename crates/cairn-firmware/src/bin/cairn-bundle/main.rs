//! `cairn-bundle`: the build machine's half of firmware updates (host only, never in the image). It seals the
//! image's slot A with its signed trailer, writes update bundles from the same build outputs, verifies either,
//! and makes signing keys. Formats and checks live in the `cairn-firmware` library; this is wiring.
#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

mod build;

use build::{Build, Release, TRUSTED_KEYS_DIR};
use cairn_firmware::{
    public_key_text, read_trailer, write_bundle, write_trailer, BundleReader, Manifest, Sha256,
    SignedManifest, SigningKey, TrustedKeys, Version, TRAILER_SIZE,
};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: cairn-bundle <command> [options]

commands:
  seal --build DIR --key KEY.pk8 --floor X.Y.Z [--version X.Y.Z] [--schema-version N]
        signs the root slot of DIR's image (out/<board>, as mkimage wrote it) by writing its trailer at the end
        of the partition; the key must be one of the image's trusted keys (DIR/trusted-keys/)
  bundle --build DIR --key KEY.pk8 --floor X.Y.Z --out FILE.cfw [--version X.Y.Z] [--schema-version N]
        writes an update bundle from the same build outputs (the root slot and the slot's boot files)
  verify --keys DIR FILE.cfw
        checks a bundle's signature and every payload's digest; prints its manifest
  verify --build DIR [--keys DIR]
        checks the image's slot trailer and the slot's bytes against it; prints the manifest
  keygen KEY.pk8 KEY.pub
        makes a new Ed25519 signing key (PKCS#8) and its public key file

--version defaults to the build's (the workspace version); --schema-version to this build's settings schema.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match command.as_str() {
        "seal" => Args::parse(
            rest,
            &["build", "key", "floor", "version", "schema-version"],
        )
        .and_then(|a| seal(&a)),
        "bundle" => Args::parse(
            rest,
            &["build", "key", "floor", "version", "schema-version", "out"],
        )
        .and_then(|a| bundle(&a)),
        "verify" => Args::parse(rest, &["build", "keys"]).and_then(|a| verify(&a)),
        "keygen" => Args::parse(rest, &[]).and_then(|a| keygen(&a)),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-bundle {command}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` options and positional arguments.
struct Args {
    options: BTreeMap<String, String>,
    positional: Vec<String>,
}

impl Args {
    fn parse(args: &[String], allowed: &[&str]) -> Result<Args, String> {
        let mut options = BTreeMap::new();
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                if !allowed.contains(&name) {
                    return Err(format!("unknown option --{name}\n{USAGE}"));
                }
                let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                options.insert(name.to_string(), value.clone());
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Args {
            options,
            positional,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("--{name} is required\n{USAGE}"))
    }

    fn path(&self, name: &str) -> Result<PathBuf, String> {
        self.required(name).map(PathBuf::from)
    }

    fn release(&self) -> Result<Release, String> {
        let version = |text: &str| text.parse::<Version>().map_err(|e| e.to_string());
        let schema_version = match self.get("schema-version") {
            Some(n) => n
                .parse()
                .map_err(|_| format!("--schema-version {n:?} is not a number"))?,
            None => cairn_store::SCHEMA_VERSION,
        };
        Ok(Release {
            version: self.get("version").map(version).transpose()?,
            floor: version(self.required("floor")?)?,
            schema_version,
        })
    }
}

/// The build, its firmware manifest, and the signing key, checked to be one the image trusts (a slot or bundle
/// signed with a key its own image does not trust would never boot).
fn prepare(args: &Args) -> Result<(Build, Manifest, SigningKey, TrustedKeys), String> {
    let build = Build::open(&args.path("build")?)?;
    let key = SigningKey::load(&args.path("key")?).map_err(|e| e.to_string())?;
    let trusted =
        TrustedKeys::load_dir(&build.dir.join(TRUSTED_KEYS_DIR)).map_err(|e| e.to_string())?;
    if trusted.get(&key.key_id()).is_none() {
        let names: Vec<String> = trusted
            .iter()
            .map(|(id, k)| format!("{} ({id})", k.name))
            .collect();
        return Err(format!(
            "the signing key {} is not one the image trusts ({}): set CAIRN_SIGNING_KEY and CAIRN_TRUSTED_KEYS to a matching pair and rebuild the image",
            key.key_id(),
            names.join(", ")
        ));
    }
    let manifest = build.firmware_manifest(&args.release()?)?;
    let slot = manifest.slot_payload();
    let partition = build.manifest.slot.size;
    if slot.size + TRAILER_SIZE > partition {
        return Err(format!(
            "the root slot ({} bytes, squashfs and hash tree) and its {TRAILER_SIZE}-byte trailer do not fit the {partition}-byte {} partition: make the root smaller or the partition larger in board/{}/board.toml",
            slot.size, build.manifest.slot.partition, build.manifest.board
        ));
    }
    Ok((build, manifest, key, trusted))
}

fn seal(args: &Args) -> Result<(), String> {
    let (build, manifest, key, trusted) = prepare(args)?;
    let image_path = build.image_path();
    let mut image = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image_path)
        .map_err(|e| format!("{}: {e}", image_path.display()))?;
    let slot = &build.manifest.slot;
    let in_image = digest_region(&mut image, slot.offset, manifest.slot_payload().size)
        .map_err(|e| format!("{}: {e}", image_path.display()))?;
    if in_image != manifest.slot_payload().sha256 {
        return Err(format!(
            "the {} partition of {} does not hold {}: rebuild the image",
            slot.partition,
            image_path.display(),
            build.slot_path().display()
        ));
    }
    let signed = SignedManifest::sign(&manifest, &key).map_err(|e| e.to_string())?;
    let end = slot.offset + slot.size;
    write_trailer(&mut image, end, &signed).map_err(|e| e.to_string())?;
    image
        .sync_all()
        .map_err(|e| format!("{}: {e}", image_path.display()))?;
    let back = read_trailer(&mut image, end)
        .map_err(|e| e.to_string())?
        .ok_or("the trailer just written reads back empty")?;
    if back.verify(&trusted).map_err(|e| e.to_string())? != manifest {
        return Err("the trailer just written reads back different".into());
    }
    println!(
        "cairn-bundle: sealed {} of {}: {} {} (floor {}, schema {}), key {}, root hash {}",
        slot.partition,
        image_path.display(),
        manifest.board,
        manifest.version,
        manifest.floor,
        manifest.schema_version,
        key.key_id(),
        manifest.verity.root_hash
    );
    Ok(())
}

fn bundle(args: &Args) -> Result<(), String> {
    let (build, manifest, key, trusted) = prepare(args)?;
    let out = args.path("out")?;
    let partial = out.with_extension("cfw.part");
    let written = (|| {
        let mut sources: Vec<Box<dyn Read>> = Vec::new();
        for (_, _, path) in build.payload_files()? {
            sources.push(Box::new(BufReader::new(
                File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?,
            )));
        }
        let file = File::create(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
        let mut writer = BufWriter::new(file);
        write_bundle(&mut writer, &key, &manifest, sources).map_err(|e| e.to_string())?;
        let file = writer
            .into_inner()
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        file.sync_all()
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        // Read back as a box would, before it gets its final name.
        check_bundle(&partial, &trusted)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    println!(
        "cairn-bundle: wrote {} ({} KiB): {} {} (floor {}, schema {}), key {}",
        out.display(),
        size / 1024,
        manifest.board,
        manifest.version,
        manifest.floor,
        manifest.schema_version,
        key.key_id()
    );
    Ok(())
}

/// Streams a bundle as a box does: header, signature, every payload's digest, nothing after the last.
fn check_bundle(path: &Path, keys: &TrustedKeys) -> Result<Manifest, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader = BundleReader::open(BufReader::new(file), keys)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    while let Some(payload) = reader.next_payload().map_err(|e| e.to_string())? {
        payload
            .finish()
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let manifest = reader.manifest().clone();
    reader
        .finish()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(manifest)
}

fn verify(args: &Args) -> Result<(), String> {
    let manifest = match (args.get("build"), args.positional.as_slice()) {
        (Some(dir), []) => {
            let build = Build::open(Path::new(dir))?;
            let keys = match args.get("keys") {
                Some(k) => PathBuf::from(k),
                None => build.dir.join(TRUSTED_KEYS_DIR),
            };
            let keys = TrustedKeys::load_dir(&keys).map_err(|e| e.to_string())?;
            check_image_slot(&build, &keys)?
        }
        (None, [file]) => check_bundle(
            Path::new(file),
            &TrustedKeys::load_dir(&args.path("keys")?).map_err(|e| e.to_string())?,
        )?,
        _ => return Err(format!("give a bundle file or --build DIR\n{USAGE}")),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The image's slot: its trailer verified, then the slot's bytes against the manifest's digest.
fn check_image_slot(build: &Build, keys: &TrustedKeys) -> Result<Manifest, String> {
    let path = build.image_path();
    let slot = &build.manifest.slot;
    let mut image = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let signed = read_trailer(&mut image, slot.offset + slot.size)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the {} partition of {} has no trailer: the slot is empty (not sealed)",
                slot.partition,
                path.display()
            )
        })?;
    let manifest = signed.verify(keys).map_err(|e| e.to_string())?;
    let expected = manifest.slot_payload();
    let actual = digest_region(&mut image, slot.offset, expected.size)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if actual != expected.sha256 {
        return Err(format!(
            "the {} partition's bytes do not match its trailer (SHA-256 {actual}, signed {})",
            slot.partition, expected.sha256
        ));
    }
    Ok(manifest)
}

/// SHA-256 of `len` bytes of `file` from `offset`.
fn digest_region(file: &mut File, offset: u64, len: u64) -> std::io::Result<Sha256> {
    file.seek(SeekFrom::Start(offset))?;
    let (digest, read) = Sha256::of_reader(BufReader::new(&mut *file).take(len))?;
    if read != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("only {read} of {len} bytes"),
        ));
    }
    Ok(digest)
}

fn keygen(args: &Args) -> Result<(), String> {
    let [private, public] = args.positional.as_slice() else {
        return Err(format!("give the two files to write\n{USAGE}"));
    };
    let pkcs8 = SigningKey::generate_pkcs8().map_err(|e| e.to_string())?;
    let key = SigningKey::from_pkcs8(&pkcs8).map_err(|e| e.to_string())?;
    for (path, bytes, mode) in [
        (private, pkcs8.clone(), 0o600),
        (
            public,
            public_key_text(&key.public_key()).into_bytes(),
            0o644,
        ),
    ] {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|e| format!("{path}: {e} (never overwritten)"))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{path}: {e}"))?;
    }
    println!(
        "cairn-bundle: key {} in {private} (keep it secret), public key in {public}",
        key.key_id()
    );
    Ok(())
}
