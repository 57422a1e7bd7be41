//! All integration tests, in one binary (each extra test binary would link
//! DataFusion again). They run the real `evlake` binary in temp dirs.

mod common;
mod crash;
mod erase;
mod gold;
mod ingest;
mod interop;
mod late;
mod query;
mod retract;
mod silver;
mod state;
