//! Contextualize: what an agent receives besides the enriched indicators — targeting rules
//! (context documents, workflows, agent filters), past alerts, the payload builder.

pub mod payload;
pub mod targeting;
