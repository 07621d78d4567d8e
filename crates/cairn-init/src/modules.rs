//! Kernel modules: dependency order from `modules.dep`, loaded with `finit_module`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `modules.dep` parsed: module name (with `_`) to its file and the files it depends on.
#[derive(Debug, Default)]
pub struct DepTable {
    entries: HashMap<String, (String, Vec<String>)>,
}

/// Module names use `-` and `_` interchangeably; the kernel reports `_`.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalise(stem)
}

impl DepTable {
    pub fn parse(text: &str) -> DepTable {
        let mut entries = HashMap::new();
        for line in text.lines() {
            let Some((module, deps)) = line.split_once(':') else {
                continue;
            };
            let deps = deps.split_whitespace().map(str::to_string).collect();
            entries.insert(name_of(module), (module.trim().to_string(), deps));
        }
        DepTable { entries }
    }

    /// Files to load for `wanted`, dependencies first, each once; names not in the table are returned apart
    /// (they are built in, or missing: the caller tells which from `modules.builtin`).
    pub fn load_order(&self, wanted: &[String]) -> (Vec<String>, Vec<String>) {
        let mut order = Vec::new();
        let mut unknown = Vec::new();
        for name in wanted {
            let name = normalise(name);
            match self.entries.get(&name) {
                Some((file, deps)) => {
                    // modules.dep lists the full closure, deepest last; load it reversed.
                    for dep in deps.iter().rev() {
                        if !order.contains(dep) {
                            order.push(dep.clone());
                        }
                    }
                    if !order.contains(file) {
                        order.push(file.clone());
                    }
                }
                None => unknown.push(name),
            }
        }
        (order, unknown)
    }
}

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module {module} failed to load: {errno}")]
    Load {
        module: String,
        errno: nix::errno::Errno,
    },
    #[error("module {0} is neither built in nor present in modules.dep")]
    Missing(String),
}

/// Loads the modules (with dependencies) from `dir` (`/lib/modules/<release>`); already loaded ones are fine.
pub fn load(dir: &Path, wanted: &[String]) -> Vec<ModuleError> {
    let mut problems = Vec::new();
    let dep_path = dir.join("modules.dep");
    let deps = match std::fs::read_to_string(&dep_path) {
        Ok(t) => DepTable::parse(&t),
        Err(source) => {
            return vec![ModuleError::Read {
                path: dep_path,
                source,
            }]
        }
    };
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin.lines().map(name_of).collect();
    let (order, unknown) = deps.load_order(wanted);
    for name in unknown {
        if !builtin.contains(&name) {
            problems.push(ModuleError::Missing(name));
        }
    }
    for rel in order {
        let path = dir.join(&rel);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(source) => {
                problems.push(ModuleError::Read { path, source });
                continue;
            }
        };
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(errno) => problems.push(ModuleError::Load {
                module: name_of(&rel),
                errno,
            }),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str =
        "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
kernel/fs/jbd2/jbd2.ko:\n\
kernel/lib/crc16.ko:\n\
kernel/fs/mbcache.ko:\n\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/net/core/failover.ko:\n\
kernel/crypto/crc32c_generic.ko:\n";

    #[test]
    fn dependencies_load_before_their_users_and_once() {
        let t = DepTable::parse(DEP);
        let (order, unknown) =
            t.load_order(&["virtio_net".into(), "ext4".into(), "net-failover".into()]);
        assert!(unknown.is_empty());
        let pos = |f: &str| order.iter().position(|o| o.ends_with(f)).unwrap();
        assert!(pos("failover.ko") < pos("net_failover.ko"));
        assert!(pos("net_failover.ko") < pos("virtio_net.ko"));
        assert!(pos("jbd2.ko") < pos("ext4.ko"));
        assert_eq!(order.len(), 7);
    }

    #[test]
    fn unknown_modules_are_reported_not_dropped() {
        let t = DepTable::parse(DEP);
        let (_, unknown) = t.load_order(&["virtio_blk".into()]);
        assert_eq!(unknown, vec!["virtio_blk".to_string()]);
    }
}
