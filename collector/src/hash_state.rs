//! The hasher of the collector's hot maps.

/// The `BuildHasher` of maps looked up several times per entry (interned names, minute
/// rows, the registry): foldhash, randomly seeded per map. It is fast rather than proof
/// against crafted collisions; the keys are bounded and come from the collector's own
/// parsing.
pub(crate) type FoldHashState = foldhash::fast::RandomState;
