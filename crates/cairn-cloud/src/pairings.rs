//! Pairings on the box: pending codes and paired devices, and the outbox of what the relay must be told.
//!
//! Each change is one sled transaction over the pairings, the outbox and the issue log, committed before it
//! returns: a code is stored with its real expiry and its offer to the relay queued, or nothing is; a removal
//! takes the pairing away and queues the unpairing at once, whether the relay is reachable or not. The agent
//! (later) sends the outbox in order when the relay answers and drops each entry the relay acknowledged.

use crate::code::PairingCode;
use cairn_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;

/// How long a code is valid (RFC 8628 suggests minutes; the issue asks for 15).
pub const VALID_S: u64 = 15 * 60;
/// Codes waiting to be used at one time.
pub const MAX_PENDING: usize = 5;
/// Codes issued per hour, so a script cannot fill the settings or farm codes.
pub const MAX_PER_HOUR: usize = 10;
/// 2024-01-01T00:00:00Z: a clock before this is not known good (a board without a battery boots in 1970), and
/// no code is issued with an expiry it would print as 1970.
pub const CLOCK_FLOOR_S: u64 = 1_704_067_200;

const PAIRINGS: &str = "cloud_pairings";
const OUTBOX: &str = "cloud_outbox";
const ISSUED: &str = "cloud_issued";
/// In the issue log: when codes were issued (the last hour's), and the codes waiting with their expiry.
const TIMES: &[u8] = b"times";
const WAITING: &[u8] = b"waiting";

/// Where a pairing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairingState {
    /// A code was issued and not used yet.
    Pending,
    /// A device or account was linked with the code.
    Paired,
}

/// A pairing as stored (the code itself never is: only its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    pub id: String,
    pub state: PairingState,
    #[serde(skip_serializing)]
    #[serde(default)]
    pub code_hash: String,
    pub created_s: u64,
    /// When the code stops being valid (pending only).
    pub expires_s: u64,
    /// What the relay called the paired device or account, once paired.
    #[serde(default)]
    pub device: Option<String>,
}

impl Pairing {
    /// True for a pending code past its expiry.
    pub fn expired(&self, now_s: u64) -> bool {
        self.state == PairingState::Pending && now_s >= self.expires_s
    }
}

/// A code just issued: shown once, never stored.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pairing: Pairing,
    pub code: String,
}

/// What the relay must be told, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Outgoing {
    /// A new code the relay may accept until `expires_s`.
    Offer {
        id: String,
        code_hash: String,
        expires_s: u64,
    },
    /// Forget this pairing (it always wins over what the relay holds).
    Unpair { id: String },
}

/// Why a pairing was not issued or removed (nothing was stored).
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("the box's clock is not set (it reads {now_s} seconds since 1970), so no code can have a real expiry")]
    ClockUnknown { now_s: u64 },
    #[error("{MAX_PENDING} codes are waiting to be used already")]
    TooManyPending,
    #[error("{MAX_PER_HOUR} codes were issued in the last hour")]
    RateLimited { retry_after_s: u64 },
    #[error("there is no pairing {0:?}")]
    NoSuchPairing(String),
    #[error("the random number generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sled::Error> for CloudError {
    fn from(e: sled::Error) -> Self {
        CloudError::Store(StoreError::Db(e))
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

fn id_valid(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The pairings in the settings store.
#[derive(Clone)]
pub struct Pairings {
    store: Store,
    pairings: sled::Tree,
    outbox: sled::Tree,
    issued: sled::Tree,
}

impl Pairings {
    /// Opens the pairing tables in `store`.
    pub fn new(store: Store) -> Result<Pairings, CloudError> {
        let db = store.db();
        Ok(Pairings {
            pairings: db.open_tree(PAIRINGS)?,
            outbox: db.open_tree(OUTBOX)?,
            issued: db.open_tree(ISSUED)?,
            store,
        })
    }

    /// Every pairing, pending codes past their expiry included (the owner sees them expire and removes them).
    pub fn list(&self) -> Result<Vec<Pairing>, CloudError> {
        let mut all = Vec::new();
        for item in self.pairings.iter() {
            let (_, v) = item?;
            if let Some(p) = decode::<Pairing>(&v) {
                all.push(p);
            }
        }
        all.sort_by_key(|p| p.created_s);
        Ok(all)
    }

    /// Issues a code valid for [`VALID_S`], in one transaction with its offer to the relay, or nothing.
    pub fn issue(&self, now_s: u64) -> Result<Issued, CloudError> {
        if now_s < CLOCK_FLOOR_S {
            return Err(CloudError::ClockUnknown { now_s });
        }
        self.store.room().check(cairn_store::Need::Change)?;
        let code = PairingCode::new().map_err(|_| CloudError::Random)?;
        let mut id = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| CloudError::Random)?;
        let id = cairn_store::snapshot::hex(&id);
        let pairing = Pairing {
            id: id.clone(),
            state: PairingState::Pending,
            code_hash: code.hash(),
            created_s: now_s,
            expires_s: now_s + VALID_S,
            device: None,
        };
        let stored = serde_json::to_vec(&StoredPairing(&pairing)).map_err(StoreError::Encode)?;
        let offer = serde_json::to_vec(&Outgoing::Offer {
            id: id.clone(),
            code_hash: pairing.code_hash.clone(),
            expires_s: pairing.expires_s,
        })
        .map_err(StoreError::Encode)?;
        let seq = self.store.db().generate_id()?;
        let result = (&self.pairings, &self.outbox, &self.issued).transaction(|(p, o, i)| {
            // The waiting codes and the issue times live in one record each, read and written here, so two
            // issues at once are serialised by the transaction (never both past a bound).
            let waiting: Vec<(String, u64)> = i
                .get(WAITING)?
                .and_then(|v| decode::<Vec<(String, u64)>>(&v))
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, expires)| now_s < *expires)
                .collect();
            if waiting.len() >= MAX_PENDING {
                return Err(ConflictableTransactionError::Abort(
                    CloudError::TooManyPending,
                ));
            }
            let recent: Vec<u64> = i
                .get(TIMES)?
                .and_then(|v| decode::<Vec<u64>>(&v))
                .unwrap_or_default()
                .into_iter()
                .filter(|t| now_s.saturating_sub(*t) < 3600)
                .collect();
            if recent.len() >= MAX_PER_HOUR {
                let oldest = recent.iter().min().copied().unwrap_or(now_s);
                return Err(ConflictableTransactionError::Abort(
                    CloudError::RateLimited {
                        retry_after_s: (oldest + 3600).saturating_sub(now_s).max(1),
                    },
                ));
            }
            let mut times = recent;
            times.push(now_s);
            let mut waiting = waiting;
            waiting.push((id.clone(), pairing.expires_s));
            i.insert(TIMES, serde_json::to_vec(&times).unwrap_or_default())?;
            i.insert(WAITING, serde_json::to_vec(&waiting).unwrap_or_default())?;
            p.insert(id.as_bytes(), stored.as_slice())?;
            o.insert(format!("{seq:020}").as_bytes(), offer.as_slice())?;
            Ok(())
        });
        self.finish(result)?;
        Ok(Issued {
            pairing,
            code: code.as_str().to_string(),
        })
    }

    /// Removes a pending or paired pairing at once and queues its unpairing for the relay; an offer the relay
    /// was never sent is simply dropped with it.
    pub fn remove(&self, id: &str) -> Result<Pairing, CloudError> {
        if !id_valid(id) {
            return Err(CloudError::NoSuchPairing(id.to_string()));
        }
        let removed = self
            .pairings
            .get(id.as_bytes())?
            .and_then(|v| decode::<Pairing>(&v))
            .ok_or_else(|| CloudError::NoSuchPairing(id.to_string()))?;
        let unsent_offers: Vec<sled::IVec> = self
            .outbox
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| matches!(decode::<Outgoing>(v), Some(Outgoing::Offer { id: o, .. }) if o == id))
            .map(|(k, _)| k)
            .collect();
        let unpair = serde_json::to_vec(&Outgoing::Unpair { id: id.to_string() })
            .map_err(StoreError::Encode)?;
        let seq = self.store.db().generate_id()?;
        let result = (&self.pairings, &self.outbox, &self.issued).transaction(|(p, o, i)| {
            if p.remove(id.as_bytes())?.is_none() {
                return Err(ConflictableTransactionError::Abort(
                    CloudError::NoSuchPairing(id.to_string()),
                ));
            }
            for k in &unsent_offers {
                o.remove(k)?;
            }
            // The relay may have the pairing even when its offer is still queued here (sent, not yet
            // acknowledged): the unpairing is always queued, and wins.
            o.insert(format!("{seq:020}").as_bytes(), unpair.as_slice())?;
            let waiting: Vec<(String, u64)> = i
                .get(WAITING)?
                .and_then(|v| decode::<Vec<(String, u64)>>(&v))
                .unwrap_or_default()
                .into_iter()
                .filter(|(w, _)| w != id)
                .collect();
            i.insert(WAITING, serde_json::to_vec(&waiting).unwrap_or_default())?;
            Ok(())
        });
        self.finish(result)?;
        Ok(removed)
    }

    /// What the relay must still be told, oldest first, with the key to acknowledge each.
    pub fn outbox(&self) -> Result<Vec<(String, Outgoing)>, CloudError> {
        let mut out = Vec::new();
        for item in self.outbox.iter() {
            let (k, v) = item?;
            if let Some(entry) = decode::<Outgoing>(&v) {
                out.push((String::from_utf8_lossy(&k).into_owned(), entry));
            }
        }
        Ok(out)
    }

    /// The relay acknowledged an outbox entry.
    pub fn acknowledge(&self, key: &str) -> Result<(), CloudError> {
        self.outbox.remove(key.as_bytes())?;
        self.store.commit()?;
        Ok(())
    }

    fn finish(&self, result: Result<(), TransactionError<CloudError>>) -> Result<(), CloudError> {
        match result {
            Ok(()) => Ok(self.store.commit()?),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }
}

/// A pairing with its code hash, as stored (the API's views leave the hash out).
struct StoredPairing<'a>(&'a Pairing);

impl Serialize for StoredPairing<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let p = self.0;
        let mut st = s.serialize_struct("Pairing", 6)?;
        st.serialize_field("id", &p.id)?;
        st.serialize_field("state", &p.state)?;
        st.serialize_field("code_hash", &p.code_hash)?;
        st.serialize_field("created_s", &p.created_s)?;
        st.serialize_field("expires_s", &p.expires_s)?;
        st.serialize_field("device", &p.device)?;
        st.end()
    }
}
