//! Following a log from outside: the last verified checkpoint is remembered (by the caller, as
//! its signed note), and a new checkpoint is accepted only if it is signed, of the same log, not
//! smaller, and proved consistent with the remembered one. A checkpoint of the remembered size
//! with another root is a fork, reported with both notes.

use crate::checkpoint::{self, Checkpoint};
use crate::merkle::{self, Hash};
use crate::problem::{Fork, Problem, ProblemKind};
use crate::trust::Trust;

/// Where a monitor problem is: the remembered state,
pub const STATE: &str = "state";
/// the new checkpoint,
pub const NEW: &str = "checkpoint";
/// or the consistency proof.
pub const PROOF: &str = "proof";

/// An accepted checkpoint; remember `new`'s note from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing was remembered: the checkpoint is trusted on first use.
    FirstUse(Checkpoint),
    /// The remembered checkpoint again (same size and root).
    Unchanged(Checkpoint),
    /// A larger tree that extends the remembered one.
    Extended { old: Checkpoint, new: Checkpoint },
}

/// Why a checkpoint was not accepted.
#[derive(Debug)]
pub enum Refusal {
    /// The remembered state or the arguments cannot be used (a proof is needed and missing).
    Unusable(Problem),
    /// The new checkpoint is not verified: bad signature, other log, rollback, fork, or a
    /// consistency proof that does not verify.
    Refused(Problem),
}

/// Checks `new` (a signed checkpoint note) against the `remembered` one, with `proof` (a
/// consistency proof from the remembered size) when the tree grew.
pub fn check(remembered: Option<&[u8]>, new: &[u8], proof: Option<&[Hash]>, trust: &Trust) -> Result<Outcome, Refusal> {
    let keys = trust.checkpoint_keys(None);
    let refused = |at: &str, kind| Refusal::Refused(Problem::new(at, kind));
    let (new_checkpoint, _) = checkpoint::open(new, &keys).map_err(|e| refused(NEW, ProblemKind::Invalid(e)))?;
    let Some(remembered) = remembered else {
        return Ok(Outcome::FirstUse(new_checkpoint));
    };
    let (old, _) = checkpoint::open(remembered, &keys)
        .map_err(|e| Refusal::Unusable(Problem::new(STATE, ProblemKind::Invalid(e))))?;
    if old.origin() != new_checkpoint.origin() {
        let kind =
            ProblemKind::OtherOrigin { expected: old.origin().to_owned(), found: new_checkpoint.origin().to_owned() };
        return Err(refused(NEW, kind));
    }
    let (old_size, new_size) = (old.size(), new_checkpoint.size());
    if new_size < old_size {
        return Err(refused(NEW, ProblemKind::Rollback { latest: new_size, largest: old_size }));
    }
    if new_size == old_size {
        if old.root() != new_checkpoint.root() {
            let fork =
                Fork { first: remembered.to_vec(), second: new.to_vec(), proof: Vec::new(), root_in_second: None };
            return Err(refused(NEW, ProblemKind::Fork(Box::new(fork))));
        }
        return Ok(Outcome::Unchanged(new_checkpoint));
    }
    let proved = match proof {
        // Every tree extends the empty one: there is nothing to prove, if it is the empty one.
        _ if old_size == 0 => merkle::verify_consistency(0, 0, old.root(), &merkle::empty_root(), &[]),
        Some(proof) => merkle::verify_consistency(old_size, new_size, old.root(), new_checkpoint.root(), proof),
        None => return Err(Refusal::Unusable(Problem::new(PROOF, ProblemKind::Missing))),
    };
    proved.map_err(|e| refused(PROOF, ProblemKind::Invalid(e)))?;
    Ok(Outcome::Extended { old, new: new_checkpoint })
}
