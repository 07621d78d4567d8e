//! U-Boot's environment format, as `env export -c`, `mkenvimage` and `fw_printenv` read and write it (single copy,
//! no flags byte): CRC-32 (IEEE) little-endian in bytes 0..4 over bytes 4..size, then `name=value\0` entries, one
//! more `\0`, and padding up to the fixed size.

use std::collections::BTreeMap;
use thiserror::Error;

/// Bytes of the CRC in front of the entries.
const CRC_LEN: usize = 4;

/// An environment's variables. Sorted by name, as U-Boot's own `env export` writes them, so the same variables
/// always give the same bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

/// Why bytes are not a valid environment, or why an environment cannot be written.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("the environment is {found} bytes, expected {expected}")]
    WrongSize { expected: usize, found: usize },
    #[error("the environment's CRC is {stored:08x}, its contents give {computed:08x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("the environment's entries do not end with an empty entry before byte {size}")]
    Unterminated { size: usize },
    #[error("the environment's entry at byte {offset} has no `name=value` form")]
    BadEntry { offset: usize },
    #[error("the environment's entry at byte {offset} is not UTF-8")]
    NotUtf8 { offset: usize },
    #[error("the variable name {name:?} is empty or holds `=` or NUL")]
    InvalidName { name: String },
    #[error("the value of {name} holds a NUL byte")]
    InvalidValue { name: String },
    #[error("the environment needs {needed} bytes, more than its {size}")]
    TooLarge { needed: usize, size: usize },
}

impl Env {
    /// An environment with no variables.
    pub fn new() -> Env {
        Env::default()
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// Sets `name` (replacing its value), refusing names and values U-Boot could not read back.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), EnvError> {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(EnvError::InvalidName {
                name: name.to_owned(),
            });
        }
        if value.contains('\0') {
            return Err(EnvError::InvalidValue {
                name: name.to_owned(),
            });
        }
        self.vars.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    /// Removes `name`; U-Boot treats an absent variable and an empty one alike.
    pub fn remove(&mut self, name: &str) {
        self.vars.remove(name);
    }

    /// All variables, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Reads an environment of exactly `size` bytes: size first, then the CRC, then the entries' syntax.
    /// Whatever follows the terminating empty entry is padding (U-Boot pads with zeros, mkenvimage with 0xff)
    /// and is not read.
    pub fn parse(bytes: &[u8], size: usize) -> Result<Env, EnvError> {
        if bytes.len() != size || size <= CRC_LEN {
            return Err(EnvError::WrongSize {
                expected: size,
                found: bytes.len(),
            });
        }
        let stored = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let data = &bytes[CRC_LEN..];
        let computed = crc32fast::hash(data);
        if stored != computed {
            return Err(EnvError::BadCrc { stored, computed });
        }
        let mut env = Env::new();
        let mut pos = 0;
        loop {
            let Some(len) = data[pos..].iter().position(|&b| b == 0) else {
                return Err(EnvError::Unterminated { size });
            };
            if len == 0 {
                return Ok(env);
            }
            let offset = CRC_LEN + pos;
            let entry = std::str::from_utf8(&data[pos..pos + len])
                .map_err(|_| EnvError::NotUtf8 { offset })?;
            let (name, value) = entry.split_once('=').ok_or(EnvError::BadEntry { offset })?;
            if name.is_empty() {
                return Err(EnvError::BadEntry { offset });
            }
            env.vars.insert(name.to_owned(), value.to_owned());
            pos += len + 1;
        }
    }

    /// Writes the environment as `size` bytes (CRC, entries, terminator, zero padding), refusing when the entries
    /// do not fit: a cut-off environment would lose variables without a word.
    pub fn serialize(&self, size: usize) -> Result<Vec<u8>, EnvError> {
        let entries: usize = self
            .vars
            .iter()
            .map(|(k, v)| k.len() + 1 + v.len() + 1)
            .sum();
        let needed = CRC_LEN + entries + 1;
        if needed > size {
            return Err(EnvError::TooLarge { needed, size });
        }
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(&[0; CRC_LEN]);
        for (name, value) in &self.vars {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
            out.push(0);
        }
        out.resize(size, 0);
        let crc = crc32fast::hash(&out[CRC_LEN..]);
        out[..CRC_LEN].copy_from_slice(&crc.to_le_bytes());
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
